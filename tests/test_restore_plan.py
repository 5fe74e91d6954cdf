"""Restore planning without storage: times, chains as duplicity builds them, dry-run parsing, costs."""

from datetime import datetime, timedelta, timezone

import pytest

from retier import costs, names
from retier.restore import (
    RestoreError,
    build_chains,
    chain_at,
    parse_required_volumes,
    parse_time,
)

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("3D", NOW - timedelta(days=3)),
        ("1h30m", NOW - timedelta(hours=1, minutes=30)),
        ("20240101T020304Z", datetime(2024, 1, 1, 2, 3, 4, tzinfo=timezone.utc)),
        ("2024-01-31T12:00:00Z", datetime(2024, 1, 31, 12, tzinfo=timezone.utc)),
        ("2024-01-31T12:00:00+02:00", datetime(2024, 1, 31, 10, tzinfo=timezone.utc)),
        ("2024/01/31", datetime(2024, 1, 31, tzinfo=timezone.utc)),
        ("1704067200", datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_restore_times_are_read_as_duplicity_reads_them(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "3 days", "2024-13-01", ""])
def test_bad_restore_time_is_a_clear_error(text):
    with pytest.raises(RestoreError, match="--time"):
        parse_time(text, NOW)


def M(name):
    return names.parse(name)


T = [
    "20240101T000000Z",
    "20240102T000000Z",
    "20240103T000000Z",
    "20240110T000000Z",
    "20240111T000000Z",
]
CHAIN_1 = [
    M(f"duplicity-full.{T[0]}.manifest.gpg"),
    M(f"duplicity-inc.{T[0]}.to.{T[1]}.manifest.gpg"),
    M(f"duplicity-inc.{T[1]}.to.{T[2]}.manifest.gpg"),
]
CHAIN_2 = [
    M(f"duplicity-full.{T[3]}.manifest.gpg"),
    M(f"duplicity-inc.{T[3]}.to.{T[4]}.manifest.gpg"),
]
ORPHAN = M(
    f"duplicity-inc.{T[2]}.to.20240104T000000Z.manifest.gpg".replace(T[2], "20240103T120000Z")
)


def at(text):
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def test_chains_link_incrementals_to_their_full_and_ignore_orphans():
    chains = build_chains(list(reversed(CHAIN_1 + CHAIN_2 + [ORPHAN])))
    assert [len(c.incs) for c in chains] == [2, 1]
    assert chains[0].end == at(T[2]) and chains[1].start == at(T[3])


def test_latest_restore_uses_the_newest_chain_and_all_its_incrementals():
    chain = chain_at(build_chains(CHAIN_1 + CHAIN_2), NOW)
    assert [s.manifest.name for s in chain.sets_at(NOW)] == [m.name for m in CHAIN_2]


def test_restore_as_of_a_time_stops_at_the_last_incremental_before_it():
    chain = chain_at(build_chains(CHAIN_1 + CHAIN_2), at("20240102T120000Z"))
    assert [s.manifest.name for s in chain.sets_at(at("20240102T120000Z"))] == [
        m.name for m in CHAIN_1[:2]
    ]


def test_time_between_chains_uses_the_older_chain_and_before_all_the_first():
    chains = build_chains(CHAIN_1 + CHAIN_2)
    assert chain_at(chains, at("20240105T000000Z")).full.manifest.name == CHAIN_1[0].name
    assert chain_at(chains, at("20230101T000000Z")).full.manifest.name == CHAIN_1[0].name


def test_no_full_backup_is_a_clear_error():
    with pytest.raises(RestoreError, match="no complete backup chain"):
        chain_at(build_chains(CHAIN_1[1:]), NOW)


DRY_RUN_OUTPUT = """Local and Remote metadata are synchronized, no sync needed.
Last full backup date: Thu Nov 26 03:20:38 2026
Required volumes to restore:
\tduplicity-full.20261126T032038Z.vol4.difftar.gpg
\tduplicity-inc.20261126T032038Z.to.20261126T032041Z.vol1.difftar.gpg
Duplicity backup complete.
"""


def test_required_volumes_are_read_from_duplicity_dry_run_output():
    assert parse_required_volumes(DRY_RUN_OUTPUT) == [
        "duplicity-full.20261126T032038Z.vol4.difftar.gpg",
        "duplicity-inc.20261126T032038Z.to.20261126T032041Z.vol1.difftar.gpg",
    ]


def test_output_without_a_required_volumes_list_is_refused():
    with pytest.raises(RestoreError, match="Required volumes"):
        parse_required_volumes("Duplicity backup complete.\n")


