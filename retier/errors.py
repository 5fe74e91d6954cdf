"""retier's exception classes, and the one rule for quoting a user's value in a message.

A light home (no Azure SDK): `retier classify` and `retier --help` import it without loading the
storage SDK, and the Function, the CLI, doctor, restore and the bridge raise and catch the same
classes. The modules that defined them first re-export them under their old names.
"""

from __future__ import annotations

import re


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the setting and never its secret value."""


class PriceError(ValueError):
    """The price override file is missing or malformed."""


class RestoreError(ValueError):
    """The container or the request cannot give a restore plan (no chain, ambiguous prefix, bad time)."""


class StorageError(Exception):
    """A storage call failed; `transient` says whether retrying later can help.

    `refused` is set when storage, or the identity's token service, refused the credential: a
    retry helps only once the credential is fixed or a new role assignment has propagated.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        code: str | None = None,
        refused: bool = False,
    ):
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.code = code
        self.refused = refused


# Whether a refused credential (HTTP 401/403, or no token) is worth retrying. In the Function it
# is, for a while: a role assignment made by the deployment can take minutes to apply, and Event
# Grid redelivers meanwhile. At a terminal it is not: a person must fix the credential, and the
# CLI's main sets this to False so that such a failure exits 2, not "retry later".
REFUSED_IS_TRANSIENT = {"value": True}


def refused_is_transient(value: bool | None = None) -> bool:
    """Read (or, with `value`, set) whether refused credentials count as transient failures."""
    if value is not None:
        REFUSED_IS_TRANSIENT["value"] = value
    return REFUSED_IS_TRANSIENT["value"]


# What a value may look like to be quoted back in a message: short, in the characters of tier
# names, container names, paths, cron expressions and plain URLs. Anything with `=`, `;`, `?`,
# `&` or `@` (connection strings, SAS tokens, URLs with a query or a user) is never quoted, nor a
# long run of base64 (an account key, or part of one).
_PLAIN = re.compile(r"[A-Za-z0-9 ._:/*,+-]*")
# A key's base64 mixes upper and lower case and digits; a path or a host name rarely does.
_RUN = re.compile(r"[A-Za-z0-9+/]{20,}")


def _keylike(value: str) -> bool:
    return any(
        re.search("[a-z]", run) and re.search("[A-Z]", run) and re.search("[0-9]", run)
        for run in _RUN.findall(value)
    )


def is_plain(value: str, *, limit: int = 64) -> bool:
    """Whether `value` may be quoted in a message: it cannot be a key, SAS or connection string."""
    return len(value) <= limit and bool(_PLAIN.fullmatch(value)) and not _keylike(value)


def shown(value: str, *, limit: int = 64) -> str:
    """`value` quoted for a message when it cannot hold a secret; otherwise only its shape.

    Every message that repeats what the user typed or set goes through here (settings.py's rule:
    name the setting and the shape expected, never echo a secret).
    """
    if is_plain(value, limit=limit):
        return repr(value)
    return f"(a value of {len(value)} characters, not shown: {shape(value)})"


def shape(value: str) -> str:
    """What a hidden value looks like, in words: enough to see the mistake, nothing of the value."""
    lowered = value.lower()
    if (
        "accountkey=" in lowered
        or "sharedaccesssignature=" in lowered
        or ("=" in value and ";" in value)
    ):
        return "it looks like a connection string"
    if lowered.startswith(("https://", "http://")) and "?" in value:
        return "a URL with a query, perhaps a SAS token"
    if "sig=" in lowered or "se=" in lowered:
        return "it looks like a SAS token"
    if _keylike(value):
        return "it looks like a key"
    return "it could hold a secret"


# Text inside quotes in a message that is not ours (argparse's "invalid choice: 'x'").
_QUOTED = re.compile(r"'([^']*)'")


_UNRECOGNIZED = "unrecognized arguments: "


def redact_usage_error(message: str) -> str:
    """argparse's message with every value it repeats that could be a secret replaced by its shape.

    argparse quotes a refused value ("invalid choice: 'x'") and lists unrecognized arguments
    bare; a connection string typed in the wrong place would be printed whole by either.
    """
    message = _QUOTED.sub(
        lambda m: m.group(0) if is_plain(m.group(1)) else shown(m.group(1)), message
    )
    head, sep, rest = message.partition(_UNRECOGNIZED)
    if sep:
        rest = " ".join(word if is_plain(word) else shown(word) for word in rest.split(" "))
    return head + sep + rest
