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


def _print_plan(plan, prices, to: str = "Hot", online_days: float | None = None) -> None:
    out = sys.stdout.write
    from retier.restore import DEFAULT_ONLINE_DAYS

    online_days = DEFAULT_ONLINE_DAYS if online_days is None else online_days
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
    _print_ways(plan, prices, to, online_days)
    out(
        f"  prices: {prices.get('region')} {prices.get('redundancy')}, as of {prices.get('as_of')} (override with RETIER_PRICES)\n"
    )


_WAY_ROWS = (
    ("time", None),
    ("retrieval", "retrieval"),
    ("read operations", "operations"),
    ("early deletion", "early_deletion"),
    ("writes", "writes"),
    ("online storage", "online_storage"),
    ("online early deletion", "online_early_deletion"),
    ("total", "total"),
)


def _ways(plan, prices, to: str, online_days: float) -> dict:
    from retier.restore import compare_ways

    return {
        p: compare_ways(plan, p, prices, to=to, online_days=online_days)
        for p in ("Standard", "High")
    }


def _print_ways(plan, prices, to: str, online_days: float) -> None:
    """Both ways side by side for both priorities, and which is cheaper."""
    from retier.restore import COPY, IN_PLACE, cheaper_way

    out = sys.stdout.write
    by_priority = _ways(plan, prices, to, online_days)
    cur = prices["currency"]
    out(
        f"  two ways (online {online_days:g} days in {to}; --online-days, --to): in place changes "
        "the volumes' tier; by copy (--copy-to) copies them and the chain's metadata into a restore "
        "container and leaves the archive untouched\n"
    )
    out(f"    {'':<24}{'in place':>16}{'by copy':>16}\n")
    for priority, ways in by_priority.items():
        out(f"    {priority} priority\n")
        for label, key in _WAY_ROWS:
            if key is None:
                when = "up to" if priority == "Standard" else "about"
                cells = [f"{when} {ways[w].hours:.0f} h" for w in (IN_PLACE, COPY)]
            else:
                cells = [money(getattr(ways[w], key), cur) for w in (IN_PLACE, COPY)]
            out(f"      {label:<22}{cells[0]:>16}{cells[1]:>16}\n")
    standard = by_priority["Standard"]
    best = cheaper_way(standard)
    saving = abs(standard[IN_PLACE].total - standard[COPY].total)
    out(
        f"  cheaper: {'by copy' if best == COPY else 'in place'} (by {money(saving, cur)} at "
        f"Standard); by copy the archive pays no early deletion and starts no new 180-day minimum\n"
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
    from retier.restore import cheaper_way

    service = make_service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    if args.json:
        out = plan.to_dict(prices)
        ways = _ways(plan, prices, args.to, args.online_days)
        out["ways"] = {p: {w: e.to_dict() for w, e in ws.items()} for p, ws in ways.items()}
        out["recommended"] = cheaper_way(ways["Standard"])
        print_json(out)
    else:
        _print_plan(plan, prices, args.to, args.online_days)
    return EXIT_OK


def _confirm(question: str, what: str) -> bool:
    """Ask at a terminal; refuse (usage error) without one: `what` needs --yes there."""
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: confirm with --yes when not at a terminal")
    return input(question).strip().lower() in ("y", "yes")


def _say(args, text: str) -> None:
    """A line for a person: on stdout, or on stderr when stdout carries --json."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def _warn_lifecycle(path, container, settings, prices, way) -> None:
    """Before a rehydration: the lifecycle rules that would undo it, on stderr (issues 16 and 17)."""
    from retier import lifecycle
    from retier.restore import IN_PLACE

    try:
        rules = lifecycle.load_policy(path)
    except lifecycle.PolicyError as exc:
        raise UsageError(f"--lifecycle-policy: {exc}") from None
    findings = lifecycle.restore_warnings(rules, container, settings, prices=prices)
    for finding in findings:
        print(f"warning: lifecycle rule {finding.rule!r}: {finding.message}", file=sys.stderr)
    if findings and way == IN_PLACE:
        print(
            "warning: rehydrated in place, the volumes may be archived again by the rule(s) above; "
            f"--copy-to {container}-restore leaves them archived and restores from a copy",
            file=sys.stderr,
        )


def cmd_rehydrate(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.restore import (
        COPY,
        IN_PLACE,
        cheaper_way,
        check_restore_container,
        compare_ways,
        copy_out,
        default_restore_container,
        rehydrate,
    )

    if args.in_place and args.copy_to:
        raise UsageError("--in-place and --copy-to are two different ways: choose one")
    service = make_service()
    prices = load_prices()
    plan = _restore_plan(args, service)
    archived = plan.by_state()["archived"]
    ways = compare_ways(plan, args.priority, prices, to=args.to, online_days=args.online_days)
    if args.in_place:
        way = IN_PLACE
    elif args.copy_to:
        way = COPY
    else:
        way = cheaper_way(ways)  # copy when cheaper, or as cheap
    dest = (args.copy_to or default_restore_container(plan.container)) if way == COPY else None
    if dest:  # before asking: a container that cannot take the copies stops here
        check_restore_container(service.store, plan.container, dest, service.settings.containers)
    estimate = ways[way]
    if args.lifecycle_policy:
        _warn_lifecycle(args.lifecycle_policy, plan.container, service.settings, prices, way)
    if not args.json:
        _print_plan(plan, prices, args.to, args.online_days)
    how = f"by copy into {dest}" if dest else "in place (on restore hold)"
    cost = money(estimate.total, estimate.currency)
    if args.dry_run:
        if args.json:
            print_json(
                {"dry_run": True, "way": way, "copy_to": dest, "estimate": estimate.to_dict()}
            )
        else:
            held = f"hold {plan.container} and " if not dest else ""
            print(
                f"dry run: would {held}rehydrate {len(archived)} volumes {how}, to {args.to} "
                f"({args.priority}), ~{cost} for {args.online_days:g} days online"
            )
        return EXIT_OK
    if not args.yes:
        question = (
            f"Rehydrate {len(archived)} volumes ({human_bytes(estimate.bytes)}) {how}, to {args.to} "
            f"with {args.priority} priority, for ~{cost}? It cannot be cancelled. [y/N] "
        )
        if not _confirm(question, "rehydrating costs money"):
            _say(args, "nothing done")
            return EXIT_OK
    if dest:
        result = copy_out(
            service.store,
            plan,
            dest,
            to=args.to,
            priority=args.priority,
            configured=service.settings.containers,
        )
        failures = result.failures
        report = {"way": COPY, "copy_to": dest, **result.to_dict()}
        _say(
            args,
            f"{plan.container} -> {dest}: {result.rehydrating} volumes copying out of Archive to "
            f"{args.to} ({args.priority}), {result.copied} online blobs copied, {result.already} "
            f"already there; the source stays archived and untouched",
        )
        status_cmd = ["retier status --container", plan.container, "--copy-to", dest]
    else:
        r = rehydrate(service.store, plan, to=args.to, priority=args.priority)
        failures = r.failures
        report = {
            "way": IN_PLACE,
            "container": plan.container,
            "requested": r.requested,
            "already_online": r.already_online,
            "already_rehydrating": r.already_rehydrating,
            "pinned": r.pinned,
            "unpinned": r.unpinned,
            "failures": r.failures,
        }
        _say(
            args,
            f"{plan.container}: on restore hold; {r.requested} volumes rehydrating to {args.to} "
            f"({args.priority}), {r.already_online} already online, {r.already_rehydrating} "
            "already rehydrating",
        )
        if r.pinned:
            # Their set's event has not been handled yet: without an explicit tier a late event
            # could archive them during the restore.
            _say(
                args,
                f"  {r.pinned} online volumes had never been tiered: set to Hot explicitly, "
                "so the restore hold keeps them online",
            )
        if r.unpinned:
            _say(
                args,
                f"  {len(r.unpinned)} online volumes had never been tiered and could not be set "
                "to Hot explicitly: a late event may still archive them; `retier status` would "
                "show it",
            )
        status_cmd = ["retier status --container", plan.container]
    for f in failures:
        _say(args, f"  failed: {f['name']}: {f['outcome']} HTTP {f['status']} {f['code'] or ''}")
    next_cmd = " ".join([*status_cmd, *_restore_options(args), "--wait"])
    report["estimate"] = estimate.to_dict()
    report["next"] = next_cmd
    if args.escalate_after is not None and not failures:
        code = _wait(args, service, plan, dest, prices)
        report["online"] = code == EXIT_OK
    else:
        code = EXIT_RETRY if failures else EXIT_OK
        _say(args, "next: " + next_cmd)
    if args.json:
        print_json(report)
    return code


def _view(service, plan, dest, *, fresh: bool = False):
    """The restore's state: the source's tiers (in place; re-read when not `fresh`ly listed) or
    its copies in `dest`; and, in place, when the hold says the rehydration was asked for."""
    from retier.restore import copy_view, hold_since, refresh

    if dest:
        return copy_view(service.store, plan, dest), None
    view = plan if fresh else refresh(service.store, plan)
    return view, hold_since(service.store.get_hold(plan.container))


def _progress(view) -> str:
    states = view.by_state()
    online = states["online"]
    return (
        f"{len(online)}/{len(view.volumes)} volumes online "
        f"({human_bytes(sum(v.size for v in online))} of "
        f"{human_bytes(sum(v.size for v in view.volumes))}), {len(states['rehydrating'])} "
        f"rehydrating, {len(states['archived'])} not on their way"
    )


def _wait(args, service, plan, dest, prices, *, fresh: bool = False) -> int:
    """Poll until every needed volume is online: a line on stderr per change; escalate the ones
    pending at Standard for --escalate-after hours to High, saying first what that costs."""
    from retier.restore import (
        copy_view,
        due_for_escalation,
        escalate,
        escalation_estimate,
        high_priority_hours,
        pending_volumes,
        refresh,
        wait_until_online,
    )

    view, requested = _view(service, plan, dest, fresh=fresh)
    last = [None]
    escalated: set[str] = set()

    def on_poll(p):
        line = _progress(p)
        if line != last[0]:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            last[0] = line
        if args.escalate_after is None:
            return
        pending = pending_volumes(p, by_copy=bool(dest), requested=requested)
        due = [
            x for x in due_for_escalation(pending, args.escalate_after) if x.name not in escalated
        ]
        if not due:
            return
        e = escalation_estimate(due, prices)
        sys.stderr.write(
            f"escalating {len(due)} volumes ({human_bytes(e.bytes)}) pending at Standard for "
            f"{args.escalate_after:g} h or more to High: ~{money(e.total, e.currency)} "
            f"(retrieval {money(e.retrieval, e.currency)}, reads "
            f"{money(e.operations, e.currency)}); the account's High limit (10 GiB/h) needs "
            f"~{high_priority_hours(e.bytes):.1f} h for these bytes\n"
        )
        failures = escalate(service.store, p, due)
        escalated.update(x.name for x in due)
        for f in failures:
            sys.stderr.write(f"  escalation failed: {f['name']}: HTTP {f['status']} {f['code']}\n")

    def reread(p):
        return copy_view(service.store, plan, dest) if dest else refresh(service.store, p)

    try:
        view = wait_until_online(
            service.store, view, interval=args.interval, on_poll=on_poll, reread=reread
        )
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
    states = view.by_state()
    return EXIT_OK if not states["rehydrating"] and not states["archived"] else EXIT_RETRY


def cmd_status(args: argparse.Namespace) -> int:
    from retier.costs import load_prices
    from retier.restore import high_priority_hours, pending_volumes

    service = make_service()
    plan = _restore_plan(args, service)
    dest = args.copy_to
    if args.wait:
        _wait(
            args,
            service,
            plan,
            dest,
            load_prices() if args.escalate_after is not None else None,
            fresh=True,
        )
    view, requested = _view(service, plan, dest, fresh=not args.wait)
    hold = service.store.get_hold(view.container)
    states = view.by_state()
    counts = {k: len(v) for k, v in states.items()}
    pending = pending_volumes(view, by_copy=bool(dest), requested=requested)
    pending_bytes = sum(p.size for p in pending)
    # By copy, duplicity also reads the copied manifests and signatures: they must be there too.
    metadata_missing = [m.name for m in view.metadata if dest and m.state != "online"]
    ready = not counts["rehydrating"] and not counts["archived"] and not metadata_missing
    if args.json:
        print_json(
            {
                "container": plan.container,
                "copy_to": dest,
                "hold": hold,
                "counts": counts,
                "metadata_not_copied": metadata_missing,
                "volumes": view.to_dict()["volumes"],
                "pending": [p.to_dict() for p in pending],
                "high_priority_gib_per_hour": 10,
                "high_priority_hours_for_pending": round(high_priority_hours(pending_bytes), 2),
            }
        )
    else:
        where = f"{plan.container} -> {dest}" if dest else plan.container
        print(
            f"{where}: {counts['online']} online, {counts['rehydrating']} rehydrating, "
            f"{counts['archived']} {'not copied' if dest else 'archived'} of {len(view.volumes)} "
            f"volumes needed; restore hold: {hold or 'none'}"
        )
        for p in pending:
            age = "pending since unknown" if p.hours is None else f"pending {p.hours:.1f} h"
            print(f"    {p.name}  {human_bytes(p.size)}  {p.priority or '?'}  {age}  {p.eta}")
        if pending:
            print(
                f"  Azure's targets: Standard up to 15 h; High under 1 h for blobs under 10 GB, "
                f"at most 10 GiB per account per hour: the {human_bytes(pending_bytes)} still "
                f"pending would take ~{high_priority_hours(pending_bytes):.1f} h at High "
                "(`status --wait --escalate-after HOURS` raises Standard ones to High)"
            )
        if metadata_missing:
            print(
                f"  {len(metadata_missing)} manifests/signatures are not (yet) in {dest}, e.g. "
                f"{metadata_missing[0]}: `retier rehydrate --copy-to {dest}` copies what is missing"
            )
        if counts["archived"] and not counts["rehydrating"]:
            first = "`retier rehydrate --copy-to " + dest + "`" if dest else "`retier rehydrate`"
            print(f"  some volumes are still archived and none is on its way: run {first} first")
        elif ready:
            if dest:
                print(
                    f"  all online: run `duplicity restore azure://{dest} …` now, then "
                    f"`retier release --container {plan.container} --copy-to {dest}`"
                )
            else:
                print("  all online: run duplicity restore now, then `retier release`")
    return EXIT_OK if ready else EXIT_RETRY


def cmd_release(args: argparse.Namespace) -> int:
    if args.copy_to:
        return _release_copies(args)
    from retier.costs import load_prices
    from retier.sweep import sweep_container

    service = make_service()
    container = args.container
    prices = (
        load_prices() if args.now else None
    )  # before anything changes: a bad RETIER_PRICES stops here
    hold = service.store.clear_hold(container)
    _say(args, f"{container}: restore hold {'lifted (' + hold + ')' if hold else 'was not set'}")
    out = {"container": container, "hold_lifted": hold}
    if not args.now:
        _say(
            args,
            "  the daily sweep re-tiers the volumes; `retier release --now` does it at once",
        )
        if args.json:
            print_json(out)
        return EXIT_OK
    # The sweep's plan carries each move's early-deletion charge (a tier the blob only inherits
    # pays none); print_report shows it once, and the note below says why in a restore's words.
    report = sweep_container(service.store, container, service.settings, prices=prices)
    early = report.plan.early_deletion if report.plan else None
    if args.json:
        out["moved"] = report.applied.done.count if report.applied else 0
        out["early_deletion"] = {
            "volumes": early.count if early else 0,
            "charge": round(report.plan.early_deletion_charge, 6) if early else 0.0,
            "currency": prices["currency"],
        }
        out["ok"] = report.ok
        print_json(out)
    else:
        print_report(report)
        if early and early.count:
            print(
                f"note: {early.count} of these volumes left their tier before its minimum days: "
                "that is the early-deletion charge above; rehydrating `--to Hot`, or by copy "
                "(`--copy-to`), avoids it"
            )
    return EXIT_OK if report.ok else EXIT_RETRY


def _release_copies(args) -> int:
    from retier.restore import copies_of, release_copies

    service = make_service()
    source, dest = args.container, args.copy_to
    if args.now:
        raise UsageError("--now re-tiers a container released in place; --copy-to deletes copies")
    mine, others = copies_of(service.store, source, dest)
    size = human_bytes(sum(i.size for i in mine))
    if not args.yes:
        question = (
            f"Delete the {len(mine)} blobs ({size}) retier copied from {source} into {dest}? "
            f"{len(others)} other blobs there are kept. [y/N] "
        )
        if not _confirm(question, "release --copy-to deletes blobs"):
            _say(args, "nothing done")
            return EXIT_OK
    result = release_copies(service.store, source, dest)
    if args.json:
        print_json({"copy_of": source, **result.to_dict()})
    else:
        print(
            f"{dest}: {len(result.deleted)} copies of {source} deleted ({size}); "
            f"{len(result.kept)} other blobs kept; {source} was not touched"
        )
        for f in result.failures:
            print(f"  failed: {f['name']}: HTTP {f['status']} {f['code'] or ''}")
        if not result.failures and not result.kept:
            print(f"  {dest} is empty now; delete it when you no longer need it")
    return EXIT_RETRY if result.failures else EXIT_OK


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


def _way_args(p) -> None:
    p.add_argument(
        "--to",
        choices=("Hot", "Cool", "Cold"),
        default="Hot",
        help="online tier to bring volumes to (default Hot: no read charge, no minimum days)",
    )
    p.add_argument(
        "--online-days",
        type=_non_negative,
        default=3.0,
        metavar="DAYS",
        help="how long the restore keeps them online before `release`, for the estimates "
        "(default 3)",
    )


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _escalate_arg(p) -> None:
    p.add_argument(
        "--escalate-after",
        type=_non_negative,
        metavar="HOURS",
        help="wait, and raise every volume still pending at Standard priority after HOURS to "
        "High (its cost is shown first); ones online or already High are left alone",
    )
    p.add_argument(
        "--interval",
        type=_non_negative,
        default=300.0,
        help="seconds between checks while waiting (default 300)",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "restore-plan",
        help="which volumes a restore needs, and what each way of rehydrating them costs",
        description="The backup chain duplicity restores from as of --time (default: latest), every volume it needs with "
        "size and tier, the bytes still in Archive, and both ways of bringing them online side by side for Standard "
        "and High priority: in place, or by copy into a restore container (time, retrieval, read operations, early "
        "deletion, writes, days of online storage), with the cheaper one. Changes nothing.",
        epilog="examples:\n  retier restore-plan --container backups\n"
        "  duplicity restore --dry-run --path-to-restore docs/a.txt azure://backups /tmp/x > need.txt\n"
        "  retier restore-plan --container backups --volumes-from need.txt --json",
    )
    _restore_args(p)
    _way_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore_plan)

    p = sub.add_parser(
        "rehydrate",
        help="bring the planned volumes online: by copy into a restore container, or in place",
        description="By copy (--copy-to CONTAINER, and the default when it is as cheap or cheaper): copies the "
        "planned volumes out of Archive, and the chain's manifests and signatures, into a restore container (new, "
        "or holding only retier's copies of this source; not in RETIER_CONTAINERS; default <container>-restore); "
        "the source stays archived and untouched, with no early deletion. In place (--in-place): puts the "
        "container on restore hold, then changes the tier of the archived volumes (same names), batched. Shows the "
        "cost and asks for confirmation unless --yes. A rehydration cannot be cancelled once requested.",
        epilog="examples:\n  retier rehydrate --container backups --dry-run\n"
        "  retier rehydrate --container backups --copy-to backups-restore --yes\n"
        "  retier rehydrate --container backups --in-place --priority High --yes\n"
        "  retier rehydrate --container backups --copy-to r1 --yes --escalate-after 6\n"
        "  retier rehydrate --container backups --in-place --with-par2 --yes  # a par2 repair",
    )
    _restore_args(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--copy-to",
        metavar="CONTAINER",
        help="copy into this restore container (then `duplicity restore azure://CONTAINER`)",
    )
    how.add_argument(
        "--in-place", action="store_true", help="change the volumes' own tier (restore hold)"
    )
    p.add_argument(
        "--priority",
        choices=("Standard", "High"),
        default="Standard",
        help="Standard: up to 15 h; High: usually under 1 h, costs more (default Standard)",
    )
    _way_args(p)
    _escalate_arg(p)
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be done and what it costs"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.add_argument(
        "--lifecycle-policy",
        metavar="FILE",
        help="the account's lifecycle policy (`az storage account management-policy show` > FILE): "
        "warn before rehydrating when a rule would archive the volumes again",
    )
    p.set_defaults(func=cmd_rehydrate)

    p = sub.add_parser(
        "status",
        help="how many needed volumes are online, and when the rest will be (exit 0 only when all are)",
        description="Among the volumes the restore needs (in the container, or their copies with --copy-to): how "
        "many are online, rehydrating, still archived; for each pending one its priority, how long it has been "
        "pending and an ETA from Azure's documented targets. Exit 0 only when all are online, 1 otherwise. --wait "
        "polls until they are, a line per change on stderr.",
        epilog="examples:\n  retier status --container backups\n"
        "  retier status --container backups --copy-to backups-restore --wait\n"
        "  retier status --container backups --wait --interval 300 --escalate-after 6",
    )
    _restore_args(p)
    p.add_argument("--copy-to", metavar="CONTAINER", help="the restore container copied into")
    p.add_argument("--wait", action="store_true", help="poll until all are online (Ctrl-C to stop)")
    _escalate_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "release",
        help="after a restore: lift the restore hold (in place), or delete the copies (--copy-to)",
        description="In place: lift the container's restore hold; the daily sweep moves the volumes back to "
        "RETIER_VOLUME_TIER, --now sweeps at once and says what early-deletion charge that pays. By copy "
        "(--copy-to): delete the blobs retier copied into the restore container (only those), after a "
        "confirmation (--yes skips it), and lift its hold; the source is not touched.",
        epilog="examples:\n  retier release --container backups --now\n"
        "  retier release --container backups --copy-to backups-restore --yes",
    )
    p.add_argument("--container", required=True)
    p.add_argument(
        "--copy-to", metavar="CONTAINER", help="delete retier's copies in this container"
    )
    p.add_argument("--now", action="store_true", help="in place: re-tier the container right away")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    p.set_defaults(func=cmd_release)
