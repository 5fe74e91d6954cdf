"""Lifecycle management rules that fight retier: a policy's JSON + the containers' names → findings.

Azure's lifecycle management acts on its own once a day, by prefix and blob-index filters only.
A rule written before retier (or beside it) can archive duplicity's manifests, re-archive the
volumes a restore just brought back, delete volumes before their tier's minimum days, or move
them warmer again. This module reads the policy (the JSON `az storage account management-policy
show` prints, or its bare {"rules": [...]}) and names, rule by rule, what it would do to the
names duplicity writes in each container. Pure: no Azure SDK, no storage access.

Azure facts used here (verified only against documentation; nothing here reaches Azure):
* Rule shape, filters (blobTypes, prefixMatch as "container/blob prefix", blobIndexMatch, ANDed)
  and actions: https://learn.microsoft.com/azure/storage/blobs/lifecycle-management-overview
  and https://learn.microsoft.com/azure/storage/blobs/lifecycle-management-policy-access-tiers
* baseBlob conditions daysAfterModificationGreaterThan, daysAfterCreationGreaterThan,
  daysAfterLastAccessTimeGreaterThan, and daysAfterLastTierChangeGreaterThan, which applies only
  to tierToArchive and is ANDed with the other condition ("the blob will be archived if both
  the conditions are satisfied"): ARM's ManagementPolicyBaseBlob / DateAfterModification,
  https://learn.microsoft.com/rest/api/storagerp/management-policies/create-or-update
* Set Blob Tier does not change Last-Modified, so a lifecycle rule that archives by
  modification time re-archives a blob rehydrated in place; Azure's rehydration overview warns
  of exactly this and says to add daysAfterLastTierChangeGreaterThan:
  https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-overview
* tierToHot can only be used with premium block blob accounts; enableAutoTierToHotFromCool moves
  a Cool blob to Hot when it is read (it needs tierToCool.daysAfterLastAccessTimeGreaterThan):
  https://learn.microsoft.com/javascript/api/@azure/arm-storage/managementpolicybaseblob
* tierToCool applies to blobs in Hot; tierToArchive to blobs in an online tier (same page, older
  API versions: "Support blobs currently at Hot tier" / "at Hot or Cool tier").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retier import costs, names
from retier.names import Kind

logger = logging.getLogger(__name__)

OK = "ok"
WARN = "warn"
FAIL = "fail"

# What a finding is about (the `harm` of a Finding).
METADATA_ARCHIVED = "metadata archived"  # manifests/signatures/par2 indexes to Archive
METADATA_DELETED = "metadata deleted"
REARCHIVE = "re-archives a restore"  # a tierToArchive a rehydrated volume meets
EARLY_DELETION = "early deletion"  # volumes deleted before their tier's minimum days
WARMER = "moves volumes warmer"
ARCHIVES_COLD = "archives volumes retier keeps online"
PAR2_OFFLINE = "par2 index offline"  # archived or deleted: only par2+ users care
TAGS = "blob index filter"  # cannot be evaluated from names
HARMLESS = "harmless"

# A tierToArchive protected by daysAfterLastTierChangeGreaterThan gives a restore this many days
# after the rehydration to read its volumes; below it a slow restore can lose them again. Azure's
# own lifecycle example uses 7.
RESTORE_WINDOW_DAYS = 7

# The condition fields of a baseBlob action, as the ARM schema spells them.
MODIFIED = "daysAfterModificationGreaterThan"
CREATED = "daysAfterCreationGreaterThan"
ACCESSED = "daysAfterLastAccessTimeGreaterThan"
TIER_CHANGED = "daysAfterLastTierChangeGreaterThan"
AGE_CONDITIONS = (MODIFIED, CREATED, ACCESSED)

# Representative times for the names built below: any real instant would do, since a prefix
# that names a date is overlaid on these (see _reaches).
_T1, _T2 = "20240101T000000Z", "20240102T000000Z"
_S1, _S2 = "1a2b3c", "1a2b3d"  # legacy short names: base-36 seconds


class PolicyError(ValueError):
    """The file is not a lifecycle management policy (the message says what is wrong)."""


@dataclass(frozen=True)
class Rule:
    name: str
    enabled: bool
    blob_types: tuple[str, ...]
    prefixes: tuple[str, ...]  # "container/blob prefix"; empty: every blob in the account
    tag_filters: tuple[dict, ...]
    base_blob: dict


@dataclass(frozen=True)
class Finding:
    """One rule's effect on one container's duplicity blobs."""

    status: str  # OK, WARN, FAIL
    rule: str
    container: str
    harm: str
    message: str
    kinds: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "rule": self.rule,
            "container": self.container,
            "harm": self.harm,
            "message": self.message,
            "kinds": list(self.kinds),
            "details": self.details,
        }


# -- reading the policy ------------------------------------------------------------------------
def load_policy(path: str | Path) -> list[Rule]:
    """Read a policy file: `az storage account management-policy show`'s output or {"rules": ...}."""
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    return parse_policy(document)


