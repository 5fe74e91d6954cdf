"""Fault runs: real duplicity backups, their events through the Event Grid stand-in, storage through the fault proxy.

`record_backups` runs the real duplicity once (a full and two incrementals with `--volsize 1`
and `--jsonstat`, several volumes each, then a third incremental whose manifest and jsonstat
are removed: an interrupted backup) into a scratch container on Azurite and keeps every blob's
bytes, in upload order, with foreign blobs beside them. `fault_run` then, for one seed:

1. uploads the recording into a fresh container straight to Azurite (the faults under test are
   between retier and storage, not between duplicity and storage);
2. delivers every blob's BlobCreated event through `EventGridStandIn` (shuffled, duplicated,
   redelivered, dead-lettered) to the Function's entry point, whose storage client goes through
   `FaultProxy` with a short read timeout;
3. runs the reconciliation sweep (`retier.sweep.sweep_container`), also through the proxy; a
   sweep that reports itself incomplete (its listing failed even after the SDK's retries) is
   run again, as the timer's next run would, up to `max_sweeps` runs in all;
4. reads every blob's tier straight from Azurite and checks it, and checks every Set Blob Tier
   the proxy saw reach Azurite, every delivery's end and every dead-letter blob.

The expected end state comes from the recording, not from retier: each volume (`.difftar`)
of a run that uploaded a manifest goes to the volume tier; everything else stays Hot.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient, LinearRetry

from faultbed.eventgrid import (
    HANDLED,
    IGNORED,
    MANIFESTS_ONLY,
    EventGridStandIn,
    function_endpoint,
    serving,
)
from faultbed.proxy import FaultProxy
from retier import eventgrid
from retier.emulate import blob_created_event
from retier.service import RetierService
from retier.settings import Connection, load_settings
from retier.storage import RETRY_TOTAL, BlobStore
from retier.sweep import sweep_container

# Fault rates of the seeded runs, per request (batch parts only on Blob Batch requests): about
# one request in four fails, and more than half of the batches. The SDK's own retries, Event
# Grid's redelivery and the sweep's retries have to absorb all of it.
DEFAULT_RATES = {
    "server_busy": 0.06,
    "timed_out": 0.03,
    "internal_error": 0.03,
    "too_many_requests": 0.04,
    "reset_before": 0.03,
    "reset_after": 0.04,
    "stall_before": 0.02,
    "stall_after": 0.02,
    "batch_part_server_busy": 0.2,
    "batch_part_internal_error": 0.1,
}
READ_TIMEOUT = 0.4  # seconds: the client gives up on a stalled answer quickly
STALL_SECONDS = 1.0  # the proxy holds a stalled connection longer than that
SWEEP_RETRY_DELAYS = (0.05, 0.2)  # the sweep's 5 s and 30 s pauses, compressed
VOLUME_TIER = "Archive"  # the strictest: a wrong move cannot be undone by moving warmer


def fast_retry() -> LinearRetry:
    """retier's number of in-process retries (RETRY_TOTAL), with its 1-5 s waits compressed."""
    return LinearRetry(backoff=0.02, random_jitter_range=0.01, retry_total=RETRY_TOTAL)


# -- the recording ---------------------------------------------------------------------------------
def _kind(name: str) -> str:
    """What duplicity wrote, by the plain text of its name (independent of retier.names)."""
    if ".difftar" in name:
        return "volume"
    if "-signatures." in name:
        return "signatures"
    if ".manifest" in name:
        return "manifest"
    if ".jsonstat" in name:
        return "jsonstat"
    return "other"


_UPLOAD_RANK = {"volume": 0, "signatures": 1, "manifest": 2, "jsonstat": 3, "other": 4}


def _volume_number(name: str) -> int:
    marker = name.rfind(".vol")
    digits = "".join(ch for ch in name[marker + 4 : marker + 10] if ch.isdigit())
    return int(digits or 0)


@dataclass(frozen=True)
class RecordedBlob:
    name: str
    data: bytes
    run: int  # 1..4: which duplicity run uploaded it; 0: a foreign blob


