"""Restore out of Archive: which volumes duplicity needs, rehydrating them in place, and the hold."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from retier import costs, names
from retier.errors import RestoreError
from retier.names import DuplicityName, Kind
from retier.settings import Settings
from retier.storage import OK, BlobItem, BlobStore

logger = logging.getLogger(__name__)


# -- time ---------------------------------------------------------------------------------------
_INTERVAL = re.compile(r"^(?:(\d+)([smhDWMY]))+$")
_INTERVAL_PART = re.compile(r"(\d+)([smhDWMY])")
_UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "D": 86400,
    "W": 7 * 86400,
    "M": 30 * 86400,
    "Y": 365 * 86400,
}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A restore time as duplicity's --time takes it: "now", an ISO date or date-time, duplicity's
    `20240101T020304Z`, epoch seconds, or an age such as `3D`, `2W`, `1h30m` (before now)."""
    now = now or datetime.now(timezone.utc)
    value = text.strip()
    if value == "now":
        return now
    if _INTERVAL.match(value):
        return now - timedelta(
            seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in _INTERVAL_PART.findall(value))
        )
    if value.isdigit():
        return datetime.fromtimestamp(int(value), timezone.utc)
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y/%m/%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RestoreError(
            f"--time {text!r}: use now, an ISO date/time (2024-01-31 or 2024-01-31T12:00:00Z), "
            "duplicity's 20240131T120000Z, epoch seconds, or an age such as 3D"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a local time, as duplicity reads it
    return parsed.astimezone(timezone.utc)


def instant(text: str, short: bool) -> datetime:
    """The time in a duplicity name: `20240101T020304Z`, or base-36 seconds in legacy short names."""
    if short:
        return datetime.fromtimestamp(int(text, 36), timezone.utc)
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


# -- chains -------------------------------------------------------------------------------------
@dataclass
class BackupSet:
    manifest: DuplicityName

    @property
    def type(self) -> str:
        return self.manifest.type

    @property
    def start(self) -> datetime:
        m = self.manifest
        return instant(m.time if m.type == "full" else m.start_time, m.short)

    @property
    def end(self) -> datetime:
        m = self.manifest
        return instant(m.time if m.type == "full" else m.end_time, m.short)

    @property
    def label(self) -> str:
        return (
            self.manifest.name.rsplit("manifest", 1)[0].rstrip(".")
            if not self.manifest.short
            else self.manifest.name
        )


@dataclass
class Chain:
    full: BackupSet
    incs: list[BackupSet] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.full.start

    @property
    def end(self) -> datetime:
        return self.incs[-1].end if self.incs else self.full.end

    def add_inc(self, inc: BackupSet) -> bool:
        # duplicity's BackupChain.add_inc: it must start where the chain ends, or replace the
        # last incremental with the same start and a later end.
        if inc.start == self.end:
            self.incs.append(inc)
            return True
        if self.incs and inc.start == self.incs[-1].start and inc.end > self.incs[-1].end:
            self.incs[-1] = inc
            return True
        return False

    def sets_at(self, at: datetime) -> list[BackupSet]:
        return [self.full] + [s for s in self.incs if s.end <= at]


def build_chains(manifests: Iterable[DuplicityName]) -> list[Chain]:
    """duplicity's chains from complete sets (a set is complete when its manifest exists)."""
    sets = sorted((BackupSet(m) for m in manifests), key=lambda s: (s.end, s.type != "full"))
    chains: list[Chain] = []
    for s in sets:
        if s.type == "full":
            chains.append(Chain(s))
            continue
        if not any(chain.add_inc(s) for chain in chains):
            logger.info("orphaned incremental %s ignored, as duplicity does", s.label)
    return chains


def chain_at(chains: list[Chain], at: datetime) -> Chain:
    """duplicity's get_backup_chain_at_time: covering chain, else the latest older one, else the first."""
    if not chains:
        raise RestoreError(
            "no complete backup chain in this container (no full backup with a manifest)"
        )
    covering = [c for c in chains if c.start <= at <= c.end]
    if len(covering) == 1:
        return covering[0]
    if len(covering) > 1:
        raise RestoreError("two backup chains cover that time")
    older = [c for c in chains if c.end < at]
    return older[-1] if older else chains[0]


# -- plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Volume:
    """A blob the restore reads: a volume, or a par2 file of one (`par2` says which kind)."""

    name: str
    size: int
    tier: str | None
    archive_status: str | None
    archived_since: datetime | None
    tier_inferred: bool = False  # never tiered: the restore hold does not guard it (see rehydrate)
    par2: str | None = None  # None for a volume; "index" or "recovery" for its par2 files
    rehydrate_priority: str | None = None  # Standard or High while a rehydration is pending
    tier_changed_at: datetime | None = None  # the service's x-ms-access-tier-change-time
    created_at: datetime | None = None  # the service's creation time: a copy's start

    @property
    def state(self) -> str:
        if self.archive_status:
            return "rehydrating"
        if self.tier == "Archive":
            return "archived"
        return "online"

    @classmethod
    def from_item(cls, item: BlobItem, par2: str | None = None) -> Volume:
        return cls(
            item.name,
            item.size,
            item.tier,
            item.archive_status,
            item.since,
            item.tier_inferred,
            par2,
            item.rehydrate_priority,
            item.tier_change_time,
            item.creation_time,
        )


@dataclass
class RestorePlan:
    container: str
    at: datetime
    chain: str
    sets: list[str]
    volumes: list[Volume]
    partial: bool = False  # True when limited to the volumes duplicity listed for a partial restore
    listing_prefixes: list[str] = field(default_factory=list)  # one per set: re-read tiers cheaply
    # par2 recovery blocks of the planned volumes that are not in `volumes` (no --with-par2):
    # duplicity reads them only to repair a volume that fails its par2 check.
    recovery_left_out: list[Volume] = field(default_factory=list)
    # The chain's manifests and signatures (par2 files included): online, read by every restore,
    # so a copy-based restore copies them too (duplicity restores from one container URL).
    metadata: list[Volume] = field(default_factory=list)

    def by_state(self) -> dict[str, list[Volume]]:
        out: dict[str, list[Volume]] = {"online": [], "rehydrating": [], "archived": []}
        for v in self.volumes:
            out[v.state].append(v)
        return out

    def estimate(
        self, priority: str, prices: dict, now: datetime | None = None
    ) -> costs.RehydrationEstimate:
        """What rehydrating the plan's archived blobs costs (those already on their way excluded)."""
        return _estimate(self.volumes, priority, prices, now)

    def recovery_estimate(
        self, priority: str, prices: dict, now: datetime | None = None
    ) -> costs.RehydrationEstimate:
        """What adding the left-out par2 recovery blocks (--with-par2) would cost."""
        return _estimate(self.recovery_left_out, priority, prices, now)

    def to_dict(self, prices: dict | None = None) -> dict:
        states = self.by_state()
        out = {
            "container": self.container,
            "time": self.at.isoformat(),
            "chain": self.chain,
            "sets": self.sets,
            "partial": self.partial,
            "volumes": [
                {
                    "name": v.name,
                    "bytes": v.size,
                    "tier": v.tier,
                    "archive_status": v.archive_status,
                    "state": v.state,
                    "par2": v.par2,
                }
                for v in self.volumes
            ],
            "counts": {state: len(vs) for state, vs in states.items()},
            "bytes_to_rehydrate": sum(v.size for v in states["archived"]),
            "par2_recovery_left_out": {
                "blobs": len(self.recovery_left_out),
                "bytes": sum(v.size for v in self.recovery_left_out),
                "archived": sum(v.state == "archived" for v in self.recovery_left_out),
            },
            # what a copy-based restore copies besides the volumes
            "metadata": {
                "blobs": len(self.metadata),
                "bytes": sum(v.size for v in self.metadata),
            },
        }
        if prices is not None:
            out["estimates"] = {p: self.estimate(p, prices).to_dict() for p in ("Standard", "High")}
            out["prices"] = {
                "as_of": prices.get("as_of"),
                "region": prices.get("region"),
                "source": prices.get("source"),
            }
        return out


def _estimate(
    blobs: list[Volume], priority: str, prices: dict, now: datetime | None
) -> costs.RehydrationEstimate:
    """Rehydrating the archived ones of `blobs`: what `rehydrate` would request."""
    archived = [(v.size, v.archived_since) for v in blobs if v.state == "archived"]
    return costs.rehydration_estimate(archived, priority, now or datetime.now(timezone.utc), prices)


def parse_required_volumes(text: str) -> list[str]:
    """The volume names under "Required volumes to restore:" in `duplicity restore --dry-run` output."""
    found, inside = [], False
    for line in text.splitlines():
        if "Required volumes to restore" in line:
            inside = True
            continue
        if inside:
            candidate = line.strip()
            if line[:1] in ("\t", " ") and candidate and names.parse(candidate).kind is Kind.VOLUME:
                found.append(candidate)
            elif candidate:
                inside = False
    if not found:
        raise RestoreError(
            'no "Required volumes to restore:" list found: give the output of `duplicity restore --dry-run …`'
        )
    return found


def plan_restore(
    store: BlobStore,
    container: str,
    settings: Settings,
    *,
    at: datetime | None = None,
    volume_names: list[str] | None = None,
    prefix: str | None = None,
    with_par2: bool = False,
) -> RestorePlan:
    """The chain duplicity restores from as of `at` (default: latest), and every blob it reads.

    That is each volume, and for a backup made with duplicity's par2+ wrapper each volume's
    "<volume>.par2" index, which the wrapper downloads right after the volume. The recovery blocks
    ("<volume>.volNN+MM.par2") are read only to repair a volume that fails its par2 check: they are
    planned with `with_par2`, and otherwise listed in `recovery_left_out`.
    """
    at = at or datetime.now(timezone.utc)
    mapping = settings.name_prefixes
    manifests: dict[str, list[DuplicityName]] = {}
    metadata_items: list[tuple[DuplicityName, BlobItem]] = []
    for item in store.list_blobs(container, prefix or None):
        name = names.parse(item.name)
        if name.kind is Kind.MANIFEST and not name.par2:
            manifests.setdefault(name.prefix, []).append(name)
        if name.kind in (Kind.MANIFEST, Kind.SIGNATURES):
            metadata_items.append((name, item))
    if prefix is not None:
        manifests = {p: m for p, m in manifests.items() if p == prefix}
    if not manifests:
        raise RestoreError(
            f"no duplicity manifests in container {container!r}"
            + (f" under prefix {prefix!r}" if prefix else "")
        )
    if len(manifests) > 1:
        found = ", ".join(repr(p) for p in sorted(manifests))
        raise RestoreError(
            f"container {container!r} holds backups under several prefixes ({found}): choose one with --prefix"
        )
    (group,) = manifests.values()
    chain = chain_at(build_chains(group), at)
    sets = chain.sets_at(at)
    volumes: list[Volume] = []
    par2_files: dict[str, list[Volume]] = {}  # by the volume they protect
    listing_prefixes = [names.volume_listing_prefix(s.manifest, **mapping) for s in sets]
    for s, listing_prefix in zip(sets, listing_prefixes, strict=True):
        key = names.set_key(s.manifest, **mapping)
        for item in store.list_blobs(container, listing_prefix):
            v = names.parse(item.name)
            if v.kind is not Kind.VOLUME or names.set_key(v, **mapping) != key:
                continue
            if not v.par2:
                volumes.append(Volume.from_item(item))
            else:
                kind = "recovery" if v.par2_recovery else "index"
                par2_files.setdefault(v.par2_of, []).append(Volume.from_item(item, kind))
    partial = False
    if volume_names is not None:
        wanted = set(volume_names)
        missing = wanted - {v.name for v in volumes}
        if missing:
            raise RestoreError(
                f"{len(missing)} listed volume(s) are not in that chain, e.g. {min(missing)!r}: "
                "use the same --time for duplicity and retier"
            )
        volumes = [v for v in volumes if v.name in wanted]
        partial = True
    needed: list[Volume] = []
    left_out: list[Volume] = []
    for v in volumes:
        needed.append(v)
        for p in par2_files.get(v.name, []):
            (needed if p.par2 == "index" or with_par2 else left_out).append(p)
    label = f"{chain.full.label} .. {sets[-1].label}"
    set_ids = {s.manifest.set_id for s in sets}
    metadata = [
        Volume.from_item(item, "index" if n.par2_index else "recovery" if n.par2 else None)
        for n, item in metadata_items
        if n.set_id in set_ids and (n.kind is not Kind.MANIFEST or n.prefix == group[0].prefix)
    ]
    return RestorePlan(
        container,
        at,
        label,
        [s.label for s in sets],
        needed,
        partial,
        listing_prefixes,
        left_out,
        metadata,
    )


# -- rehydrate / status / release -----------------------------------------------------------------
def hold_note(to: str, priority: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"restore since {now.strftime('%Y-%m-%dT%H:%M:%SZ')} to {to} priority {priority}"


@dataclass
class RehydrateResult:
    requested: int = 0
    already_online: int = 0
    already_rehydrating: int = 0
    pinned: int = 0  # online, never-tiered volumes given an explicit tier so the hold guards them
    unpinned: list[str] = field(default_factory=list)  # ... and those whose pin was refused
    failures: list[dict] = field(default_factory=list)
    plan: RestorePlan | None = None  # the plan as re-read under the hold


def rehydrate(
    store: BlobStore, plan: RestorePlan, *, to: str = "Hot", priority: str = "Standard"
) -> RehydrateResult:
    """Hold the container, re-read the plan's tiers, pin what the hold cannot guard, then Set Blob
    Tier in place (batched) on the archived blobs. The result carries the plan as re-read.

    Order matters against the event handler and the sweep, which run meanwhile:

    1. The hold first: anything that lists a blob after this and finds it rehydrated (its tier
       set) reads the hold after its listing, and leaves the blob alone.
    2. The plan is re-read after the hold: a volume archived between planning and holding (a late
       event) is then rehydrated too instead of being counted online.
    3. A needed volume still Hot with its tier never set (its set's event is not handled yet:
       late, or given up on) is not guarded by the hold, which only guards blobs whose tier was set
       (retier.storage.BlobItem.tier_set). It gets an explicit Hot tier, so a late event leaves it
       alone. Only inferred Hot: an explicit Cool would start Cool's 30-day minimum.
    """
    # A second rehydrate (to add volumes, or to escalate) keeps the first one's time: `status`
    # measures how long a rehydration has been pending from it.
    earlier = hold_since(store.get_hold(plan.container))
    store.set_hold(plan.container, hold_note(to, priority, earlier))
    plan = refresh(store, plan)
    states = plan.by_state()
    result = RehydrateResult(
        already_online=len(states["online"]),
        already_rehydrating=len(states["rehydrating"]),
        plan=plan,
    )
    pin = [
        v.name
        for v in states["online"]
        if v.tier_inferred and v.tier == "Hot" and v.par2 != "index"
    ]
    for r in store.set_tier(plan.container, pin, "Hot") if pin else []:
        # Best effort: the pin only closes a window (a late event); the restore needs nothing more.
        if r.outcome == OK:
            result.pinned += 1
        else:
            result.unpinned.append(r.name)
            logger.warning(
                "%s: could not pin %s Hot (HTTP %s %s): a late event may archive it",
                plan.container,
                r.name,
                r.status,
                r.code or "",
            )
    archived = [v.name for v in states["archived"]]
    for r in (
        store.set_tier(plan.container, archived, to, rehydrate_priority=priority)
        if archived
        else []
    ):
        if r.outcome == OK:
            result.requested += 1
        else:
            result.failures.append(
                {"name": r.name, "outcome": r.outcome, "status": r.status, "code": r.code}
            )
    logger.info(
        "rehydrate %s: %d requested to %s (%s), %d already online (%d pinned Hot), "
        "%d already rehydrating, %d failed",
        plan.container,
        result.requested,
        to,
        priority,
        result.already_online,
        result.pinned,
        result.already_rehydrating,
        len(result.failures),
    )
    return result


def refresh(store: BlobStore, plan: RestorePlan) -> RestorePlan:
    """The same volumes with their current tiers (one listing per set)."""
    known = {v.name: v for v in plan.volumes + plan.recovery_left_out}
    current: dict[str, Volume] = {}
    for prefix in plan.listing_prefixes:
        for item in store.list_blobs(plan.container, prefix):
            if item.name in known:
                current[item.name] = Volume.from_item(item, known[item.name].par2)
    return replace(
        plan,
        volumes=[current.get(v.name, v) for v in plan.volumes],
        recovery_left_out=[current.get(v.name, v) for v in plan.recovery_left_out],
    )


def wait_until_online(
    store: BlobStore,
    plan: RestorePlan,
    *,
    interval: float,
    on_poll: Callable[[RestorePlan], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    reread: Callable[[RestorePlan], RestorePlan] | None = None,
) -> RestorePlan:
    """Poll until no volume is rehydrating any more; returns the last state seen.

    `plan` is the first state seen (the caller has just listed it): it is re-read only after each
    wait. Then every volume is online, or some are still archived with nothing on its way
    (waiting longer would never end): the caller tells the two apart. `reread` re-reads the
    state (default: `refresh`, the source's tiers; `copy_view` for a restore container).
    """
    while True:
        if on_poll:
            on_poll(plan)
        if not plan.by_state()["rehydrating"]:
            return plan
        sleep(interval)
        plan = reread(plan) if reread else refresh(store, plan)


# -- two ways to bring volumes back: in place, or by copy -----------------------------------------
IN_PLACE = "in-place"
COPY = "copy"
DEFAULT_ONLINE_DAYS = 3  # how long a restore keeps its volumes online before `release`


@dataclass(frozen=True)
class WayEstimate:
    """What one way of bringing the plan's archived volumes online costs, part by part.

    Both ways pay the same read and per-GB retrieval out of Archive (at the priority's price).
    In place also pays Archive's early deletion for volumes archived under 180 days, the online
    tier's storage above Archive's while online, and one write per volume to re-archive it (which
    starts a new 180-day minimum). By copy the source stays archived and untouched: no early
    deletion; it pays one write per copied blob at the destination tier and the copies' online
    storage, and the copies are deleted by `release --copy-to`. Out of Cool or Cold, leaving
    before the tier's minimum days is an early deletion too (`online_early_deletion`).
    """

    way: str
    priority: str
    blobs: int  # blobs retrieved out of Archive
    bytes: int
    retrieval: float
    operations: float  # reads out of Archive (and of online sources for a copy)
    early_deletion: float  # Archive's, for leaving it before 180 days (in place only)
    writes: float  # copies' writes (copy) or re-archiving writes (in place)
    online_storage: float
    online_early_deletion: float
    online_days: float
    online_bytes: int
    hours: float
    currency: str

    @property
    def total(self) -> float:
        return (
            self.retrieval
            + self.operations
            + self.early_deletion
            + self.writes
            + self.online_storage
            + self.online_early_deletion
        )

    def to_dict(self) -> dict:
        return {
            "way": self.way,
            "priority": self.priority,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "retrieval": round(self.retrieval, 6),
            "operations": round(self.operations, 6),
            "early_deletion": round(self.early_deletion, 6),
            "writes": round(self.writes, 6),
            "online_storage": round(self.online_storage, 6),
            "online_early_deletion": round(self.online_early_deletion, 6),
            "online_days": self.online_days,
            "online_bytes": self.online_bytes,
            "total": round(self.total, 6),
            "currency": self.currency,
            "hours_up_to": round(self.hours, 1),
        }


def compare_ways(
    plan: RestorePlan,
    priority: str,
    prices: dict,
    *,
    to: str = "Hot",
    online_days: float = DEFAULT_ONLINE_DAYS,
    now: datetime | None = None,
) -> dict[str, WayEstimate]:
    """Both ways for the plan at `priority`, keyed IN_PLACE and COPY (prices from costs' table).

    Copy billing: "Copying an archived blob to an online tier with Copy Blob is billed for data
    read transactions and data retrieval size. Creating the destination blob in an online tier is
    billed for data write transactions. Early deletion fees don't apply" (Microsoft,
    https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-overview#pricing-and-billing).
    """
    now = now or datetime.now(timezone.utc)
    rehydration = plan.estimate(priority, prices, now)  # the archived ones, not those on their way
    archived = [v for v in plan.volumes if v.state == "archived"]
    months = online_days / costs.DAYS_PER_MONTH
    gb = costs.billed_gb
    price = prices["storage_per_gb_month"]
    archived_bytes = sum(v.size for v in archived)
    in_place = WayEstimate(
        IN_PLACE,
        priority,
        rehydration.blobs,
        rehydration.bytes,
        rehydration.retrieval,
        rehydration.operations,
        rehydration.early_deletion,
        costs.per_10k(len(archived), prices["write_per_10k"]["Archive"]),
        gb(archived_bytes) * (price[to] - price["Archive"]) * months,
        costs.early_deletion_for_days(archived_bytes, to, online_days, prices),
        online_days,
        archived_bytes,
        rehydration.hours,
        prices["currency"],
    )
    # A copy reads every blob the restore needs into the restore container: the archived volumes
    # (above), the online ones at their tier's read and retrieval price, and the metadata.
    others = [v for v in plan.volumes + plan.metadata if v.state == "online"]
    other_reads = sum(
        costs.per_10k(1, prices["read_per_10k"].get(v.tier or "Hot", 0.0))
        + gb(v.size) * prices["retrieval_per_gb"].get(v.tier or "Hot", 0.0)
        for v in others
    )
    copied = archived + others
    copied_bytes = sum(v.size for v in copied)
    copy = WayEstimate(
        COPY,
        priority,
        rehydration.blobs,
        rehydration.bytes,
        rehydration.retrieval,
        rehydration.operations + other_reads,
        0.0,
        costs.per_10k(len(copied), prices["write_per_10k"][to]),
        gb(copied_bytes) * price[to] * months,
        costs.early_deletion_for_days(copied_bytes, to, online_days, prices),
        online_days,
        copied_bytes,
        rehydration.hours,
        prices["currency"],
    )
    return {IN_PLACE: in_place, COPY: copy}


def cheaper_way(ways: dict[str, WayEstimate]) -> str:
    """COPY unless in place costs less (a tie goes to the copy, which leaves the archive alone)."""
    return IN_PLACE if ways[IN_PLACE].total < ways[COPY].total else COPY


# -- copy into a restore container -----------------------------------------------------------------
def default_restore_container(source: str) -> str:
    """`<source>-restore`, shortened to Azure's 63 characters."""
    return f"{source[: 63 - len('-restore')].rstrip('-')}-restore"


def check_restore_container(
    store: BlobStore, source: str, dest: str, configured: Iterable[str] = ()
) -> bool:
    """Refuse a restore container that is the source, one retier tiers (RETIER_CONTAINERS), or
    one holding any blob retier did not copy there from `source`. True when it already exists."""
    if dest == source:
        raise RestoreError(f"--copy-to {dest}: the restore container must not be the source")
    if dest in set(configured):
        raise RestoreError(
            f"--copy-to {dest}: it is in RETIER_CONTAINERS, so retier would re-tier its copies; "
            "choose another container"
        )
    from retier.storage import StorageError

    try:
        foreign = [i.name for i in store.list_blobs(dest, with_copy=True) if i.copy_of != source]
    except StorageError as exc:
        if exc.status == 404:
            return False
        raise
    if foreign:
        raise RestoreError(
            f"--copy-to {dest}: it holds {len(foreign)} blob(s) retier did not copy there from "
            f"{source} (e.g. {min(foreign)!r}): choose a new or empty container"
        )
    return True


def copy_hold_note(source: str, to: str, priority: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return (
        f"restore copy of {source} since {now.strftime('%Y-%m-%dT%H:%M:%SZ')} "
        f"to {to} priority {priority}"
    )


@dataclass
class CopyResult:
    container: str
    rehydrating: int = 0  # copies out of Archive started (pending for hours on Azure)
    copied: int = 0  # copies of online blobs (volumes and metadata)
    already: int = 0  # already in the restore container, copied or on their way
    failures: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "rehydrating": self.rehydrating,
            "copied": self.copied,
            "already": self.already,
            "failures": self.failures,
        }


def copy_out(
    store: BlobStore,
    plan: RestorePlan,
    dest: str,
    *,
    to: str = "Hot",
    priority: str = "Standard",
    configured: Iterable[str] = (),
) -> CopyResult:
    """Copy every blob the restore reads (planned volumes, the chain's manifests and signatures)
    into `dest` under the same names, archived ones with `priority`. The source is never changed.

    `dest` is put on restore hold first: if it is a container the Function sees events for, the
    manifest's copy must not make the handler archive the set's copies.
    """
    check_restore_container(store, plan.container, dest, configured)
    store.create_container(dest)
    store.set_hold(dest, copy_hold_note(plan.container, to, priority))
    present = {
        i.name: i
        for i in store.list_blobs(dest, with_copy=True)
        if i.copy_status not in ("failed", "aborted")
    }
    result = CopyResult(dest)
    for v in plan.volumes + plan.metadata:
        if v.name in present:
            result.already += 1
            continue
        if v.state == "rehydrating":  # rehydrating in place: online soon, copied then
            result.failures.append(
                {"name": v.name, "outcome": "skipped", "status": None, "code": "BeingRehydrated"}
            )
            continue
        archived = v.state == "archived"
        r = store.copy_blob(
            plan.container, v.name, dest, tier=to, rehydrate_priority=priority if archived else None
        )
        if r.outcome != OK:
            result.failures.append(
                {"name": r.name, "outcome": r.outcome, "status": r.status, "code": r.code}
            )
        elif archived:
            result.rehydrating += 1
        else:
            result.copied += 1
    logger.info(
        "copy %s to %s: %d out of Archive (%s, to %s), %d online copied, %d already there, "
        "%d failed",
        plan.container,
        dest,
        result.rehydrating,
        priority,
        to,
        result.copied,
        result.already,
        len(result.failures),
    )
    return result


def copy_view(store: BlobStore, plan: RestorePlan, dest: str) -> RestorePlan:
    """The plan as its copies in `dest` stand (one listing): a copy on its way counts as
    rehydrating, a missing or failed one as archived (nothing on its way)."""
    found = {i.name: i for i in store.list_blobs(dest, with_copy=True)}

    def seen(v: Volume) -> Volume:
        item = found.get(v.name)
        if item is None or item.copy_status in ("failed", "aborted"):
            return replace(v, tier="Archive", archive_status=None, rehydrate_priority=None)
        copy = Volume.from_item(item, v.par2)
        if copy.archive_status is None and item.copy_status == "pending":
            copy = replace(copy, archive_status="copy-pending")
        return copy

    return replace(
        plan,
        container=dest,
        volumes=[seen(v) for v in plan.volumes],
        metadata=[seen(v) for v in plan.metadata],
        recovery_left_out=[],
        listing_prefixes=[],
    )


@dataclass
class ReleaseCopyResult:
    container: str
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # not retier's copies of that source
    failures: list[dict] = field(default_factory=list)
    hold: str | None = None

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "deleted": len(self.deleted),
            "kept": self.kept,
            "failures": self.failures,
            "hold_lifted": self.hold,
        }


def copies_of(store: BlobStore, source: str, dest: str) -> tuple[list[BlobItem], list[str]]:
    """retier's copies from `source` in `dest`, and the names of every other blob there."""
    mine: list[BlobItem] = []
    others: list[str] = []
    for item in store.list_blobs(dest, with_copy=True):
        if item.copy_of == source:
            mine.append(item)
        else:
            others.append(item.name)
    return mine, others


def release_copies(store: BlobStore, source: str, dest: str) -> ReleaseCopyResult:
    """Delete the blobs retier copied from `source` into `dest` (each only if unchanged since
    listed), leave every other blob, then lift `dest`'s hold. The source is not touched."""
    from retier.storage import StorageError

    mine, others = copies_of(store, source, dest)
    result = ReleaseCopyResult(dest, kept=others)
    for item in mine:
        try:
            store.delete_blob(dest, item.name, etag=item.etag)
        except StorageError as exc:
            if exc.status == 404:
                continue
            result.failures.append({"name": item.name, "status": exc.status, "code": exc.code})
            continue
        result.deleted.append(item.name)
    if not result.failures:
        result.hold = store.clear_hold(dest)
    logger.info(
        "release copies of %s in %s: %d deleted, %d other blobs kept, %d failed",
        source,
        dest,
        len(result.deleted),
        len(others),
        len(result.failures),
    )
    return result


# -- pending rehydrations: how long, until when, and escalation ------------------------------------
STANDARD_TARGET_HOURS = 15  # "may take up to 15 hours" (archive-rehydrate-overview)
HIGH_TARGET_HOURS = 1  # "may complete in under one hour for objects under 10 GB"
HIGH_TARGET_MAX_BYTES = 10 * 10**9  # "10 GB" as the documentation words it
# "A maximum of 10 GiB per storage account may be rehydrated per hour with priority retrieval."
# https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-overview
HIGH_GIB_PER_HOUR = 10


def hold_since(note: str | None) -> datetime | None:
    """The time in a hold note ("restore since 2024-01-01T00:00:00Z …"), or None."""
    match = re.search(r"since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", note or "")
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def pending_since(
    v: Volume, *, by_copy: bool, requested: datetime | None = None
) -> datetime | None:
    """When a pending rehydration was asked for, from the service's timestamps.

    A copy's destination is created when the copy starts (its creation time). In place, the
    tier-change time may be when the blob was archived (if Azure moves it only on completion):
    never earlier than `requested`, the time in the hold retier set just before asking.
    """
    if by_copy:
        return v.created_at
    times = [t for t in (v.tier_changed_at, requested) if t is not None]
    return max(times) if times else None


@dataclass(frozen=True)
class Pending:
    """One volume still on its way online, and when it should be there by the documented targets."""

    name: str
    size: int
    priority: str | None
    since: datetime | None
    now: datetime

    @property
    def hours(self) -> float | None:
        return None if self.since is None else (self.now - self.since).total_seconds() / 3600

    @property
    def target_hours(self) -> float | None:
        """Azure's documented target for this priority (None: High for a blob of 10 GB or more)."""
        if self.priority == "High":
            return HIGH_TARGET_HOURS if self.size < HIGH_TARGET_MAX_BYTES else None
        return STANDARD_TARGET_HOURS

    @property
    def eta(self) -> str:
        """The remaining time as a range from the target, or how far past it."""
        target, done = self.target_hours, self.hours
        if target is None:
            return "no documented target (High, 10 GB or more)"
        if done is None:
            return f"up to {target:g} h"
        left = target - done
        if left >= 0:
            return f"0-{left:.1f} h left (target {target:g} h)"
        return f"{-left:.1f} h past the {target:g} h target"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "bytes": self.size,
            "priority": self.priority,
            "pending_since": self.since.isoformat() if self.since else None,
            "pending_hours": None if self.hours is None else round(self.hours, 2),
            "target_hours": self.target_hours,
            "eta": self.eta,
        }


def pending_volumes(
    view: RestorePlan,
    *,
    by_copy: bool,
    requested: datetime | None = None,
    now: datetime | None = None,
) -> list[Pending]:
    now = now or datetime.now(timezone.utc)
    return [
        Pending(
            v.name,
            v.size,
            v.rehydrate_priority,
            pending_since(v, by_copy=by_copy, requested=requested),
            now,
        )
        for v in view.volumes + view.metadata
        if v.state == "rehydrating" and v.archive_status != "copy-pending"
    ]


def high_priority_hours(size: int) -> float:
    """Hours the account's High-priority limit (10 GiB per hour) needs for `size` bytes."""
    return size / 2**30 / HIGH_GIB_PER_HOUR


def due_for_escalation(pending: list[Pending], after_hours: float) -> list[Pending]:
    """Those pending at Standard for `after_hours` or more (never High ones, never unknown ones)."""
    return [
        p
        for p in pending
        if p.priority == "Standard" and p.hours is not None and p.hours >= after_hours
    ]


def escalation_estimate(due: list[Pending], prices: dict) -> costs.RehydrationEstimate:
    """What High priority costs for these volumes' bytes (Archive's High read and retrieval)."""
    return costs.rehydration_estimate(
        [(p.size, None) for p in due], "High", datetime.now(timezone.utc), prices
    )


def escalate(store: BlobStore, view: RestorePlan, due: list[Pending]) -> list[dict]:
    """Raise `due` to High: Set Blob Tier with the tier each is already rehydrating to and High
    priority, on the blob that is rehydrating (the source in place, the copy in the restore
    container). "To change the rehydration priority from Standard to High for the pending
    rehydration, call Set Blob Tier on the destination blob and specify the target tier"
    (https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-to-online-tier#change-the-rehydration-priority-of-a-pending-operation).
    Returns the failures."""
    by_name = {v.name: v for v in view.volumes + view.metadata}
    by_tier: dict[str, list[str]] = {}
    for p in due:
        status = by_name[p.name].archive_status or ""
        tier = status.removeprefix("rehydrate-pending-to-").capitalize()
        if tier in ("Hot", "Cool", "Cold"):
            by_tier.setdefault(tier, []).append(p.name)
    failures = []
    for tier, blob_names in by_tier.items():
        for r in store.set_tier(view.container, blob_names, tier, rehydrate_priority="High"):
            if r.outcome != OK:
                failures.append(
                    {"name": r.name, "outcome": r.outcome, "status": r.status, "code": r.code}
                )
    logger.info(
        "escalate %s: %d pending at Standard raised to High, %d failed",
        view.container,
        sum(len(n) for n in by_tier.values()) - len(failures),
        len(failures),
    )
    return failures
