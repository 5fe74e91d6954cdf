"""A pytest plugin that fails the whole session if any log record or CLI output carries a secret.

Loaded by tests/conftest.py (`pytest_plugins`). For the whole session it checks every log record
that reaches the root logger (a handler at DEBUG on it), and it makes retier's records and those of
the libraries that hold the credentials (the Azure SDK and azure-identity, urllib3 under them)
exist at every level down to DEBUG, by setting those loggers to DEBUG. Records that exist only
because of that are hidden again from pytest's own log capture, so a test reading `caplog` sees
what it saw without the guard. It also reads the stdout and stderr of every subprocess run by a
test that uses the `run_retier` fixture (the real CLI). At the end it fails the session (exit
status 1) if any of them contained:

- an account key: Azurite's well-known key, and every `AccountKey=` value found in the
  connection strings of the environment (RETIER_TEST_STORAGE, RETIER_STORAGE,
  AZURE_CONNECTION_STRING);
- a connection string's key or token field: `AccountKey=`, `SharedAccessSignature=`;
- a SAS signature: `sig=` followed by a signature-length base64 value.

- a secret a test planted with `plant()` (a made-up key or SAS put into a setting on purpose,
  to prove no error path repeats it).

The report names the test, the logger and the kind of secret, and never prints the secret.
tests/test_secret_guard.py runs it on a session with deliberate leaks, in a subprocess.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field

import pytest

# Azurite's (and the Storage Emulator's) documented development key: public, but a log line
# that prints it would print a real account's key the same way.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONNECTION_ENV = ("RETIER_TEST_STORAGE", "RETIER_STORAGE", "AZURE_CONNECTION_STRING")
GUARDED_LOGGERS = ("retier", "azure", "urllib3")  # set to DEBUG for the session

_FIELDS = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature)\s*=[^;\s'\"]*")
# A SAS signature is an HMAC-SHA256 in base64 (44 characters), usually percent-encoded.
_SAS_SIGNATURE = re.compile(r"(?i)(?<![a-z0-9])sig=[a-z0-9%+/=]{20,}")


def keys_in(connection_string: str) -> list[str]:
    """The AccountKey values of a connection string (none when it has none)."""
    found = []
    for part in connection_string.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == "accountkey" and value.strip():
            found.append(value.strip())
    return found


@dataclass
class Leak:
    where: str  # test id, and the logger or the CLI stream
    kind: str
    line: str  # the offending text with the secret replaced


@dataclass
class Guard:
    secrets: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    records: int = 0
    outputs: int = 0
    current_test: str = "(outside any test)"

    def check(self, text: str, where: str) -> None:
        kinds = []
        redacted = text
        for secret in self.secrets:
            if secret in redacted:
                kinds.append("account key")
                redacted = redacted.replace(secret, "<account key>")
        for match in _FIELDS.finditer(redacted):
            kinds.append(f"connection string field {match.group(1)}=")
        redacted = _FIELDS.sub(lambda m: f"{m.group(1)}=<redacted>", redacted)
        if _SAS_SIGNATURE.search(redacted):
            kinds.append("SAS signature (sig=)")
            redacted = _SAS_SIGNATURE.sub("sig=<redacted>", redacted)
        if kinds:
            line = next((ln for ln in redacted.splitlines() if "<" in ln and ">" in ln), redacted)
            for kind in dict.fromkeys(kinds):
                self.leaks.append(Leak(f"{self.current_test}: {where}", kind, line.strip()[:300]))


class _GuardHandler(logging.Handler):
    def __init__(self, guard: Guard):
        super().__init__(logging.DEBUG)
        self.guard = guard
        self._render = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record still gets checked, raw
            text = f"{record.msg!s} {record.args!r}"
        if record.exc_info:
            text += "\n" + self._render.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        self.guard.records += 1
        self.guard.check(text, f"log {record.name} {record.levelname}")


_GUARD = Guard()
_STATE: dict = {}


def plant(*secrets: str) -> None:
    """Watch for these secrets too, for the rest of the session: a test that puts a made-up key in
    a setting plants it, and any log record or CLI output that repeats it fails the session."""
    known = set(_GUARD.secrets) | {s for s in secrets if s}
    _GUARD.secrets = sorted(known, key=len, reverse=True)


def _level_without_guard(name: str) -> int:
    """The effective level `name` would have if the guard had not lowered any logger."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        lowered = logger.name in GUARDED_LOGGERS and logger.level == logging.DEBUG
        if logger.level and not lowered:
            return logger.level
        logger = logger.parent
    return logging.WARNING


class _HideWhatOnlyTheGuardMadeExist(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= _level_without_guard(record.name)


def pytest_configure(config: pytest.Config) -> None:
    secrets = [AZURITE_KEY]
    for name in CONNECTION_ENV:
        secrets += keys_in(os.environ.get(name, ""))
    plant(*secrets)
    handler = _GuardHandler(_GUARD)
    logging.getLogger().addHandler(handler)
    _STATE.update(handler=handler, saved=[])
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        _STATE["saved"].append((logger, logger.level))
        logger.setLevel(logging.DEBUG)


def pytest_sessionstart(session: pytest.Session) -> None:
    # pytest's logging plugin registers itself last during configure: its handlers exist now.
    hide = _HideWhatOnlyTheGuardMadeExist()
    capture = session.config.pluginmanager.get_plugin("logging-plugin")
    for attr in ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler"):
        target = getattr(capture, attr, None)
        if isinstance(target, logging.Handler):
            target.addFilter(hide)
            _STATE.setdefault("filtered", []).append((target, hide))


def pytest_unconfigure(config: pytest.Config) -> None:
    handler = _STATE.pop("handler", None)
    if handler is None:
        return
    logging.getLogger().removeHandler(handler)
    for logger, level in _STATE.pop("saved"):
        logger.setLevel(level)
    for target, hide in _STATE.pop("filtered", []):
        target.removeFilter(hide)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _GUARD.current_test = item.nodeid
    try:
        return (yield)
    finally:
        _GUARD.current_test = "(between tests)"


@pytest.fixture(autouse=True)
def _secret_guard_reads_cli_output(request, monkeypatch):
    """In tests that run the real CLI, read every subprocess's stdout and stderr as well."""
    if "run_retier" not in request.fixturenames:
        yield
        return
    real_run = subprocess.run

    def run(*args, **kwargs):
        done = real_run(*args, **kwargs)
        for stream in ("stdout", "stderr"):
            text = getattr(done, stream, None)
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            if text:
                _GUARD.outputs += 1
                _GUARD.check(text, f"CLI {stream}")
        return done

    monkeypatch.setattr(subprocess, "run", run)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    if _GUARD.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    scanned = f"{_GUARD.records:,} log records and {_GUARD.outputs:,} CLI outputs"
    if not _GUARD.leaks:
        terminalreporter.write_line(f"secret guard: {scanned} checked, no secret found")
        return
    terminalreporter.section("secret guard: SECRETS IN LOGS OR CLI OUTPUT", red=True)
    for leak in _GUARD.leaks[:50]:
        terminalreporter.write_line(f"{leak.kind} in {leak.where}: {leak.line}", red=True)
    if len(_GUARD.leaks) > 50:
        terminalreporter.write_line(f"... and {len(_GUARD.leaks) - 50} more")
    terminalreporter.write_line(
        f"secret guard: {len(_GUARD.leaks)} secret(s) in {scanned}: session failed", red=True
    )
