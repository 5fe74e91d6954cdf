"""The `retier` command line: the same modules the Function uses, for operators and local runs."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone

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


def _read_text(path: str) -> str:
    """A file's text, or standard input's for "-"."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _read_json(path: str):
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _service():
    from retier.service import RetierService
    from retier.settings import load_settings
    from retier.storage import BlobStore

    settings = load_settings(allow_duplicity_env=True)  # the CLI may use duplicity's AZURE_CONNECTION_STRING
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


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Progress:
    """One self-rewriting line on stderr: blobs listed, moved, bytes, rate, ETA (when it can be known)."""

    def __init__(self, container: str, enabled: bool):
        self.container = container
        self.enabled = enabled
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, plan, applied) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        planned = plan.moves
        done = applied.done if applied else None
        rate = plan.listed / elapsed
        line = f"\r{self.container}: listed {plan.listed:,} blobs ({rate:,.0f}/s)"
        if done is not None:
            move_rate = done.count / elapsed
            line += f" | moved {done.count:,}/{planned.count:,} ({_human_bytes(done.bytes)}, {move_rate:,.0f}/s)"
            left = planned.count - done.count
            # The total is only known once the listing has gone past every blob: until then the
            # ETA is for the moves planned so far.
            if move_rate > 0 and left > 0:
                line += f" | ETA {left / move_rate:,.0f}s for planned"
        sys.stderr.write(line[:200].ljust(120))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")


def _print_report(report) -> None:
    from datetime import datetime, timezone

    out = sys.stdout.write
    if report.held:
        out(f"{report.container}: on restore hold ({report.held}); left alone\n")
        return
    if report.error:
        out(f"{report.container}: stopped: {report.error}\n")
        if not report.plan:
            return
    plan = report.plan
    out(f"{report.container}: {plan.listed:,} blobs listed{' (dry run: nothing changed)' if report.dry_run else ''}\n")
    out(f"  {'kind':<11} {'tier before -> after':<22} {'blobs':>10} {'bytes':>10}\n")
    for (kind, before, after), tally in sorted(plan.rows.items()):
        change = f"{before} -> {after}" if before != after else f"{before} (kept)"
        out(f"  {kind:<11} {change:<22} {tally.count:>10,} {_human_bytes(tally.bytes):>10}\n")
    moves = plan.moves
    out(f"  {'to move' if report.dry_run else 'planned'}: {moves.count:,} blobs, {_human_bytes(moves.bytes)}\n")
    if plan.unknown.count:
        out(f"  not duplicity objects (never touched): {plan.unknown.count:,} blobs, {_human_bytes(plan.unknown.bytes)}\n")
    now = datetime.now(timezone.utc)
    for u in plan.unfinished:
        age = u.age_days(now)
        hint = " (abandoned? `duplicity cleanup` removes it)" if age is not None and age > 2 else " (a backup may be running)"
        age_text = f"{age:.1f} days old" if age is not None else "age unknown"
        out(f"  unfinished set {u.label}: {u.volumes} volume(s), {_human_bytes(u.bytes)}, {age_text}{hint}\n")
    if report.applied:
        a = report.applied
        out(f"  moved {a.done.count:,} blobs ({_human_bytes(a.done.bytes)}) in {report.seconds:.1f}s"
            f"; gone {a.gone}, skipped {a.skipped}, failed {a.failed}"
            + (f"; {a.retried} tier change(s) sent again after transient failures" if a.retried else "") + "\n")
        for f in a.failures:
            out(f"    failed: {f['name']}: {f['outcome']} HTTP {f['status']} {f['code'] or ''} {f['error'] or ''}\n")
        if a.failed > len(a.failures):
            out(f"    ... and {a.failed - len(a.failures)} more\n")


