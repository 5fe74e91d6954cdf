"""Lifecycle management rules that fight retier: one policy per harm, exact findings naming the rule."""

from __future__ import annotations

import json

import pytest

from retier import costs
from retier.lifecycle import (
    ARCHIVES_COLD,
    EARLY_DELETION,
    FAIL,
    HARMLESS,
    METADATA_ARCHIVED,
    METADATA_DELETED,
    OK,
    PAR2_OFFLINE,
    REARCHIVE,
    WARMER,
    WARN,
    PolicyError,
    check_policy,
    parse_policy,
    restore_conflicts,
)

C = "backups"


def rule(name, base_blob, prefixes=(f"{C}/",), *, enabled=True, tags=None, types=("blockBlob",)):
    filters = {"blobTypes": list(types)}
    if prefixes is not None:
        filters["prefixMatch"] = list(prefixes)
    if tags:
        filters["blobIndexMatch"] = tags
    return {
        "name": name,
        "enabled": enabled,
        "type": "Lifecycle",
        "definition": {"filters": filters, "actions": {"baseBlob": base_blob}},
    }


def az_show(*rules):
    """The shape `az storage account management-policy show` prints."""
    return {
        "id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/"
        "managementPolicies/default",
        "lastModifiedTime": "2026-01-01T00:00:00+00:00",
        "name": "DefaultManagementPolicy",
        "policy": {"rules": list(rules)},
        "resourceGroup": "rg",
        "type": "Microsoft.Storage/storageAccounts/managementPolicies",
    }


def findings(document, containers=(C,), volume_tier="Archive", **kwargs):
    return check_policy(parse_policy(document), containers, volume_tier=volume_tier, **kwargs)


def verdicts(found):
    return sorted((f.status, f.rule, f.harm) for f in found)


# -- one policy per harm -------------------------------------------------------------------------
def test_a_rule_archiving_manifests_and_signatures_fails_naming_the_rule_and_the_next_backup():
    found = findings(
        az_show(
            rule(
                "archive-old",
                {
                    "tierToArchive": {
                        "daysAfterModificationGreaterThan": 30,
                        "daysAfterLastTierChangeGreaterThan": 30,
                    }
                },
            )
        )
    )
    assert verdicts(found) == [
        (FAIL, "archive-old", METADATA_ARCHIVED),
        (OK, "archive-old", HARMLESS),
        (WARN, "archive-old", PAR2_OFFLINE),  # volumes: as retier does, and rehydrations are safe
    ]
    meta = next(f for f in found if f.harm == METADATA_ARCHIVED)
    assert meta.kinds == ("manifest", "signatures")
    assert "archive-old" in meta.message and "next backup" in meta.message


def test_a_rule_deleting_metadata_fails():
    found = findings(az_show(rule("expire", {"delete": {"daysAfterModificationGreaterThan": 400}})))
    assert verdicts(found) == [
        (FAIL, "expire", METADATA_DELETED),
        (WARN, "expire", EARLY_DELETION),
        (WARN, "expire", PAR2_OFFLINE),  # past Archive's 180 days: no charge, still by age
    ]
    deleted = next(f for f in found if f.harm == EARLY_DELETION)
    assert deleted.details["charge_per_gib"] == 0.0


def test_a_tier_to_archive_by_modification_time_re_archives_a_restore_and_fails():
    # Only the volumes, with --file-prefix-archive: the rule is what duplicity's man page suggests.
    found = findings(
        {
            "rules": [
                rule(
                    "cold-vols",
                    {"tierToArchive": {"daysAfterModificationGreaterThan": 1}},
                    [f"{C}/vols/"],
                )
            ]
        },
        archive_prefix="vols/",
    )
    assert verdicts(found) == [(FAIL, "cold-vols", REARCHIVE), (WARN, "cold-vols", PAR2_OFFLINE)]
    loop = found[0] if found[0].harm == REARCHIVE else found[1]
    assert loop.kinds == ("par2 recovery blocks", "volume")
    assert "daysAfterLastTierChangeGreaterThan" in loop.message
    assert restore_conflicts(found, C) == [loop]
    assert restore_conflicts(found, "other") == []


@pytest.mark.parametrize(
    "condition", ["daysAfterCreationGreaterThan", "daysAfterLastAccessTimeGreaterThan"]
)
def test_creation_and_access_conditions_do_not_protect_a_rehydrated_volume(condition):
    found = findings(
        {"rules": [rule("r", {"tierToArchive": {condition: 10}}, [f"{C}/v/"])]}, archive_prefix="v/"
    )
    assert verdicts(found) == [(FAIL, "r", REARCHIVE), (WARN, "r", PAR2_OFFLINE)]


