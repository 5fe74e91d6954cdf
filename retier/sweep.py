"""Sweep whole containers: the event handler's decisions over existing blobs, streamed and batched."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from retier import costs, names, policy
from retier.names import DuplicityName, Kind
from retier.settings import Settings
from retier.storage import (
    BATCH_LIMIT,
    FAILED,
    GONE,
    OK,
    SKIPPED,
    TRANSIENT,
    BlobItem,
    BlobStore,
    StorageError,
)

logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 4  # batches in flight
MAX_FAILURE_DETAILS = 1000  # failures beyond this are counted, not listed
MAX_EARLY_DELETION_DETAILS = 20  # planned moves that pay early deletion: named up to this many
# A tier change that failed transiently (throttled, server busy, timed out, no answer after the
# SDK's own retries) is tried again at the end of the sweep, after each of these pauses; what
# still fails after the last is reported. Setting a colder tier twice is harmless.
RETRY_DELAYS = (5.0, 30.0)
MAX_RETRY_BLOBS = (
    100 * BATCH_LIMIT
)  # transient failures kept for a retry; beyond this, reported at once


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def add(self, size: int, count: int = 1) -> None:
        self.count += count
        self.bytes += size


@dataclass(frozen=True)
class Move:
    name: str
    current: str
    target: str
    size: int
    since: datetime | None = (
        None  # when the blob reached its current tier (for early-deletion charges)
    )
    tier_set: bool = False  # its tier was set before: it may be a rehydrated one (hold re-check)
    early_deletion: float = 0.0  # what this move is charged for leaving `current` early


@dataclass
class UnfinishedSet:
    """Volumes with no manifest: a running backup, or an abandoned one `duplicity cleanup` removes."""

    label: str
    volumes: int = 0
    bytes: int = 0
    newest: datetime | None = None

    def age_days(self, now: datetime) -> float | None:
        return (now - self.newest).total_seconds() / 86400 if self.newest else None


@dataclass
class Plan:
    """What a sweep of one container decides: counts and bytes per kind and tier before -> after."""

    container: str
    listed: int = 0
    rows: dict[tuple[str, str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    kept_reasons: Counter = field(default_factory=Counter)
    unfinished: list[UnfinishedSet] = field(default_factory=list)
    # The Cool-then-Archive trap: planned moves out of an explicitly set Cool/Cold tier before its
    # minimum days, their charge, and the first few of them by name.
    early_deletion: Tally = field(default_factory=Tally)
    early_deletion_charge: float = 0.0
    early_deletion_moves: list[Move] = field(default_factory=list)
    currency: str = costs.DEFAULT_PRICES["currency"]

    def _total(self, include: Callable[[str, str, str], bool]) -> Tally:
        total = Tally()
        for (kind, before, after), tally in self.rows.items():
            if include(kind, before, after):
                total.add(tally.bytes, tally.count)
        return total

    @property
    def moves(self) -> Tally:
        return self._total(lambda _kind, before, after: before != after)

    @property
    def unknown(self) -> Tally:
        return self._total(lambda kind, _before, _after: kind == Kind.UNKNOWN.value)

    def to_dict(self, now: datetime | None = None) -> dict:
        now = now or datetime.now(timezone.utc)
        moves, unknown = self.moves, self.unknown
        return {
            "container": self.container,
            "listed": self.listed,
            "rows": [
                {"kind": kind, "from": before, "to": after, "blobs": t.count, "bytes": t.bytes}
                for (kind, before, after), t in sorted(self.rows.items())
            ],
            "move": {"blobs": moves.count, "bytes": moves.bytes},
            "unknown": {"blobs": unknown.count, "bytes": unknown.bytes},
            "kept_reasons": dict(self.kept_reasons),
            "early_deletion": {
                "blobs": self.early_deletion.count,
                "bytes": self.early_deletion.bytes,
                "charge": self.early_deletion_charge,  # unrounded: fractions of a cent add up
                "currency": self.currency,
                "moves": [
                    {
                        "name": m.name,
                        "from": m.current,
                        "to": m.target,
                        "bytes": m.size,
                        "since": m.since.isoformat() if m.since else None,
                        "charge": m.early_deletion,
                    }
                    for m in self.early_deletion_moves
                ],
            },
            "unfinished_sets": [
                {
                    "set": u.label,
                    "volumes": u.volumes,
                    "bytes": u.bytes,
                    "newest": u.newest.isoformat() if u.newest else None,
                    "age_days": round(u.age_days(now), 2) if u.newest else None,
                }
                for u in self.unfinished
            ],
        }


@dataclass
class _SetState:
    manifest: DuplicityName | None = None
    relist: bool = False  # its manifest came after some of its volumes in the listing
    pending: dict[str, Tally] = field(
        default_factory=lambda: defaultdict(Tally)
    )  # volumes seen before a manifest, by tier
    newest: datetime | None = None


class Planner:
    """Decide blob by blob as a listing streams past; memory grows with backup sets, not blobs.

    In a listing (lexicographic) a set's manifest `…T.manifest` comes before its volumes
    `…T.vol…`, so with duplicity's default names every volume is decided when it is seen.
    Where it does not (legacy short names, per-type prefixes), the set's volumes are only
    counted until its manifest appears, and the set is re-listed by prefix afterwards.
    """

    def __init__(
        self,
        container: str,
        pol: policy.Policy,
        *,
        archive_prefix: str = "",
        manifest_prefix: str = "",
        prices: dict | None = None,
        now: datetime | None = None,
    ):
        self.prices = prices or costs.DEFAULT_PRICES
        self.now = now or datetime.now(timezone.utc)
        self.plan = Plan(container, currency=self.prices["currency"])
        self.policy = pol
        self.prefixes = {"archive_prefix": archive_prefix, "manifest_prefix": manifest_prefix}
        self._sets: dict[tuple, _SetState] = {}

    def _key(self, name: DuplicityName) -> tuple:
        return names.set_key(name, **self.prefixes)

    def _decide(self, name: DuplicityName, item: BlobItem) -> Move | None:
        decision = policy.decide(name, item.tier, item.archive_status, self.policy, item.smart_tier)
        before = decision.current or "unknown"
        after = decision.target if decision.move else before
        self.plan.rows[(name.kind.value, before, after)].add(item.size)
        if not decision.move:
            self.plan.kept_reasons[decision.reason] += 1
            return None
        since = item.since
        # A tier the blob only inherits from the account default pays nothing when it moves on.
        fee = (
            0.0
            if item.tier_inferred
            else costs.early_deletion(item.size, before, since, self.now, self.prices)
        )
        move = Move(
            name.name,
            before,
            decision.target,
            item.size,
            since,
            tier_set=item.tier_set,
            early_deletion=fee,
        )
        if fee:
            self.plan.early_deletion.add(item.size)
            self.plan.early_deletion_charge += fee
            if len(self.plan.early_deletion_moves) < MAX_EARLY_DELETION_DETAILS:
                self.plan.early_deletion_moves.append(move)
        return move

    def feed(self, item: BlobItem, name: DuplicityName | None = None) -> Move | None:
        """One blob of the container's listing: a Move to apply now, or None.

        `name` is `names.parse(item.name)` when the caller has already parsed it (the cost report
        does: parsing is most of the work per blob).
        """
        self.plan.listed += 1
        name = name or names.parse(item.name)
        if name.kind is Kind.MANIFEST and not name.par2:
            state = self._sets.setdefault(self._key(name), _SetState())
            if state.manifest is None:
                state.manifest = name
                if state.pending:
                    state.relist = True
                    state.pending.clear()
            return self._decide(name, item)
        if name.kind is not Kind.VOLUME:
            return self._decide(name, item)  # metadata and unknown names: the policy decides alone
        state = self._sets.setdefault(self._key(name), _SetState())
        if state.relist:
            return None  # the re-listing of this set will decide it
        if state.manifest is not None:
            return self._decide(name, item)
        state.pending[item.tier_label or "unknown"].add(item.size)
        if item.last_modified and (state.newest is None or item.last_modified > state.newest):
            state.newest = item.last_modified
        return None

    def sets_to_relist(self) -> list[tuple[tuple, str]]:
        """(set key, volume listing prefix) of the sets whose manifest came after their volumes."""
        return [
            (key, names.volume_listing_prefix(state.manifest, **self.prefixes))
            for key, state in self._sets.items()
            if state.relist
        ]

    def feed_relisted(self, key: tuple, item: BlobItem) -> Move | None:
        name = names.parse(item.name)
        if name.kind is not Kind.VOLUME or self._key(name) != key:
            return None  # a listing prefix can also catch the set's own manifest or another chain
        return self._decide(name, item)

    def finish(self) -> Plan:
        """Close the plan: volumes of sets that never got a manifest are unfinished, and kept."""
        for (manifest_prefix, _), state in self._sets.items():
            if state.manifest is not None or not state.pending:
                continue
            unfinished = UnfinishedSet(
                manifest_prefix.removesuffix(".manifest"), newest=state.newest
            )
            for tier, tally in state.pending.items():
                self.plan.rows[(Kind.VOLUME.value, tier, tier)].add(tally.bytes, tally.count)
                unfinished.volumes += tally.count
                unfinished.bytes += tally.bytes
            self.plan.kept_reasons["set unfinished: no manifest"] += unfinished.volumes
            self.plan.unfinished.append(unfinished)
        self.plan.unfinished.sort(
            key=lambda u: u.newest or datetime.min.replace(tzinfo=timezone.utc)
        )
        return self.plan


@dataclass
class Applied:
    """What happened to the moves that were sent."""

    done: Tally = field(default_factory=Tally)
    gone: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)
    batches: int = 0
    retried: int = 0  # tier changes sent again after a transient failure (a blob sent in two retry rounds counts twice)

    def to_dict(self) -> dict:
        return {
            "moved": {"blobs": self.done.count, "bytes": self.done.bytes},
            "gone": self.gone,
            "skipped": self.skipped,
            "failed": self.failed,
            "retried": self.retried,
            "failures": self.failures,
        }


def _worth_retrying(status: int | None) -> bool:
    """Throttling, busy servers and lost connections pass in seconds; a missing role (401/403) does not."""
    return status not in (401, 403)


class BatchApplier:
    """Sends moves in batches of up to 256 with `workers` batches in flight; bounded memory.

    Transient failures are set aside (at most MAX_RETRY_BLOBS) and sent again by close(),
    once after each of `retry_delays`.
    """

    def __init__(
        self,
        store: BlobStore,
        container: str,
        *,
        workers: int = DEFAULT_WORKERS,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ):
        self.store = store
        self.container = container
        self.applied = Applied()
        self._retry_delays = tuple(retry_delays)
        self._to_retry: list[Move] = []
        self._pending: dict[str, list[Move]] = defaultdict(list)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="retier-batch"
        )
        self._slots = threading.BoundedSemaphore(
            max(1, workers) * 2
        )  # back-pressure on the listing
        self._lock = threading.Lock()
        self._futures: set[Future] = set()
        self._held: str | None = None  # set once a batch found the container on restore hold

    def add(self, move: Move, final: bool = False) -> None:
        """Queue a move; a full batch for its target tier goes out at once. Only the sweeping thread calls this."""
        chunk = self._pending[move.target]
        chunk.append(move)
        if len(chunk) >= BATCH_LIMIT:
            self._submit(self._pending.pop(move.target), final)

    def _flush(self, final: bool = False) -> None:
        for target in list(self._pending):
            self._submit(self._pending.pop(target), final)

    def _submit(self, chunk: list[Move], final: bool = False) -> None:
        self._slots.acquire()
        try:
            future = self._pool.submit(self._send, chunk, final or not self._retry_delays)
        except BaseException:
            self._slots.release()
            raise
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _held_now(self, chunk: list[Move]) -> str | None:
        """Why `chunk` must not be sent: the container went on restore hold since the sweep began.

        The sweep read the hold before its listing, which may run for minutes; a restore can start
        meanwhile, and the listing then sees its rehydrated volumes online. Such a volume had its
        tier set, and the rehydration set the hold before it began: reading the hold again after the
        listing saw the volume, right before the batch that would move it, sees that hold. Batches
        of volumes never tiered before (a rehydrated one is not among them) skip the read.
        """
        if self._held is None and any(m.tier_set for m in chunk):
            held = self.store.get_hold(self.container)
            if held:
                with self._lock:
                    self._held = self._held or held
        if self._held is None:
            return None
        return f"container went on restore hold during the sweep ({self._held})"

    def _send(self, chunk: list[Move], final: bool) -> None:
        try:
            held = self._held_now(chunk)
            if held:
                logger.warning(
                    "%s: %s; %d tier change(s) not sent", self.container, held, len(chunk)
                )
                self._record_failures(chunk, "held", None, None, held)
                return
            results = self.store.set_tier(self.container, [m.name for m in chunk], chunk[0].target)
        except StorageError as exc:
            if exc.transient and not final and _worth_retrying(exc.status):
                self._set_aside([(move, exc.status, exc.code, str(exc)) for move in chunk])
            else:
                self._record_failures(
                    chunk, TRANSIENT if exc.transient else FAILED, exc.status, exc.code, str(exc)
                )
        except Exception as exc:  # a bug must not vanish inside a worker thread
            logger.exception("batch of %d blobs failed unexpectedly", len(chunk))
            self._record_failures(chunk, FAILED, None, None, f"{type(exc).__name__}: {exc}")
        else:
            self._account(chunk, results, final)
        finally:
            self._slots.release()

    def _account(self, chunk: list[Move], results, final: bool) -> None:
        """Count every move of a sent chunk exactly once: done, gone, skipped, set aside or failed."""
        unanswered = {m.name: m for m in chunk}
        retry: list[tuple[Move, int | None, str | None, str | None]] = []
        with self._lock:
            self.applied.batches += 1
            for r in results:
                move = unanswered.pop(r.name, None)
                if move is None:
                    logger.error(
                        "%s: storage answered for %s, which this batch did not send",
                        self.container,
                        r.name,
                    )
                elif r.outcome == OK:
                    self.applied.done.add(move.size)
                    logger.debug("%s -> %s", r.name, r.tier)
                elif r.outcome == GONE:
                    self.applied.gone += 1
                elif r.outcome == SKIPPED:
                    self.applied.skipped += 1
                elif r.outcome == TRANSIENT and not final and _worth_retrying(r.status):
                    retry.append((move, r.status, r.code, None))
                else:
                    self._failure(r.name, r.outcome, r.status, r.code, None)
            for move in unanswered.values():
                self._failure(
                    move.name, FAILED, None, None, "the batch response had no answer for this blob"
                )
        if retry:
            self._set_aside(retry)

    def _set_aside(self, failed: list[tuple[Move, int | None, str | None, str | None]]) -> None:
        """Keep transiently failed moves for close() to send again; past the limit, report them now."""
        with self._lock:
            room = max(0, MAX_RETRY_BLOBS - len(self._to_retry))
            self._to_retry.extend(move for move, *_ in failed[:room])
            for move, status, code, message in failed[room:]:
                self._failure(move.name, TRANSIENT, status, code, message)

    def _record_failures(self, chunk: list[Move], outcome: str, status, code, message) -> None:
        with self._lock:
            for move in chunk:
                self._failure(move.name, outcome, status, code, message)

    def _failure(self, name: str, outcome: str, status, code, message) -> None:
        self.applied.failed += 1
        if len(self.applied.failures) < MAX_FAILURE_DETAILS:
            self.applied.failures.append(
                {"name": name, "outcome": outcome, "status": status, "code": code, "error": message}
            )

    def close(self, tick: Callable[[], None] | None = None) -> Applied:
        """Send what is left, wait for every batch, then retry transient failures; `tick` runs on this thread meanwhile."""
        self._flush()
        self._wait(tick)
        for round_, delay in enumerate(self._retry_delays, start=1):
            with self._lock:  # every batch has finished: nothing else touches the list now
                moves, self._to_retry = self._to_retry, []
            if not moves:
                break
            logger.warning(
                "%s: %d tier change(s) failed transiently; retrying in %.0f s (%d of %d)",
                self.container,
                len(moves),
                delay,
                round_,
                len(self._retry_delays),
            )
            self._pause(delay, tick)
            stop = self._reason_not_to_retry()
            if stop:
                logger.warning(
                    "%s: %s; %d tier change(s) not sent again", self.container, stop, len(moves)
                )
                self._record_failures(moves, "not retried", None, None, stop)
                break
            self.applied.retried += len(moves)
            final = round_ == len(self._retry_delays)
            for move in moves:
                self.add(move, final)
            self._flush(final)
            self._wait(tick)
        self._pool.shutdown(wait=True)
        return self.applied

    def _reason_not_to_retry(self) -> str | None:
        """The restore hold, checked again: a restore may have begun since the sweep started."""
        try:
            held = self.store.get_hold(self.container)
        except StorageError as exc:
            return f"restore hold could not be checked before retrying: {exc}"
        return f"container went on restore hold during the sweep ({held})" if held else None

    def _wait(self, tick: Callable[[], None] | None) -> None:
        while self._futures:
            wait(list(self._futures), timeout=0.25)
            if tick:
                tick()

    @staticmethod
    def _pause(seconds: float, tick: Callable[[], None] | None) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            if tick:
                tick()


@dataclass
class SweepReport:
    container: str
    dry_run: bool
    held: str | None = None
    plan: Plan | None = None
    applied: Applied | None = None
    error: str | None = None
    transient: bool = False
    seconds: float = 0.0

    @property
    def failures(self) -> list[dict]:
        return self.applied.failures if self.applied else []

    @property
    def ok(self) -> bool:
        return self.error is None and not (self.applied and self.applied.failed)

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "dry_run": self.dry_run,
            "held": self.held,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict() if self.plan else None,
            "applied": self.applied.to_dict() if self.applied else None,
        }


def sweep_container(
    store: BlobStore,
    container: str,
    settings: Settings,
    *,
    dry_run: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: Callable[[Plan, Applied | None], None] | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
    prices: dict | None = None,
) -> SweepReport:
    """List `container` once, decide every blob, and (unless dry_run) apply the moves in batches.

    Tier changes that fail transiently are sent again at the end, after each of `retry_delays`.
    `prices` (default: the built-in table) price the early-deletion charge of the planned moves.
    """
    started = time.monotonic()
    report = SweepReport(container, dry_run)
    try:
        report.held = store.get_hold(container)
        if report.held:
            logger.warning(
                "container %s is on restore hold (%s): sweep leaves it alone",
                container,
                report.held,
            )
            return report
        planner = Planner(container, settings.policy, **settings.name_prefixes, prices=prices)
        applier = (
            None
            if dry_run
            else BatchApplier(store, container, workers=workers, retry_delays=retry_delays)
        )
        # Progress is reported from this thread only: the plan is not shared with the workers.
        tick = (lambda: progress(planner.plan, applier and applier.applied)) if progress else None
        try:
            _drain(planner.feed, store.list_blobs(container), applier, tick)
            for key, prefix in planner.sets_to_relist():
                _drain(
                    lambda item, key=key: planner.feed_relisted(key, item),
                    store.list_blobs(container, prefix),
                    applier,
                    tick,
                )
        finally:
            if applier:
                report.applied = applier.close(tick)
        report.plan = planner.finish()
    except StorageError as exc:
        report.error, report.transient = str(exc), exc.transient
        logger.warning("sweep of %s stopped: %s", container, exc)
    finally:
        report.seconds = time.monotonic() - started
    _log_summary(report)
    return report


def _drain(
    decide: Callable[[BlobItem], Move | None],
    items: Iterable[BlobItem],
    applier: BatchApplier | None,
    tick,
) -> None:
    last = time.monotonic()
    for item in items:
        move = decide(item)
        if move and applier:
            applier.add(move)
        if tick and time.monotonic() - last > 0.25:
            tick()
            last = time.monotonic()


def _log_summary(report: SweepReport) -> None:
    if report.plan is None:
        return
    plan, applied = report.plan, report.applied or Applied()
    logger.info(
        "sweep %s%s: listed=%d plan_move=%d (%d bytes) moved=%d gone=%d skipped=%d failed=%d retried=%d unknown=%d "
        "unfinished_sets=%d %.1fs",
        report.container,
        " (dry run)" if report.dry_run else "",
        plan.listed,
        plan.moves.count,
        plan.moves.bytes,
        applied.done.count,
        applied.gone,
        applied.skipped,
        applied.failed,
        applied.retried,
        plan.unknown.count,
        len(plan.unfinished),
        report.seconds,
    )
