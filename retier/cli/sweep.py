"""`retier sweep`: the event handler's decisions over whole containers, with progress and a report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone

from retier.cli.common import (
    EXIT_OK,
    EXIT_RETRY,
    EXIT_USAGE,
    UsageError,
    human_bytes,
    make_service,
    print_json,
)

# retier.sweep's log line for a container whose sweep stopped (the report prints the same).
STOP_LOG_MESSAGE = "sweep of %s stopped: %s"


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
            line += f" | moved {done.count:,}/{planned.count:,} ({human_bytes(done.bytes)}, {move_rate:,.0f}/s)"
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


def print_report(report) -> None:

    out = sys.stdout.write
    if report.held:
        out(f"{report.container}: on restore hold ({report.held}); left alone\n")
        return
    if report.error:
        out(f"{report.container}: stopped: {report.error}\n")
        if not report.plan:
            return
    plan = report.plan
    out(
        f"{report.container}: {plan.listed:,} blobs listed{' (dry run: nothing changed)' if report.dry_run else ''}\n"
    )
    out(f"  {'kind':<11} {'tier before -> after':<22} {'blobs':>10} {'bytes':>10}\n")
    for (kind, before, after), tally in sorted(plan.rows.items()):
        change = f"{before} -> {after}" if before != after else f"{before} (kept)"
        out(f"  {kind:<11} {change:<22} {tally.count:>10,} {human_bytes(tally.bytes):>10}\n")
    moves = plan.moves
    out(
        f"  {'to move' if report.dry_run else 'planned'}: {moves.count:,} blobs, {human_bytes(moves.bytes)}\n"
    )
    if plan.early_deletion.count:
        _print_early_deletion(plan, out, report.dry_run)
    if plan.unknown.count:
        out(
            f"  not duplicity objects (never touched): {plan.unknown.count:,} blobs, {human_bytes(plan.unknown.bytes)}\n"
        )
    now = datetime.now(timezone.utc)
    for u in plan.unfinished:
        age = u.age_days(now)
        hint = (
            " (abandoned? `duplicity cleanup` removes it)"
            if u.abandoned(now)
            else " (a backup may be running)"
        )
        age_text = f"{age:.1f} days old" if age is not None else "age unknown"
        out(
            f"  unfinished set {u.label}: {u.volumes} volume(s), {human_bytes(u.bytes)}, {age_text}{hint}\n"
        )
    if report.applied:
        a = report.applied
        out(
            f"  moved {a.done.count:,} blobs ({human_bytes(a.done.bytes)}) in {report.seconds:.1f}s"
            f"; gone {a.gone}, skipped {a.skipped}, failed {a.failed}"
            + (
                f"; {a.retried} tier change(s) sent again after transient failures"
                if a.retried
                else ""
            )
            + "\n"
        )
        for f in a.failures:
            out(
                f"    failed: {f['name']}: {f['outcome']} HTTP {f['status']} {f['code'] or ''} {f['error'] or ''}\n"
            )
        if a.failed > len(a.failures):
            out(f"    ... and {a.failed - len(a.failures)} more\n")


def _print_early_deletion(plan, out, dry_run: bool) -> None:
    """The Cool-then-Archive trap: moves out of an explicitly set tier before its minimum days."""
    from retier.costs import format_money

    ed = plan.early_deletion
    out(
        f"  early deletion: {ed.count:,} of these moves leave a tier set less than its minimum days "
        f"ago (Cool 30, Cold 90): {'would be' if dry_run else 'is'} charged "
        f"~{format_money(plan.early_deletion_charge, plan.currency)}\n"
    )
    shown = plan.early_deletion_moves[:5]
    for m in shown:
        age = (datetime.now(timezone.utc) - m.since).total_seconds() / 86400 if m.since else 0
        out(
            f"    {m.name}: {m.current} for {age:.1f} days -> {m.target}, "
            f"~{format_money(m.early_deletion, plan.currency)}\n"
        )
    if ed.count > len(shown):
        out(
            f"    ... and {ed.count - len(shown):,} more (`retier cost --container` names the sets)\n"
        )


class _StopSaidOnStdout(logging.Filter):
    """The sweep logs a stop for the Function's log; here the report already prints it: once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != STOP_LOG_MESSAGE


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep_log = logging.getLogger("retier.sweep")
    said_once = _StopSaidOnStdout()
    sweep_log.addFilter(said_once)
    try:
        return _sweep(args)
    finally:
        sweep_log.removeFilter(said_once)


