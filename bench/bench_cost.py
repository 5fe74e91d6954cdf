#!/usr/bin/env python3
"""Benchmark `retier cost --container` on the sweep benchmark's containers: time against a bare listing, and memory.

For each container size (default 10,000 and 100,000 blobs: the synthetic history of
bench/synthetic_backups.py, seeded into a private Azurite's own store by bench/seeded_azurite.py as
the sweep benchmark's memory runs are, with the newest week of incrementals still Hot), two
methods run, each in a fresh child process:

- bare: the storage SDK's own listing of the container (ContainerClient.list_blobs), counting
  blobs and summing sizes: the least any report must do;
- cost: retier.report.build_report (the restore-hold read, the same listing through BlobStore,
  the sweep's planner for every blob, the report's per-set state) and its JSON, as
  `retier cost --container` computes it.

Wall time is the median of --repeat runs of each, interleaved (bare, cost, cost, bare, ...) so
that the machine's drift hits both alike. Peak memory comes from separate runs: tracemalloc's
peak of the Python heap, and the growth of the child's peak RSS. Every cost run must list every
blob, plan exactly the Hot volumes of finished sets, and total the bytes the bare listing finds.

    bench/run_cost                                  # installs what it needs, about 6 minutes
    bench/run_cost --sizes 10000 --repeat 1         # a quick look
    AZURITE_BIN=.tools/node_modules/.bin/azurite-blob python bench/bench_cost.py --json

Exit status: 0 when the criteria hold (cost within 1.2x of the bare listing's time at the
largest size; heap peak at the largest size within 1.5x of the smallest), 1 when one does not or
a run was wrong, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))

from bench_manifest_event import BenchError, finish, progress
from bench_sweep import _reset_peak_rss, _rss_kb, parse_sizes
from seeded_azurite import SeededAzurite, SeedError
from synthetic_backups import backup_history

MAX_TIME_RATIO = 1.2  # cost / bare listing, wall time
MAX_MEMORY_GROWTH = 1.5  # heap peak, largest / smallest container
TIER = "Cold"  # where the seeded history's volumes already are (retier's default)


# -- the two methods, each alone in a child process ---------------------------------------------


def bare_listing(conn: str, container: str) -> dict:
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    listed = size = 0
    for blob in client.list_blobs():
        listed += 1
        size += blob.size
    return {"listed": listed, "bytes": size, "moves": None}


def cost_report(conn: str, container: str) -> dict:
    from retier.costs import load_prices
    from retier.report import build_report
    from retier.settings import Connection, load_settings
    from retier.storage import BlobStore

    settings = load_settings({"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": TIER})
    store = BlobStore.from_connection(Connection(connection_string=conn))
    report = build_report(store, container, settings, load_prices({}))
    d = report.to_dict()  # everything the command prints is computed
    return {"listed": d["listed"], "bytes": d["bytes"], "moves": d["to_move"]["blobs"]}


def child(spec: dict) -> dict:
    conn = os.environ["RETIER_STORAGE"]
    run = bare_listing if spec["method"] == "bare" else cost_report
    # Import what the run needs before measuring, as a long-running command would have.
    import azure.storage.blob  # noqa: F401

    if spec["method"] == "cost":
        import retier.report  # noqa: F401
    gc.collect()
    _reset_peak_rss()
    rss_base = _rss_kb("VmRSS")
    if spec["tracemalloc"]:
        import tracemalloc

        tracemalloc.start()
    cpu0 = os.times()
    start = time.perf_counter()
    result = run(conn, spec["container"])
    wall = time.perf_counter() - start
    cpu1 = os.times()
    peak = None
    if spec["tracemalloc"]:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss_peak = _rss_kb("VmHWM")
    result.update(
        {
            "wall_s": wall,
            "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
            "traced_peak_b": peak,
            "rss_growth_kb": (rss_peak - rss_base) if rss_peak and rss_base else None,
        }
    )
    return result


def process_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(conn: str, azurite_pid: int, **spec) -> dict:
    env = dict(os.environ, RETIER_STORAGE=conn)
    before = process_cpu_s(azurite_pid)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    after = process_cpu_s(azurite_pid)
    if proc.returncode != 0:
        raise BenchError(f"{spec['method']} run crashed (exit {proc.returncode}); see stderr above")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["azurite_cpu_s"] = None if before is None or after is None else after - before
    return result


# -- one container size ---------------------------------------------------------------------------


def check(method: str, result: dict, blobs: int, moves: int) -> None:
    # Seeded bodies are one byte each: a listing's bytes are its blob count.
    if result["listed"] != blobs or result["bytes"] != blobs:
        raise BenchError(
            f"{method}: listed {result['listed']} blobs, {result['bytes']} bytes; expected {blobs} of each"
        )
    if method == "cost" and result["moves"] != moves:
        raise BenchError(f"cost: planned {result['moves']} moves, expected {moves}")


def measure(n: int, args, tag: str) -> dict:
    history = backup_history(n)
    history.check()
    missed = history.newest_incrementals()
    seed = [(b.name, TIER if b.to_tier and b.name not in missed else None) for b in history.blobs]
    container = f"bench-cost-{tag}-{n}"
    with SeededAzurite(os.environ["AZURITE_BIN"], container, seed) as azurite:
        progress(
            f"{n} blobs: seeded Azurite (pid {azurite.pid}) in {azurite.seconds:.1f} s; "
            f"{len(missed)} volumes left Hot"
        )
        conn, pid = azurite.connection_string, azurite.pid
        runs: dict[str, list[dict]] = {"bare": [], "cost": []}
        for rep in range(args.repeat):
            for method in ("bare", "cost") if rep % 2 == 0 else ("cost", "bare"):
                r = run_child(conn, pid, method=method, container=container, tracemalloc=False)
                check(method, r, n, len(missed))
                runs[method].append(r)
                progress(
                    f"{n} blobs: {method} {r['wall_s']:.2f} s (cpu {r['cpu_s']:.2f} s, "
                    f"Azurite {r['azurite_cpu_s'] or 0:.2f} s)"
                )
        traced = {}
        for method in ("bare", "cost"):
            r = run_child(conn, pid, method=method, container=container, tracemalloc=True)
            check(method, r, n, len(missed))
            traced[method] = r
            progress(
                f"{n} blobs: {method} heap peak {r['traced_peak_b'] / 1e6:.2f} MB (traced run)"
            )

    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[method])

    return {
        "blobs": n,
        "sets": history.sets,
        "moves": len(missed),
        "bare_wall_s": med("bare", "wall_s"),
        "cost_wall_s": med("cost", "wall_s"),
        "time_ratio": med("cost", "wall_s") / med("bare", "wall_s"),
        "cpu_ratio": med("cost", "cpu_s") / med("bare", "cpu_s"),
        "bare_wall_runs": [round(r["wall_s"], 3) for r in runs["bare"]],
        "cost_wall_runs": [round(r["wall_s"], 3) for r in runs["cost"]],
        "bare_cpu_s": med("bare", "cpu_s"),
        "cost_cpu_s": med("cost", "cpu_s"),
        "azurite_cpu_s": {m: [r["azurite_cpu_s"] for r in runs[m]] for m in runs},
        "bare_heap_peak_mb": traced["bare"]["traced_peak_b"] / 1e6,
        "cost_heap_peak_mb": traced["cost"]["traced_peak_b"] / 1e6,
        "bare_rss_growth_mb": _mb_kb(med("bare", "rss_growth_kb")),
        "cost_rss_growth_mb": _mb_kb(med("cost", "rss_growth_kb")),
    }


def _mb_kb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1000


def verdict(rows: list[dict]) -> tuple[list[dict], bool]:
    # The time criterion is for the largest container (100,000 blobs); smaller ones run a
    # few seconds, where the machine's other work moves a ratio by more than the report costs.
    largest = rows[-1]
    checks = [
        {
            "check": f"{largest['blobs']} blobs: cost / bare listing wall time",
            "value": round(largest["time_ratio"], 3),
            "limit": f"<= {MAX_TIME_RATIO}",
            "pass": largest["time_ratio"] <= MAX_TIME_RATIO,
        }
    ]
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        growth = large["cost_heap_peak_mb"] / small["cost_heap_peak_mb"]
        checks.append(
            {
                "check": f"cost heap peak at {large['blobs']} / {small['blobs']} blobs",
                "value": round(growth, 3),
                "limit": f"<= {MAX_MEMORY_GROWTH}",
                "pass": growth <= MAX_MEMORY_GROWTH and large["blobs"] >= 3 * small["blobs"],
            }
        )
    return checks, all(c["pass"] for c in checks)


def print_table(result: dict) -> None:
    print(
        f"retier cost --container vs a bare listing, seeded Azurite, median of {result['repeat']} "
        "(each run a fresh process)"
    )
    print(
        f"{'blobs':>7} {'sets':>5} {'moves':>6} {'bare s':>7} {'cost s':>7} {'ratio':>6} "
        f"{'bare cpu':>8} {'cost cpu':>8} {'ratio':>6} {'bare heap MB':>12} {'cost heap MB':>12} "
        f"{'bare RSS MB':>11} {'cost RSS MB':>11}"
    )
    for r in result["rows"]:
        print(
            f"{r['blobs']:>7} {r['sets']:>5} {r['moves']:>6} {r['bare_wall_s']:>7.2f} "
            f"{r['cost_wall_s']:>7.2f} {r['time_ratio']:>5.2f}x {r['bare_cpu_s']:>8.2f} "
            f"{r['cost_cpu_s']:>8.2f} {r['cpu_ratio']:>5.2f}x {r['bare_heap_peak_mb']:>12.2f} "
            f"{r['cost_heap_peak_mb']:>12.2f} "
            f"{r['bare_rss_growth_mb'] or 0:>11.1f} {r['cost_rss_growth_mb'] or 0:>11.1f}"
        )
    print(
        "cpu: CPU seconds of the listing process; heap: tracemalloc peak (separate traced run); "
        "RSS: growth of the process's peak resident set"
    )
    for c in result["criteria"]:
        print(
            f"{'PASS' if c['pass'] else 'FAIL'}: {c['check']} = {c['value']} (limit {c['limit']})"
        )


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: AZURITE_BIN=.tools/node_modules/.bin/azurite-blob python bench/bench_cost.py",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[10_000, 100_000],
        help="container sizes in blobs (default 10000,100000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not os.environ.get("AZURITE_BIN"):
        parser.error("set AZURITE_BIN to Azurite's azurite-blob (bench/run_cost does)")
    started = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    try:
        rows = [measure(n, args, tag) for n in args.sizes]
    except (BenchError, SeedError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    checks, ok = verdict(rows)
    result = {
        "repeat": args.repeat,
        "rows": rows,
        "criteria": checks,
        "pass": ok,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return finish(result, ok, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