def cmd_sweep(args: argparse.Namespace) -> int:
    from retier.sweep import sweep_container

    service = _service()
    containers = args.container or sorted(service.settings.containers)
    if not containers:
        raise UsageError("name a container with --container (or set RETIER_CONTAINERS)")
    reports = []
    for container in containers:
        progress = Progress(container, enabled=not args.json and not args.no_progress and sys.stderr.isatty())
        report = sweep_container(service.store, container, service.settings, dry_run=args.dry_run,
                                 workers=args.workers, progress=progress)
        progress.close()
        reports.append(report)
        if not args.json:
            _print_report(report)
    if args.json:
        _print_json({"dry_run": args.dry_run, "containers": [r.to_dict() for r in reports]})
    if any(r.error and not r.transient for r in reports):
        return EXIT_USAGE  # e.g. no such container: retrying will not help
    return EXIT_OK if all(r.ok for r in reports) else EXIT_RETRY


def _restore_plan(args, service):
    from retier.restore import parse_required_volumes, parse_time, plan_restore

    at = parse_time(args.time) if args.time else None
    volume_names = parse_required_volumes(_read_text(args.volumes_from)) if args.volumes_from else None
    return plan_restore(service.store, args.container, service.settings, at=at, volume_names=volume_names, prefix=args.prefix)


def _restore_options(args) -> list[str]:
    """The options that chose a restore plan, for the next command to choose the same one."""
    options = []
    if args.time:
        options += ["--time", shlex.quote(args.time)]
    if args.prefix is not None:
        options += ["--prefix", shlex.quote(args.prefix)]
    if args.volumes_from:
        options += ["--volumes-from", "FILE" if args.volumes_from == "-" else shlex.quote(args.volumes_from)]
    return options


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}" if value >= 0.01 or value == 0 else f"<0.01 {currency}"


def _print_plan(plan, prices) -> None:
    out = sys.stdout.write
    states = plan.by_state()
    out(f"{plan.container}: restore as of {plan.at.strftime('%Y-%m-%d %H:%M:%S UTC')} from chain {plan.chain}\n")
    out(f"  sets: {len(plan.sets)} ({plan.sets[0]} … {plan.sets[-1]})\n")
    scope = "volumes duplicity listed for this partial restore" if plan.partial else "volumes"
    out(f"  {len(plan.volumes)} {scope}, {_human_bytes(sum(v.size for v in plan.volumes))}: "
        f"{len(states['online'])} online, {len(states['rehydrating'])} rehydrating, {len(states['archived'])} archived\n")
    for v in plan.volumes:
        out(f"    {v.name}  {_human_bytes(v.size)}  {v.tier}{' (' + v.archive_status + ')' if v.archive_status else ''}\n")
    archived = states["archived"]
    if not archived:
        out("  nothing to rehydrate\n" if not states["rehydrating"] else "  rehydration under way: `retier status --wait`\n")
        return
    out(f"  to rehydrate: {len(archived)} volumes, {_human_bytes(sum(v.size for v in archived))}\n")
    for priority in ("Standard", "High"):
        e = plan.estimate(priority, prices)
        out(f"  {priority:<8} ~{_money(e.total, e.currency)} (retrieval {_money(e.retrieval, e.currency)}, "
            f"operations {_money(e.operations, e.currency)}, early deletion {_money(e.early_deletion, e.currency)}); "
            f"{'up to' if priority == 'Standard' else 'about'} {e.hours:.0f} h\n")
    out(f"  prices: {prices.get('region')} {prices.get('redundancy')}, as of {prices.get('as_of')} (override with RETIER_PRICES)\n")


def cmd_restore_plan(args: argparse.Namespace) -> int:
    from retier.costs import load_prices

    service = _service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    if args.json:
        _print_json(plan.to_dict(prices))
    else:
        _print_plan(plan, prices)
    return EXIT_OK


