#!/usr/bin/env python3
"""Benchmark a whole-container sweep on Azurite: retier.sweep against a naive Set Blob Tier per volume, direct and through a 20 ms proxy.

A synthetic container (bench/synthetic_backups.py: 26 weekly chains of a full and 6
daily incrementals with their signatures and manifests, three unfinished sets and some
names that are no duplicity object) is swept twice in the same run: by
retier.sweep.sweep_container (one paged listing, Blob Batch of up to 256 with a few
batches in flight), and by a naive sweep that lists the container, applies the same rule
and sets each volume's tier with its own request. Both go through
retier.metering.CountingTransport, which counts every HTTP request on the wire and, for a
Blob Batch, one billable transaction per sub-request plus one for the batch. Each sweep
runs in a fresh child process, so its peak memory is its own; tiers are reset to Hot
(unmetered, untimed) between sweeps; after each sweep the container is checked: every
volume of a finished set at the target tier, everything else untouched.

This is done straight on Azurite (10,000 blobs) and through bench/delay_proxy.py, which
adds 20 ms to every request as a distant region would (2,000 blobs by default, to keep
the naive sweep's 1,600 sequential round trips at about 40 s; the figures compared are
per blob). Then peak memory at several container sizes with the same backup sets (default
10,000 and 100,000 blobs): dry runs (list and decide every blob) and a real sweep that
repairs the newest week of incrementals, each container on its own Azurite whose store is
seeded directly (bench/seeded_azurite.py), because uploading 100,000 blobs into Azurite
takes about an hour (see bench/README.md). `--memory-setup upload` uploads instead.

    bench/run_sweep                                   # everything, about 13 minutes
    bench/run_sweep --memory-only --json              # the memory comparison alone, about 7 minutes
    RETIER_STORAGE='<azurite connection string>' AZURITE_BIN=... python bench/bench_sweep.py

Exit status: 0 when every done criterion it could check holds, 1 when one does not, a
sweep left a container wrong or a child crashed, 2 for bad usage.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.storage.blob import BlobServiceClient
from bench_manifest_event import (
    BenchError,
    chunks,
    delete_containers,
    finish,
    progress,
    ratio,
)
from bench_manifest_event import parse_sizes as parse_blob_counts
from delay_proxy import DEFAULT_DELAY, DelayProxy
from seeded_azurite import SeededAzurite, SeedError
from synthetic_backups import History, backup_history

from faultbed.proxy import endpoint_port
from retier import names
from retier.metering import CountingTransport, Meter
from retier.policy import VOLUME_TIERS, canonical_tier, decide
from retier.settings import Connection, load_settings
from retier.storage import connect

# Done criteria of the issue.
MIN_ROUND_TRIP_RATIO = 100  # naive / retier round trips, per blob
MIN_SPEED_RATIO = {"direct": 5.0, "proxy": 10.0}  # retier / naive blobs per second
MAX_MEMORY_GROWTH = (
    1.5  # peak memory, largest / smallest container, with the blobs multiplied by >= 3
)
MIN_PROXY_REQUEST_MS = DEFAULT_DELAY * 1000
LISTING_PAGE = 5000  # blobs per List Blobs page, the service's maximum and the SDK's default

BODY = b"x"  # tier changes do not depend on size: one byte per blob keeps the setup fast


# -- containers -------------------------------------------------------------------------------


def upload(admin: BlobServiceClient, container: str, history: History, workers: int) -> float:
    client = admin.get_container_client(container)
    client.create_container()
    start = time.perf_counter()

    def put(blob_names: list[str]) -> None:
        for name in blob_names:
            for attempt in range(5):
                try:
                    client.upload_blob(name, BODY, overwrite=True)
                    break
                except (ServiceRequestError, ServiceResponseError):
                    # A busy Azurite drops keep-alive connections it has not read for 5 s (see README).
                    if attempt == 4:
                        raise
                    time.sleep(1 + attempt)

    all_names = [b.name for b in history.blobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, [all_names[i::workers] for i in range(workers)]))
    return time.perf_counter() - start


def reset_to_hot(admin: BlobServiceClient, container: str, history: History) -> None:
    """Outside every measurement: batch the finished sets' volumes back to Hot, and check it."""
    client = admin.get_container_client(container)

    def reset(chunk: list[str]) -> None:
        parts = list(client.set_standard_blob_tier_blobs("Hot", *chunk, raise_on_any_failure=False))
        bad = [p.status_code for p in parts if not 200 <= p.status_code < 300]
        if bad or len(parts) != len(chunk):
            raise BenchError(f"{container}: resetting tiers to Hot failed: {bad[:5]}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(reset, chunks(history.to_tier)))
    verify(admin, container, history, "Hot", "reset to Hot")


def verify(
    admin: BlobServiceClient, container: str, history: History, target: str, method: str
) -> None:
    """Every volume of a finished set at `target`; every other blob still Hot; nothing missing or extra."""
    expected = {b.name: (target if b.to_tier else "Hot") for b in history.blobs}
    problems: list[str] = []
    seen = 0
    for blob in admin.get_container_client(container).list_blobs():
        want = expected.get(blob.name)
        if want is None:
            problems.append(f"{blob.name}: not in the history")
            continue
        seen += 1
        if blob.blob_tier != want or blob.archive_status:
            problems.append(
                f"{blob.name}: tier {blob.blob_tier} (archive_status {blob.archive_status}), expected {want}"
            )
    if seen != len(expected):
        problems.append(f"{len(expected) - seen} blob(s) missing")
    if problems:
        shown = "\n  ".join(problems[:10])
        raise BenchError(
            f"{method} left {container} wrong ({len(problems)} problem(s)):\n  {shown}"
        )


# -- the two sweeps, each run in a child process ------------------------------------------------


def _rss_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
        return True
    except OSError:
        return False


def naive_sweep(client, settings, *, dry_run: bool) -> dict:
    """List the container, then one Set Blob Tier per volume of a finished set not yet at its target."""
    listed = [(b.name, b.blob_tier, b.archive_status) for b in client.list_blobs()]
    prefixes = settings.name_prefixes
    parsed = [(names.parse(name), tier, status) for name, tier, status in listed]
    # The same rule as retier: a set is finished when its manifest exists (same set, same prefix).
    finished = {
        names.set_key(n, **prefixes)
        for n, _, _ in parsed
        if n.kind is names.Kind.MANIFEST and not n.par2
    }
    moved = 0
    for n, tier, status in parsed:
        if n.kind is not names.Kind.VOLUME or names.set_key(n, **prefixes) not in finished:
            continue
        decision = decide(n, tier, status, settings.policy)
        if decision.move:
            if not dry_run:
                client.get_blob_client(n.name).set_standard_blob_tier(decision.target)
            moved += 1
    return {
        "listed": len(listed),
        "planned": moved,
        "moved": 0 if dry_run else moved,
        "failures": 0,
        "ok": True,
    }


def retier_sweep(store, container: str, settings, *, dry_run: bool, workers: int) -> dict:
    from retier.sweep import sweep_container

    # No retry pauses: a tier change that still fails after the SDK's retries fails the run
    # (check_run) instead of adding 5 or 35 s to the time measured.
    report = sweep_container(
        store, container, settings, dry_run=dry_run, workers=workers, retry_delays=()
    )
    plan, applied = report.plan, report.applied
    return {
        "listed": plan.listed if plan else 0,
        "planned": plan.moves.count if plan else 0,
        "moved": applied.done.count if applied else 0,
        "failures": applied.failed if applied else 0,
        "ok": report.ok and not report.held,
        "error": report.error,
        "batches": applied.batches if applied else 0,
    }


def child(spec: dict) -> dict:
    """Run one sweep as the only work of this process; measure wall time, requests and peak memory."""
    conn = os.environ["RETIER_STORAGE"]
    settings = load_settings({"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": spec["tier"]})
    meter = Meter()
    client = connect(Connection(connection_string=conn), transport=CountingTransport(meter))
    from retier.storage import BlobStore

    store = BlobStore(client)
    container_client = client.get_container_client(spec["container"])
    if spec["method"] == "retier":
        import retier.sweep  # noqa: F401  (imported before the measurement, like the SDK)

        run = lambda: retier_sweep(
            store, spec["container"], settings, dry_run=spec["dry_run"], workers=spec["workers"]
        )
    else:
        run = lambda: naive_sweep(container_client, settings, dry_run=spec["dry_run"])

    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    gc.collect()
    peak_reset = _reset_peak_rss()
    rss_base = _rss_kb("VmRSS")
    if spec["tracemalloc"]:
        import tracemalloc

        tracemalloc.start()
    cpu0 = os.times()
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = run()
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    cpu1 = os.times()
    traced_peak = None
    if spec["tracemalloc"]:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss_peak = _rss_kb("VmHWM")
    if (
        not peak_reset
    ):  # no clear_refs: the process's lifetime peak (imports included) is the best we have
        import resource

        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if profiler:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    result.update(
        {
            "wall_s": wall,
            "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
            "round_trips": meter.round_trips,
            "billable": meter.billable,
            "by_operation": dict(meter.by_operation),
            "rss_base_kb": rss_base,
            "rss_peak_kb": rss_peak,
            "rss_growth_kb": (rss_peak - rss_base) if rss_peak and rss_base else None,
            "traced_peak_b": traced_peak,
        }
    )
    return result


def server_cpu_s() -> float | None:
    """CPU time used so far by the Azurite process, when its pid is known (bench/run_sweep exports AZURITE_PID)."""
    pid = os.environ.get("AZURITE_PID")
    if not pid:
        return None
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_child(
    conn: str,
    container: str,
    history: History,
    args,
    *,
    dry_run: bool,
    tracemalloc: bool,
    method: str = "retier",
    workers: int | None = None,
    to_move: int | None = None,
    profile: bool = False,
) -> dict:
    """One sweep of `container` alone in a fresh process (see child), checked with check_run."""
    spec = {
        "method": method,
        "container": container,
        "tier": args.tier,
        "workers": args.sweep_workers if workers is None else workers,
        "dry_run": dry_run,
        "tracemalloc": tracemalloc,
        "profile": profile,
    }
    env = dict(os.environ, RETIER_STORAGE=conn)
    env.pop("RETIER_TEST_STORAGE", None)
    server_before = server_cpu_s()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    server_after = server_cpu_s()
    if proc.returncode != 0:
        raise BenchError(
            f"{spec['method']} sweep of {spec['container']} crashed (exit {proc.returncode}); see stderr above"
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The child's whole life, start-up included (a few ms of Azurite's time): an upper bound, close enough.
    result["server_cpu_s"] = (
        None if server_before is None or server_after is None else server_after - server_before
    )
    label = f"{method} (dry run)" if dry_run else method
    check_run(label, result, history, container, dry_run=dry_run, to_move=to_move)
    return result


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Row:
    route: str  # "direct" or "proxy"
    method: str
    blobs: int
    runs: list[dict] = field(default_factory=list)
    traced_peak_b: int | None = None  # from a dry run with tracemalloc
    dry_run: dict | None = (
        None  # an untimed-by-tracemalloc dry run (retier only): RSS of listing and planning alone
    )

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    @property
    def blobs_per_s(self) -> float:
        return self.blobs / self.median("wall_s")

    def to_dict(self) -> dict:
        return {
            "route": self.route,
            "method": self.method,
            "blobs": self.blobs,
            "volumes_moved": self.runs[-1]["moved"],
            "wall_s": round(self.median("wall_s"), 3),
            "wall_s_runs": [round(r["wall_s"], 3) for r in self.runs],
            "cpu_s": round(self.median("cpu_s"), 3),
            "server_cpu_s": round(self.median("server_cpu_s"), 3)
            if self.runs[0]["server_cpu_s"] is not None
            else None,
            "blobs_per_s": round(self.blobs_per_s, 1),
            "round_trips": self.median("round_trips"),
            "billable": self.median("billable"),
            "per_blob": {
                "round_trips": round(self.median("round_trips") / self.blobs, 5),
                "billable": round(self.median("billable") / self.blobs, 5),
            },
            "peak_rss_growth_mb": _mb(self.median("rss_growth_kb") * 1024)
            if self.runs[0]["rss_growth_kb"] is not None
            else None,
            "traced_peak_mb_dry_run": _mb(self.traced_peak_b),
            "by_operation": self.runs[-1]["by_operation"],
        }


def _mb(n: float | None) -> float | None:
    return None if n is None else round(n / 1e6, 2)


def check_run(
    method: str,
    result: dict,
    history: History,
    container: str,
    *,
    dry_run: bool,
    to_move: int | None = None,
) -> None:
    want = len(history.to_tier) if to_move is None else to_move
    moved = 0 if dry_run else want
    if (
        result["listed"] != len(history.blobs)
        or result["planned"] != want
        or result["moved"] != moved
        or result["failures"]
        or not result["ok"]
    ):
        raise BenchError(
            f"{method} sweep of {container}: listed {result['listed']}/{len(history.blobs)}, planned {result['planned']}/{want}, "
            f"moved {result['moved']}/{moved}, failures {result['failures']}, ok {result['ok']}, error {result.get('error')}"
        )


def compare(
    route: str,
    conn: str,
    admin: BlobServiceClient,
    container: str,
    history: History,
    args,
    proxy: DelayProxy | None,
) -> list[Row]:
    """Retier and naive sweeps of the same container, interleaved, tiers reset to Hot before each."""
    rows = {m: Row(route, m, len(history.blobs)) for m in ("retier", "naive")}
    if route == "direct":
        for (
            method,
            row,
        ) in rows.items():  # peak Python heap, with tracemalloc (it slows a run: not timed)
            result = run_child(
                conn, container, history, args, method=method, dry_run=True, tracemalloc=True
            )
            row.traced_peak_b = result["traced_peak_b"]
        rows["retier"].dry_run = run_child(
            conn, container, history, args, dry_run=True, tracemalloc=False
        )
    first = True
    for rep in range(args.repeat):
        order = (
            ("retier", "naive") if rep % 2 == 0 else ("naive", "retier")
        )  # alternate, so drift hits both alike
        for method in order:
            if not first:
                reset_to_hot(admin, container, history)
            first = False
            requests_before = proxy.requests if proxy else 0
            result = run_child(
                conn,
                container,
                history,
                args,
                method=method,
                dry_run=False,
                tracemalloc=False,
                profile=args.profile and method == "retier",
            )
            verify(admin, container, history, args.tier, f"{method} ({route})")
            if proxy and proxy.requests - requests_before != result["round_trips"]:
                raise BenchError(
                    f"{method}: the proxy forwarded {proxy.requests - requests_before} requests, "
                    f"the meter counted {result['round_trips']}"
                )
            rows[method].runs.append(result)
            progress(
                f"{route} {len(history.blobs)} blobs: {method} {result['wall_s']:.2f} s, "
                f"{result['round_trips']} round trips, {result['billable']} billable, cpu {result['cpu_s']:.2f} s"
            )
    return [rows["retier"], rows["naive"]]


@dataclass
class MemoryRow:
    blobs: int
    sets: int
    traced_peak_b: int  # dry run
    rss_growth_kb: int | None  # dry run, untraced
    wall_s: float  # dry run, untraced
    setup: str = "upload"
    repair_peak_b: int | None = (
        None  # a real sweep that repairs the newest chain's incrementals (seeded containers only)
    )
    repair_moved: int | None = None
    repair_wall_s: float | None = None

    def to_dict(self) -> dict:
        return {
            "blobs": self.blobs,
            "sets": self.sets,
            "setup": self.setup,
            "heap_peak_mb": _mb(self.traced_peak_b),
            "rss_growth_mb": _mb(self.rss_growth_kb * 1024)
            if self.rss_growth_kb is not None
            else None,
            "wall_s": round(self.wall_s, 3),
            "blobs_per_s": round(self.blobs / self.wall_s, 1),
            "repair_heap_peak_mb": _mb(self.repair_peak_b),
            "repair_moved": self.repair_moved,
            "repair_wall_s": None if self.repair_wall_s is None else round(self.repair_wall_s, 3),
        }


def measure_memory(conn: str, container: str, history: History, args) -> MemoryRow:
    """Peak memory of retier's dry-run sweep of one container: the Python heap (tracemalloc) and, in another run, RSS.

    A dry run lists and decides every blob, which is where memory could grow with the blobs;
    a real sweep adds at most 2 x workers batches of 256 names. (On Azurite a real sweep of a
    large container is slow for a reason of Azurite's own: see the README.)
    """
    traced = run_child(conn, container, history, args, dry_run=True, tracemalloc=True)
    untraced = run_child(conn, container, history, args, dry_run=True, tracemalloc=False)
    return memory_row(len(history.blobs), history, traced["traced_peak_b"], untraced)


def measure_memory_seeded(container: str, history: History, args) -> MemoryRow:
    """Dry runs and a real repair sweep of a container on its own seeded Azurite (bench/seeded_azurite.py).

    The container is seeded as the event handler would have left it had Event Grid dropped
    the events of the newest chain's incrementals (a week of daily backups): every finished
    volume already at the target tier except those incrementals', still Hot. The dry runs
    list and decide every blob; the real sweep does that and moves those volumes in batches
    (tracemalloc on: its heap peak, not its time, is the point). Afterwards every blob must
    be where it belongs.
    """
    missed = history.newest_incrementals()
    seed = [
        (b.name, args.tier if b.to_tier and b.name not in missed else None) for b in history.blobs
    ]
    with SeededAzurite(azurite_bin(), container, seed) as azurite:
        progress(
            f"memory {len(history.blobs)} blobs: seeded Azurite (pid {azurite.pid}) in {azurite.seconds:.1f} s, "
            f"{len(missed)} volumes of the newest chain's incrementals left Hot"
        )
        conn = azurite.connection_string
        # One batch in flight: at 100,000 blobs Azurite takes about 5 s per batch of 256 (its scan, see the
        # README), and a second batch queued behind it on another keep-alive connection gets that
        # connection reset by Node's 5 s keep-alive timer, three times over. Memory is what is
        # measured here; a batch in flight holds 256 names.
        sweep = partial(run_child, conn, container, history, args, workers=1, to_move=len(missed))
        traced = sweep(dry_run=True, tracemalloc=True)
        untraced = sweep(dry_run=True, tracemalloc=False)
        repair = sweep(dry_run=False, tracemalloc=True)
        verify(
            BlobServiceClient.from_connection_string(conn),
            container,
            history,
            args.tier,
            "repair sweep",
        )
    row = memory_row(len(history.blobs), history, traced["traced_peak_b"], untraced)
    row.setup = "seeded"
    row.repair_peak_b, row.repair_moved, row.repair_wall_s = (
        repair["traced_peak_b"],
        repair["moved"],
        repair["wall_s"],
    )
    progress(
        f"memory {len(history.blobs)} blobs: repair sweep moved {repair['moved']} volumes in {repair['wall_s']:.1f} s, "
        f"heap peak {repair['traced_peak_b'] / 1e6:.1f} MB"
    )
    return row


def azurite_bin() -> str:
    path = os.environ.get("AZURITE_BIN")
    if not path:
        raise BenchError(
            "--memory-setup seed needs AZURITE_BIN (the azurite-blob that bench/run_sweep installs); "
            "or use --memory-setup upload"
        )
    return path


def memory_row(blobs: int, history: History, traced_peak_b: int, untraced: dict) -> MemoryRow:
    row = MemoryRow(
        blobs, history.sets, traced_peak_b, untraced["rss_growth_kb"], untraced["wall_s"]
    )
    progress(
        f"memory {blobs} blobs: heap peak {traced_peak_b / 1e6:.1f} MB, RSS growth {(row.rss_growth_kb or 0) / 1e3:.1f} MB "
        f"(dry runs; {row.wall_s:.2f} s untraced)"
    )
    return row


def proxy_latency(conn: str, proxy_conn: str, samples: int = 10) -> dict:
    """One request's time straight to Azurite and through the proxy (the minimum of `samples`)."""

    def fastest(c: str) -> float:
        container = BlobServiceClient.from_connection_string(c).get_container_client(
            "bench-sweep-latency-probe"
        )
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            container.exists()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    return {"direct_ms": round(fastest(conn), 2), "proxy_ms": round(fastest(proxy_conn), 2)}


# -- reporting --------------------------------------------------------------------------------


def report(
    rows: list[Row], memory: list[MemoryRow], latency: dict, histories: dict[str, History], args
) -> tuple[dict, bool]:
    by = {(r.route, r.method): r for r in rows}
    ratios, checks = [], []
    for route in ("direct", "proxy"):
        if (route, "retier") not in by:
            continue
        retier, naive = by[(route, "retier")], by[(route, "naive")]
        r = {
            "route": route,
            "blobs": retier.blobs,
            "speed": ratio(retier.blobs_per_s, naive.blobs_per_s),
            "round_trips": ratio(naive.median("round_trips"), retier.median("round_trips")),
            "billable": ratio(naive.median("billable"), retier.median("billable")),
            "peak_rss": ratio(
                naive.median("rss_growth_kb") or 0, retier.median("rss_growth_kb") or 0
            ),
        }
        ratios.append(r)
        checks.append(
            {
                "check": f"{route}: HTTP round trips naive/retier",
                "value": r["round_trips"],
                "limit": f">= {MIN_ROUND_TRIP_RATIO}",
                "pass": (r["round_trips"] or 0) >= MIN_ROUND_TRIP_RATIO,
            }
        )
        checks.append(
            {
                "check": f"{route}: blobs/s retier/naive",
                "value": r["speed"],
                "limit": f">= {MIN_SPEED_RATIO[route]:g}",
                "pass": (r["speed"] or 0) >= MIN_SPEED_RATIO[route],
            }
        )
    if len(memory) >= 2:
        small, large = memory[0], memory[-1]
        growth = large.traced_peak_b / small.traced_peak_b
        check = f"memory: heap peak at {large.blobs} / {small.blobs} blobs ({large.blobs / small.blobs:.0f}x the blobs)"
        verdict = growth <= MAX_MEMORY_GROWTH and large.blobs >= 3 * small.blobs
        if small.blobs < LISTING_PAGE:
            # Below one full listing page the SDK's page itself grows with the container.
            check += f"; not judged: the smaller container must hold at least one listing page ({LISTING_PAGE} blobs)"
            verdict = None
        checks.append(
            {
                "check": check,
                "value": round(growth, 2),
                "limit": f"<= {MAX_MEMORY_GROWTH}",
                "pass": verdict,
            }
        )
        if small.repair_peak_b and large.repair_peak_b:
            growth = large.repair_peak_b / small.repair_peak_b
            repair_verdict = (
                None
                if verdict is None
                else growth <= MAX_MEMORY_GROWTH and large.blobs >= 3 * small.blobs
            )
            checks.append(
                {
                    "check": f"memory: repair sweep heap peak at {large.blobs} / {small.blobs} blobs",
                    "value": round(growth, 2),
                    "limit": f"<= {MAX_MEMORY_GROWTH}",
                    "pass": repair_verdict,
                }
            )
    else:
        checks.append(
            {
                "check": "memory flat in the number of blobs: needs two sizes, e.g. --memory-blobs 10000,100000",
                "value": None,
                "limit": f"<= {MAX_MEMORY_GROWTH}",
                "pass": None,
            }
        )
    if latency:
        checks.append(
            {
                "check": "proxy: one request through the proxy, ms",
                "value": latency["proxy_ms"],
                "limit": f">= {MIN_PROXY_REQUEST_MS:g}",
                "pass": latency["proxy_ms"] >= MIN_PROXY_REQUEST_MS,
            }
        )
    ok = all(c["pass"] is not False for c in checks)
    mem = {}
    if len(memory) >= 2:
        small, large = memory[0], memory[-1]
        slope = (large.traced_peak_b - small.traced_peak_b) / (large.blobs - small.blobs)
        mem = {
            "heap_bytes_per_extra_blob": round(slope, 2),
            "heap_ratio": round(large.traced_peak_b / small.traced_peak_b, 3),
            "rss_ratio": round(large.rss_growth_kb / small.rss_growth_kb, 3)
            if small.rss_growth_kb and large.rss_growth_kb
            else None,
        }
    result = {
        "tier": args.tier,
        "repeat": args.repeat,
        "sweep_workers": args.sweep_workers,
        "proxy_delay_ms": args.delay_ms,
        "proxy_latency": latency,
        "containers": {
            route: {
                "blobs": len(h.blobs),
                "sets": h.sets,
                "finished_sets": h.finished_sets,
                "unfinished_sets": h.unfinished_sets,
                "roles": dict(h.roles()),
            }
            for route, h in histories.items()
        },
        "rows": [r.to_dict() for r in rows],
        "ratios": ratios,
        "memory": [m.to_dict() for m in memory],
        "memory_growth": mem,
        "criteria": checks,
        "pass": ok,
    }
    return result, ok


def print_table(result: dict) -> None:
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}x"
    num = lambda x, f: "n/a" if x is None else format(x, f)
    print(
        f"Sweep of a whole container, volumes -> {result['tier']}; median of {result['repeat']} run(s); "
        f"retier with {result['sweep_workers']} batches in flight (memory runs: 1)."
    )
    for route, c in result["containers"].items():
        roles = ", ".join(f"{v} {k}" for k, v in sorted(c["roles"].items()))
        print(
            f"  {route:<7} container: {c['blobs']} blobs, {c['sets']} sets ({c['unfinished_sets']} unfinished): {roles}"
        )
    if result["proxy_latency"]:
        lat = result["proxy_latency"]
        print(
            f"  proxy: +{result['proxy_delay_ms']:g} ms per request; one request {lat['direct_ms']:.1f} ms direct, "
            f"{lat['proxy_ms']:.1f} ms through the proxy"
        )
    if result["rows"]:
        print()
        head = (
            f"{'route':<7} {'blobs':>6}  {'method':<7} {'wall s':>7} {'cpu s':>6} {'Azurite':>7} {'blobs/s':>8} {'round trips':>11} {'trips/blob':>10} "
            f"{'billable':>8} {'bill/blob':>9} {'RSS MB':>7} {'heap MB':>7}"
        )
        print(head)
        print("-" * len(head))
        for r in result["rows"]:
            print(
                f"{r['route']:<7} {r['blobs']:>6}  {r['method']:<7} {r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} {num(r['server_cpu_s'], '7.2f'):>7} {r['blobs_per_s']:>8.0f} {r['round_trips']:>11g} "
                f"{r['per_blob']['round_trips']:>10.4f} {r['billable']:>8g} {r['per_blob']['billable']:>9.4f} "
                f"{num(r['peak_rss_growth_mb'], '7.1f'):>7} {num(r['traced_peak_mb_dry_run'], '7.1f'):>7}"
            )
        print(
            "cpu s: CPU time of the sweeping process; Azurite: CPU time of the Azurite process meanwhile (n/a unless AZURITE_PID "
            "is set, as bench/run_sweep does);\nRSS MB: growth of the sweeping process's peak RSS during the real sweep; "
            "heap MB: tracemalloc peak of a dry run (not timed)."
        )
        print()
        print("retier vs naive")
        head = f"{'route':<7} {'blobs':>6}  {'blobs/s':>8} {'round trips':>11} {'billable':>9} {'peak RSS':>9}"
        print(head)
        print("-" * len(head))
        for r in result["ratios"]:
            print(
                f"{r['route']:<7} {r['blobs']:>6}  {fmt(r['speed']):>8} {fmt(r['round_trips']):>11} {fmt(r['billable']):>9} {fmt(r['peak_rss']):>9}"
            )
        print("(blobs/s: retier/naive; round trips, billable, peak RSS: naive/retier)")
    if result["memory"]:
        print()
        print(
            "retier sweep memory, same backup sets, more volumes per set: dry runs (list and decide every blob) and, on"
        )
        print(
            "seeded containers, a real sweep repairing the newest chain's incrementals (every other finished volume seeded at the target tier;"
        )
        print("one batch in flight; timed under tracemalloc, which slows retier's own process)")
        head = (
            f"{'blobs':>7} {'sets':>5} {'setup':>7}  {'heap peak MB':>12} {'RSS growth MB':>13} {'wall s':>7} {'blobs/s':>8}"
            f"  {'repair: moved':>13} {'heap peak MB':>12} {'traced s':>8}"
        )
        print(head)
        print("-" * len(head))
        for m in result["memory"]:
            print(
                f"{m['blobs']:>7} {m['sets']:>5} {m['setup']:>7}  {m['heap_peak_mb']:>12.2f} {num(m['rss_growth_mb'], '13.1f'):>13} "
                f"{m['wall_s']:>7.2f} {m['blobs_per_s']:>8.0f}  {num(m['repair_moved'], '13d'):>13} "
                f"{num(m['repair_heap_peak_mb'], '12.2f'):>12} {num(m['repair_wall_s'], '8.1f'):>8}"
            )
        g = result["memory_growth"]
        if g:
            print(
                f"heap: {g['heap_ratio']:.2f}x, {g['heap_bytes_per_extra_blob']:.1f} bytes per extra blob; "
                f"RSS: {fmt(g['rss_ratio'])}"
            )
    print()
    for c in result["criteria"]:
        value = "n/a" if c["value"] is None else f"{c['value']:g}"
        verdict = "SKIP" if c["pass"] is None else "PASS" if c["pass"] else "FAIL"
        print(f"{verdict}: {c['check']} = {value} (limit {c['limit']})")