def _sweep(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.sweep import sweep_container

    service = make_service()
    prices = load_prices()  # prices the early-deletion charge of the plan; a bad file stops here
    containers = args.container or sorted(service.settings.containers)
    if not containers:
        raise UsageError("name a container with --container (or set RETIER_CONTAINERS)")
    reports = []
    for container in containers:
        if (
            not args.dry_run
            and not args.yes
            and not _charges_accepted(args, service, container, prices)
        ):
            continue
        progress = Progress(
            container, enabled=not args.json and not args.no_progress and sys.stderr.isatty()
        )
        report = sweep_container(
            service.store,
            container,
            service.settings,
            dry_run=args.dry_run,
            workers=args.workers,
            progress=progress,
            prices=prices,
        )
        progress.close()
        reports.append(report)
        if not args.json:
            print_report(report)
    if args.json:
        print_json({"dry_run": args.dry_run, "containers": [r.to_dict() for r in reports]})
    if any(r.error and not r.transient for r in reports):
        return EXIT_USAGE  # e.g. no such container: retrying will not help
    return EXIT_OK if all(r.ok for r in reports) else EXIT_RETRY


def _charges_accepted(args, service, container: str, prices: dict) -> bool:
    """Money is spent only when the user said so: a move charged an early deletion is asked for
    (as rehydrate asks), refused without --yes when no one is at a terminal.

    Finding out takes a dry run first (one listing more; --yes skips it). The answer covers the
    moves that dry run found; the sweep that follows moves what it finds then.
    """
    from retier.costs import format_money
    from retier.sweep import sweep_container

    plan = sweep_container(
        service.store, container, service.settings, dry_run=True, prices=prices
    ).plan
    if plan is None or not plan.early_deletion.count:
        return True  # nothing charged (or an error the sweep itself will report)
    charge = format_money(plan.early_deletion_charge, plan.currency)
    what = (
        f"{container}: {plan.early_deletion.count:,} of the planned moves leave a tier before its "
        f"minimum days and are charged an early deletion of ~{charge}"
    )
    if not sys.stdin.isatty():
        raise UsageError(
            f"{what}: confirm with --yes when not at a terminal (or wait until their minimum "
            "days are over; `retier sweep --dry-run` lists them)"
        )
    out = sys.stderr.write
    _print_early_deletion(plan, out, dry_run=True)
    answer = input(f"{what}. Move them now? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    print(f"{container}: nothing done (the charged moves wait; `retier sweep --yes` makes them)")
    return False


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="retier the backups already in a container, and repair what events missed",
        description="List each container once and make the Function's decisions over every blob: volumes of finished "
        "sets go to RETIER_VOLUME_TIER, metadata only if RETIER_METADATA_TIER asks, unfinished sets and unrecognised "
        "names are reported and never touched, nothing moves warmer, a container on restore hold is left alone. "
        "A move charged an early deletion (a tier left before its minimum days) is asked for first; --yes skips "
        "the question, and without a terminal the sweep refuses such moves unless --yes. "
        "Exit 0 when all is done, 1 when some blobs failed (listed at the end), 2 for bad usage.",
        epilog="examples:\n  retier sweep --container backups --dry-run      # see the plan first; changes nothing\n"
        "  retier sweep --container backups\n  retier sweep --container a --container b --json",
    )
    p.add_argument(
        "--container",
        action="append",
        help="a container to sweep (repeatable; default: RETIER_CONTAINERS)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument(
        "--yes",
        action="store_true",
        help="make moves that are charged an early deletion without asking (asked otherwise; "
        "refused without --yes when not at a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--workers", type=int, default=4, help="batches in flight (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_sweep)