def test_a_short_tier_change_protection_warns_and_a_week_or_more_is_ok():
    short = findings(
        {
            "rules": [
                rule(
                    "r",
                    {
                        "tierToArchive": {
                            "daysAfterModificationGreaterThan": 1,
                            "daysAfterLastTierChangeGreaterThan": 2,
                        }
                    },
                    [f"{C}/v/"],
                )
            ]
        },
        archive_prefix="v/",
    )
    assert verdicts(short) == [(WARN, "r", PAR2_OFFLINE), (WARN, "r", REARCHIVE)]
    assert [f.harm for f in restore_conflicts(short, C)] == [REARCHIVE]


def test_deleting_volumes_before_their_tiers_minimum_warns_with_the_charge_per_gib():
    found = findings(
        {
            "rules": [
                rule("prune", {"delete": {"daysAfterModificationGreaterThan": 60}}, [f"{C}/v/"])
            ]
        },
        archive_prefix="v/",
    )
    assert verdicts(found) == [(WARN, "prune", EARLY_DELETION), (WARN, "prune", PAR2_OFFLINE)]
    early = next(f for f in found if f.harm == EARLY_DELETION)
    # 120 days of Archive's 180 left, prorated by 30-day months, per GiB.
    expected = 120 / 30 * costs.DEFAULT_PRICES["storage_per_gb_month"]["Archive"]
    assert early.details["charge_per_gib"] == pytest.approx(expected)
    assert early.details["tier"] == "Archive" and early.details["minimum_days"] == 180
    assert costs.format_money(expected, "USD") in early.message


def test_a_rule_archiving_volumes_retier_keeps_cold_warns_with_colds_charge():
    found = findings(
        {
            "rules": [
                rule(
                    "deep",
                    {
                        "tierToArchive": {
                            "daysAfterModificationGreaterThan": 30,
                            "daysAfterLastTierChangeGreaterThan": 30,
                        }
                    },
                    [f"{C}/v/"],
                )
            ]
        },
        volume_tier="Cold",
        archive_prefix="v/",
    )
    assert verdicts(found) == [(WARN, "deep", ARCHIVES_COLD), (WARN, "deep", PAR2_OFFLINE)]
    expected = 60 / 30 * costs.DEFAULT_PRICES["storage_per_gb_month"]["Cold"]
    deep = next(f for f in found if f.harm == ARCHIVES_COLD)
    assert deep.details["charge_per_gib"] == pytest.approx(expected)


def test_rules_moving_volumes_warmer_warn():
    found = findings(
        {
            "rules": [
                rule(
                    "auto-hot",
                    {
                        "tierToCool": {"daysAfterLastAccessTimeGreaterThan": 30},
                        "enableAutoTierToHotFromCool": True,
                    },
                    [f"{C}/v/"],
                ),
                rule("hot", {"tierToHot": {"daysAfterModificationGreaterThan": 1}}, [f"{C}/v/"]),
            ]
        },
        volume_tier="Cool",
        archive_prefix="v/",
    )
    assert verdicts(found) == [(WARN, "auto-hot", WARMER), (WARN, "hot", WARMER)]
    assert "every read" in next(f for f in found if f.rule == "auto-hot").message


# -- harmless policies, and exact matching -------------------------------------------------------
def test_a_harmless_policy_gives_ok_findings_only():
    found = findings(
        az_show(
            rule("logs", {"delete": {"daysAfterModificationGreaterThan": 7}}, ["logs/"]),
            rule("off", {"tierToArchive": {"daysAfterModificationGreaterThan": 0}}, enabled=False),
            rule(
                "appends", {"delete": {"daysAfterModificationGreaterThan": 1}}, types=["appendBlob"]
            ),
        )
    )
    assert verdicts(found) == [(OK, "off", HARMLESS)]
    assert "disabled" in found[0].message
    assert verdicts(findings(az_show(rule("logs", {"delete": {}}, ["logs/"])))) == [
        (OK, "", HARMLESS)
    ]


@pytest.mark.parametrize(
    ("prefix", "kinds"),
    [
        # duplicity's default names: "duplicity-full." takes full volumes AND full manifests
        (f"{C}/duplicity-full.", {"manifest", "par2 index", "volume", "par2 recovery blocks"}),
        (f"{C}/duplicity-full.2023", {"manifest", "par2 index", "volume", "par2 recovery blocks"}),
        (f"{C}/duplicity-full-signatures", {"signatures"}),
        (f"{C}/duplicity-inc.20240101T000000Z.to.", {"manifest", "volume"}),
        (f"{C}/duplicity-full.2023-01", set()),  # no name duplicity writes has that date text
        (f"{C}/host1/", set()),  # only under a --file-prefix it does not use
        ("back", {"manifest", "par2 index", "signatures", "volume", "par2 recovery blocks"}),
        ("other/", set()),
    ],
)
def test_a_prefix_is_evaluated_against_the_names_duplicity_writes(prefix, kinds):
    found = findings(
        {"rules": [rule("r", {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}, [prefix])]}
    )
    got = {k for f in found if f.rule for k in f.kinds}
    assert got == kinds