@dataclass
class Recording:
    """Blobs in upload order, and what each is."""

    blobs: list[RecordedBlob]
    finished_volumes: frozenset[str]  # volumes of sets whose manifest was uploaded: to be tiered
    unfinished: frozenset[str]  # what the interrupted backup left
    foreign: frozenset[str]

    def expected(self, volume_tier: str) -> dict[str, str]:
        return {
            b.name: volume_tier if b.name in self.finished_volumes else "Hot" for b in self.blobs
        }

    def kinds(self) -> Counter[str]:
        return Counter("foreign" if b.run == 0 else _kind(b.name) for b in self.blobs)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        index = []
        for i, blob in enumerate(self.blobs):
            (directory / f"{i:04d}.bin").write_bytes(blob.data)
            index.append({"name": blob.name, "run": blob.run, "file": f"{i:04d}.bin"})
        meta = {
            "blobs": index,
            "finished_volumes": sorted(self.finished_volumes),
            "unfinished": sorted(self.unfinished),
            "foreign": sorted(self.foreign),
        }
        (directory / "recording.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Recording:
        meta = json.loads((directory / "recording.json").read_text())
        blobs = [
            RecordedBlob(b["name"], (directory / b["file"]).read_bytes(), b["run"])
            for b in meta["blobs"]
        ]
        return cls(
            blobs,
            frozenset(meta["finished_volumes"]),
            frozenset(meta["unfinished"]),
            frozenset(meta["foreign"]),
        )


FOREIGN_BODY = b"not a duplicity object"


def record_backups(connection_string: str, workdir: Path) -> Recording:
    """Run the real duplicity 4 times into a scratch container and keep every blob's bytes."""
    from retier.demo import Duplicity, make_sample_tree

    client = BlobServiceClient.from_connection_string(connection_string)
    scratch = f"faults-recording-{uuid.uuid4().hex[:12]}"
    container = client.create_container(scratch)
    try:
        dup = Duplicity(connection_string, scratch, workdir / "cache", extra=("--jsonstat",))
        source = make_sample_tree(workdir / "source")  # about 3.6 MB: 4 volumes of 1 MB
        seen: dict[str, int] = {}
        order: list[str] = []
        for run, kind in enumerate(["full", "incremental", "incremental", "incremental"], 1):
            if run > 1:
                time.sleep(1.1)  # duplicity's set names have one-second resolution
                # 2.2 MB of new incompressible data: several volumes per incremental too
                (source / f"new-{run}.bin").write_bytes(random.Random(run).randbytes(2_200_000))
            dup.backup(kind, source)
            new = [b for b in container.list_blobs() if b.name not in seen]
            new.sort(key=lambda b: (_UPLOAD_RANK[_kind(b.name)], _volume_number(b.name), b.name))
            for blob in new:
                seen[blob.name] = run
                order.append(blob.name)
        # The 4th backup "died" after its signatures: duplicity uploads the manifest (and then
        # jsonstat) last, so without them the set is unfinished, as after a crash.
        last = [n for n in order if seen[n] == 4]
        cut = [n for n in last if _kind(n) in ("manifest", "jsonstat")]
        if not cut or not any(_kind(n) == "volume" for n in last):
            raise RuntimeError(f"unexpected objects from duplicity's 4th run: {last}")
        order = [n for n in order if n not in cut]
        blobs = [RecordedBlob(n, container.download_blob(n).readall(), seen[n]) for n in order]
    finally:
        container.delete_container()
        shutil.rmtree(workdir / "cache", ignore_errors=True)
    first_volume = next(b.name for b in blobs if _kind(b.name) == "volume")
    first_manifest = next(b.name for b in blobs if _kind(b.name) == "manifest")
    foreign = [
        "notes.txt",
        first_volume + ".part",  # an upload in progress, never a complete object
        first_manifest + ".bak",  # a copy someone made
        "exports/report-2024.csv",
    ]
    blobs += [RecordedBlob(n, FOREIGN_BODY, 0) for n in foreign]
    finished = frozenset(b.name for b in blobs if b.run in (1, 2, 3) and _kind(b.name) == "volume")
    unfinished = frozenset(b.name for b in blobs if b.run == 4)
    return Recording(blobs, finished, unfinished, frozenset(foreign))


# -- one run -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    seed: int
    end_state: dict[str, str]
    problems: list[str]
    injected: Counter[str]
    requests: int
    ends: Counter[str]
    attempts: int
    failed_attempts: int
    duplicates: int
    dead_lettered: int
    sweep_moved: int
    sweep_retried: int
    sweeps: int  # sweeps run until one was complete
    tier_changes: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "problems": self.problems,
            "injected": dict(self.injected),
            "requests": self.requests,
            "ends": dict(self.ends),
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "sweep_moved": self.sweep_moved,
            "sweep_retried": self.sweep_retried,
            "sweeps": self.sweeps,
            "tier_changes": self.tier_changes,
            "seconds": round(self.seconds, 3),
        }


