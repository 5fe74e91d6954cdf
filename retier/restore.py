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
    for item in store.list_blobs(container, prefix or None):
        name = names.parse(item.name)
        if name.kind is Kind.MANIFEST and not name.par2:
            manifests.setdefault(name.prefix, []).append(name)
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
    return RestorePlan(
        container, at, label, [s.label for s in sets], needed, partial, listing_prefixes, left_out
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
    store.set_hold(plan.container, hold_note(to, priority))
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
) -> RestorePlan:
    """Poll until no volume is rehydrating any more; returns the last state seen.

    `plan` is the first state seen (the caller has just listed it): it is re-read only after each
    wait. Then every volume is online, or some are still archived with nothing on its way
    (waiting longer would never end): the caller tells the two apart.
    """
    while True:
        if on_poll:
            on_poll(plan)
        if not plan.by_state()["rehydrating"]:
            return plan
        sleep(interval)
        plan = refresh(store, plan)
