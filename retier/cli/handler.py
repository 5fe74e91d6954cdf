"""`retier classify`, `handle-event` and `emit-events`: names and events, by hand."""

from __future__ import annotations

import argparse
import json
import sys

from retier import events, names
from retier.cli.common import (
    EXIT_OK,
    EXIT_RETRY,
    EXIT_USAGE,
    UsageError,
    make_service,
    print_json,
    read_json,
)


def cmd_classify(args: argparse.Namespace) -> int:
    for blob_name in args.names:
        print_json(names.parse(blob_name).to_dict())
    return EXIT_OK


def cmd_handle_event(args: argparse.Namespace) -> int:
    from retier.service import INVALID, RETRY

    try:
        batch = events.parse_events(read_json(args.file))
    except events.InvalidEvent as exc:
        raise UsageError(f"{args.file}: {exc.reason}") from None
    service = make_service()
    statuses = set()
    for event in batch:
        outcome = service.handle_event(event)
        print_json(outcome.to_dict())
        statuses.add(outcome.status)
    if INVALID in statuses:
        return EXIT_USAGE
    return EXIT_RETRY if RETRY in statuses else EXIT_OK


def cmd_emit_events(args: argparse.Namespace) -> int:
    from retier.emulate import events_for

    service = make_service()
    items = list(service.store.list_blobs(args.container, args.prefix))
    batch = events_for(service.store, args.container, items)
    json.dump(batch, sys.stdout, indent=2 if args.pretty else None)
    sys.stdout.write("\n")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="say what duplicity object each blob name is (JSON lines)",
        description="Print one JSON object per name: kind (volume, manifest, signatures, jsonstat, unknown), type (full/inc), times, volume, prefix.",
        epilog="example:\n  retier classify duplicity-full.20240101T020304Z.vol1.difftar.gpg",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "handle-event",
        help="run BlobCreated events through exactly the Function's code path",
        description="Read one event or a JSON array of events (Event Grid or CloudEvents 1.0 schema) and handle each "
        "as the Function would, with the RETIER_* settings from the environment. One JSON outcome line per event. "
        "Exit 0 when every event was handled or deliberately ignored, 1 when any failed in a way a retry could fix, "
        "2 for bad usage or input.",
        epilog="examples:\n  retier handle-event event.json\n  retier emit-events --container backups | retier handle-event -",
    )
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE|-",
        help="event file, or - for standard input (default)",
    )
    p.set_defaults(func=cmd_handle_event)

    p = sub.add_parser(
        "emit-events",
        help="print the BlobCreated events Azure would send for a container's blobs (for Azurite, which sends none)",
        description="List a container and print, oldest first, the Event Grid-schema BlobCreated event Azure would "
        "have delivered for each blob. Pipe it to `retier handle-event -`, or POST it to a local Functions host.",
        epilog="example:\n  retier emit-events --container backups | retier handle-event -",
    )
    p.add_argument("--container", required=True)
    p.add_argument("--prefix", default=None, help="only blobs whose names start with this")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_emit_events)
