#!/usr/bin/env python3
"""Benchmark one manifest event on Azurite: retier's listing + Blob Batch against a naive Set Blob Tier per volume.

For each set size N, two fresh containers get the same blobs: a full backup set of N
volumes with its signatures and manifest, plus unrelated objects (an older full set and
an unfinished incremental). In one container retier handles the set's BlobCreated event;
in the other a naive baseline lists the set's volumes and sets each one's tier with its
own request. Both go through retier.metering.CountingTransport, which counts every HTTP
request on the wire and, for a Blob Batch, one billable transaction per sub-request plus
one for the batch. Each measurement is repeated (tiers reset to Hot in between), the
result is checked (volumes at the target tier, everything else and all metadata
untouched) and the median wall time is reported.

    RETIER_STORAGE='<azurite connection string>' python bench/bench_manifest_event.py
    bench/run --sizes 1,100,1000 --repeat 3 --json

Exit status: 0 when the done criterion holds for the largest N, 1 when it does not or a
result is wrong, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # run from a checkout without installing

from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient

from retier import names
from retier.emulate import blob_created_event
from retier.metering import CountingTransport, Meter
from retier.policy import VOLUME_TIERS, canonical_tier
from retier.service import HANDLED, RetierService
from retier.settings import Connection, load_settings
from retier.storage import BATCH_LIMIT, BlobStore, connect

# Done criterion of the issue, checked at the largest N.
MAX_BILLABLE_PER_VOLUME = 1.01
MAX_ROUND_TRIPS_PER_VOLUME = 0.01
MAX_BILLABLE_ONE_VOLUME = 2  # issue 10, item 8

T0, T1, T2 = "20240301T020304Z", "20240308T020304Z", "20240309T020304Z"
OTHER_SET_VOLUMES = 20


class BenchError(Exception):
    """The benchmark's own result is wrong (or it could not set up): fail loudly."""


# -- the backup in each container ------------------------------------------------------------


def set_volumes(n: int) -> list[str]:
    return [f"duplicity-full.{T1}.vol{k}.difftar.gpg" for k in range(1, n + 1)]


MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
SIGNATURES = f"duplicity-full-signatures.{T1}.sigtar.gpg"
VOLUME_PREFIX = f"duplicity-full.{T1}.vol"


def unrelated_blobs() -> list[str]:
    """An older finished full set and an unfinished incremental: listed around the set, never to be touched."""
    older = [f"duplicity-full.{T0}.vol{k}.difftar.gpg" for k in range(1, OTHER_SET_VOLUMES + 1)]
    older += [f"duplicity-full-signatures.{T0}.sigtar.gpg", f"duplicity-full.{T0}.manifest.gpg"]
    unfinished = [f"duplicity-inc.{T1}.to.{T2}.vol{k}.difftar.gpg" for k in (1, 2)]
    return older + unfinished + ["notes.txt"]


def metadata_of(name: str) -> dict[str, str]:
    # Every blob carries metadata so the check can see that tiering left it alone.
    return {"bench": "retier", "crc": str(zlib.crc32(name.encode()))}


def upload_all(admin: BlobServiceClient, container: str, n: int, workers: int) -> None:
    client = admin.get_container_client(container)

    def put(name: str) -> None:
        client.upload_blob(
            name, b"duplicity bytes " + name.encode(), metadata=metadata_of(name), overwrite=True
        )

    # duplicity's order: volumes, then signatures, then the manifest that finishes the set.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, set_volumes(n) + unrelated_blobs()))
    put(SIGNATURES)
    put(MANIFEST)


def chunks(items: list[str], size: int = BATCH_LIMIT) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reset_to_hot(admin: BlobServiceClient, container: str, volumes: list[str]) -> None:
    """Set the volumes' tier to Hot, as a finished rehydration leaves them: their tier was set."""
    client = admin.get_container_client(container)
    for chunk in chunks(volumes):
        parts = list(client.set_standard_blob_tier_blobs("Hot", *chunk, raise_on_any_failure=False))
        bad = [p.status_code for p in parts if not 200 <= p.status_code < 300]
        if bad or len(parts) != len(chunk):
            raise BenchError(f"{container}: resetting tiers to Hot failed: {bad[:5]}")


