#!/usr/bin/env python3
"""Load: a burst of 10,000 BlobCreated events, 16 deliveries at a time, to the Function's entry point on Azurite.

40 backup sets of 248 volumes, each with its signatures and manifest (10,000 blobs), in
duplicity's order: a set's volumes, its signatures, then its manifest. The volumes and
signatures are seeded into a private Azurite's store (bench/seeded_azurite.py: uploading them
would take most of the run); each manifest is uploaded just before its event is delivered, so
no event ever arrives before its blob exists and a set is finished only from its manifest's
moment on, as in a real backup. faultbed's EventGridStandIn delivers the events with 16 in
flight to the Function's entry point (retier.functions.handle_grid_event with an
azure.functions.EventGridEvent), on one RetierService whose client counts every request
(retier.metering.CountingTransport), as one worker process would.

Delivery modes, each in a fresh child process with its own Azurite (the first two by default):

- all: every event (10,000), as a subscription without a filter sends them;
- manifests: only the 40 manifests' events, as the deployment's filter
  (subject StringContains .manifest) sends them;
- backlog: every event, but every blob (manifests too) already in storage when the burst
  starts, as when Event Grid redelivers the backlog of a Function that was down.

Reported per mode: events delivered and lost (not handled or ignored: must be 0), sets left
wrong after the burst (must be 0), handling time per event (p50, p99), HTTP round trips and
billable transactions per volume, Set Blob Tier sub-requests per volume, and peak RSS.

    bench/run_load
    AZURITE_BIN=.tools/node_modules/.bin/azurite-blob python bench/bench_load.py --json

Exit status: 0 when no event was lost and no set left wrong in any mode, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "bench"))

MODES = ("all", "manifests", "backlog")
START = datetime(2024, 3, 1, 2, 3, 4, tzinfo=timezone.utc)


def stamp(k: int) -> str:
    return (START + timedelta(days=k)).strftime("%Y%m%dT%H%M%SZ")


def backup_sets(sets: int, volumes: int) -> list[tuple[list[str], str, str]]:
    """(volumes, signatures, manifest) of each set, oldest first."""
    return [
        (
            [f"duplicity-full.{stamp(k)}.vol{i}.difftar.gpg" for i in range(1, volumes + 1)],
            f"duplicity-full-signatures.{stamp(k)}.sigtar.gpg",
            f"duplicity-full.{stamp(k)}.manifest.gpg",
        )
        for k in range(sets)
    ]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- one mode, in a child process --------------------------------------------------------------------
def child(mode: str, args) -> dict:
    import requests
    from azure.storage.blob import BlobServiceClient
    from requests.adapters import HTTPAdapter
    from seeded_azurite import SeededAzurite

    from faultbed.eventgrid import (
        MANIFESTS_ONLY,
        EventGridStandIn,
        function_endpoint,
        serving,
    )
    from retier.emulate import blob_created_event
    from retier.metering import CountingTransport, Meter
    from retier.service import RetierService
    from retier.settings import Connection, load_settings
    from retier.storage import BlobItem, BlobStore

    logging.disable(logging.WARNING)
    sets = backup_sets(args.sets, args.volumes)
    # The manifests land during the burst, just before their events; in a backlog, before it.
    seeded = [
        (n, None)
        for vols, sigs, manifest in sets
        for n in [*vols, sigs, *([manifest] if mode == "backlog" else [])]
    ]
    container = "load"
    with SeededAzurite(args.azurite_bin, container, seeded) as azurite:
        conn = azurite.connection_string
        admin = BlobStore.from_connection(Connection(connection_string=conn))
        uploads = BlobServiceClient.from_connection_string(conn).get_container_client(container)
        # One client for all deliveries, as a worker process has; a pool as large as the
        # concurrency so no connection is thrown away between requests.
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_maxsize=args.concurrency))
        meter = Meter()
        store = BlobStore.from_connection(
            Connection(connection_string=conn),
            transport=CountingTransport(meter, session=session, session_owner=False),
        )
        settings = load_settings({"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": args.tier})
        service = RetierService(settings, store)

        listed = {item.name: item for item in admin.list_blobs(container)}
        now = datetime.now(timezone.utc)
        events, manifests = [], {}
        for vols, sigs, manifest in sets:
            for name in [*vols, sigs]:
                item = listed[name]
                url = admin.blob_url(container, name)
                events.append(
                    blob_created_event(
                        account=admin.account_name, container=container, item=item, url=url
                    )
                )
            item = listed.get(manifest) or BlobItem(
                manifest, 0, "Hot", True, None, now, None, now, None
            )
            url = admin.blob_url(container, manifest)
            event = blob_created_event(
                account=admin.account_name, container=container, item=item, url=url
            )
            if mode != "backlog":
                manifests[event["id"]] = manifest
            events.append(event)

        def create_blob(delivery) -> None:
            """The manifest lands just before its event goes out (duplicity uploads it last)."""
            name = manifests.get(delivery.event["id"])
            if name:
                body = b"duplicity manifest " + name.encode()
                sent = uploads.get_blob_client(name).upload_blob(body)
                delivery.event["data"].update(eTag=sent["etag"], contentLength=len(body))

        stand_in = EventGridStandIn(
            function_endpoint(),
            concurrency=args.concurrency,
            subject_filter=MANIFESTS_ONLY if mode == "manifests" else None,
            before_delivery=create_blob,
        )
        rss_before = rss_mb()
        stand_in.publish(events)
        started = time.perf_counter()
        with serving(service):
            report = stand_in.run()
        seconds = time.perf_counter() - started
        rss_peak = rss_mb()

        # The end state, listed apart from the metered client.
        wrong_sets = 0
        tiers = {item.name: item.tier for item in admin.list_blobs(container)}
        for vols, sigs, manifest in sets:
            ok = all(tiers.get(v) == args.tier for v in vols)
            ok = ok and tiers.get(sigs) == "Hot" and tiers.get(manifest) == "Hot"
            wrong_sets += not ok
        unexpected = len(tiers) - sum(len(vols) + 2 for vols, _, _ in sets)
        ends = report.ends()
        times_ms = [s * 1000 for s in report.handling_seconds()]
        total_volumes = args.sets * args.volumes
        # Every request bills one transaction, a batch one more per sub-request.
        subrequests = meter.billable - meter.round_trips
        return {
            "mode": mode,
            "published": len(events),
            "delivered": len(report.deliveries),
            "filtered": report.filtered,
            "ends": dict(ends),
            "lost": len(report.unended) + len(report.dead_lettered),
            "failed_attempts": report.to_dict()["failed_attempts"],
            "wrong_sets": wrong_sets,
            "unexpected_blobs": unexpected,
            "sets": args.sets,
            "volumes": total_volumes,
            "p50_ms": round(percentile(times_ms, 0.50), 2),
            "p99_ms": round(percentile(times_ms, 0.99), 2),
            "mean_ms": round(statistics.fmean(times_ms), 2),
            "round_trips": meter.round_trips,
            "billable": meter.billable,
            "by_operation": dict(meter.by_operation),
            "set_tier_subrequests": subrequests + meter.by_operation.get("set-tier", 0),
            "round_trips_per_volume": round(meter.round_trips / total_volumes, 4),
            "billable_per_volume": round(meter.billable / total_volumes, 4),
            "seconds": round(seconds, 1),
            "events_per_s": round(len(report.deliveries) / seconds, 1),
            "rss_before_mb": round(rss_before, 1),
            "rss_peak_mb": round(rss_peak, 1),
            "seed_seconds": round(azurite.seconds, 1),
        }


# -- the parent --------------------------------------------------------------------------------------
def run_child(mode: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--sets",
        str(args.sets),
        "--volumes",
        str(args.volumes),
        "--concurrency",
        str(args.concurrency),
        "--tier",
        args.tier,
    ]
    env = dict(os.environ, AZURITE_BIN=args.azurite_bin)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"FAIL: the {mode} run crashed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def print_table(result: dict) -> None:
    rows = result["modes"]
    first = rows[0]
    print(
        f"{first['sets']} sets x {first['volumes'] // first['sets']} volumes, signatures and "
        f"manifests ({first['published']} BlobCreated events), {result['concurrency']} deliveries "
        f"in flight, volumes to {result['tier']}\n"
    )
    columns = [
        ("mode", "mode", "{}"),
        ("delivered", "delivered", "{}"),
        ("lost", "lost", "{}"),
        ("wrong sets", "wrong_sets", "{}"),
        ("p50 ms", "p50_ms", "{:.1f}"),
        ("p99 ms", "p99_ms", "{:.1f}"),
        ("trips/vol", "round_trips_per_volume", "{:.4f}"),
        ("billable/vol", "billable_per_volume", "{:.4f}"),
        ("tier/vol", "tier_per_volume", "{:.3f}"),
        ("wall s", "seconds", "{:.0f}"),
        ("RSS MB", "rss_peak_mb", "{:.0f}"),
    ]
    for row in rows:
        row["tier_per_volume"] = row["set_tier_subrequests"] / row["volumes"]
    print("".join(f"{title:>13}" for title, _, _ in columns))
    for row in rows:
        print("".join(f"{fmt.format(row[key]):>13}" for _, key, fmt in columns))
    print()
    for row in rows:
        print(
            f"{row['mode']}: requests {row['by_operation']}, "
            f"ends {row['ends']}, failed attempts {row['failed_attempts']}, "
            f"{row['events_per_s']} events/s, Azurite seeded in {row['seed_seconds']} s"
        )
    print("\n" + ("PASS" if result["ok"] else "FAIL") + ": no event lost and no set left wrong")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: AZURITE_BIN=.tools/node_modules/.bin/azurite-blob python bench/bench_load.py --modes manifests",
    )
    parser.add_argument("--sets", type=int, default=40, help="backup sets (default 40)")
    parser.add_argument(
        "--volumes", type=int, default=248, help="volumes per set (default 248: 10,000 blobs)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight (16)")
    parser.add_argument("--tier", default="Cold", help="RETIER_VOLUME_TIER (default Cold)")
    parser.add_argument(
        "--modes",
        default="all,manifests",
        help="all, manifests, backlog (default all,manifests; backlog alone takes about 25 min)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.azurite_bin = os.environ.get("AZURITE_BIN", "")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.sets < 1 or args.volumes < 1 or args.concurrency < 1 or set(modes) - set(MODES):
        parser.error(
            "--sets, --volumes and --concurrency must be positive; --modes: all, manifests"
        )
    if not args.azurite_bin:
        parser.error("set AZURITE_BIN to Azurite's azurite-blob (bench/run_load does)")
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    rows = []
    for mode in modes:
        print(f"{mode}: seeding Azurite and delivering the burst", file=sys.stderr, flush=True)
        rows.append(run_child(mode, args))
    ok = all(r["lost"] == 0 and r["wrong_sets"] == 0 and not r["unexpected_blobs"] for r in rows)
    result = {"ok": ok, "concurrency": args.concurrency, "tier": args.tier, "modes": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
