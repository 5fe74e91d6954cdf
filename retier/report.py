"""What a container costs per month, what retier saves and what it still has to move: one listing.

The container is listed once, page by page, and every blob goes through the sweep's own Planner
(retier.sweep), so "still to move" is exactly what `retier sweep --dry-run` would move and the
unfinished sets are the ones it reports. Next to the planner this module keeps, per backup set,
only a few counters (for the cadence and the chart) and a handful of sums: memory grows with the
backup sets, not with the blobs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from retier import costs, names, policy
from retier.names import Kind
from retier.policy import TIERS, PolicyError, canonical_tier
from retier.restore import instant
from retier.settings import Settings
from retier.storage import BlobItem, BlobStore
from retier.sweep import Move, Plan, Planner, Tally

logger = logging.getLogger(__name__)

UNKNOWN_TIER = "unknown"  # no tier reported (not a standard block blob account)
MAX_TRAP_SETS = 20  # sets named for the early-deletion charge of the planned moves


@dataclass
class SetInfo:
    """One backup set as the listing shows it (for the cadence and the chart)."""

    label: str
    time: datetime | None
    finished: bool = False
    blobs: int = 0
    volumes: int = 0
    bytes_by_tier: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def bytes(self) -> int:
        return sum(self.bytes_by_tier.values())


@dataclass
class TrapSet:
    """A set whose planned moves leave an explicitly set tier before its minimum days."""

    label: str
    blobs: int = 0
    bytes: int = 0
    charge: float = 0.0


def _tier(item: BlobItem) -> str:
    if item.tier in TIERS:
        return item.tier  # as the service spells it: the common case, no lookup
    if policy.is_smart(item.tier):
        return item.tier_label  # "Smart/Cold": priced at the tier Smart has it in now
    try:
        return canonical_tier(item.tier) if item.tier else UNKNOWN_TIER
    except PolicyError:
        return UNKNOWN_TIER


def priced_tier(tier: str) -> str:
    """The tier whose price applies: "Smart/Cold" is billed as Cold; a blob with no standard tier
    (none reported, or Smart without its underlying tier) is priced as Hot."""
    return policy.priced_tier(tier) or "Hot"


def smart_monitored(item: BlobItem) -> bool:
    """Whether Smart's monitoring fee applies to the blob: managed by Smart, 128 KiB or more."""
    return policy.is_smart(item.tier) and item.size >= costs.SMART_MONITORED_FROM


# retier's own monthly cost needs the backup cadence. Measured from sets closer together than
# this, it would be an extrapolation from seconds: below it, the container is too young to say.
MIN_CADENCE_SPAN_DAYS = 1.0
# How the cadence was found.
GIVEN = "given"  # --sets-per-day
MEASURED = "measured"  # from the manifests' times, spanning a day or more
TOO_YOUNG = "too young"  # finished sets span less than MIN_CADENCE_SPAN_DAYS: one a day assumed
FEW = "fewer than two sets"  # one a day assumed