def verify(
    admin: BlobServiceClient,
    container: str,
    volumes: list[str],
    target: str,
    method: str,
    inferred: bool | None = None,
) -> None:
    """Every volume of the set at `target`; every other blob still Hot; all metadata as uploaded.

    With `inferred`, every volume's tier must also be inferred (never set) or not, as asked."""
    wanted = set(volumes)
    seen = 0
    problems: list[str] = []
    for blob in admin.get_container_client(container).list_blobs(include=["metadata"]):
        want_tier = target if blob.name in wanted else "Hot"
        seen += blob.name in wanted
        if (
            blob.name in wanted
            and inferred is not None
            and bool(blob.blob_tier_inferred) != inferred
        ):
            problems.append(
                f"{blob.name}: tier inferred {blob.blob_tier_inferred}, expected {inferred}"
            )
        if blob.blob_tier != want_tier or blob.archive_status:
            problems.append(
                f"{blob.name}: tier {blob.blob_tier} (archive_status {blob.archive_status}), expected {want_tier}"
            )
        if dict(blob.metadata or {}) != metadata_of(blob.name):
            problems.append(f"{blob.name}: metadata changed to {blob.metadata}")
    if seen != len(wanted):
        problems.append(f"{len(wanted) - seen} volume(s) missing")
    if problems:
        shown = "\n  ".join(problems[:10])
        raise BenchError(
            f"{method} left {container} wrong ({len(problems)} problem(s)):\n  {shown}"
        )


# -- the two methods -------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    round_trips: int
    billable: int
    by_operation: dict[str, int]


def retier_method(
    conn: str, admin_store: BlobStore, container: str, target: str, n: int
) -> Callable[[], Run]:
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    )
    service = RetierService(
        load_settings({"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": target}), store
    )
    manifest = next(iter(admin_store.list_blobs(container, MANIFEST)))

    def run() -> Run:
        # What Event Grid would deliver for the manifest; built outside the timed and metered part.
        event = blob_created_event(
            account=store.account_name,
            container=container,
            item=manifest,
            url=store.blob_url(container, MANIFEST),
        )
        meter.reset()
        start = time.perf_counter()
        outcome = service.handle_event(event)
        wall = time.perf_counter() - start
        run_ = Run(wall, meter.round_trips, meter.billable, dict(meter.by_operation))
        if outcome.status != HANDLED or outcome.failures or len(outcome.moved) != n:
            raise BenchError(
                f"retier: status={outcome.status} moved={len(outcome.moved)}/{n} "
                f"failures={outcome.failures[:3]} reason={outcome.reason}"
            )
        return run_

    return run


def naive_method(conn: str, container: str, target: str, n: int) -> Callable[[], Run]:
    meter = Meter()
    client = connect(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    ).get_container_client(container)

    def run() -> Run:
        meter.reset()
        start = time.perf_counter()
        # The naive approach needs the set's volumes too: the same one listing as retier.
        volumes = [
            b.name
            for b in client.list_blobs(name_starts_with=VOLUME_PREFIX)
            if names.parse(b.name).kind is names.Kind.VOLUME
        ]
        for name in volumes:
            client.get_blob_client(name).set_standard_blob_tier(target)
        wall = time.perf_counter() - start
        if len(volumes) != n:
            raise BenchError(f"naive: listed {len(volumes)} volumes, expected {n}")
        return Run(wall, meter.round_trips, meter.billable, dict(meter.by_operation))

    return run


# -- measuring and reporting ----------------------------------------------------------------


