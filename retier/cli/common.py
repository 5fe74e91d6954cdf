"""What every command shares: exit codes, usage errors, reading input, printing, the service."""

from __future__ import annotations

import json
import sys

# Sizes are shown in the price table's gigabytes (2^30 bytes) wherever they are printed.
from retier.costs import format_bytes as human_bytes  # noqa: F401 (re-exported for the commands)

EXIT_OK = 0
EXIT_RETRY = 1  # something failed that a retry could fix
EXIT_USAGE = 2  # bad usage or bad input


class UsageError(Exception):
    """Bad arguments or input: exit code 2 with a one-line message."""


def warn_secret_on_command_line(option: str, value: str, instead: str) -> None:
    """A key typed as an argument stays in shell history and shows in `ps`: accepted (the user
    chose it), with this warning once per run. Never repeats the value."""
    from retier.errors import is_plain

    if value != "-" and not is_plain(value) and not value.lower().startswith("https://"):
        print(
            f"retier: warning: a secret given to {option} on the command line stays in your shell "
            f"history and shows in `ps`; prefer {instead}",
            file=sys.stderr,
        )


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")


def read_text(path: str) -> str:
    """A file's text, or standard input's for "-"."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def read_json(path: str):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def make_service():
    from retier.service import RetierService
    from retier.settings import load_settings
    from retier.storage import BlobStore

    settings = load_settings(
        allow_duplicity_env=True
    )  # the CLI may use duplicity's AZURE_CONNECTION_STRING
    return RetierService(settings, BlobStore.from_connection(settings.require_connection()))