def cmd_rehydrate(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.restore import rehydrate

    service = _service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    archived = plan.by_state()["archived"]
    estimate = plan.estimate(args.priority, prices)
    _print_plan(plan, prices)
    if args.dry_run:
        print(f"dry run: would hold {plan.container} and rehydrate {len(archived)} volumes to {args.to} "
              f"({args.priority}), ~{_money(estimate.total, estimate.currency)}")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("rehydrating costs money: confirm with --yes when not at a terminal")
        answer = input(f"Rehydrate {len(archived)} volumes ({_human_bytes(estimate.bytes)}) to {args.to} with {args.priority} "
                       f"priority for ~{_money(estimate.total, estimate.currency)}? It cannot be cancelled. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done")
            return EXIT_OK
    result = rehydrate(service.store, plan, to=args.to, priority=args.priority)
    print(f"{plan.container}: on restore hold; {result.requested} volumes rehydrating to {args.to} ({args.priority}), "
          f"{result.already_online} already online, {result.already_rehydrating} already rehydrating")
    for f in result.failures:
        print(f"  failed: {f['name']}: {f['outcome']} HTTP {f['status']} {f['code'] or ''}")
    print("next: " + " ".join(["retier status --container", plan.container, *_restore_options(args), "--wait"]))
    return EXIT_RETRY if result.failures else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from retier.restore import wait_until_online

    service = _service()
    plan = _restore_plan(args, service)
    hold = service.store.get_hold(plan.container)
    if args.wait:
        show = sys.stderr.isatty() and not args.json

        def on_poll(p):
            st = p.by_state()
            if show:
                done = len(st["online"])
                bar = "#" * int(30 * done / max(len(p.volumes), 1))
                sys.stderr.write(f"\r[{bar:<30}] {done}/{len(p.volumes)} online, {len(st['rehydrating'])} rehydrating, "
                                 f"{len(st['archived'])} archived; next check in {args.interval:.0f}s ")
                sys.stderr.flush()

        try:
            plan = wait_until_online(service.store, plan, interval=args.interval, on_poll=on_poll)
        except KeyboardInterrupt:
            sys.stderr.write("\ninterrupted\n")
        if show:
            sys.stderr.write("\n")
    states = plan.by_state()
    counts = {k: len(v) for k, v in states.items()}
    if args.json:
        _print_json({"container": plan.container, "hold": hold, "counts": counts, "volumes": plan.to_dict()["volumes"]})
    else:
        print(f"{plan.container}: {counts['online']} online, {counts['rehydrating']} rehydrating, {counts['archived']} archived "
              f"of {len(plan.volumes)} volumes needed; restore hold: {hold or 'none'}")
        if counts["archived"] and not counts["rehydrating"]:
            print("  some volumes are still archived and none is on its way: run `retier rehydrate` first")
        elif not counts["archived"] and not counts["rehydrating"]:
            print("  all online: run duplicity restore now, then `retier release`")
    return EXIT_OK if not counts["rehydrating"] and not counts["archived"] else EXIT_RETRY


def cmd_release(args: argparse.Namespace) -> int:
    from retier.costs import early_deletion, load_prices
    from retier.sweep import sweep_container

    service = _service()
    container = args.container
    hold = service.store.get_hold(container)
    prices = load_prices() if args.now else None  # before anything changes: a bad RETIER_PRICES stops here
    service.store.clear_hold(container)
    print(f"{container}: restore hold {'lifted (' + hold + ')' if hold else 'was not set'}")
    if not args.now:
        print("  the next event or the daily sweep re-tiers the volumes; `retier release --now` does it at once")
        return EXIT_OK
    now = datetime.now(timezone.utc)
    early = []  # fees of the moves out of a tier before its minimum days

    def on_move(move) -> None:
        if fee := early_deletion(move.size, move.current, move.since, now, prices):
            early.append(fee)

    report = sweep_container(service.store, container, service.settings, on_move=on_move)
    _print_report(report)
    if early:
        print(f"note: {len(early)} of these volumes left their tier before its minimum days: "
              f"an early-deletion charge of about {_money(sum(early), prices['currency'])}")
    return EXIT_OK if report.ok else EXIT_RETRY


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
  RETIER_PRICES               a JSON file of your region's prices, for restore-plan's estimates

first time with existing backups:  retier sweep --container backups --dry-run
restoring out of Archive:          retier restore-plan --container backups
"""


class _CommandParser(argparse.ArgumentParser):
    """Subcommand parsers keep their examples' line breaks."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(
        prog="retier",
        description="Move duplicity's backup volumes in Azure Blob Storage to Cold or Archive, "
        "keeping manifests and signatures online.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"retier {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each decision on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

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
    p.add_argument("file", nargs="?", default="-", metavar="FILE|-", help="event file, or - for standard input (default)")
    p.set_defaults(func=cmd_handle_event)

    p = sub.add_parser(
        "sweep",
        help="retier the backups already in a container, and repair what events missed",
        description="List each container once and make the Function's decisions over every blob: volumes of finished "
        "sets go to RETIER_VOLUME_TIER, metadata only if RETIER_METADATA_TIER asks, unfinished sets and unrecognised "
        "names are reported and never touched, nothing moves warmer, a container on restore hold is left alone. "
        "Exit 0 when all is done, 1 when some blobs failed (listed at the end), 2 for bad usage.",
        epilog="examples:\n  retier sweep --container backups --dry-run      # see the plan first; changes nothing\n"
        "  retier sweep --container backups\n  retier sweep --container a --container b --json",
    )
    p.add_argument("--container", action="append", help="a container to sweep (repeatable; default: RETIER_CONTAINERS)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--workers", type=int, default=4, help="batches in flight (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_sweep)

    def restore_args(p):
        p.add_argument("--container", required=True)
        p.add_argument("--time", help="restore as of this time, as duplicity's --time takes it (default: latest)")
        p.add_argument("--prefix", default=None, help="the --file-prefix of the backup, when a container holds several")
        p.add_argument("--volumes-from", metavar="FILE|-",
                       help="output of `duplicity restore --dry-run …`: only the volumes it lists as required")

    p = sub.add_parser(
        "restore-plan",
        help="which volumes a restore needs, what rehydrating them costs and how long it takes",
        description="The backup chain duplicity restores from as of --time (default: latest), every volume it needs with "
        "size and tier, the bytes still in Archive, and the estimated cost (retrieval, read operations, early deletion) "
        "and time for Standard and High priority. Changes nothing.",
        epilog="examples:\n  retier restore-plan --container backups\n"
        "  duplicity restore --dry-run --path-to-restore docs/a.txt azure://backups /tmp/x > need.txt\n"
        "  retier restore-plan --container backups --volumes-from need.txt --json",
    )
    restore_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore_plan)

    p = sub.add_parser(
        "rehydrate",
        help="put the container on restore hold and bring the planned volumes back online in place",
        description="Puts the container on restore hold (so the event handler, sweep and timer leave it alone), then "
        "changes the tier of the planned archived volumes in place (same names), batched. Shows the cost and asks "
        "for confirmation unless --yes. Rehydration cannot be cancelled once requested.",
        epilog="examples:\n  retier rehydrate --container backups --dry-run\n"
        "  retier rehydrate --container backups --priority High --yes",
    )
    restore_args(p)
    p.add_argument("--priority", choices=("Standard", "High"), default="Standard",
                   help="Standard: up to 15 h; High: usually under 1 h, costs more (default Standard)")
    p.add_argument("--to", choices=("Hot", "Cool", "Cold"), default="Hot",
                   help="online tier to bring volumes to (default Hot: no read charge, no early deletion when re-archived)")
    p.add_argument("--dry-run", action="store_true", help="show what would be done and what it costs")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_rehydrate)

    p = sub.add_parser(
        "status",
        help="how many of the needed volumes are online, rehydrating, archived (exit 0 only when all online)",
        description="Among the volumes the restore needs: how many are online, rehydrating, still archived. "
        "Exit 0 only when all are online, 1 otherwise. --wait polls until they are.",
        epilog="examples:\n  retier status --container backups\n  retier status --container backups --wait --interval 300",
    )
    restore_args(p)
    p.add_argument("--wait", action="store_true", help="poll until all are online (Ctrl-C to stop)")
    p.add_argument("--interval", type=float, default=300.0, help="seconds between checks with --wait (default 300)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "release",
        help="lift the restore hold; the next sweep re-archives (or --now)",
        description="Lift the container's restore hold. The next event or the daily sweep moves the volumes back to "
        "RETIER_VOLUME_TIER; --now sweeps at once and warns when that pays an early-deletion charge.",
        epilog="examples:\n  retier release --container backups\n  retier release --container backups --now",
    )
    p.add_argument("--container", required=True)
    p.add_argument("--now", action="store_true", help="re-tier the container right away")
    p.set_defaults(func=cmd_release)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from retier.costs import PriceError
    from retier.restore import RestoreError
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
    except (UsageError, SettingsError, RestoreError, PriceError) as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_RETRY if exc.transient else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
