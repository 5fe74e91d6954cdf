"""`retier bridge`: Event Grid for a local Functions host, from polling containers (Azurite has no events)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from retier.cli.common import EXIT_OK, UsageError, print_json

EXAMPLE = """\
examples:
  # terminal 1: azurite     terminal 2: func start     terminal 3:
  RETIER_STORAGE=UseDevelopmentStorage=true retier bridge --container backups
  # terminal 4: a backup; the bridge prints one line per delivery, `func` logs the function
  AZURE_CONNECTION_STRING=UseDevelopmentStorage=true duplicity full ./data azure://backups

  retier bridge --container backups --from-start          # also send the blobs already there
  retier bridge --container a --container b --prefix host1/ --dead-letter ./dead
"""


def _print_attempt(attempt) -> None:
    from retier.bridge import DEAD, DELIVERED

    status = f"HTTP {attempt.status}" if attempt.status is not None else "no answer"
    line = f"{attempt.container}/{attempt.blob}  {status}  attempt {attempt.attempt}"
    if attempt.outcome == DELIVERED:
        line += "  delivered"
    elif attempt.outcome == DEAD:
        line += "  DEAD: not delivered, gave up"
        if attempt.dead_letter:
            line += f" (dead-lettered to {attempt.dead_letter})"
    else:
        line += f"  retry in {attempt.retry_in:.1f}s"
    if attempt.detail and attempt.outcome != DELIVERED:
        line += f"  ({attempt.detail})"
    if attempt.status == 404 and attempt.attempt == 1:
        line += "  [is `func start` running, with a function of that name?]"
    print(line, flush=True)


def _shown(url: str) -> str:
    """The webhook URL without its key: a deployed function's URL carries `code=<system key>`."""
    parts = urlsplit(url)
    query = "&".join(
        f"{k}=***" if k.lower() == "code" else f"{k}={v}" for k, v in parse_qsl(parts.query)
    )
    return urlunsplit(parts._replace(query=query))


def _summary(bridge) -> str:
    t = bridge.tally
    return (
        f"bridge stopped: {t.polls} poll(s), {t.queued} event(s) queued, {t.delivered} delivered, "
        f"{t.redeliveries} redelivery attempt(s), {t.dead} dead, {len(bridge.pending)} not yet delivered"
    )


def cmd_bridge(args: argparse.Namespace) -> int:
    from retier.bridge import Bridge
    from retier.eventgrid import DEFAULT_MAX_DELIVERY_ATTEMPTS
    from retier.settings import load_settings
    from retier.storage import BlobStore

    if args.interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    if args.backoff_scale < 0:
        raise UsageError("--backoff-scale must be 0 or more (1 is Event Grid's own schedule)")
    if not 1 <= args.max_attempts <= DEFAULT_MAX_DELIVERY_ATTEMPTS:
        raise UsageError(
            f"--max-attempts must be 1 to {DEFAULT_MAX_DELIVERY_ATTEMPTS}, as in Event Grid"
        )
    # Only listing is needed: the connection, not a service (the CLI may use duplicity's variable).
    settings = load_settings(allow_duplicity_env=True)
    store = BlobStore.from_connection(settings.require_connection())
    containers = list(args.container)  # checked by the CLI's parser: never lowered silently

    def report(attempt) -> None:
        if args.json:
            print_json(attempt.to_dict())
            sys.stdout.flush()
        else:
            _print_attempt(attempt)

    bridge = Bridge(
        store,
        containers,
        url=args.to,
        prefix=args.prefix,
        interval=args.interval,
        from_start=args.from_start,
        max_attempts=args.max_attempts,
        backoff_scale=args.backoff_scale,
        dead_letter_dir=Path(args.dead_letter) if args.dead_letter else None,
        on_attempt=report,
    )
    print(
        f"bridge: watching {', '.join(containers)} on {store.account_name}"
        f"{' under ' + args.prefix if args.prefix else ''} every {args.interval:g}s"
        f"{' (existing blobs too)' if args.from_start else ' (new blobs only)'} -> {_shown(args.to)}"
        "; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        bridge.run()
    except KeyboardInterrupt:
        pass
    print(_summary(bridge), file=sys.stderr, flush=True)
    return EXIT_OK


def register(sub) -> None:
    from retier.bridge import DEFAULT_BACKOFF_SCALE, DEFAULT_INTERVAL, WEBHOOK_URL
    from retier.eventgrid import DEFAULT_MAX_DELIVERY_ATTEMPTS

    p = sub.add_parser(
        "bridge",
        help="send the BlobCreated events Azure would, live, to a local Functions host (Azurite has none)",
        description="Poll containers and, for each blob that appears or is replaced (new name or new ETag), POST "
        "the Event Grid-schema BlobCreated event Azure would push, one per request, to the Functions host's Event "
        "Grid webhook. Failed deliveries are retried on Event Grid's back-off (10 s, 30 s, 1 min, 5 min, ...) "
        "multiplied by --backoff-scale, then reported dead. One line per delivery; Ctrl-C stops (exit 0) with a "
        "summary. Each poll costs one List Blobs per 5,000 blobs: narrow a big container with --prefix. "
        "`retier emit-events` stays the one-shot replay.",
        epilog=EXAMPLE,
    )
    p.add_argument(
        "--container", action="append", required=True, help="a container to watch (repeatable)"
    )
    p.add_argument(
        "--to", default=WEBHOOK_URL, metavar="URL", help=f"webhook (default {WEBHOOK_URL})"
    )
    p.add_argument("--prefix", default=None, help="only blobs whose names start with this")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"seconds between polls (default {DEFAULT_INTERVAL:g})",
    )
    p.add_argument(
        "--from-start",
        action="store_true",
        help="also send events for the blobs already there at start (default: only new ones)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_DELIVERY_ATTEMPTS,
        metavar="N",
        help=f"delivery attempts per event, 1-30 (default {DEFAULT_MAX_DELIVERY_ATTEMPTS}, Event Grid's)",
    )
    p.add_argument(
        "--backoff-scale",
        type=float,
        default=DEFAULT_BACKOFF_SCALE,
        metavar="F",
        help=f"multiply Event Grid's retry waits by F (default {DEFAULT_BACKOFF_SCALE:g}: 10 s -> 0.1 s; 1 = Event Grid's own)",
    )
    p.add_argument(
        "--dead-letter",
        metavar="DIR",
        default=None,
        help="write each dead event as Event Grid would dead-letter it: DIR/RETIER-BLOB-CREATED/y/m/d/h/<id>.json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per delivery attempt")
    p.set_defaults(func=cmd_bridge)