@dataclass
class ContainerReport:
    container: str
    prices: dict
    now: datetime
    volume_tier: str
    held: str | None = None
    plan: Plan | None = None
    sets: dict[tuple, SetInfo] = field(default_factory=dict)
    exposure: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    exposure_charge: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    trap_sets: dict[str, TrapSet] = field(default_factory=dict)
    # Blobs Smart tier manages and charges its monitoring fee for, now and once the plan has moved
    # (a volume given its explicit tier leaves Smart and its fee).
    smart_now: Tally = field(default_factory=Tally)
    smart_after: Tally = field(default_factory=Tally)
    sets_per_day: float | None = None  # the user's schedule, when given: wins over the listing

    # -- bytes and money ------------------------------------------------------------------------
    def by_kind_tier(self, after: bool = False) -> dict[tuple[str, str], Tally]:
        """(kind, tier) -> blobs and bytes, as listed or (after=True) once the plan has moved."""
        out: dict[tuple[str, str], Tally] = defaultdict(Tally)
        for (kind, before, target), tally in self.plan.rows.items():
            out[(kind, target if after else before)].add(tally.bytes, tally.count)
        return out

    def by_tier(self, after: bool = False) -> dict[str, Tally]:
        out: dict[str, Tally] = defaultdict(Tally)
        for (_kind, tier), tally in self.by_kind_tier(after).items():
            out[tier].add(tally.bytes, tally.count)
        return out

    def charge(self, tier: str, size: float) -> float:
        """The monthly storage charge of `size` bytes in `tier` (no standard tier: priced as Hot)."""
        return costs.storage_per_month(size, priced_tier(tier), self.prices)

    def per_month(self, tally_by_tier: dict[str, Tally]) -> float:
        return sum(self.charge(tier, t.bytes) for tier, t in tally_by_tier.items())

    @property
    def total(self) -> Tally:
        out = Tally()
        for t in self.by_tier().values():
            out.add(t.bytes, t.count)
        return out

    @property
    def smart_fee_per_month(self) -> float:
        return costs.smart_monitoring_per_month(self.smart_now.count, self.prices)

    @property
    def smart_fee_after_per_month(self) -> float:
        return costs.smart_monitoring_per_month(self.smart_after.count, self.prices)

    @property
    def storage_per_month(self) -> float:
        """Storage at each blob's tier, plus Smart's monitoring fee where Smart manages blobs."""
        return self.per_month(self.by_tier()) + self.smart_fee_per_month

    @property
    def after_moves_per_month(self) -> float:
        return self.per_month(self.by_tier(after=True)) + self.smart_fee_after_per_month

    @property
    def all_hot_per_month(self) -> float:
        return costs.storage_per_month(self.total.bytes, "Hot", self.prices)

    @property
    def all_cool_per_month(self) -> float:
        return costs.storage_per_month(self.total.bytes, "Cool", self.prices)

    # -- cadence and retier's own cost ----------------------------------------------------------
    def finished_sets(self) -> list[SetInfo]:
        return sorted(
            (s for s in self.sets.values() if s.finished and s.time),
            key=lambda s: s.time,
        )

    def span_days(self) -> float:
        """Days between the first and the last finished set (0 with fewer than two)."""
        done = self.finished_sets()
        if len(done) < 2:
            return 0.0
        return (done[-1].time - done[0].time).total_seconds() / 86400

    def sets_per_month(self) -> float | None:
        """Finished sets a month, measured from the spread of their times; None when it cannot
        be: fewer than two sets, or sets spanning less than MIN_CADENCE_SPAN_DAYS (a full and an
        incremental made seconds apart would otherwise be extrapolated to 438,300 sets a month).
        """
        done = self.finished_sets()
        days = self.span_days()
        if len(done) < 2 or days < MIN_CADENCE_SPAN_DAYS:
            return None
        return (len(done) - 1) / days * costs.DAYS_PER_MONTH

    def cadence(self) -> tuple[float, str]:
        """(sets a month used for retier's own cost, its basis: GIVEN, MEASURED, TOO_YOUNG, FEW)."""
        if self.sets_per_day is not None:
            return self.sets_per_day * costs.DAYS_PER_MONTH, GIVEN
        measured = self.sets_per_month()
        if measured is not None:
            return measured, MEASURED
        # Without a cadence to measure, assume the common case: one backup a day.
        basis = TOO_YOUNG if len(self.finished_sets()) >= 2 else FEW
        return costs.DAYS_PER_MONTH, basis

    def running_cost(self) -> costs.RunningCost:
        done = self.finished_sets()
        sets_per_month, _ = self.cadence()
        return costs.running_cost(
            sets_per_month=sets_per_month,
            volumes_per_set=sum(s.volumes for s in done) / len(done) if done else 0.0,
            events_per_set=sum(s.blobs for s in done) / len(done) if done else 0.0,
            volume_tier=self.volume_tier,
            container_blobs=self.plan.listed,
            prices=self.prices,
        )

    def to_dict(self) -> dict:
        """JSON-ready; amounts are not rounded (a small container's bill is fractions of a cent)."""
        cur = self.prices["currency"]
        plan = self.plan
        now_per_month, after = self.storage_per_month, self.after_moves_per_month
        hot, cool = self.all_hot_per_month, self.all_cool_per_month

        def row(tier: str, t: Tally) -> dict:
            return {"blobs": t.count, "bytes": t.bytes, "per_month": self.charge(tier, t.bytes)}

        def tiers(rows: dict[str, Tally]) -> dict:
            return {
                tier: row(tier, t)
                for tier, t in sorted(rows.items(), key=lambda kv: _tier_rank(kv[0]))
            }

        by_kind: dict[str, dict] = defaultdict(dict)
        for (kind, tier), t in sorted(self.by_kind_tier().items()):
            by_kind[kind][tier] = row(tier, t)
        moves = plan.moves
        spm = self.sets_per_month()
        return {
            "container": self.container,
            "currency": cur,
            "prices_as_of": self.prices.get("as_of"),
            "gb_bytes": costs.GB,
            "listed": plan.listed,
            "bytes": self.total.bytes,
            "held": self.held,
            "storage_per_month": now_per_month,
            "all_hot_per_month": hot,
            "all_cool_per_month": cool,
            "saving_vs_all_hot": hot - now_per_month,
            "saving_vs_all_cool": cool - now_per_month,
            "by_tier": tiers(self.by_tier()),
            "by_kind": dict(by_kind),
            "smart": {
                "monitored_blobs": self.smart_now.count,
                "monitored_bytes": self.smart_now.bytes,
                "monitoring_per_month": self.smart_fee_per_month,
                "monitored_blobs_after": self.smart_after.count,
                "monitoring_per_month_after": self.smart_fee_after_per_month,
            },
            "to_move": {
                "blobs": moves.count,
                "bytes": moves.bytes,
                "to_tier": self.volume_tier,
                "storage_per_month_after": after,
                "saving_vs_all_hot_after": hot - after,
                "saving_vs_all_cool_after": cool - after,
                "by_tier_after": tiers(self.by_tier(after=True)),
                "early_deletion": {
                    "blobs": plan.early_deletion.count,
                    "bytes": plan.early_deletion.bytes,
                    "charge": plan.early_deletion_charge,
                    "sets": [
                        {
                            "set": t.label,
                            "blobs": t.blobs,
                            "bytes": t.bytes,
                            "charge": t.charge,
                        }
                        for t in self.trap_sets_named()
                    ],
                },
            },
            "early_deletion_exposure": {
                tier: {
                    "blobs": t.count,
                    "bytes": t.bytes,
                    "charge_if_deleted_today": self.exposure_charge[tier],
                }
                for tier, t in sorted(self.exposure.items(), key=lambda kv: _tier_rank(kv[0]))
            },
            "unfinished_sets": [
                {
                    "set": u.label,
                    "volumes": u.volumes,
                    "bytes": u.bytes,
                    "age_days": round(u.age_days(self.now), 2) if u.newest else None,
                }
                for u in plan.unfinished
            ],
            "cadence": {
                "finished_sets": len(self.finished_sets()),
                "span_days": round(self.span_days(), 4),
                "sets_per_month": round(spm, 2) if spm is not None else None,
                "assumed": self.cadence()[1] in (TOO_YOUNG, FEW),
                "basis": self.cadence()[1],
                "used_sets_per_month": round(self.cadence()[0], 2),
            },
            "retier_per_month": self.running_cost().to_dict(),
        }

    def trap_sets_named(self) -> list[TrapSet]:
        return sorted(self.trap_sets.values(), key=lambda t: -t.charge)[:MAX_TRAP_SETS]