@dataclass
class Row:
    n: int
    method: str
    runs: list[Run] = field(default_factory=list)

    @property
    def wall_ms(self) -> float:
        return statistics.median(r.wall_s for r in self.runs) * 1000

    @property
    def round_trips(self) -> float:
        return statistics.median(r.round_trips for r in self.runs)

    @property
    def billable(self) -> float:
        return statistics.median(r.billable for r in self.runs)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "method": self.method,
            "wall_ms": round(self.wall_ms, 3),
            "wall_ms_runs": [round(r.wall_s * 1000, 3) for r in self.runs],
            "round_trips": self.round_trips,
            "billable": self.billable,
            "per_volume": {
                "ms": round(self.wall_ms / self.n, 4),
                "round_trips": round(self.round_trips / self.n, 4),
                "billable": round(self.billable / self.n, 4),
            },
            "by_operation": self.runs[-1].by_operation,
        }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_size(
    conn: str, admin: BlobServiceClient, n: int, args, containers: list[str]
) -> tuple[Row, Row, Row]:
    tag = uuid.uuid4().hex[:8]
    pair = {method: f"bench-{tag}-{method}-{n}" for method in ("retier", "naive")}
    for name in pair.values():
        admin.create_container(name)
        containers.append(name)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda c: upload_all(admin, c, n, args.workers), pair.values()))
    progress(
        f"N={n}: uploaded {2 * (n + 2 + len(unrelated_blobs()))} blobs in {time.perf_counter() - start:.1f} s"
    )

    volumes = set_volumes(n)
    admin_store = BlobStore(admin)
    methods = {
        "retier": retier_method(conn, admin_store, pair["retier"], args.tier, n),
        "naive": naive_method(conn, pair["naive"], args.tier, n),
    }
    rows = {method: Row(n, method) for method in methods}
    for rep in range(args.repeat):
        for method, run in methods.items():  # interleaved, so drift hits both alike
            if rep and method == "retier":
                # The next backup set lands: uploaded Hot, its volumes' tier never set (the
                # common case). A fresh container each time, so that Azurite's store, which it
                # scans on every operation, stays the same size.
                admin.delete_container(pair[method])
                containers.remove(pair[method])
                pair[method] = f"bench-{tag}-{method}{rep}-{n}"
                admin.create_container(pair[method])
                containers.append(pair[method])
                upload_all(admin, pair[method], n, args.workers)
                verify(
                    admin, pair[method], volumes, "Hot", f"upload before {method}", inferred=True
                )
                run = methods[method] = retier_method(conn, admin_store, pair[method], args.tier, n)
            elif rep:
                reset_to_hot(admin, pair[method], volumes)
                verify(admin, pair[method], volumes, "Hot", f"reset before {method}")
            rows[method].runs.append(run())
            verify(admin, pair[method], volumes, args.tier, method)
    # The same set once more after its volumes' tier was set (rehydrated, then released): a
    # restore may hold the container, so retier reads the hold once before it moves them.
    again = Row(n, "retier*")
    for _ in range(args.repeat):
        reset_to_hot(admin, pair["retier"], volumes)
        verify(admin, pair["retier"], volumes, "Hot", "reset before retier*", inferred=False)
        again.runs.append(methods["retier"]())
        verify(admin, pair["retier"], volumes, args.tier, "retier*")
    progress(
        f"N={n}: retier {rows['retier'].wall_ms:.1f} ms, naive {rows['naive'].wall_ms:.1f} ms, "
        f"retier* {again.wall_ms:.1f} ms (median of {args.repeat})"
    )
    return rows["retier"], rows["naive"], again


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def report(rows: list[Row], args) -> tuple[dict, bool]:
    by = {(r.n, r.method): r for r in rows}
    sizes = sorted({r.n for r in rows})
    ratios = []
    for n in sizes:
        retier, naive = by[(n, "retier")], by[(n, "naive")]
        ratios.append(
            {
                "n": n,
                "wall": ratio(naive.wall_ms, retier.wall_ms),
                "round_trips": ratio(naive.round_trips, retier.round_trips),
                "billable": ratio(naive.billable, retier.billable),
            }
        )
    largest = by[(sizes[-1], "retier")]
    billable_pv = largest.billable / largest.n
    trips_pv = largest.round_trips / largest.n
    checks = [
        {
            "check": f"billable transactions per volume at N={largest.n}",
            "value": round(billable_pv, 4),
            "limit": MAX_BILLABLE_PER_VOLUME,
            "pass": billable_pv <= MAX_BILLABLE_PER_VOLUME,
        },
        {
            "check": f"HTTP round trips per volume at N={largest.n}",
            "value": round(trips_pv, 4),
            "limit": MAX_ROUND_TRIPS_PER_VOLUME,
            "pass": trips_pv <= MAX_ROUND_TRIPS_PER_VOLUME,
        },
    ]
    if 1 in sizes:
        one = by[(1, "retier")]
        checks.append(
            {
                "check": "billable transactions of a new one-volume set (the floor: a listing "
                "and a Set Blob Tier)",
                "value": one.billable,
                "limit": MAX_BILLABLE_ONE_VOLUME,
                "pass": one.billable <= MAX_BILLABLE_ONE_VOLUME,
            }
        )
    ok = all(c["pass"] for c in checks)
    result = {
        "tier": args.tier,
        "repeat": args.repeat,
        "rows": [r.to_dict() for r in rows],
        "ratios_naive_over_retier": ratios,
        "criterion": checks,
        "wall_ratio_at_largest_n": ratios[-1]["wall"],
        "pass": ok,
    }
    return result, ok


