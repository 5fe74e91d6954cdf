"""`retier doctor` and `retier replay`: is the deployment working, and replaying what it missed."""

from __future__ import annotations

import argparse
import sys

from retier.cli.common import make_service, print_json, warn_secret_on_command_line

# The choices of `doctor --only`, as retier.doctor.ONLY_CHOICES (kept here so `--help` does not
# import the storage SDK through retier.doctor).
ONLY_CHOICES = ("lifecycle",)


def cmd_doctor(args: argparse.Namespace) -> int:
    from retier.doctor import diagnose

    report = diagnose(
        containers=args.container,
        lifecycle_policy=args.lifecycle_policy,
        file_prefixes=args.file_prefix or (),
        only=args.only,
    )
    if args.json:
        print_json(report.to_dict())
        return report.exit_code
    hints_shown = set()
    for check in report.checks:
        print(f"{check.status:<5} {check.name}: {check.message}")
        if check.hint and check.hint not in hints_shown:
            hints_shown.add(check.hint)
            print(f"      -> {check.hint}")
    counts = report.counts()
    print(f"doctor: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return report.exit_code


def cmd_replay(args: argparse.Namespace) -> int:
    from retier.replay import MOVED, Summary, dead_letter_connection, replay
    from retier.storage import BlobStore

    service = make_service()
    store = service.store  # the backup account, unless the dead letters live elsewhere
    if args.dead_letter_storage is not None:
        warn_secret_on_command_line(
            "--dead-letter-storage", args.dead_letter_storage, "a URL with your Azure sign-in"
        )
        store = BlobStore.from_connection(dead_letter_connection(args.dead_letter_storage))
    summary = Summary()
    for result in replay(store, args.dead_letter_container, service, dry_run=args.dry_run):
        summary.add(result)
        if args.json:
            print_json(result.to_dict())
            continue
        for event in result.events:
            print(
                f"{result.name}  {event.id or '-'}  {event.subject or '-'}  "
                f"{event.status}: {event.reason}"
            )
        where = f" to {result.moved_to}" if result.fate == MOVED else ""
        print(f"{result.name}: {result.fate}{where}: {result.reason}")
        sys.stdout.flush()
    if args.json:
        print_json({"summary": summary.to_dict(), "dry_run": args.dry_run})
    else:
        blobs = ", ".join(f"{n} {fate}" for fate, n in sorted(summary.blobs.items())) or "none"
        events = ", ".join(f"{n} {status}" for status, n in sorted(summary.events.items()))
        dry = " (dry run: nothing handled or moved)" if args.dry_run else ""
        print(f"replay{dry}: dead-letter blobs: {blobs}; events: {events or 'none'}")
    return summary.exit_code


def register(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check settings, credential, account and containers: ok / warn / fail per line",
        description="Check that retier can work: every RETIER_* setting parses; storage answers "
        "with the configured credential; the account has the chosen tier; each container exists, "
        "can be listed, allows tier changes, is or is not on restore hold; volumes uploaded as "
        "explicit Cool (an early-deletion charge when moved); unfinished sets older than two days "
        "(abandoned backups); with --lifecycle-policy, each lifecycle management rule that would "
        "archive or delete duplicity's metadata, re-archive a restore, delete volumes early or "
        "move them warmer. Changes nothing. Exit 0 when nothing fails, 1 when something would "
        "stop the service (or break a backup or restore), 2 for a bad setting or bad usage.",
        epilog="examples:\n  retier doctor                      # the containers in RETIER_CONTAINERS\n"
        "  retier doctor --container backups --json\n"
        "  az storage account management-policy show -g RG --account-name ACCOUNT > policy.json\n"
        "  retier doctor --lifecycle-policy policy.json --only lifecycle --container backups",
    )
    p.add_argument(
        "--container",
        action="append",
        help="a container to check (repeatable; default: RETIER_CONTAINERS)",
    )
    p.add_argument(
        "--lifecycle-policy",
        metavar="FILE",
        help="a lifecycle management policy as `az storage account management-policy show` "
        'prints it (or its bare {"rules": [...]}): check each rule against duplicity\'s names',
    )
    p.add_argument(
        "--file-prefix",
        action="append",
        metavar="PREFIX",
        help="duplicity's --file-prefix, if its runs use one (repeatable): the lifecycle check "
        "builds duplicity's names with it",
    )
    p.add_argument(
        "--only",
        choices=ONLY_CHOICES,
        help="run only this check: 'lifecycle' needs --lifecycle-policy and no storage access",
    )
    p.add_argument("--json", action="store_true", help="print the checklist as one JSON object")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "replay",
        help="replay Event Grid's dead-lettered events through the function's code path",
        description="Read each dead-letter blob (a JSON array of events, Event Grid or CloudEvents "
        "schema) not yet under replayed/, handle every event exactly as the function would, and "
        "move the blob to replayed/<name> once every event in it was handled or deliberately "
        "ignored. A blob with an event that needs a retry, or that no retry can fix, stays; so does "
        "a blob that is not a JSON array of events. A second run reads only what is left. Exit 0 "
        "when everything was replayed, 1 when an event needs a retry (run again later), 2 when "
        "a blob or event needs a person (malformed or invalid) or for bad usage.",
        epilog="examples:\n  retier replay --dead-letter-container retier-dead-letter --dry-run\n"
        "  retier replay --dead-letter-container retier-dead-letter \\\n"
        "      --dead-letter-storage https://retierhost.blob.core.windows.net",
    )
    p.add_argument(
        "--dead-letter-container",
        required=True,
        metavar="NAME",
        help="the container Event Grid dead-letters to (retier's deployment: retier-dead-letter)",
    )
    p.add_argument(
        "--dead-letter-storage",
        metavar="CONNSTR_OR_URL",
        help="the account holding it: a connection string, or an https blob service URL used with "
        "your Azure login (default: the backup account, RETIER_STORAGE...)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be replayed; handle and move nothing",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per blob, then a summary")
    p.set_defaults(func=cmd_replay)
