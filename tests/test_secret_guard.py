"""The secret guard (tests/secret_guard.py) can fail: a pytest session with deliberate leaks, run
in a subprocess so that this session's own record stays clean."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from secret_guard import AZURITE_KEY

TESTS = Path(__file__).resolve().parent
OWN_KEY = "c2VjcmV0LWtleS1vZi10aGlzLWFjY291bnQ="  # stands for a real account's key
SIGNATURE = "A" * 43 + "%3D"
PLANTED = "cGxhbnRlZC1ieS1hLXRlc3QtaW4tYS1zZXR0aW5n"  # a made-up key a test puts in a setting

CONFTEST = """
import subprocess, sys
import pytest

pytest_plugins = ["secret_guard"]

@pytest.fixture
def run_retier():
    def run(text):
        return subprocess.run([sys.executable, "-c", f"print({text!r})"], capture_output=True,
                              text=True, check=False)
    return run
"""

LEAKY_TESTS = f"""
import logging

def test_a_debug_record_with_the_emulator_key():
    logging.getLogger("retier.storage").debug("connecting with key %s", {AZURITE_KEY!r})

def test_an_sdk_record_with_a_sas_url():
    logging.getLogger("azure.core.pipeline").info(
        "GET https://acct.blob.core.windows.net/c/b?sv=2024-01-01&sig={SIGNATURE}")

def test_the_configured_accounts_own_key_on_its_own():
    logging.getLogger("retier.service").warning("retrying with %s", {OWN_KEY!r})

def test_a_cli_that_prints_a_connection_string(run_retier):
    run_retier("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9v")

def test_a_planted_secret_repeated_in_an_error(run_retier):
    from secret_guard import plant

    plant("{PLANTED}")
    run_retier("retier: RETIER_STORAGE__blobServiceUri={PLANTED} is not a URL")

def test_an_exception_logged_with_its_message():
    try:
        raise ValueError("bad connection string ...;SharedAccessSignature=sv=2024&se=x")
    except ValueError:
        logging.getLogger("retier.cli").exception("failed")
"""

CLEAN_TESTS = """
import logging

def test_ordinary_records_and_output(run_retier):
    logging.getLogger("retier.service").info("event 1 backups/x.gpg status=handled sig=3 signatures")
    logging.getLogger("azure.core").debug("Request URL: 'https://acct.blob.core.windows.net/c?sig=REDACTED'")
    run_retier("moved 3 blobs; signatures stay online")
"""


def _session(tmp_path: Path, tests: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(tests))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["RETIER_TEST_STORAGE"] = (
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={OWN_KEY};EndpointSuffix=core.windows.net"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_session_that_leaks_fails_and_names_every_leak_without_repeating_it(tmp_path):
    done = _session(tmp_path, LEAKY_TESTS)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "6 passed" in out  # every test passed: the guard alone failed the session
    report = [line for line in out.splitlines() if " in test_inner.py::" in line]
    found = {(line.split(" in ")[0], line.split("::")[1].split(":")[0]) for line in report}
    assert found >= {
        ("account key", "test_a_debug_record_with_the_emulator_key"),
        ("SAS signature (sig=)", "test_an_sdk_record_with_a_sas_url"),
        ("account key", "test_the_configured_accounts_own_key_on_its_own"),
        ("account key", "test_a_planted_secret_repeated_in_an_error"),
        ("connection string field AccountKey=", "test_a_cli_that_prints_a_connection_string"),
        (
            "connection string field SharedAccessSignature=",
            "test_an_exception_logged_with_its_message",
        ),
    }
    for secret in (AZURITE_KEY, OWN_KEY, SIGNATURE, "Zm9v", PLANTED):
        assert secret not in out
    assert "secret guard: " in out and "session failed" in out


def test_a_clean_session_passes_and_says_what_it_checked(tmp_path):
    done = _session(tmp_path, CLEAN_TESTS)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "secret guard:" in out and "no secret found" in out
    assert "1 CLI outputs checked" in out


@pytest.mark.parametrize(
    "connection, keys",
    [
        (f"AccountName=a;AccountKey={OWN_KEY};BlobEndpoint=x", [OWN_KEY]),
        ("UseDevelopmentStorage=true", []),
        ("BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x", []),
        ("", []),
    ],
)
def test_keys_are_read_from_connection_strings(connection, keys):
    from secret_guard import keys_in

    assert keys_in(connection) == keys
