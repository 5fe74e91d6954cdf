"""`retier restore-plan`, `rehydrate`, `status` and `release`: restoring out of Archive."""

from __future__ import annotations

import argparse
import shlex
import sys

from retier.cli.common import (
    EXIT_OK,
    EXIT_RETRY,
    UsageError,
    human_bytes,
    make_service,
    print_json,
    read_text,
)
from retier.cli.sweep import print_report
from retier.costs import format_money as money


def _restore_plan(args, service):
    from retier.restore import parse_required_volumes, parse_time, plan_restore

    at = parse_time(args.time) if args.time else None
    volume_names = (
        parse_required_volumes(read_text(args.volumes_from)) if args.volumes_from else None
    )
    return plan_restore(
        service.store,
        args.container,
        service.settings,
        at=at,
        volume_names=volume_names,
        prefix=args.prefix,
        with_par2=args.with_par2,
    )


def _restore_options(args) -> list[str]:
    """The options that chose a restore plan, for the next command to choose the same one."""
    options = []
    if args.time:
        options += ["--time", shlex.quote(args.time)]
    if args.prefix is not None:
        options += ["--prefix", shlex.quote(args.prefix)]
    if args.volumes_from:
        options += [
            "--volumes-from",
            "FILE" if args.volumes_from == "-" else shlex.quote(args.volumes_from),
        ]
    if args.with_par2:
        options.append("--with-par2")
    return options


def _print_plan(plan, prices) -> None:
    out = sys.stdout.write
    states = plan.by_state()
    out(
        f"{plan.container}: restore as of {plan.at.strftime('%Y-%m-%d %H:%M:%S UTC')} from chain {plan.chain}\n"
    )
    out(f"  sets: {len(plan.sets)} ({plan.sets[0]} … {plan.sets[-1]})\n")
    scope = "volumes duplicity listed for this partial restore" if plan.partial else "volumes"
    out(
        f"  {len(plan.volumes)} {scope}, {human_bytes(sum(v.size for v in plan.volumes))}: "
        f"{len(states['online'])} online, {len(states['rehydrating'])} rehydrating, {len(states['archived'])} archived\n"
    )
    for v in plan.volumes:
        out(
            f"    {v.name}  {human_bytes(v.size)}  {v.tier}{' (' + v.archive_status + ')' if v.archive_status else ''}\n"
        )
    _print_par2(plan, prices)
    archived = states["archived"]
    if not archived:
        out(
            "  nothing to rehydrate\n"
            if not states["rehydrating"]
            else "  rehydration under way: `retier status --wait`\n"
        )
        return
    out(f"  to rehydrate: {len(archived)} volumes, {human_bytes(sum(v.size for v in archived))}\n")
    for priority in ("Standard", "High"):
        e = plan.estimate(priority, prices)
        out(
            f"  {priority:<8} ~{money(e.total, e.currency)} (retrieval {money(e.retrieval, e.currency)}, "
            f"operations {money(e.operations, e.currency)}, early deletion {money(e.early_deletion, e.currency)}); "
            f"{'up to' if priority == 'Standard' else 'about'} {e.hours:.0f} h\n"
        )
    out(
        f"  prices: {prices.get('region')} {prices.get('redundancy')}, as of {prices.get('as_of')} (override with RETIER_PRICES)\n"
    )


def _print_par2(plan, prices) -> None:
    """For par2+ backups: what the plan includes, and what a repair would need on top."""
    par2 = [v for v in plan.volumes if v.par2]
    left_out = plan.recovery_left_out
    if not par2 and not left_out:
        return
    out = sys.stdout.write
    out(
        f"  par2: {len(par2)} of these are par2 files "
        f"({sum(v.par2 == 'index' for v in par2)} indexes, read with every volume)\n"
    )
    archived = [v for v in left_out if v.state == "archived"]
    if archived:
        e = plan.recovery_estimate("Standard", prices)
        out(
            f"  par2 recovery blocks left archived: {len(archived)} files, "
            f"{human_bytes(sum(v.size for v in archived))}; duplicity reads them only to repair a "
            f"volume that fails its par2 check. --with-par2 brings them back too "
            f"(~{money(e.total, e.currency)} more at Standard priority)\n"
        )


def cmd_restore_plan(args: argparse.Namespace) -> int:
    from retier.costs import load_prices

    service = make_service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    if args.json:
        print_json(plan.to_dict(prices))
    else:
        _print_plan(plan, prices)
    return EXIT_OK


