"""Peak memory of retier's own sweep state at 10k, 100k and 1M blobs, with a server-free stand-in listing.

bench_sweep.py measures the whole sweep against Azurite, where the storage SDK's listing page
(5,000 blobs, about 70 MB) sets the floor and Azurite's per-operation cost makes containers
beyond 40,000 blobs take hours to build. This benchmark isolates what retier adds on top of that
page: the planner's per-set state, the batches waiting to be sent, the report. The listing is a
generator standing in for a container (it says so in its name) and tier changes succeed without
a network; everything else is the real `sweep_container`.

    python bench/bench_sweep_memory.py                  # 10k, 100k, 1M blobs, 185 backup sets
    python bench/bench_sweep_memory.py --sizes 10000,100000 --sets 185 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # run from a checkout without installing

from retier.settings import load_settings
from retier.storage import OK, BlobItem, BlobStore, TierResult
from retier.sweep import sweep_container

START = datetime(2024, 1, 1, 2, 0, tzinfo=timezone.utc)


def _t(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


class SyntheticContainerStandIn(BlobStore):
    """Stands in for a real container: lists `blobs` generated on the fly (a set's manifest, then
    its signatures and volumes, as Azure's lexicographic listing puts a manifest before its
    volumes), three of the sets unfinished; tier changes succeed without a server."""

    def __init__(self, blobs: int, sets: int):
        self.blobs, self.sets, self.sent = blobs, sets, 0

    @property
    def account_name(self) -> str:
        return "standin"

    def get_hold(self, container):
        return None

    def list_blobs(self, container, prefix=None):
        per_set = max(1, (self.blobs - 2 * self.sets) // self.sets)
        made, previous = 0, None
        for i in range(self.sets):
            when = START + timedelta(days=i)
            stem = (
                f"duplicity-full.{_t(when)}"
                if i % 7 == 0
                else f"duplicity-inc.{_t(previous)}.to.{_t(when)}"
            )
            sig = (
                f"duplicity-full-signatures.{_t(when)}"
                if i % 7 == 0
                else f"duplicity-new-signatures.{_t(previous)}.to.{_t(when)}"
            ) + ".sigtar.gpg"
            finished = i < self.sets - 3
            volumes = (
                per_set if i < self.sets - 1 else max(0, self.blobs - made - 2)
            )  # the last set takes the rest
            if finished:
                yield BlobItem(f"{stem}.manifest.gpg", 20_000, "Hot", True, None, when, None, when)
            yield BlobItem(sig, 1_000_000, "Hot", True, None, when, None, when)
            for n in range(1, volumes + 1):
                yield BlobItem(
                    f"{stem}.vol{n}.difftar.gpg",
                    200 * 1024 * 1024,
                    "Hot",
                    True,
                    None,
                    when,
                    None,
                    when,
                )
            made += volumes + 1 + finished
            previous = when

    def set_tier(self, container, names, tier, *, rehydrate_priority=None):
        self.sent += len(names)
        return [TierResult(n, tier, OK, 200) for n in names]


def measure(blobs: int, sets: int, workers: int) -> dict:
    store = SyntheticContainerStandIn(blobs, sets)
    settings = load_settings({})
    tracemalloc.start()
    started = time.perf_counter()
    report = sweep_container(store, "standin", settings, workers=workers)
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    plan = report.plan
    if (
        plan.listed < blobs * 0.99
        or store.sent != plan.moves.count
        or report.applied.done.count != plan.moves.count
    ):
        raise SystemExit(
            f"FAIL: {blobs} blobs: listed {plan.listed}, planned {plan.moves.count}, sent {store.sent}"
        )
    if len(plan.unfinished) != 3:
        raise SystemExit(f"FAIL: expected 3 unfinished sets, got {len(plan.unfinished)}")
    return {
        "blobs": plan.listed,
        "sets": sets,
        "moved": report.applied.done.count,
        "heap_peak_mb": round(peak / 1e6, 3),
        "wall_s": round(wall, 2),
        "blobs_per_s": round(plan.listed / wall),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--sets", type=int, default=185)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes takes comma-separated whole numbers")
    rows = [measure(n, args.sets, args.workers) for n in sizes]
    growth = rows[-1]["heap_peak_mb"] / rows[0]["heap_peak_mb"]
    verdict = growth <= 1.5
    if args.json:
        print(json.dumps({"rows": rows, "heap_growth": round(growth, 3), "pass": verdict}))
    else:
        print(
            "retier's own sweep memory (tracemalloc peak; stand-in listing, no SDK page, no server)"
        )
        print(
            f"{'blobs':>9} {'sets':>5} {'moved':>9} {'heap peak MB':>13} {'wall s':>7} {'blobs/s':>8}"
        )
        for r in rows:
            print(
                f"{r['blobs']:>9,} {r['sets']:>5} {r['moved']:>9,} {r['heap_peak_mb']:>13.3f} {r['wall_s']:>7.2f} {r['blobs_per_s']:>8,}"
            )
        print(
            f"{'PASS' if verdict else 'FAIL'}: heap peak at {rows[-1]['blobs']:,} / {rows[0]['blobs']:,} blobs = {growth:.2f}x (limit <= 1.5)"
        )
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
