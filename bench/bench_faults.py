#!/usr/bin/env python3
"""Fault runs over many seeds: real duplicity backups, events through the Event Grid stand-in, storage through the fault proxy.

duplicity (full + 2 incrementals with --volsize 1 and --jsonstat, several volumes each, and an
interrupted 4th backup) is recorded once on Azurite (or loaded with --recording). Then, for
every seed and each delivery mode (every event, or only manifests as the deployment's filter
sends them), faultbed.runs.fault_run uploads the recording into a fresh container, delivers
the events through EventGridStandIn (shuffled, 20 % duplicated, at most 3 attempts, then
dead-lettered) to the Function's entry point, whose storage goes through FaultProxy, and runs
the reconciliation sweep through the proxy. Each run is checked (faultbed/runs.py): the end
state equals the fault-free run's; no Set Blob Tier reached Azurite for anything but a
finished set's volume; every event ended handled, ignored with a reason or dead-lettered with
a reason; every dead-letter blob is in Event Grid's format and replays harmlessly.

    bench/run_faults                                  # 50 seeds x 2 modes, then a long disorder run
    RETIER_STORAGE='<azurite connection string>' python bench/bench_faults.py --seeds 50 --json

Exit status: 0 when every run passed, 1 when one did not, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from faultbed.proxy import FAULTS
from faultbed.runs import DEFAULT_RATES, Recording, fault_run, record_backups

# Delivery modes: (only manifests delivered, storage down while events are delivered).
MODES = {
    "all": (False, False),  # every event, faults throughout
    "manifests": (True, False),  # the deployment's manifest-only filter, faults throughout
    "outage": (False, True),  # storage down for the events (all dead-lettered), then the sweep
}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_mode(conn: str, recording: Recording, mode: str, seeds: list[int], args) -> dict:
    rates = {k: v * args.rate_scale for k, v in DEFAULT_RATES.items()}
    manifests_only, outage = MODES[mode]
    baseline = fault_run(
        conn, recording, 0, rates={}, shuffle=False, duplicate_rate=0, manifests_only=manifests_only
    )
    if not baseline.ok or baseline.end_state != recording.expected("Archive"):
        raise SystemExit(f"FAIL: the fault-free run is wrong: {baseline.problems}")
    injected: Counter[str] = Counter()
    survived: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    failed: list[dict] = []
    started = time.monotonic()
    for i, seed in enumerate(seeds, 1):
        result = fault_run(
            conn,
            recording,
            seed,
            rates={"server_busy": 1.0} if outage else rates,
            sweep_rates=rates,
            max_delivery_attempts=args.max_attempts,
            manifests_only=manifests_only,
            baseline=baseline.end_state,
        )
        injected += result.injected
        if result.ok:
            survived += result.injected
        else:
            failed.append(result.to_dict())
        totals.update(
            {
                "runs": 1,
                "requests": result.requests,
                "deliveries": sum(result.ends.values()),
                "duplicates": result.duplicates,
                "attempts": result.attempts,
                "failed_attempts": result.failed_attempts,
                "dead_lettered": result.dead_lettered,
                "sweep_moved": result.sweep_moved,
                "sweep_retried": result.sweep_retried,
                "extra_sweeps": result.sweeps - 1,
                "tier_changes": result.tier_changes,
            }
        )
        for end, n in result.ends.items():
            totals[f"end_{end}"] += n
        if i % 10 == 0 or not result.ok:
            progress(
                f"  {mode}: {i}/{len(seeds)} seeds, {len(failed)} failed, "
                f"{sum(injected.values())} faults injected, {time.monotonic() - started:.0f} s"
            )
    return {
        "mode": mode,
        "seeds": len(seeds),
        "passed": len(seeds) - len(failed),
        "injected": {f: injected[f] for f in FAULTS},
        "survived": {f: survived[f] for f in FAULTS},
        "totals": dict(totals),
        "finished_volumes": len(recording.finished_volumes),
        "baseline_tier_changes": baseline.tier_changes,
        "seconds": round(time.monotonic() - started, 1),
        "failed": failed,
    }


def run_disorder(conn: str, examples: int) -> dict:
    """The hypothesis disorder property of tests/test_disorder.py with many more examples."""
    env = {**os.environ, "RETIER_TEST_STORAGE": conn, "RETIER_DISORDER_EXAMPLES": str(examples)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_disorder.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "examples": examples,
        "passed": proc.returncode == 0,
        "seconds": round(time.monotonic() - started, 1),
        "output": proc.stdout[-2000:] if proc.returncode else "",
    }


def print_table(result: dict) -> None:
    rec = result["recording"]
    print(
        f"recording: {rec['blobs']} blobs ({rec['kinds']}), {rec['finished_volumes']} volumes of "
        f"finished sets; faultbed.runs.DEFAULT_RATES x{result['rate_scale']}; at most "
        f"{result['max_attempts']} delivery attempts per event\n"
    )
    modes = result["modes"]
    print(f"{'':<26}" + "".join(f"{m['mode']:>21}" for m in modes))
    header = f"{'fault':<26}" + f"{'injected':>11}{'survived':>10}" * len(modes)
    print(header)
    print("-" * len(header))
    for fault in FAULTS:
        row = f"{fault:<26}"
        for m in modes:
            row += f"{m['injected'][fault]:>11}{m['survived'][fault]:>10}"
        print(row)
    total = f"{'total':<26}"
    for m in modes:
        total += f"{sum(m['injected'].values()):>11}{sum(m['survived'].values()):>10}"
    print(total + "\n")
    keys = [
        ("runs passed", lambda m: f"{m['passed']}/{m['seeds']}"),
        ("requests through the proxy", lambda m: m["totals"]["requests"]),
        (
            "  of them failed by the proxy",
            lambda m: f"{sum(m['injected'].values()) / m['totals']['requests']:.0%}",
        ),
        (
            "deliveries (duplicates)",
            lambda m: f"{m['totals']['deliveries']} ({m['totals']['duplicates']})",
        ),
        ("  handled", lambda m: m["totals"].get("end_handled", 0)),
        ("  ignored, with a reason", lambda m: m["totals"].get("end_ignored", 0)),
        ("  dead-lettered, with a reason", lambda m: m["totals"].get("end_dead-lettered", 0)),
        ("failed attempts (redelivered)", lambda m: m["totals"]["failed_attempts"]),
        ("volumes the sweep repaired", lambda m: m["totals"]["sweep_moved"]),
        ("sweep tier changes sent again", lambda m: m["totals"]["sweep_retried"]),
        ("sweeps re-run (timer's next run)", lambda m: m["totals"]["extra_sweeps"]),
        (
            "Set Blob Tier per volume",
            lambda m: f"{m['totals']['tier_changes'] / (m['finished_volumes'] * m['seeds']):.2f}",
        ),
        ("wall time s", lambda m: m["seconds"]),
    ]
    print(f"{'':<34}" + "".join(f"{m['mode']:>13}" for m in modes))
    for label, value in keys:
        print(f"{label:<34}" + "".join(f"{value(m)!s:>13}" for m in modes))
    if result.get("disorder"):
        d = result["disorder"]
        print(
            f"\ndisorder (tests/test_disorder.py): {d['examples']} examples, "
            f"{'PASS' if d['passed'] else 'FAIL'} in {d['seconds']} s"
        )
    for m in modes:
        for f in m["failed"][:5]:
            print(f"\nFAILED {m['mode']} seed {f['seed']}: {f['problems'][:3]}")
    print("\n" + ("PASS" if result["ok"] else "FAIL") + ": every run ended in the fault-free state")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: RETIER_STORAGE='...' python bench/bench_faults.py --seeds 50 --disorder-examples 300",
    )
    parser.add_argument("--seeds", type=int, default=50, help="seeds per mode (default 50)")
    parser.add_argument("--first-seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument(
        "--modes",
        default="all,manifests,outage",
        help="delivery modes: all, manifests, outage (default all three)",
    )
    parser.add_argument(
        "--rate-scale", type=float, default=1.0, help="multiply the fault rates (default 1)"
    )
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="the subscription's maxDeliveryAttempts (3)"
    )
    parser.add_argument(
        "--recording", type=Path, help="a directory to keep the duplicity recording in and reuse"
    )
    parser.add_argument(
        "--disorder-examples",
        type=int,
        default=0,
        help="also run tests/test_disorder.py with this many hypothesis examples",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.seeds < 1 or not modes or set(modes) - set(MODES):
        parser.error("--seeds must be at least 1 and --modes a list of: " + ", ".join(MODES))
    if not 1 <= args.max_attempts <= 30:
        parser.error("--max-attempts is 1..30, as Event Grid allows")
    if sum(DEFAULT_RATES.values()) * args.rate_scale > 1:
        parser.error("--rate-scale makes the fault rates sum past 1")
    conn = os.environ.get("RETIER_STORAGE") or os.environ.get("RETIER_TEST_STORAGE")
    if not conn:
        parser.error("set RETIER_STORAGE (or RETIER_TEST_STORAGE) to an Azurite connection string")
    logging.disable(logging.WARNING)  # retier warns on every retry; the table counts them

    started = time.monotonic()
    if args.recording and (args.recording / "recording.json").exists():
        recording = Recording.load(args.recording)
        progress(f"recording loaded from {args.recording}")
    else:
        progress("recording duplicity's backups (full + 3 incrementals, the last interrupted)")
        with tempfile.TemporaryDirectory(prefix="retier-faults-") as work:
            recording = record_backups(conn, Path(work))
        if args.recording:
            recording.save(args.recording)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = []
    for mode in modes:
        progress(f"{mode}: {len(seeds)} seeds")
        results.append(run_mode(conn, recording, mode, seeds, args))
    disorder = None
    if args.disorder_examples:
        progress(f"disorder: {args.disorder_examples} hypothesis examples")
        disorder = run_disorder(conn, args.disorder_examples)
    ok = all(m["passed"] == m["seeds"] for m in results) and (
        disorder is None or disorder["passed"]
    )
    result = {
        "ok": ok,
        "rate_scale": args.rate_scale,
        "max_attempts": args.max_attempts,
        "recording": {
            "blobs": len(recording.blobs),
            "kinds": dict(recording.kinds()),
            "finished_volumes": len(recording.finished_volumes),
        },
        "modes": results,
        "disorder": disorder,
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
