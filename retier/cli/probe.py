"""`retier probe`: prove Event Grid -> function -> tier change with a canary set, then delete it."""

from __future__ import annotations

import argparse
import re
import signal
import sys

from retier.cli.common import EXIT_OK, EXIT_RETRY, UsageError, print_json

EXAMPLE = """\
examples:
  retier probe --container backups                 # exit 0: "tiering works in ACCOUNT: ..."
  retier probe --container backups --dry-run       # the names it would upload; uploads nothing
  retier probe --container backups --timeout 600 --json \\
      --function-app retier-abc --resource-group rg-retier --system-topic evgt-retier-abc \\
      --dead-letter-account stretierabc           # exact checks in the message if it fails
"""

# Azure's container names: 3-63 lower-case letters, digits and single hyphens, starting and ending
# with a letter or digit (https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")


def _dead_letter_store(account: str | None, backup_store):
    """The store holding the dead-letter container: the backup account's own client when it is
    that account, else the named account (or URL) with the operator's Azure login."""
    from retier.replay import dead_letter_connection
    from retier.storage import BlobStore

    if not account:
        return None
    if account.lower() == backup_store.account_name.lower():
        return backup_store
    if "://" not in account:
        account = f"https://{account}.blob.core.windows.net"
    return BlobStore.from_connection(dead_letter_connection(account))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_text(result, dry_run: bool = False) -> None:
    from retier.costs import format_money

    if result.ok:
        print(result.message)
    else:
        print(f"FAILED ({result.failed_step}): {result.message}")
        labels = {
            "event": "the event subscription (state, filter)",
            "function": "the function is deployed",
            "invocation": "the function's log lines about the canary",
        }
        for key, label in labels.items():
            if key in result.checks:
                print(f"  check {label}:\n    {result.checks[key]}")
        dead = result.dead_letter
        if dead:
            where = f"{dead.get('account') or '?'}/{dead.get('container')}"
            print(f"  dead-letter container {where}: {dead.get('note')}")
    if result.left_behind:
        print(f"canary NOT deleted: {', '.join(result.left_behind)}")
    elif result.deleted:
        print(
            f"canary deleted ({len(result.deleted)} blobs); early-deletion charge "
            f"{format_money(result.early_deletion, result.currency)}"
        )


def cmd_probe(args: argparse.Namespace) -> int:
    from retier.probe import (
        MANIFEST_DATA,
        VOLUME_DATA,
        Hints,
        ProbeError,
        Prober,
        event_subject,
    )
    from retier.settings import load_settings
    from retier.storage import BlobStore

    container = args.container.strip().lower()
    if not _CONTAINER.match(container):
        raise UsageError(f"--container {args.container!r} is not a valid container name")
    if args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    hints = Hints(
        function_app=args.function_app,
        resource_group=args.resource_group,
        system_topic=args.system_topic,
        event_subscription=args.event_subscription,
        dead_letter_account=args.dead_letter_account,
        dead_letter_container=args.dead_letter_container,
    )
    settings = load_settings(allow_duplicity_env=True)
    if args.dry_run:
        # No storage request at all: the names, where they go, and what the function should do.
        prober = Prober(None, settings, hints=hints)
        try:
            prober.check_container(container)
        except ProbeError as exc:
            raise UsageError(str(exc)) from None
        canary = prober.canary
        plan = {
            "dry_run": True,
            "account": settings.account_name,
            "container": container,
            "canary": {"volume": canary.volume, "manifest": canary.manifest},
            "subject": event_subject(container, canary.manifest),
            "target_tier": settings.policy.volume_tier,
        }
        if args.json:
            print_json(plan)
        else:
            print(
                f"would upload to {settings.account_name or '?'}/{container}: {canary.volume} "
                f"({len(VOLUME_DATA)} bytes), then {canary.manifest} ({len(MANIFEST_DATA)} bytes); "
                f"wait up to {args.timeout:g} s for the volume to reach "
                f"{settings.policy.volume_tier}; then delete both"
            )
        return EXIT_OK

    store = BlobStore.from_connection(settings.require_connection())
    prober = Prober(
        store,
        settings,
        hints=hints,
        dead_letter_store=_dead_letter_store(args.dead_letter_account, store),
    )
    try:
        prober.check_container(container)
    except ProbeError as exc:
        raise UsageError(str(exc)) from None
    if not args.json:
        print(
            f"probe: {store.account_name}/{container}: uploading {prober.canary.volume} and its "
            f"manifest, waiting up to {args.timeout:g} s for {settings.policy.volume_tier}",
            file=sys.stderr,
            flush=True,
        )
    # A plain `kill` (SIGTERM: a CI job's timeout, a closed terminal) would end Python without
    # running the probe's cleanup: make it a Ctrl-C, which the probe handles by deleting the canary.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = prober.run(container, args.timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print_json(result.to_dict())
    else:
        _print_text(result)
    return EXIT_OK if result.ok else EXIT_RETRY


def register(sub) -> None:
    from retier.eventgrid import DEAD_LETTER_CONTAINER, SUBSCRIPTION
    from retier.probe import DEFAULT_TIMEOUT

    p = sub.add_parser(
        "probe",
        help="prove the deployed path (Event Grid -> function -> tier) with a canary set",
        description="Upload a tiny canary backup set (one volume, then its manifest) under names "
        "retier's grammar reads as a finished set and duplicity ignores, wait for the deployed "
        "function to move the volume to RETIER_VOLUME_TIER, report the delay between the "
        "manifest's Last-Modified and the volume's access-tier change time (the service's own "
        "clock), and delete the canary, printing its early-deletion charge. On a timeout, say "
        "which step most likely failed and how to check it. The canary is deleted in every case. "
        "Runs as you, with the CLI's settings (RETIER_STORAGE...); use the function's "
        "RETIER_VOLUME_TIER, RETIER_CONTAINERS and RETIER_FILE_PREFIX_*. Exit 0 when the volume "
        "reached its tier, 1 when it did not (or the canary could not be deleted), 2 for bad usage.",
        epilog=EXAMPLE,
    )
    p.add_argument("--container", required=True, help="the backup container to probe")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the tier change (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be uploaded; touch nothing"
    )
    hints = p.add_argument_group("hints (only make a failure message exact)")
    hints.add_argument("--function-app", metavar="NAME", help="the function app's name")
    hints.add_argument("--resource-group", metavar="RG", help="the function app's resource group")
    hints.add_argument("--system-topic", metavar="NAME", help="the Event Grid system topic")
    hints.add_argument(
        "--event-subscription",
        metavar="NAME",
        help=f"the event subscription (default {SUBSCRIPTION})",
    )
    hints.add_argument(
        "--dead-letter-account",
        metavar="NAME_OR_URL",
        help="the account holding the dead-letter container (retier's host storage); "
        "read with your Azure login",
    )
    hints.add_argument(
        "--dead-letter-container",
        metavar="NAME",
        default=DEAD_LETTER_CONTAINER,
        help=f"the dead-letter container (default {DEAD_LETTER_CONTAINER})",
    )
    p.set_defaults(func=cmd_probe)