def cmd_rehydrate(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.restore import rehydrate

    service = make_service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    archived = plan.by_state()["archived"]
    estimate = plan.estimate(args.priority, prices)
    _print_plan(plan, prices)
    if args.dry_run:
        print(
            f"dry run: would hold {plan.container} and rehydrate {len(archived)} volumes to {args.to} "
            f"({args.priority}), ~{money(estimate.total, estimate.currency)}"
        )
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("rehydrating costs money: confirm with --yes when not at a terminal")
        answer = input(
            f"Rehydrate {len(archived)} volumes ({human_bytes(estimate.bytes)}) to {args.to} with {args.priority} "
            f"priority for ~{money(estimate.total, estimate.currency)}? It cannot be cancelled. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done")
            return EXIT_OK
    result = rehydrate(service.store, plan, to=args.to, priority=args.priority)
    print(
        f"{plan.container}: on restore hold; {result.requested} volumes rehydrating to {args.to} ({args.priority}), "
        f"{result.already_online} already online, {result.already_rehydrating} already rehydrating"
    )
    if result.pinned:
        # Their set's event has not been handled yet: without an explicit tier a late event
        # could archive them during the restore.
        print(
            f"  {result.pinned} online volumes had never been tiered: set to Hot explicitly, "
            "so the restore hold keeps them online"
        )
    if result.unpinned:
        print(
            f"  {len(result.unpinned)} online volumes had never been tiered and could not be set to Hot "
            "explicitly: a late event may still archive them; `retier status` would show it"
        )
    for f in result.failures:
        print(f"  failed: {f['name']}: {f['outcome']} HTTP {f['status']} {f['code'] or ''}")
    print(
        "next: "
        + " ".join(["retier status --container", plan.container, *_restore_options(args), "--wait"])
    )
    return EXIT_RETRY if result.failures else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from retier.restore import wait_until_online

    service = make_service()
    plan = _restore_plan(args, service)
    hold = service.store.get_hold(plan.container)
    if args.wait:
        show = sys.stderr.isatty() and not args.json

        def on_poll(p):
            st = p.by_state()
            if show:
                done = len(st["online"])
                bar = "#" * int(30 * done / max(len(p.volumes), 1))
                sys.stderr.write(
                    f"\r[{bar:<30}] {done}/{len(p.volumes)} online, {len(st['rehydrating'])} rehydrating, "
                    f"{len(st['archived'])} archived; next check in {args.interval:.0f}s "
                )
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
        print_json(
            {
                "container": plan.container,
                "hold": hold,
                "counts": counts,
                "volumes": plan.to_dict()["volumes"],
            }
        )
    else:
        print(
            f"{plan.container}: {counts['online']} online, {counts['rehydrating']} rehydrating, {counts['archived']} archived "
            f"of {len(plan.volumes)} volumes needed; restore hold: {hold or 'none'}"
        )
        if counts["archived"] and not counts["rehydrating"]:
            print(
                "  some volumes are still archived and none is on its way: run `retier rehydrate` first"
            )
        elif not counts["archived"] and not counts["rehydrating"]:
            print("  all online: run duplicity restore now, then `retier release`")
    return EXIT_OK if not counts["rehydrating"] and not counts["archived"] else EXIT_RETRY


def cmd_release(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.sweep import sweep_container

    service = make_service()
    container = args.container
    prices = (
        load_prices() if args.now else None
    )  # before anything changes: a bad RETIER_PRICES stops here
    hold = service.store.clear_hold(container)
    print(f"{container}: restore hold {'lifted (' + hold + ')' if hold else 'was not set'}")
    if not args.now:
        print(
            "  the next event or the daily sweep re-tiers the volumes; `retier release --now` does it at once"
        )
        return EXIT_OK
    # The sweep's plan carries each move's early-deletion charge (a tier the blob only inherits
    # pays none); print_report shows it, and the note below says it in a restore's words.
    report = sweep_container(service.store, container, service.settings, prices=prices)
    print_report(report)
    early = report.plan.early_deletion if report.plan else None
    if early and early.count:
        print(
            f"note: {early.count} of these volumes left their tier before its minimum days: "
            f"an early-deletion charge of about "
            f"{money(report.plan.early_deletion_charge, prices['currency'])}"
        )
    return EXIT_OK if report.ok else EXIT_RETRY


def _restore_args(p) -> None:
    p.add_argument("--container", required=True)
    p.add_argument(
        "--time", help="restore as of this time, as duplicity's --time takes it (default: latest)"
    )
    p.add_argument(
        "--prefix",
        default=None,
        help="the --file-prefix of the backup, when a container holds several",
    )
    p.add_argument(
        "--volumes-from",
        metavar="FILE|-",
        help="output of `duplicity restore --dry-run …`: only the volumes it lists as required",
    )
    p.add_argument(
        "--with-par2",
        action="store_true",
        help="par2+ backups: also the volumes' par2 recovery blocks, which duplicity reads only "
        "to repair a corrupt volume (each volume's small .par2 index is always included)",
    )


def register(sub) -> None:
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
    _restore_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore_plan)

    p = sub.add_parser(
        "rehydrate",
        help="put the container on restore hold and bring the planned volumes back online in place",
        description="Puts the container on restore hold (so the event handler, sweep and timer leave it alone), then "
        "changes the tier of the planned archived volumes in place (same names), batched. Shows the cost and asks "
        "for confirmation unless --yes. Rehydration cannot be cancelled once requested.",
        epilog="examples:\n  retier rehydrate --container backups --dry-run\n"
        "  retier rehydrate --container backups --priority High --yes\n"
        "  retier rehydrate --container backups --with-par2 --yes    # a par2 repair needs the recovery blocks",
    )
    _restore_args(p)
    p.add_argument(
        "--priority",
        choices=("Standard", "High"),
        default="Standard",
        help="Standard: up to 15 h; High: usually under 1 h, costs more (default Standard)",
    )
    p.add_argument(
        "--to",
        choices=("Hot", "Cool", "Cold"),
        default="Hot",
        help="online tier to bring volumes to (default Hot: no read charge, no early deletion when re-archived)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be done and what it costs"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_rehydrate)

    p = sub.add_parser(
        "status",
        help="how many of the needed volumes are online, rehydrating, archived (exit 0 only when all online)",
        description="Among the volumes the restore needs: how many are online, rehydrating, still archived. "
        "Exit 0 only when all are online, 1 otherwise. --wait polls until they are.",
        epilog="examples:\n  retier status --container backups\n  retier status --container backups --wait --interval 300",
    )
    _restore_args(p)
    p.add_argument("--wait", action="store_true", help="poll until all are online (Ctrl-C to stop)")
    p.add_argument(
        "--interval",
        type=float,
        default=300.0,
        help="seconds between checks with --wait (default 300)",
    )
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
