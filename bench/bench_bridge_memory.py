"""What `retier bridge` holds and sends per poll, for containers of 10k, 100k and 1M blobs (no server).

The bridge keeps one name -> ETag per blob it has seen, per container, and each poll lists the
container again: one List Blobs request per 5,000 blobs (the service's page size). This measures
the seen-map after a poll and the peak while a poll compares a fresh listing with it (both maps
are alive then), with tracemalloc. The listing is a generator standing in for a container (it
says so in its name): names from bench/synthetic_backups.py, ETags shaped like Azure's.

    python bench/bench_bridge_memory.py                    # 10k, 100k, 1M blobs
    python bench/bench_bridge_memory.py --sizes 10000 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_backups import backup_history

from retier.bridge import Bridge
from retier.storage import BlobItem

PAGE = 5000  # List Blobs returns at most 5,000 blobs per request
WHEN = datetime(2024, 6, 1, tzinfo=timezone.utc)


class ListingStandIn:
    """Stands in for a container: lists the same synthetic blobs on every poll, counting pages."""

    account_name = "bench"

    def __init__(self, names: list[str]):
        self.names = names
        self.requests = 0

    def blob_url(self, container: str, name: str) -> str:
        return f"https://bench.blob.core.windows.net/{container}/{name}"

    def list_blobs(self, container: str, prefix: str | None = None):
        for i, name in enumerate(self.names):
            if i % PAGE == 0:
                self.requests += 1
            # Fresh strings per listing, as the SDK parses them; ETags like 0x8DC1A2B3C4D5E6F.
            fresh = (name + "/")[:-1]
            yield BlobItem(fresh, 1, "Hot", True, None, WHEN, None, WHEN, f"0x8DC{i:013X}")


def measure(blobs: int) -> dict:
    names = [b.name for b in backup_history(blobs).blobs]
    store = ListingStandIn(names)
    bridge = Bridge(store, ["backups"], transport=lambda *a: None)
    tracemalloc.start()
    bridge.poll()  # the first poll: remembers everything, sends nothing
    first_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    held = tracemalloc.get_traced_memory()[0]
    bridge.poll()  # a steady poll: nothing new
    steady_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not bridge.pending and len(bridge.watches[0].seen) == blobs
    return {
        "blobs": blobs,
        "list_requests_per_poll": math.ceil(blobs / PAGE),
        "seen_mb": round(held / 1e6, 1),
        "bytes_per_blob": round(held / blobs),
        "first_poll_peak_mb": round(first_peak / 1e6, 1),
        "steady_poll_peak_mb": round(steady_peak / 1e6, 1),
        "pages_counted": store.requests // 2,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'blobs':>9} {'List/poll':>9} {'seen MB':>8} {'B/blob':>7} {'1st poll peak MB':>17} {'poll peak MB':>13}"
    )
    for r in rows:
        print(
            f"{r['blobs']:>9,} {r['list_requests_per_poll']:>9,} {r['seen_mb']:>8} {r['bytes_per_blob']:>7}"
            f" {r['first_poll_peak_mb']:>17} {r['steady_poll_peak_mb']:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