def _tier_rank(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


class _Collector:
    """What the report adds to the planner, blob by blob; state per set, not per blob."""

    def __init__(self, report: ContainerReport, prefixes: dict[str, str]):
        self.report = report
        self.prefixes = prefixes

    def _set_of(self, name: names.DuplicityName) -> SetInfo:
        key = names.set_key(name, **self.prefixes)
        info = self.report.sets.get(key)
        if info is None:
            end = name.time if name.type == "full" else name.end_time
            try:
                when = instant(end, name.short)
            except (ValueError, OverflowError):
                when = None
            info = SetInfo(key[0].removesuffix(".manifest").removesuffix(".m"), when)
            self.report.sets[key] = info
        return info

    def add(self, item: BlobItem, planner: Planner) -> None:
        """One blob of the listing: into the planner (parsed once, here) and the report's sums."""
        report = self.report
        tier = _tier(item)
        name = names.parse(item.name)
        move = planner.feed(item, name)
        if name.kind is not Kind.UNKNOWN:
            info = self._set_of(name)
            info.blobs += 1
            info.bytes_by_tier[tier] += item.size
            if name.kind is Kind.VOLUME and not name.par2:
                info.volumes += 1
            elif name.kind is Kind.MANIFEST and not name.par2:
                info.finished = True
        since = item.since
        charge = costs.early_deletion(item.size, tier, since, report.now, report.prices)
        if charge:
            report.exposure[tier].add(item.size)
            report.exposure_charge[tier] += charge
        if smart_monitored(item):
            report.smart_now.add(item.size)
            if move is None:
                report.smart_after.add(item.size)
        if move is not None:  # only a duplicity object moves: it has a set
            self.add_move(move, info.label)

    def add_move(self, move: Move, label: str) -> None:
        """A planned move of set `label`: counted against its set when it pays early deletion."""
        if not move.early_deletion:
            return
        trap = self.report.trap_sets.setdefault(label, TrapSet(label))
        trap.blobs += 1
        trap.bytes += move.size
        trap.charge += move.early_deletion


READ_AHEAD_CHUNK = 500  # blobs handed over at a time
READ_AHEAD_CHUNKS = 10  # up to 5,000 blobs (one listing page) waiting


def read_ahead(
    items: Iterable, chunk: int = READ_AHEAD_CHUNK, depth: int = READ_AHEAD_CHUNKS
) -> Iterator:
    """`items`, iterated on a helper thread up to `chunk` x `depth` ahead of the caller.

    The next listing page is then requested (and Azure or Azurite works on it) while this one is
    costed, instead of after it. Memory stays bounded by `chunk` x `depth`; an exception of the
    listing is raised here, in order, after the items before it.
    """
    handed: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                handed.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the caller has gone

    def produce() -> None:
        batch = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put((batch, None)):
                        return
                    batch = []
        except Exception as exc:  # noqa: BLE001 (raised again on the caller's thread)
            put((batch, exc))
            return
        put((batch, StopIteration()))

    thread = threading.Thread(target=produce, name="retier-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            batch, end = handed.get()
            yield from batch
            if isinstance(end, StopIteration):
                return
            if end is not None:
                raise end
    finally:
        stop.set()
        thread.join()


def build_report(
    store: BlobStore,
    container: str,
    settings: Settings,
    prices: dict,
    *,
    now: datetime | None = None,
    progress: Callable[[Plan], None] | None = None,
    sets_per_day: float | None = None,
) -> ContainerReport:
    """List `container` once (plus the sweep's re-listings, if any) and cost what is in it.

    `sets_per_day` is the user's backup schedule; without it the cadence is measured from the
    manifests when they span a day or more, else one set a day is assumed.
    """
    now = now or datetime.now(timezone.utc)
    report = ContainerReport(container, prices, now, settings.policy.volume_tier)
    report.sets_per_day = sets_per_day
    report.held = store.get_hold(container)
    planner = Planner(container, settings.policy, **settings.name_prefixes, prices=prices, now=now)
    collector = _Collector(report, settings.name_prefixes)
    for item in read_ahead(store.list_blobs(container)):
        collector.add(item, planner)
        if progress and planner.plan.listed % 1000 == 0:
            progress(planner.plan)
    # Sets whose volumes came before their manifest (per-type prefixes, short names): the sweep
    # decides their volumes from a second listing of the set; so does the report. Their bytes
    # were counted above; only the decisions come from here.
    for key, item, move in planner.relist(store):
        if move is not None:
            collector.add_move(move, report.sets[key].label)
            if smart_monitored(item):  # counted as staying in Smart when first listed
                report.smart_after.add(-item.size, -1)
    report.plan = planner.finish()
    logger.info(
        "cost report %s: listed=%d bytes=%d storage=%.6f/month to_move=%d",
        container,
        report.plan.listed,
        report.total.bytes,
        report.storage_per_month,
        report.plan.moves.count,
    )
    return report