def print_table(result: dict) -> None:
    print(
        f"One manifest event, volumes -> {result['tier']}; wall time = median of {result['repeat']} runs; "
        "round trips and billable transactions counted per request by CountingTransport."
    )
    print()
    head = f"{'N':>6}  {'method':<7} {'wall ms':>9} {'round trips':>11} {'billable':>9}   {'ms/vol':>8} {'trips/vol':>10} {'billable/vol':>12}"
    print(head)
    print("-" * len(head))
    for row in result["rows"]:
        pv = row["per_volume"]
        print(
            f"{row['n']:>6}  {row['method']:<7} {row['wall_ms']:>9.1f} {row['round_trips']:>11g} {row['billable']:>9g}"
            f"   {pv['ms']:>8.3f} {pv['round_trips']:>10.4f} {pv['billable']:>12.4f}"
        )
    print(
        "retier: a new set (volumes never tiered: no restore-hold read); retier*: the same set after"
        " its volumes' tier was set (e.g. rehydrated, then released): one restore-hold read more"
    )
    print()
    print("naive / retier")
    head = f"{'N':>6}  {'wall time':>9} {'round trips':>11} {'billable':>9}"
    print(head)
    print("-" * len(head))
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}x"
    for r in result["ratios_naive_over_retier"]:
        print(
            f"{r['n']:>6}  {fmt(r['wall']):>9} {fmt(r['round_trips']):>11} {fmt(r['billable']):>9}"
        )
    print()
    for c in result["criterion"]:
        print(
            f"{'PASS' if c['pass'] else 'FAIL'}: {c['check']} = {c['value']:g} (limit {c['limit']:g})"
        )
    print(
        f"wall time naive/retier at N={result['rows'][-1]['n']}: {fmt(result['wall_ratio_at_largest_n'])}"
    )


def parse_sizes(text: str, minimum: int = 1) -> list[int]:
    """A comma-separated list of sizes, sorted and without repeats, each at least `minimum` (an argparse type)."""
    try:
        sizes = sorted({int(s) for s in text.replace(" ", "").split(",") if s})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated integers, e.g. 1,100,1000"
        ) from None
    if not sizes or sizes[0] < minimum:
        raise argparse.ArgumentTypeError(f"sizes must be integers of at least {minimum}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: RETIER_STORAGE='...' python bench/bench_manifest_event.py --sizes 1,100,1000 --repeat 3",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[1, 100, 1000],
        help="volumes per set (default 1,100,1000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per size and method; the median is reported (default 3)",
    )
    parser.add_argument(
        "--tier",
        type=canonical_tier,
        default="Cold",
        help="target tier for the volumes (default Cold)",
    )
    parser.add_argument(
        "--workers", type=int, default=16, help="upload threads for the setup (default 16)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.workers < 1:
        parser.error("--repeat and --workers must be at least 1")
    if args.tier not in VOLUME_TIERS:
        parser.error(f"--tier must be one of {', '.join(VOLUME_TIERS)}")
    conn = os.environ.get("RETIER_STORAGE") or os.environ.get("RETIER_TEST_STORAGE")
    if not conn:
        parser.error(
            "set RETIER_STORAGE (or RETIER_TEST_STORAGE) to an Azurite connection string, or use bench/run"
        )

    admin = connect(Connection(connection_string=conn))
    containers: list[str] = []
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        for n in args.sizes:
            rows.extend(measure_size(conn, admin, n, args, containers))
    except BenchError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    finally:
        delete_containers(admin, containers)
    progress(f"total {time.perf_counter() - started:.1f} s")
    return finish(*report(rows, args), args.json, print_table)


def delete_containers(admin, containers) -> None:
    """Clean up; a failure here is reported and must not hide the benchmark's result."""
    for name in containers:
        try:
            admin.delete_container(name)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            progress(f"could not delete container {name}: {type(exc).__name__}")


def finish(result: dict, ok: bool, as_json: bool, print_table) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
