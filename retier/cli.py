"""The `retier` command line: the same modules the Function uses, for operators and local runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from retier import __version__, events, names

EXIT_OK = 0
EXIT_RETRY = 1  # something failed that a retry could fix
EXIT_USAGE = 2  # bad usage or bad input


class UsageError(Exception):
    """Bad arguments or input: exit code 2 with a one-line message."""


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")


def cmd_classify(args: argparse.Namespace) -> int:
    for blob_name in args.names:
        _print_json(names.parse(blob_name).to_dict())
    return EXIT_OK


def _read_json(path: str):
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _service(allow_duplicity_env: bool = True):
    from retier.service import RetierService
    from retier.settings import load_settings
    from retier.storage import BlobStore

    settings = load_settings(allow_duplicity_env=allow_duplicity_env)
    return RetierService(settings, BlobStore.from_connection(settings.require_connection()))


def cmd_handle_event(args: argparse.Namespace) -> int:
    from retier.service import INVALID, RETRY

    try:
        batch = events.parse_events(_read_json(args.file))
    except events.InvalidEvent as exc:
        raise UsageError(f"{args.file}: {exc.reason}") from None
    service = _service()
    statuses = set()
    for event in batch:
        outcome = service.handle_event(event)
        _print_json(outcome.to_dict())
        statuses.add(outcome.status)
    if INVALID in statuses:
        return EXIT_USAGE
    return EXIT_RETRY if RETRY in statuses else EXIT_OK


def cmd_emit_events(args: argparse.Namespace) -> int:
    from retier.emulate import events_for

    service = _service()
    items = list(service.store.list_blobs(args.container, args.prefix))
    batch = events_for(service.store, args.container, items)
    json.dump(batch, sys.stdout, indent=2 if args.pretty else None)
    sys.stdout.write("\n")
    return EXIT_OK


EPILOG = """\
settings come from the environment (the same RETIER_* names the Function app uses):
  RETIER_STORAGE              connection string (or RETIER_STORAGE__blobServiceUri for an identity);
                              the CLI falls back to duplicity's AZURE_CONNECTION_STRING
  RETIER_VOLUME_TIER          Cold (default), Cool or Archive
  RETIER_METADATA_TIER        unset (metadata stays as uploaded), Hot, Cool or Cold
  RETIER_CONTAINERS           comma-separated allow-list of containers (unset: any)
  RETIER_FILE_PREFIX_ARCHIVE / RETIER_FILE_PREFIX_MANIFEST
                              duplicity's --file-prefix-archive / --file-prefix-manifest, if used
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retier",
        description="Move duplicity's backup volumes in Azure Blob Storage to Cold or Archive, "
        "keeping manifests and signatures online.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"retier {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each decision on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "classify",
        help="say what duplicity object each blob name is (JSON lines)",
        description="Print one JSON object per name: kind (volume, manifest, signatures, jsonstat, unknown), type (full/inc), times, volume, prefix.",
        epilog="example:\n  retier classify duplicity-full.20240101T020304Z.vol1.difftar.gpg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="event file, or - for standard input (default)")
    p.set_defaults(func=cmd_handle_event)

    p = sub.add_parser(
        "emit-events",
        help="print the BlobCreated events Azure would send for a container's blobs (for Azurite, which sends none)",
        description="List a container and print, oldest first, the Event Grid-schema BlobCreated event Azure would "
        "have delivered for each blob. Pipe it to `retier handle-event -`, or POST it to a local Functions host.",
        epilog="example:\n  retier emit-events --container backups | retier handle-event -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--container", required=True)
    p.add_argument("--prefix", default=None, help="only blobs whose names start with this")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_emit_events)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from retier.settings import SettingsError
    from retier.storage import StorageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, SettingsError) as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_RETRY if exc.transient else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