def test_rehydration_estimate_counts_retrieval_operations_and_early_deletion():
    prices = costs.load_prices({})
    gb = costs.GB
    archived = [(10 * gb, NOW - timedelta(days=90)), (10 * gb, NOW - timedelta(days=200))]
    e = costs.rehydration_estimate(archived, "Standard", NOW, prices)
    assert e.retrieval == pytest.approx(20 * prices["retrieval_per_gb"]["Archive"])
    assert e.operations == pytest.approx(2 / 10_000 * prices["read_per_10k"]["Archive"])
    # only the blob archived 90 days ago pays: (180 - 90) / 30 months of Archive storage
    assert e.early_deletion == pytest.approx(3 * prices["storage_per_gb_month"]["Archive"] * 10)
    assert e.hours == prices["rehydrate_hours"]["Standard"]
    high = costs.rehydration_estimate(archived, "High", NOW, prices)
    assert high.total > e.total
    assert high.hours == pytest.approx(20 * gb / costs.GB / prices["high_priority_gib_per_hour"])


def test_prices_can_be_overridden_from_a_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"region": "West Europe", "retrieval_per_gb": {"Archive": 0.05}}')
    prices = costs.load_prices({"RETIER_PRICES": str(path)})
    assert prices["region"] == "West Europe" and prices["retrieval_per_gb"]["Archive"] == 0.05
    assert prices["retrieval_per_gb"]["Cold"] == costs.DEFAULT_PRICES["retrieval_per_gb"]["Cold"]
    with pytest.raises(costs.PriceError, match="RETIER_PRICES"):
        costs.load_prices({"RETIER_PRICES": str(tmp_path / "missing.json")})


# -- differential: the chain and sets duplicity itself would restore from ------------------------
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def duplicity_collections(tmp_path_factory):
    from duplicity import config, dup_collections, file_naming, log, path

    log.setup()
    saved = getattr(config, "archive_dir_path", None)
    config.archive_dir_path = path.Path(str(tmp_path_factory.mktemp("dup-archive")))
    file_naming.prepare_regex(force=True)
    yield dup_collections
    config.archive_dir_path = saved


def _name(kind, times):
    stamp = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%dT%H%M%SZ") for t in times]
    if kind == "full":
        return f"duplicity-full.{stamp[0]}.manifest.gpg"
    return f"duplicity-inc.{stamp[0]}.to.{stamp[1]}.manifest.gpg"


@st.composite
def backup_histories(draw):
    """Realistic histories: chains of full + incrementals, sometimes an orphan or a re-run incremental."""
    t = 1_700_000_000
    manifests = []
    for _ in range(draw(st.integers(1, 3))):
        t += draw(st.integers(1, 5)) * 86400
        manifests.append(("full", (t,)))
        for _ in range(draw(st.integers(0, 4))):
            step = draw(st.integers(1, 3)) * 86400
            if draw(st.integers(0, 9)) == 0:  # orphan: starts where nothing ends
                manifests.append(("inc", (t + draw(st.sampled_from([-3600, 3600])), t + step)))
            else:
                manifests.append(("inc", (t, t + step)))
            t += step
    query = draw(st.integers(1_700_000_000 - 86400, t + 86400))
    return manifests, query


@hsettings(max_examples=60, deadline=None)
@given(history=backup_histories())
def test_restore_sets_match_duplicitys_own_choice(duplicity_collections, history):
    manifests, query = history
    files = [_name(kind, times) for kind, times in manifests]
    cs = duplicity_collections.CollectionsStatus(None, None, "restore")
    chains, _, _, _ = cs.get_backup_chains([f.encode() for f in files])
    cs.all_backup_chains = cs.get_sorted_chains(chains)
    theirs = [
        s.remote_manifest_name.decode()
        for s in cs.get_backup_chain_at_time(query).get_sets_at_time(query)
    ]
    at = datetime.fromtimestamp(query, timezone.utc)
    ours = [
        s.manifest.name
        for s in chain_at(build_chains([names.parse(f) for f in files]), at).sets_at(at)
    ]
    assert ours == theirs


def test_estimates_price_only_what_rehydrate_would_request():
    from retier.restore import RestorePlan, Volume

    def blob(name, tier, archive_status=None):
        return Volume(name, 2**30, tier, archive_status, NOW - timedelta(days=200))

    plan = RestorePlan(
        "c",
        NOW,
        "chain",
        ["set"],
        [
            blob("v1", "Archive"),
            blob("v2", "Archive", "rehydrate-pending-to-hot"),
            blob("v3", "Hot"),
        ],
        recovery_left_out=[
            blob("v1.vol0+1.par2", "Archive"),
            blob("v2.vol0+1.par2", "Archive", "rehydrate-pending-to-hot"),
        ],
    )
    prices = costs.DEFAULT_PRICES
    assert (plan.estimate("Standard", prices).blobs, plan.estimate("High", prices).bytes) == (
        1,
        2**30,
    )
    assert plan.recovery_estimate("Standard", prices).blobs == 1  # the other is on its way
    assert plan.to_dict()["par2_recovery_left_out"] == {
        "blobs": 2,
        "bytes": 2 * 2**30,
        "archived": 1,
    }


# -- the two ways, against hand-computed values from the price table ------------------------------
def _vol(name, gib, tier, days_ago, status=None):
    from retier.restore import Volume

    return Volume(name, int(gib * 2**30), tier, status, NOW - timedelta(days=days_ago))