def test_per_type_prefixes_keep_a_volume_only_rule_off_the_metadata():
    pol = {
        "rules": [
            rule("vols", {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}, [f"{C}/a/"])
        ]
    }
    with_prefix = findings(pol, archive_prefix="a/", manifest_prefix="m/")
    assert {k for f in with_prefix for k in f.kinds} == {
        "volume",
        "par2 recovery blocks",
        "par2 index",  # a volume's own .par2 index lives under the volumes' prefix
    }
    without = findings(pol)  # duplicity runs without --file-prefix-archive: nothing under a/
    assert verdicts(without) == [(OK, "", HARMLESS)]


def test_a_file_prefix_given_by_the_user_makes_a_folder_rule_exact():
    pol = {
        "rules": [
            rule("host", {"delete": {"daysAfterModificationGreaterThan": 30}}, [f"{C}/host1/"])
        ]
    }
    assert verdicts(findings(pol, file_prefixes=["host1/"])) == [
        (FAIL, "host", METADATA_DELETED),
        (WARN, "host", EARLY_DELETION),
        (WARN, "host", PAR2_OFFLINE),
    ]
    assert verdicts(findings(pol, file_prefixes=["host2/"])) == [(OK, "", HARMLESS)]


def test_a_blob_index_filter_cannot_be_evaluated_so_a_would_be_fail_is_a_warning_saying_so():
    tags = [{"name": "Project", "op": "==", "value": "x"}]
    found = findings(
        {
            "rules": [
                rule(
                    "tagged", {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}, tags=tags
                )
            ]
        }
    )
    assert {f.status for f in found} == {WARN}
    assert all("blob index tags" in f.message for f in found)


def test_a_rule_without_prefixes_takes_every_container():
    found = findings(
        {"rules": [rule("all", {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}, None)]},
        containers=("a", "b"),
    )
    assert {(f.container, f.harm) for f in found if f.status == FAIL} == {
        ("a", METADATA_ARCHIVED),
        ("a", REARCHIVE),
        ("b", METADATA_ARCHIVED),
        ("b", REARCHIVE),
    }


@pytest.mark.parametrize("document", [[], {"policy": {}}, {"rules": "x"}, {"rules": [1]}])
def test_a_file_that_is_not_a_policy_is_refused(document):
    with pytest.raises(PolicyError):
        parse_policy(document)


# -- the CLI contract the deploy script uses -----------------------------------------------------
def test_doctor_only_lifecycle_needs_no_storage_and_exits_1_on_a_fail(tmp_path, run_retier):
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            az_show(
                rule("archive-all", {"tierToArchive": {"daysAfterModificationGreaterThan": 30}})
            )
        )
    )
    proc = run_retier(
        "doctor", "--lifecycle-policy", str(path), "--only", "lifecycle", "--container", C
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        f"fail  {C} lifecycle archive-all: rule archive-all archives manifest"
    )
    assert lines[-1] == "doctor: 0 ok, 2 warn, 2 fail"  # the default volume tier is Cold


def test_doctor_only_lifecycle_exits_0_for_a_harmless_policy_and_2_without_a_container(
    tmp_path, run_retier
):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"rules": [rule("logs", {"delete": {}}, ["logs/"])]}))
    proc = run_retier(
        "doctor", "--lifecycle-policy", str(path), "--only", "lifecycle", "--container", C, "--json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [c["status"] for c in report["checks"]] == ["ok"]
    proc = run_retier("doctor", "--lifecycle-policy", str(path), "--only", "lifecycle")
    assert proc.returncode == 2 and "--container" in proc.stdout
    path.write_text("{not json")
    proc = run_retier(
        "doctor", "--lifecycle-policy", str(path), "--only", "lifecycle", "--container", C
    )
    assert proc.returncode == 2 and "not JSON" in proc.stdout


def test_rehydrate_can_ask_which_rules_would_undo_a_restore_of_a_container():
    from retier.lifecycle import restore_warnings
    from retier.settings import load_settings

    settings = load_settings({"RETIER_VOLUME_TIER": "Archive", "RETIER_FILE_PREFIX_ARCHIVE": "v/"})
    rules = parse_policy(
        {
            "rules": [
                rule(
                    "loop", {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}, [f"{C}/v/"]
                ),
                rule("prune", {"delete": {"daysAfterModificationGreaterThan": 30}}, [f"{C}/v/"]),
            ]
        }
    )
    (warning,) = restore_warnings(rules, C, settings)
    assert (warning.status, warning.rule, warning.harm) == (FAIL, "loop", REARCHIVE)
    assert restore_warnings(rules, "elsewhere", settings) == []