def parse_policy(document: object) -> list[Rule]:
    """The rules of a policy document, in its order; PolicyError when it is not one."""
    if not isinstance(document, Mapping):
        raise PolicyError("a lifecycle policy is a JSON object with 'rules' (or 'policy.rules')")
    if isinstance(document.get("policy"), Mapping):
        document = document["policy"]
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise PolicyError(
            "no 'rules' list: expected az's {'policy': {'rules': [...]}} or {'rules'}"
        )
    return [_rule(i, raw) for i, raw in enumerate(rules)]


def _rule(index: int, raw: object) -> Rule:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"rule {index + 1} is not an object")
    name = str(raw.get("name") or f"rule {index + 1}")
    definition = raw.get("definition") or {}
    filters = definition.get("filters") or {}
    actions = definition.get("actions") or {}
    if not isinstance(filters, Mapping) or not isinstance(actions, Mapping):
        raise PolicyError(f"rule {name}: 'filters' and 'actions' must be objects")
    base_blob = actions.get("baseBlob") or {}
    if not isinstance(base_blob, Mapping):
        raise PolicyError(f"rule {name}: actions.baseBlob must be an object")
    return Rule(
        name=name,
        enabled=raw.get("enabled", True) is not False,
        blob_types=tuple(filters.get("blobTypes") or ("blockBlob",)),
        prefixes=tuple(str(p) for p in filters.get("prefixMatch") or ()),
        tag_filters=tuple(filters.get("blobIndexMatch") or ()),
        base_blob=dict(base_blob),
    )


# -- the names duplicity writes ----------------------------------------------------------------
# Groups of names, by what they are to duplicity. "metadata" must stay online (every backup reads
# the last manifest; a backup with an empty cache reads every signature; the par2 wrapper reads
# "<object>.par2" right after every object it downloads). "volumes" are what retier archives
# (the par2 recovery blocks follow them). jsonstat is metadata nobody reads back.
METADATA = "metadata"
PAR2_INDEX = "par2 index"  # only there when duplicity runs through its par2+ wrapper
VOLUMES = "volumes"
STATISTICS = "statistics"


@dataclass(frozen=True)
class _Sample:
    group: str
    label: str  # "manifest", "signatures", "volume", "par2 index", ...
    name: str
    prefix: str  # the prefix names.parse must find: the name's own --file-prefix* text


