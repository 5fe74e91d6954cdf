"""The `retier` command line: the same modules the Function uses, for operators and local runs.

Each command group lives in its own module with a `register(subparsers)` function; this module
only assembles the parser and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from retier import __version__
from retier.cli import bridge, cost, handler, helptopics, ops, probe, restore, sweep
from retier.cli.common import EXIT_RETRY, EXIT_USAGE, UsageError, warn_secret_on_command_line
from retier.errors import redact_usage_error, refused_is_transient

# Order of the commands in --help.
COMMAND_GROUPS = (handler, sweep, restore, cost, ops, bridge, probe, helptopics)
# Commands that never reach storage: no connection options on them.
NO_STORAGE = frozenset({"classify", "prices", "help", "completion"})


EPILOG = """\
settings come from the environment (the same RETIER_* names the Function app uses):
  RETIER_STORAGE              connection string (or RETIER_STORAGE__blobServiceUri for an identity);
                              the CLI falls back to duplicity's AZURE_CONNECTION_STRING
  RETIER_VOLUME_TIER          Cold (default), Cool or Archive
  RETIER_METADATA_TIER        unset (metadata stays as uploaded), Hot, Cool or Cold
  RETIER_CONTAINERS           comma-separated allow-list of containers (unset: any)
  RETIER_FILE_PREFIX_ARCHIVE / RETIER_FILE_PREFIX_MANIFEST
                              duplicity's --file-prefix-archive / --file-prefix-manifest, if used
  RETIER_PRICES               a JSON file of your region's prices (see: retier prices)

first time with existing backups:  retier sweep --container backups --dry-run
restoring out of Archive:          retier restore-plan --container backups
what it costs, what it saves:      retier cost --container backups
is it working?                     retier doctor --container backups
events Event Grid gave up on:      retier replay --dead-letter-container retier-dead-letter --dry-run
exit codes, credentials, completion: retier help
"""


class _CommandParser(argparse.ArgumentParser):
    """Subcommand parsers keep their examples' line breaks."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        # argparse repeats what it refuses; a connection string typed in the wrong place must not
        # be printed back.
        super().error(redact_usage_error(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandParser(
        prog="retier",
        description="Move duplicity's backup volumes in Azure Blob Storage to Cold or Archive, "
        "keeping manifests and signatures online.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"retier {__version__}")
    _common_options(parser, default=None, storage=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    for group in COMMAND_GROUPS:
        group.register(sub)
    apply_conventions(parser)
    return parser


def _container_arg(value: str) -> str:
    from retier.settings import SettingsError, check_container_name

    try:
        return check_container_name(value, "", accept_url=True)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _subparsers(parser: argparse.ArgumentParser):
    for _, command in _named_subparsers(parser):
        yield command


def _named_subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _common_options(parser: argparse.ArgumentParser, *, default, storage: bool) -> None:
    """-v/-q (and, where storage is reached, the connection) on the top parser and on every
    command, so they work before or after the command's name. On a command they default to
    SUPPRESS: given after the command they win, absent they leave the top parser's value."""
    group = parser.add_argument_group("common options (before or after the command)")
    flag = {"action": "store_true", "default": False if default is None else default}
    group.add_argument("-v", "--verbose", help="log each decision on stderr", **flag)
    group.add_argument("-q", "--quiet", help="only errors on stderr", **flag)
    if storage:
        group.add_argument(
            "--connection-string",
            metavar="CONNSTR|-",
            default=default,
            help="the storage account for this run (instead of RETIER_STORAGE); - reads it "
            "from standard input, which keeps the key out of shell history",
        )
        group.add_argument(
            "--account-url",
            metavar="URL",
            default=default,
            help="https://<account>.blob.core.windows.net with your Azure sign-in (instead "
            "of RETIER_STORAGE__blobServiceUri)",
        )


def apply_conventions(parser: argparse.ArgumentParser) -> None:
    """What every command gets without asking, so that commands added later inherit it too:
    -v/-q and the connection options anywhere on the line, and each option naming a container
    (--container, --dead-letter-container, ...) checked against Azure's naming rules before any
    request."""
    for name, command in _named_subparsers(parser):
        _common_options(command, default=argparse.SUPPRESS, storage=name not in NO_STORAGE)
    for command in [parser, *_subparsers(parser)]:
        for action in command._actions:
            names_a_container = action.dest == "container" or action.dest.endswith("_container")
            if names_a_container and action.type is None and action.option_strings:
                action.type = _container_arg


def main(argv: Sequence[str] | None = None) -> int:
    from retier.errors import PriceError, RestoreError, SettingsError, StorageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet: choose one")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # DefaultAzureCredential logs a warning of some 40 lines for each failed sign-in; the
        # StorageError that follows names the credentials tried in one line (-v shows it all).
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    # At a terminal a refused credential is a mistake to fix, not a failure to retry.
    in_the_function = refused_is_transient()
    refused_is_transient(False)
    try:
        _connection_from_flags(args)
        return args.func(args)
    except (UsageError, SettingsError, RestoreError, PriceError) as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:
        print(f"retier: {exc}", file=sys.stderr)
        return EXIT_RETRY if exc.transient else EXIT_USAGE
    finally:
        refused_is_transient(in_the_function)  # main() called in-process leaves nothing behind


def _connection_from_flags(args: argparse.Namespace) -> None:
    """--connection-string / --account-url: this run's connection, in the settings' own names (so
    every command, and every message, reads it as it reads the environment)."""
    import os

    from retier.settings import STORAGE, STORAGE_BLOB_SERVICE_URI

    conn = getattr(args, "connection_string", None)
    url = getattr(args, "account_url", None)
    if conn is not None and url is not None:
        raise UsageError("give --connection-string or --account-url, not both")
    if conn is not None:
        if conn == "-":
            if getattr(args, "file", None) == "-":
                raise UsageError("standard input holds the events: give the connection another way")
            conn = _read_secret("connection string: ")
        else:
            # Decided: accepted, with a warning. The key is now in this shell's history and, while
            # retier runs, in `ps` for every user of the machine.
            warn_secret_on_command_line(
                "--connection-string",
                conn,
                "RETIER_STORAGE, or --connection-string - to read it from standard input",
            )
        os.environ[STORAGE] = conn.strip()
        os.environ.pop(STORAGE_BLOB_SERVICE_URI, None)
    if url is not None:
        os.environ[STORAGE_BLOB_SERVICE_URI] = url.strip()
        os.environ.pop(STORAGE, None)


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    line = sys.stdin.readline().strip()
    if not line:
        raise UsageError("--connection-string -: standard input held no connection string")
    return line


if __name__ == "__main__":
    sys.exit(main())
