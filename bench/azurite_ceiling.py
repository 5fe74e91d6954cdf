#!/usr/bin/env python3
"""How much does batching save Azurite itself? Set Blob Tier one by one against Blob Batch, with Azurite's CPU time.

The sweep benchmark asks retier to sweep at least 5x faster than a naive sweep that sends
one Set Blob Tier per volume, straight on Azurite. This measures what Azurite itself
allows, independent of retier's code: for containers of a few sizes it times

- **single**: `ops` Set Blob Tier requests, one after the other (the naive sweep's work);
- **batched**: the same number of other volumes in Blob Batch requests of 256, one after
  the other (what retier sends);

and reads Azurite's CPU time from /proc/<AZURITE_PID>/stat before and after each (its
JavaScript runs on one thread; the figure also counts Node's helper threads, such as the
garbage collector's). If a batched blob costs Azurite nearly as much CPU as a blob sent
alone, batching cannot make Azurite much faster, whatever the client does: Azurite does
one thing at a time, and more batches in flight only queue (bench/README.md). Afterwards
every volume touched must be at the tier it was sent to and every other blob still Hot.

    bench/run_azurite_ceiling                    # installs, starts a private Azurite, runs, stops it
    bench/run_azurite_ceiling --sizes 1000,2000,10000 --ops 256 --json

Exit status: 0 when the measurements were made and the containers were left right, 1 when
not, 2 for bad usage. There is no pass/fail criterion: this is a measurement of the emulator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))

from azure.storage.blob import BlobServiceClient
from bench_manifest_event import BenchError, chunks, delete_containers, finish, progress
from bench_sweep import parse_sizes, server_cpu_s, upload
from synthetic_backups import backup_history

from retier.storage import BATCH_LIMIT

TIER = "Cool"


def measure(admin: BlobServiceClient, container: str, n: int, ops: int, workers: int) -> dict:
    history = backup_history(n)
    volumes = history.to_tier
    if len(volumes) < 2 * ops:
        raise BenchError(f"{n} blobs hold {len(volumes)} volumes, fewer than 2 x --ops {ops}")
    seconds = upload(admin, container, history, workers)
    progress(f"{n} blobs: uploaded in {seconds:.1f} s")
    # Spread the samples over the container: Azurite's cost may depend on where a name sorts.
    step = len(volumes) // (2 * ops)
    sample = volumes[::step][: 2 * ops]
    single, batched = sample[0::2], sample[1::2]
    client = admin.get_container_client(container)

    cpu0, t0 = server_cpu_s(), time.perf_counter()
    for name in single:
        client.get_blob_client(name).set_standard_blob_tier(TIER)
    t1, cpu1 = time.perf_counter(), server_cpu_s()
    for chunk in chunks(batched, BATCH_LIMIT):
        parts = list(client.set_standard_blob_tier_blobs(TIER, *chunk, raise_on_any_failure=False))
        bad = [p.status_code for p in parts if not 200 <= p.status_code < 300]
        if bad or len(parts) != len(chunk):
            raise BenchError(f"{container}: a batch failed: {bad[:5]}")
    t2, cpu2 = time.perf_counter(), server_cpu_s()

    moved = set(single) | set(batched)
    wrong = [
        b.name for b in client.list_blobs() if b.blob_tier != (TIER if b.name in moved else "Hot")
    ]
    if wrong:
        raise BenchError(f"{container}: {len(wrong)} blob(s) at the wrong tier, e.g. {wrong[:3]}")
    if None in (cpu0, cpu1, cpu2):
        raise BenchError(
            "cannot read Azurite's CPU time: set AZURITE_PID (bench/run_azurite_ceiling does)"
        )

    per = lambda seconds: round(seconds * 1000 / ops, 3)
    row = {
        "blobs": n,
        "ops": ops,
        "single_wall_ms": per(t1 - t0),
        "single_azurite_cpu_ms": per(cpu1 - cpu0),
        "batched_wall_ms": per(t2 - t1),
        "batched_azurite_cpu_ms": per(cpu2 - cpu1),
    }
    row["speedup"] = round(row["single_wall_ms"] / row["batched_wall_ms"], 2)
    row["azurite_cpu_saved"] = round(
        1 - row["batched_azurite_cpu_ms"] / row["single_azurite_cpu_ms"], 3
    )
    progress(
        f"{n} blobs: single {row['single_wall_ms']} ms/blob (Azurite {row['single_azurite_cpu_ms']}), "
        f"batched {row['batched_wall_ms']} ms/blob (Azurite {row['batched_azurite_cpu_ms']})"
    )
    return row


def print_table(result: dict) -> None:
    print(
        f"Set Blob Tier on Azurite, {result['ops']} blobs each way, per blob (ms); the clock has 10 ms ticks, "
        "so Azurite CPU is good to about 10 ms / ops"
    )
    head = (
        f"{'blobs':>7}  {'single wall':>11} {'Azurite CPU':>11}  {'batched wall':>12} {'Azurite CPU':>11}"
        f"  {'speed-up':>8} {'Azurite CPU saved':>17}"
    )
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        print(
            f"{r['blobs']:>7}  {r['single_wall_ms']:>11.3f} {r['single_azurite_cpu_ms']:>11.3f}  {r['batched_wall_ms']:>12.3f} "
            f"{r['batched_azurite_cpu_ms']:>11.3f}  {r['speedup']:>7.2f}x {r['azurite_cpu_saved']:>16.0%}"
        )
    print(
        "speed-up: single wall / batched wall, per blob; Azurite CPU saved: how much less CPU Azurite spends on a batched blob"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[2000, 10_000],
        help="container sizes (default 2000,10000)",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=512,
        help="blobs tiered each way per size, a multiple of 256 (default 512)",
    )
    parser.add_argument(
        "--workers", type=int, default=16, help="upload threads for the setup (default 16)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.ops < BATCH_LIMIT or args.ops % BATCH_LIMIT:
        parser.error(f"--ops must be a multiple of {BATCH_LIMIT}")
    conn = os.environ.get("RETIER_STORAGE") or os.environ.get("RETIER_TEST_STORAGE")
    if not conn or not os.environ.get("AZURITE_PID"):
        parser.error(
            "set RETIER_STORAGE and AZURITE_PID (a local Azurite and its pid), or use bench/run_azurite_ceiling"
        )
    admin = BlobServiceClient.from_connection_string(conn)
    tag = uuid.uuid4().hex[:8]
    rows = []
    for n in args.sizes:
        container = f"bench-ceiling-{tag}-{n}"
        try:
            rows.append(measure(admin, container, n, args.ops, args.workers))
        except BenchError as exc:
            print(f"FAIL: {exc}", file=sys.stderr)
            return 1
        finally:
            delete_containers(
                admin, [container]
            )  # one container at a time: Azurite's cost grows with the account
    return finish({"ops": args.ops, "tier": TIER, "rows": rows}, True, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