def _samples(file_prefix: str, archive_prefix: str, manifest_prefix: str) -> list[_Sample]:
    """One name of every form duplicity writes under these prefixes (long and short, each suffix)."""
    pa, pm = file_prefix + archive_prefix, file_prefix + manifest_prefix
    # --file-prefix-signature has no retier setting: duplicity's default (none) and, since users
    # who set one usually set both, the manifest prefix too.
    ps_options = sorted({file_prefix, pm})
    samples: list[_Sample] = []

    def add(group: str, label: str, prefix: str, stem: str) -> None:
        samples.append(_Sample(group, label, prefix + stem, prefix))

    for sfx in (".gpg", ".gz", ""):
        for vol in ("1", "12", "123"):
            add(VOLUMES, "volume", pa, f"duplicity-full.{_T1}.vol{vol}.difftar{sfx}")
            add(VOLUMES, "volume", pa, f"duplicity-inc.{_T1}.to.{_T2}.vol{vol}.difftar{sfx}")
        for ps in ps_options:
            add(METADATA, "signatures", ps, f"duplicity-full-signatures.{_T1}.sigtar{sfx}")
            add(METADATA, "signatures", ps, f"duplicity-new-signatures.{_T1}.to.{_T2}.sigtar{sfx}")
        add(STATISTICS, "jsonstat", pm, f"duplicity-full.{_T1}.jsonstat{sfx}")
    for sfx in (".gpg", ""):
        add(METADATA, "manifest", pm, f"duplicity-full.{_T1}.manifest{sfx}")
        add(METADATA, "manifest", pm, f"duplicity-inc.{_T1}.to.{_T2}.manifest{sfx}")
    for sfx in (".g", ".z", ""):
        add(VOLUMES, "volume", pa, f"df.{_S1}.1.dt{sfx}")
        add(VOLUMES, "volume", pa, f"di.{_S1}.{_S2}.1.dt{sfx}")
        add(METADATA, "manifest", pm, f"df.{_S1}.m{sfx}")
        add(METADATA, "signatures", file_prefix, f"dfs.{_S1}.st{sfx}")
    # par2: the index of any object stays online; the recovery blocks of a volume follow it.
    volume = f"duplicity-full.{_T1}.vol1.difftar.gpg"
    manifest = f"duplicity-full.{_T1}.manifest.gpg"
    add(PAR2_INDEX, "par2 index", pa, f"{volume}.par2")
    add(PAR2_INDEX, "par2 index", pm, f"{manifest}.par2")
    add(VOLUMES, "par2 recovery blocks", pa, f"{volume}.vol00+01.par2")
    return samples


def _reaches(prefix: str, sample: _Sample) -> bool:
    """Whether some name of `sample`'s form (same kind, same --file-prefix*) starts with `prefix`.

    The rule's prefix is laid over the sample name (a prefix naming a date, a volume number or a
    suffix replaces the sample's own text there) and the result read with names.parse: exact for
    the names duplicity writes, with no guess about prefixes it does not.
    """
    if sample.name.startswith(prefix):
        return True
    candidate = prefix + sample.name[len(prefix) :]
    want = names.parse(sample.name)
    got = names.parse(candidate)
    return (
        got.kind is want.kind
        and got.kind is not Kind.UNKNOWN
        and got.prefix == sample.prefix
        and got.par2 == want.par2
        and got.par2_recovery == want.par2_recovery
    )


def _in_container(rule_prefix: str, container: str) -> str | None:
    """The blob-name prefix a rule prefix sets inside `container`, or None if it skips it.

    Lifecycle prefixes are "container/blob prefix" compared as plain, case-sensitive text: "back"
    takes every container whose name starts with it, "backups/x" the names under x in backups.
    """
    if rule_prefix.startswith(container + "/"):
        return rule_prefix[len(container) + 1 :]
    if (container + "/").startswith(rule_prefix):
        return ""
    return None


# -- the check ---------------------------------------------------------------------------------
@dataclass
class _Hit:
    """What one rule's filters take in one container: sample labels per group."""

    groups: dict[str, set[str]] = field(default_factory=dict)

    def add(self, sample: _Sample) -> None:
        self.groups.setdefault(sample.group, set()).add(sample.label)

    def labels(self, group: str) -> tuple[str, ...]:
        return tuple(sorted(self.groups.get(group, ())))


