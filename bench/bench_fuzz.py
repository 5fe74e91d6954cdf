#!/usr/bin/env python3
"""Fuzz retier's two parsers with 100,000+ hostile inputs each, and count what happened.

names.parse gets mutated duplicity names; events.parse_event, and behind it the whole
RetierService.handle_event, gets mutated BlobCreated events, with a storage stand-in that records
every call (tests/fuzz_support.py). A run fails (exit 1) on the first input that raises anything
but InvalidEvent/IgnoredEvent, that reaches storage although it was rejected or is not a
manifest's event, or that makes a parser say something incoherent; it prints that input. No
server is needed.

    bench/run_fuzz                               # 100,000 of each, seeds 1..4
    python bench/bench_fuzz.py --inputs 1000000 --seeds 1 --json

Exit status: 0 nothing found; 1 an input broke a rule; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout without installing

import fuzz_support as fz


def _run(target: str, inputs: int, seed: int) -> dict:
    started = time.perf_counter()
    failure = None
    try:
        if target == "names.parse":
            report = fz.run_names(inputs, seed)
        else:
            report = fz.run_events(inputs, seed)
    except Exception as exc:  # noqa: BLE001 - the point of the run: report any escape
        report, failure = None, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    out = {
        "target": target,
        "seed": seed,
        "inputs": report.inputs if report else None,
        "seconds": round(seconds, 2),
        "per_second": round(inputs / seconds) if seconds else None,
        "failures": 0 if failure is None else 1,
        "failure": failure,
    }
    if report:
        out["outcomes"] = dict(report.outcomes)
        out["kinds"] = dict(report.kinds)
        out["distinct_reasons"] = len(report.reasons)
    return out


def _replay_failure(target: str, inputs: int, seed: int) -> str:
    """The input that broke a rule, found again by replaying the seed."""
    rng = random.Random(seed)
    make = fz.hostile_name if target == "names.parse" else fz.hostile_event
    check = fz.check_name if target == "names.parse" else fz.check_service
    for _ in range(inputs):
        candidate = make(rng)
        try:
            check(candidate)
        except Exception:  # noqa: BLE001 - whatever broke the run
            return repr(candidate)[:2000]
    return "(not reproduced)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python bench/bench_fuzz.py --inputs 100000 --seeds 1,2,3,4",
    )
    parser.add_argument(
        "--inputs", type=int, default=100_000, help="inputs per target and seed (default 100,000)"
    )
    parser.add_argument(
        "--seeds", default="1", help="comma-separated seeds; each runs both targets (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error("--seeds: comma-separated integers, e.g. 1,2,3")
    if args.inputs < 1 or not seeds:
        parser.error("--inputs must be at least 1, and at least one seed is needed")
    # The service logs one line per event; at 100,000 events that is noise, not a result.
    logging.getLogger("retier").setLevel(logging.CRITICAL)

    runs = [
        _run(target, args.inputs, seed)
        for seed in seeds
        for target in ("names.parse", "events + service")
    ]
    for r in runs:
        if r["failure"]:
            r["input"] = _replay_failure(r["target"], args.inputs, r["seed"])
    ok = not any(r["failures"] for r in runs)
    if args.json:
        print(json.dumps({"runs": runs, "pass": ok}, indent=2))
        return 0 if ok else 1
    head = f"{'target':<17} {'seed':>4} {'inputs':>9} {'seconds':>8} {'inputs/s':>9} {'failures':>8}  outcomes"
    print(head)
    print("-" * len(head))
    for r in runs:
        summary = r.get("outcomes") or r.get("kinds") or {}
        if r["target"] == "names.parse":
            recognised = sum(v for k, v in summary.items() if k != "unknown")
            summary = {"recognised": recognised, "unknown": summary.get("unknown", 0)}
        else:
            summary = dict(summary, distinct_reasons=r.get("distinct_reasons"))
        print(
            f"{r['target']:<17} {r['seed']:>4} {r['inputs'] or 0:>9,} {r['seconds']:>8.1f}"
            f" {r['per_second'] or 0:>9,} {r['failures']:>8}  "
            + ", ".join(f"{k} {v:,}" for k, v in summary.items())
        )
        if r["failure"]:
            print(f"  FAILED: {r['failure']}\n  input: {r['input']}")
    total = sum(r["inputs"] or 0 for r in runs)
    print(
        f"\n{'PASS' if ok else 'FAIL'}: {total:,} inputs, {sum(r['failures'] for r in runs)} failures"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