def parse_sizes(text: str) -> list[int]:
    """Container sizes: at least 1,000 blobs each, enough for the synthetic history's sets."""
    return parse_blob_counts(text, minimum=1000)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: RETIER_STORAGE='...' python bench/bench_sweep.py --memory-blobs 10000,100000",
    )
    parser.add_argument(
        "--blobs",
        type=int,
        default=10_000,
        help="blobs in the container swept straight on Azurite (default 10000)",
    )
    parser.add_argument(
        "--proxy-blobs",
        type=int,
        default=2_000,
        help="blobs in the container swept through the proxy (default 2000; 0 skips)",
    )
    parser.add_argument(
        "--memory-blobs",
        type=parse_sizes,
        default=[10_000, 100_000],
        help="container sizes for the memory comparison (default 10000,100000)",
    )
    parser.add_argument(
        "--memory-setup",
        choices=("seed", "upload"),
        default="seed",
        help="seed: each memory container on its own Azurite, its store written directly (seconds; needs "
        "AZURITE_BIN, which bench/run_sweep sets), with a real repair sweep too; upload: upload every "
        "blob into the given Azurite (100,000 blobs take about an hour), dry runs only",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only the memory comparison (dry runs and, when seeded, the repair sweep), no timed comparison",
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=DEFAULT_DELAY * 1000,
        help="the proxy's delay per request (default 20)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="sweeps per method and route; the median is reported (default 1)",
    )
    parser.add_argument(
        "--tier",
        type=canonical_tier,
        default="Cold",
        help="target tier for the volumes (default Cold)",
    )
    parser.add_argument(
        "--sweep-workers",
        type=int,
        default=4,
        help="retier's batches in flight (default 4, sweep_container's default)",
    )
    parser.add_argument(
        "--workers", type=int, default=16, help="upload threads for the setup (default 16)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile of each timed retier sweep to stderr",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.workers < 1 or args.sweep_workers < 1:
        parser.error("--repeat, --workers and --sweep-workers must be at least 1")
    if args.blobs < 1000 or (args.proxy_blobs and args.proxy_blobs < 1000):
        parser.error("--blobs and --proxy-blobs must be at least 1000")
    if args.tier not in VOLUME_TIERS:
        parser.error(f"--tier must be one of {', '.join(VOLUME_TIERS)}")
    conn = os.environ.get("RETIER_STORAGE") or os.environ.get("RETIER_TEST_STORAGE")
    if not conn:
        parser.error(
            "set RETIER_STORAGE (or RETIER_TEST_STORAGE) to an Azurite connection string, or use bench/run_sweep"
        )
    if args.memory_setup == "seed" and not os.environ.get("AZURITE_BIN"):
        parser.error(
            "--memory-setup seed needs AZURITE_BIN (the azurite-blob that bench/run_sweep installs), "
            "or use --memory-setup upload"
        )
    try:
        upstream = endpoint_port(conn)
    except ValueError as exc:
        parser.error(f"RETIER_STORAGE: {exc} (this benchmark runs against a local Azurite)")

    admin = connect(Connection(connection_string=conn))
    tag = uuid.uuid4().hex[:8]
    containers: list[str] = []
    rows: list[Row] = []
    memory: list[MemoryRow] = []
    histories: dict[str, History] = {}
    latency: dict = {}
    proxy = None
    started = time.perf_counter()
    try:
        if not args.memory_only:
            histories["direct"] = backup_history(args.blobs)
            if args.proxy_blobs:
                histories["proxy"] = backup_history(args.proxy_blobs)
        reuse_direct = args.memory_setup == "upload" and not args.memory_only
        extra = {
            n: backup_history(n) for n in args.memory_blobs if n != args.blobs or not reuse_direct
        }
        for history in [*histories.values(), *extra.values()]:
            history.check()

        def container_for(label: str, history: History) -> str:
            name = f"bench-sweep-{tag}-{label}"
            containers.append(name)
            seconds = upload(admin, name, history, args.workers)
            progress(
                f"{label}: uploaded {len(history.blobs)} blobs in {seconds:.1f} s ({len(history.blobs) / seconds:.0f}/s)"
            )
            return name

        def drop(name: str) -> None:
            # Azurite's work per blob grows with the blobs in the account: keep one container at a time.
            admin.delete_container(name)
            containers.remove(name)

        if not args.memory_only:
            direct = container_for("direct", histories["direct"])
            rows += compare("direct", conn, admin, direct, histories["direct"], args, None)
            drop(direct)

        if args.proxy_blobs and not args.memory_only:
            proxy = DelayProxy(upstream, args.delay_ms / 1000)
            proxy.start()
            proxy_conn = proxy.connection_string(conn)
            latency = proxy_latency(conn, proxy_conn)
            progress(
                f"proxy 127.0.0.1:{proxy.port}: one request {latency['direct_ms']:.1f} ms direct, {latency['proxy_ms']:.1f} ms proxied"
            )
            proxied = container_for("proxy", histories["proxy"])
            rows += compare("proxy", proxy_conn, admin, proxied, histories["proxy"], args, proxy)
            drop(proxied)

        for n in args.memory_blobs:
            if args.memory_setup == "seed":
                memory.append(
                    measure_memory_seeded(f"bench-sweep-{tag}-memory-{n}", extra[n], args)
                )
            elif n == args.blobs and reuse_direct:
                direct_row = rows[0]
                memory.append(
                    memory_row(n, histories["direct"], direct_row.traced_peak_b, direct_row.dry_run)
                )
            else:
                name = container_for(f"memory-{n}", extra[n])
                memory.append(measure_memory(conn, name, extra[n], args))
                drop(name)
    except (BenchError, SeedError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    finally:
        if proxy:
            proxy.stop()
        delete_containers(admin, containers)
    progress(f"total {time.perf_counter() - started:.1f} s")
    return finish(*report(rows, memory, latency, histories, args), args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