def check_policy(
    rules: Iterable[Rule],
    containers: Iterable[str],
    *,
    volume_tier: str,
    metadata_tier: str | None = None,
    archive_prefix: str = "",
    manifest_prefix: str = "",
    file_prefixes: Iterable[str] = ("",),
    prices: dict | None = None,
) -> list[Finding]:
    """Every finding of every enabled rule that touches duplicity's names in `containers`.

    `volume_tier` / `metadata_tier` are retier's targets (RETIER_VOLUME_TIER / _METADATA_TIER);
    archive_prefix / manifest_prefix are RETIER_FILE_PREFIX_ARCHIVE / _MANIFEST; file_prefixes
    the --file-prefix values duplicity runs with (default: none). A container no rule touches
    gets one OK finding saying so.
    """
    prices = prices or costs.DEFAULT_PRICES
    rules = list(rules)
    file_prefixes = tuple(dict.fromkeys(file_prefixes or ("",)))
    samples = [s for fp in file_prefixes for s in _samples(fp, archive_prefix, manifest_prefix)]
    findings: list[Finding] = []
    for container in containers:
        touched = False
        for rule in rules:
            hit = _hit(rule, container, samples)
            if hit is None:
                continue
            touched = True
            if not rule.enabled:
                findings.append(
                    Finding(OK, rule.name, container, HARMLESS, "disabled: it does nothing")
                )
                continue
            found = _judge(rule, container, hit, volume_tier, metadata_tier, prices)
            findings.extend(found)
        if not touched:
            findings.append(
                Finding(
                    OK,
                    "",
                    container,
                    HARMLESS,
                    f"no lifecycle rule touches the names duplicity writes in {container}",
                )
            )
    for finding in findings:
        logger.info(
            "lifecycle %s %s %s: %s", finding.status, finding.container, finding.rule, finding.harm
        )
    return findings


def _hit(rule: Rule, container: str, samples: list[_Sample]) -> _Hit | None:
    """What the rule's prefix filter takes among duplicity's names in `container` (None: nothing)."""
    if "blockBlob" not in rule.blob_types:
        return None  # duplicity writes block blobs only
    inner = [""] if not rule.prefixes else [_in_container(p, container) for p in rule.prefixes]
    inner = [p for p in inner if p is not None]
    if not inner:
        return None
    hit = _Hit()
    for sample in samples:
        if any(_reaches(p, sample) for p in inner):
            hit.add(sample)
    return hit if hit.groups else None