def test_both_ways_are_priced_part_by_part_as_by_hand():
    from retier.restore import COPY, IN_PLACE, RestorePlan, cheaper_way, compare_ways

    plan = RestorePlan(
        "c",
        NOW,
        "chain",
        ["set"],
        [
            _vol("recent", 10, "Archive", 30),  # archived 30 days ago: 150 days left to pay
            _vol("old", 10, "Archive", 200),  # past Archive's 180 days: nothing left to pay
            _vol("cold", 1, "Cold", 100),  # online: copied by a copy, untouched in place
        ],
        metadata=[_vol("manifest", 1 / 1024, "Hot", 1)],
    )
    prices = costs.DEFAULT_PRICES  # Archive 0.002/GB-month, 5.00 per 10k reads, 0.02/GB, ...
    ways = compare_ways(plan, "Standard", prices, to="Hot", online_days=3, now=NOW)
    months = 3 / (365.25 / 12)

    in_place = ways[IN_PLACE]
    assert in_place.retrieval == pytest.approx(20 * 0.02)
    assert in_place.operations == pytest.approx(2 * 5.00 / 10_000)
    assert in_place.early_deletion == pytest.approx((180 - 30) / 30 * 0.002 * 10)
    assert in_place.writes == pytest.approx(2 * 0.10 / 10_000)  # re-archiving at release
    assert in_place.online_storage == pytest.approx(20 * (0.0184 - 0.002) * months)
    assert in_place.online_early_deletion == 0
    assert in_place.total == pytest.approx(0.40 + 0.001 + 0.10 + 0.00002 + 20 * 0.0164 * months)

    copy = ways[COPY]
    assert copy.retrieval == pytest.approx(20 * 0.02)
    # Archive reads, plus the Cold volume's read and retrieval, plus the Hot manifest's read
    assert copy.operations == pytest.approx(
        2 * 5.00 / 10_000 + 0.10 / 10_000 + 1 * 0.03 + 0.004 / 10_000
    )
    assert copy.early_deletion == 0  # the source stays archived
    assert copy.writes == pytest.approx(4 * 0.05 / 10_000)  # every copy is a write at Hot
    assert copy.online_storage == pytest.approx((21 + 1 / 1024) * 0.0184 * months)
    assert copy.online_bytes == 21 * 2**30 + 2**20
    assert copy.total == pytest.approx(
        0.40 + 0.001 + 0.00001 + 0.03 + 0.0000004 + 0.00002 + (21 + 1 / 1024) * 0.0184 * months
    )
    assert cheaper_way(ways) == COPY  # the early deletion outweighs the copy's extra storage
    assert in_place.hours == copy.hours == 15

    # Only volumes past 180 days: nothing to save on early deletion, in place is cheaper.
    old_only = RestorePlan("c", NOW, "chain", ["set"], [_vol("old", 10, "Archive", 200)])
    ways = compare_ways(old_only, "Standard", prices, to="Hot", online_days=3, now=NOW)
    assert ways[IN_PLACE].total == pytest.approx(0.2 + 0.0005 + 0.00001 + 10 * 0.0164 * months)
    assert ways[COPY].total == pytest.approx(0.2 + 0.0005 + 0.000005 + 10 * 0.0184 * months)
    assert cheaper_way(ways) == IN_PLACE

    # To Cool for 3 days: deleting the copies (or re-archiving in place) pays Cool's 27 days left.
    cool = compare_ways(old_only, "High", prices, to="Cool", online_days=3, now=NOW)
    assert cool[COPY].online_early_deletion == pytest.approx((30 - 3) / 30 * 0.01 * 10)
    assert cool[IN_PLACE].online_early_deletion == pytest.approx((30 - 3) / 30 * 0.01 * 10)
    assert cool[COPY].retrieval == pytest.approx(10 * 0.10)  # High's retrieval price
    assert cool[COPY].operations == pytest.approx(50.00 / 10_000)


def test_pending_eta_follows_the_documented_targets():
    from retier.restore import Pending

    standard = Pending("v", 2**30, "Standard", NOW - timedelta(hours=5), NOW)
    assert standard.target_hours == 15 and standard.eta == "0-10.0 h left (target 15 h)"
    late = Pending("v", 2**30, "Standard", NOW - timedelta(hours=20), NOW)
    assert late.eta == "5.0 h past the 15 h target"
    assert Pending("v", 9 * 10**9, "High", NOW, NOW).target_hours == 1
    assert Pending("v", 10 * 10**9, "High", NOW, NOW).target_hours is None  # no documented target


def test_in_place_pending_time_is_never_before_the_request():
    from retier.restore import Volume, pending_since

    asked = NOW - timedelta(hours=2)
    archived_long_ago = Volume(
        "v",
        1,
        "Archive",
        "rehydrate-pending-to-hot",
        None,
        tier_changed_at=NOW - timedelta(days=90),
    )
    # if Azure keeps the archiving time until the rehydration completes, the hold's time counts
    assert pending_since(archived_long_ago, by_copy=False, requested=asked) == asked
    copy = Volume("v", 1, "Archive", "rehydrate-pending-to-hot", None, created_at=asked)
    assert pending_since(copy, by_copy=True) == asked