def upload(client: BlobServiceClient, container: str, recording: Recording) -> None:
    container_client = client.create_container(container)
    for blob in recording.blobs:
        container_client.upload_blob(blob.name, blob.data)


def tiers(client: BlobServiceClient, container: str) -> dict[str, str]:
    return {b.name: b.blob_tier for b in client.get_container_client(container).list_blobs()}


def events_in_upload_order(store: BlobStore, container: str, recording: Recording) -> list[dict]:
    items = {item.name: item for item in store.list_blobs(container)}
    return [
        blob_created_event(
            account=store.account_name,
            container=container,
            item=items[b.name],
            url=store.blob_url(container, b.name),
        )
        for b in recording.blobs
    ]


def fault_run(
    connection_string: str,
    recording: Recording,
    seed: int,
    *,
    rates: dict[str, float] | None = None,
    sweep_rates: dict[str, float] | None = None,
    shuffle: bool = True,
    duplicate_rate: float = 0.2,
    max_delivery_attempts: int = 3,
    manifests_only: bool = False,
    max_sweeps: int = 3,
    volume_tier: str = VOLUME_TIER,
    baseline: dict[str, str] | None = None,
) -> RunResult:
    """One seeded run; `problems` lists every check that failed (empty: the run passed).

    `rates` are the proxy's fault rates (DEFAULT_RATES if None) while events are delivered and,
    unless `sweep_rates` says otherwise, during the sweep.
    """
    started = time.monotonic()
    rates = DEFAULT_RATES if rates is None else rates
    direct = BlobServiceClient.from_connection_string(connection_string)
    container = f"faults-{seed}-{uuid.uuid4().hex[:10]}"
    upload(direct, container, recording)
    dead_letter = direct.get_container_client(eventgrid.DEAD_LETTER_CONTAINER)
    if not dead_letter.exists():
        direct.create_container(eventgrid.DEAD_LETTER_CONTAINER)
    direct_store = BlobStore(direct)
    events = events_in_upload_order(direct_store, container, recording)
    problems: list[str] = []

    proxy = FaultProxy.in_front_of(
        connection_string, seed=seed, rates=rates, stall_seconds=STALL_SECONDS
    )
    with proxy:
        proxied = Connection(connection_string=proxy.connection_string(connection_string))
        env = {"RETIER_STORAGE": proxied.connection_string, "RETIER_VOLUME_TIER": volume_tier}
        settings = load_settings(env)
        store = BlobStore.from_connection(
            proxied, read_timeout=READ_TIMEOUT, retry_policy=fast_retry()
        )
        service = RetierService(settings, store)
        stand_in = EventGridStandIn(
            function_endpoint(),
            seed=seed,
            shuffle=shuffle,
            duplicate_rate=duplicate_rate,
            max_delivery_attempts=max_delivery_attempts,
            dead_letter=dead_letter,
            subject_filter=MANIFESTS_ONLY if manifests_only else None,
        )
        stand_in.publish(events)
        with serving(service):
            report = stand_in.run()
        after_events = tiers(direct, container)
        if sweep_rates is not None:
            proxy.set_rates(sweep_rates)
        sweeps = []
        while len(sweeps) < max_sweeps and (not sweeps or not sweeps[-1].ok):
            sweeps.append(
                sweep_container(store, container, settings, retry_delays=SWEEP_RETRY_DELAYS)
            )
    end_state = tiers(direct, container)

    # 1. every blob where it belongs, and as in the fault-free run
    expected = recording.expected(volume_tier)
    if end_state != expected:
        wrong = {n: (end_state.get(n), expected.get(n)) for n in expected.keys() | end_state}
        wrong = {n: v for n, v in wrong.items() if v[0] != v[1]}
        problems.append(f"end state differs from the expected one (got, want): {wrong}")
    if baseline is not None and end_state != baseline:
        problems.append("end state differs from the fault-free run's")
    # 2. the events alone finished every set one of them was handled for, so the sweep only
    #    repaired what dead-lettered events left undone
    runs = {b.name: b.run for b in recording.blobs}
    handled_runs = {
        runs.get(d.subject.split("/blobs/", 1)[1]) for d in report.deliveries if d.end == HANDLED
    }
    for name in sorted(recording.finished_volumes):
        if runs[name] in handled_runs and after_events.get(name) != volume_tier:
            problems.append(f"an event of its set was handled, yet {name} is {after_events[name]}")
    sweep_moved = sum(s.applied.done.count for s in sweeps if s.applied)
    if not report.dead_lettered and sweep_moved:
        problems.append(f"no event was dead-lettered, yet the sweep had {sweep_moved} to move")
    # 3. no Set Blob Tier ever reached Azurite for anything but a finished set's volume
    changes = [c for c in proxy.tier_changes if c.container == container]
    for change in changes:
        if change.blob not in recording.finished_volumes:
            problems.append(f"Set Blob Tier reached Azurite for {change.blob} ({change.tier})")
        elif change.tier != volume_tier:
            problems.append(f"{change.blob} was asked to go to {change.tier}")
    # 4. every delivery ended, and said why when it did not act
    for delivery in report.unended:
        problems.append(f"event {delivery.subject} never ended")
    for delivery in report.without_reason:
        problems.append(f"event {delivery.subject} {delivery.end} without a reason")
    for delivery in report.deliveries:
        if delivery.end in (HANDLED, IGNORED) and (delivery.outcome or {}).get("failures"):
            problems.append(f"event {delivery.subject} ended with failures: {delivery.outcome}")
    # 5. a sweep that left something undone said so (the timer then fails and runs again)
    if not sweeps[-1].ok:
        problems.append(f"{len(sweeps)} sweeps, none complete: {sweeps[-1].error}")
    # 6. faults were the proxy's only: nothing else failed between retier and Azurite
    problems += [f"unexpected proxy failure: {u}" for u in proxy.unexpected]
    # 7. every dead-lettered event is in the dead-letter container, in Event Grid's format,
    #    and replaying it (as `retier replay` will) is harmless once the sweep has run
    replayer = RetierService(
        load_settings({**env, "RETIER_STORAGE": connection_string}), direct_store
    )
    for delivery in report.dead_lettered:
        problems += _check_dead_letter(dead_letter, delivery, replayer)
    if tiers(direct, container) != end_state:
        problems.append("replaying the dead-lettered events changed the end state")

    direct.delete_container(container)
    for delivery in report.dead_lettered:
        dead_letter.delete_blob(delivery.dead_letter_blob)
    summary = report.to_dict()
    return RunResult(
        seed=seed,
        end_state=end_state,
        problems=problems,
        injected=Counter(proxy.injected),
        requests=sum(proxy.requests.values()),
        ends=report.ends(),
        attempts=summary["attempts"],
        failed_attempts=summary["failed_attempts"],
        duplicates=summary["duplicates"],
        dead_lettered=len(report.dead_lettered),
        sweep_moved=sweep_moved,
        sweep_retried=sum(s.applied.retried for s in sweeps if s.applied),
        sweeps=len(sweeps),
        tier_changes=len(changes),
        seconds=time.monotonic() - started,
    )


def _check_dead_letter(dead_letter, delivery, replayer: RetierService) -> list[str]:
    if not delivery.dead_letter_blob:
        return [f"dead-lettered event {delivery.subject} has no dead-letter blob"]
    records = json.loads(dead_letter.download_blob(delivery.dead_letter_blob).readall())
    if not isinstance(records, list) or len(records) != 1:
        return [f"{delivery.dead_letter_blob} is not a JSON array of one event"]
    record = records[0]
    problems = []
    missing = [f for f in eventgrid.DEAD_LETTER_FIELDS if f not in record]
    if missing:
        problems.append(f"{delivery.dead_letter_blob} lacks {missing}")
    original = eventgrid.strip_dead_letter_fields(record)
    original.pop("lastHttpStatusCode", None)
    if original != dict(delivery.event):
        problems.append(f"{delivery.dead_letter_blob} does not hold the event as delivered")
    outcome = replayer.handle_event(original)
    if outcome.status not in (HANDLED, IGNORED) or outcome.failures:
        problems.append(f"replaying {delivery.subject} ended {outcome.status}: {outcome.reason}")
    return problems