def _conditions(action: object) -> dict[str, float]:
    if not isinstance(action, Mapping):
        return {}
    return {
        k: float(v)
        for k, v in action.items()
        if k.startswith("days") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _describe(conditions: Mapping[str, float]) -> str:
    return " and ".join(f"{k} {v:g}" for k, v in conditions.items()) or "no condition"


def _judge(
    rule: Rule,
    container: str,
    hit: _Hit,
    volume_tier: str,
    metadata_tier: str | None,
    prices: dict,
) -> list[Finding]:
    findings: list[Finding] = []
    actions = rule.base_blob
    tags = (
        " if the blobs carry the rule's blob index tags (retier cannot read tags from names; "
        "duplicity sets none)"
        if rule.tag_filters
        else ""
    )

    def add(status: str, harm: str, message: str, kinds: tuple[str, ...], **details) -> None:
        if rule.tag_filters and status == FAIL:
            status = WARN  # it only bites if someone tagged the blobs
        findings.append(Finding(status, rule.name, container, harm, message + tags, kinds, details))

    metadata = hit.labels(METADATA)
    volumes = hit.labels(VOLUMES)
    archive = _conditions(actions.get("tierToArchive"))
    delete = _conditions(actions.get("delete"))

    if metadata and "tierToArchive" in actions:
        add(
            FAIL,
            METADATA_ARCHIVED,
            f"rule {rule.name} archives {', '.join(metadata)} in {container} "
            f"({_describe(archive)}): every backup reads the last manifest and a backup with "
            "an empty cache reads every signature: the next backup fails on an archived one",
            metadata,
            action="tierToArchive",
            conditions=archive,
        )
    par2 = hit.labels(PAR2_INDEX)
    for action, verb in (("tierToArchive", "archives"), ("delete", "deletes")):
        if par2 and action in actions:
            add(
                WARN,
                PAR2_OFFLINE,
                f"rule {rule.name} {verb} the par2 index files (<object>.par2) in {container} "
                f"({_describe(_conditions(actions[action]))}): if duplicity runs through its "
                "par2+ wrapper, which reads the index right after every object it downloads, "
                "a restore (and a backup, for a manifest's index) fails without it",
                par2,
                action=action,
            )
    if metadata and "delete" in actions:
        add(
            FAIL,
            METADATA_DELETED,
            f"rule {rule.name} deletes {', '.join(metadata)} in {container} "
            f"({_describe(delete)}): it deletes by age, not by chain, so a full set's metadata "
            "goes while newer incrementals still need it; use duplicity's "
            "remove-older-than / remove-all-but-n-full instead",
            metadata,
            action="delete",
            conditions=delete,
        )
    for action in ("tierToCool", "tierToCold"):
        if metadata and action in actions and metadata_tier is None:
            add(
                OK,
                HARMLESS,
                f"rule {rule.name} moves {', '.join(metadata)} in {container} to "
                f"{action[len('tierTo') :]} ({_describe(_conditions(actions[action]))}): still "
                "online, so duplicity keeps working; its reads cost more there",
                metadata,
                action=action,
            )

    if volumes and "tierToArchive" in actions:
        _archive_volumes(rule, container, volumes, archive, volume_tier, prices, add)
    if volumes and "delete" in actions:
        _delete_volumes(rule, container, volumes, delete, volume_tier, archive, prices, add)
    if volumes and "tierToHot" in actions:
        add(
            WARN,
            WARMER,
            f"rule {rule.name} moves the volumes in {container} to Hot "
            f"({_describe(_conditions(actions['tierToHot']))}), against retier's "
            f"{volume_tier}; Azure allows tierToHot only on premium block blob accounts, where "
            "retier cannot tier anything: remove the action",
            volumes,
            action="tierToHot",
        )
    if volumes and actions.get("enableAutoTierToHotFromCool"):
        reading = (
            "retier keeps them in Cool, so every read (a verify, a restore) moves a volume to "
            "Hot, billed at Hot's price plus Cool's early deletion, and the sweep moves it back"
            if volume_tier == "Cool"
            else "a volume a restore brings back to Cool goes to Hot as soon as it is read"
        )
        add(
            WARN,
            WARMER,
            f"rule {rule.name} sets enableAutoTierToHotFromCool on the volumes in {container}: "
            f"{reading}",
            volumes,
            action="enableAutoTierToHotFromCool",
        )
    if volumes and "tierToCool" in actions and volume_tier in ("Cold", "Archive"):
        add(
            OK,
            HARMLESS,
            f"rule {rule.name}'s tierToCool takes only Hot blobs; retier moves {container}'s "
            f"volumes to {volume_tier} when their set finishes, so it touches only unfinished sets",
            volumes,
            action="tierToCool",
        )
    if not findings:
        groups = ", ".join(
            f"{g}: {', '.join(hit.labels(g))}"
            for g in (METADATA, VOLUMES, STATISTICS)
            if hit.labels(g)
        )
        add(
            OK,
            HARMLESS,
            f"rule {rule.name} takes duplicity's names in {container} ({groups}) with actions "
            f"that do not fight retier ({', '.join(sorted(actions)) or 'none on base blobs'})",
            (),
        )
    return findings


def _archive_volumes(rule, container, volumes, archive, volume_tier, prices, add) -> None:
    protected = archive.get(TIER_CHANGED)
    ages = {k: v for k, v in archive.items() if k in AGE_CONDITIONS}
    if protected is None:
        add(
            FAIL,
            REARCHIVE,
            f"rule {rule.name} archives the volumes in {container} by "
            f"{_describe(ages) if ages else 'no age condition'} without "
            f"{TIER_CHANGED}: a volume a restore rehydrates keeps its Last-Modified and "
            "creation time, so the next daily run archives it again before duplicity reads "
            f'it (Azure\'s documented rehydrate/re-archive loop); add "{TIER_CHANGED}": '
            f"{RESTORE_WINDOW_DAYS} or more to its tierToArchive",
            volumes,
            action="tierToArchive",
            conditions=archive,
        )
    elif protected < RESTORE_WINDOW_DAYS:
        add(
            WARN,
            REARCHIVE,
            f"rule {rule.name} archives the volumes in {container} again {protected:g} day(s) after "
            f"a tier change: a restore that takes longer loses its rehydrated volumes; "
            f"{RESTORE_WINDOW_DAYS} days or more leaves room",
            volumes,
            action="tierToArchive",
            conditions=archive,
        )
    if volume_tier != "Archive":
        days = min(ages.values()) if ages else 0.0
        per_gib = costs.early_deletion_for_days(costs.GB, volume_tier, days, prices)
        charge = (
            f"; leaving {volume_tier} after {days:g} days is charged about "
            f"{costs.format_money(per_gib, prices['currency'])} per GiB"
            if per_gib
            else ""
        )
        add(
            WARN,
            ARCHIVES_COLD,
            f"rule {rule.name} archives the volumes in {container}, which retier keeps in "
            f"{volume_tier} (RETIER_VOLUME_TIER): every restore then needs a rehydration of up "
            f"to 15 hours{charge}",
            volumes,
            action="tierToArchive",
            conditions=archive,
            charge_per_gib=per_gib,
        )
    elif protected is not None and protected >= RESTORE_WINDOW_DAYS:
        add(
            OK,
            HARMLESS,
            f"rule {rule.name} archives the volumes in {container} as retier does, and leaves a "
            f"rehydrated volume alone for {protected:g} days ({TIER_CHANGED})",
            volumes,
            action="tierToArchive",
        )


def _delete_volumes(rule, container, volumes, delete, volume_tier, archive, prices, add) -> None:
    days = min(delete.values()) if delete else 0.0
    # The tier a volume is in when the rule deletes it: retier's, unless this rule archived it
    # first (then the days in Archive are what is left after the archive condition).
    tier, in_tier = volume_tier, days
    archive_ages = [v for k, v in archive.items() if k in AGE_CONDITIONS]
    if archive_ages and volume_tier != "Archive" and min(archive_ages) < days:
        tier, in_tier = "Archive", days - min(archive_ages)
    minimum = prices["minimum_days"].get(tier, 0)
    per_gib = costs.early_deletion_for_days(costs.GB, tier, in_tier, prices)
    chain = (
        "; it deletes by age, not by chain, so a full's volumes can go while newer "
        "incrementals still need them"
    )
    if per_gib:
        add(
            WARN,
            EARLY_DELETION,
            f"rule {rule.name} deletes the volumes in {container} after {days:g} days "
            f"({_describe(delete)}), {in_tier:g} days into {tier}, whose minimum is {minimum} "
            f"days: an early-deletion charge of about "
            f"{costs.format_money(per_gib, prices['currency'])} per GiB deleted{chain}",
            volumes,
            action="delete",
            conditions=delete,
            tier=tier,
            days_in_tier=in_tier,
            minimum_days=minimum,
            charge_per_gib=per_gib,
            currency=prices["currency"],
        )
    else:
        add(
            WARN,
            EARLY_DELETION,
            f"rule {rule.name} deletes the volumes in {container} after {days:g} days, past "
            f"{tier}'s {minimum}-day minimum (no early-deletion charge){chain}",
            volumes,
            action="delete",
            conditions=delete,
            tier=tier,
            charge_per_gib=0.0,
        )


# -- for restores ------------------------------------------------------------------------------
def restore_warnings(
    rules: Iterable[Rule],
    container: str,
    settings,
    *,
    file_prefixes: Iterable[str] = ("",),
    prices: dict | None = None,
) -> list[Finding]:
    """What `retier rehydrate` prints before a restore of `container`: the rules that would archive
    its rehydrated volumes again (or take them warmer). `settings` is a retier.settings.Settings.

        rules = lifecycle.load_policy(path)
        for finding in lifecycle.restore_warnings(rules, container, settings):
            print(f"{finding.status}: {finding.message}")
    """
    findings = check_policy(
        rules,
        [container],
        volume_tier=settings.policy.volume_tier,
        metadata_tier=settings.policy.metadata_tier,
        archive_prefix=settings.file_prefix_archive,
        manifest_prefix=settings.file_prefix_manifest,
        file_prefixes=file_prefixes,
        prices=prices,
    )
    return restore_conflicts(findings, container)


def restore_conflicts(findings: Iterable[Finding], container: str) -> list[Finding]:
    """The findings that would undo a restore in `container`: rules that archive a rehydrated
    volume again (or take it warmer meanwhile). `retier rehydrate` prints these before it starts."""
    return [
        f
        for f in findings
        if f.container == container and f.harm in (REARCHIVE, WARMER) and f.status != OK
    ]
