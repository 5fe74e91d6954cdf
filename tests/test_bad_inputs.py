"""What a tired admin types: every bad input named, exit 2 (usage) or 1 (failure), no traceback,
no secret (issue 15). Each case runs the real `python -m retier` in a subprocess."""

from __future__ import annotations

import pytest
from secret_guard import plant

# A made-up account key with the shape of Azure's (88 characters of base64): planted in settings,
# watched by the session's secret guard in every CLI output.
KEY = "Zm9vYmFy" * 10 + "S2V5MTIzNDU2Nzg5MA=="
CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    "EndpointSuffix=core.windows.net"
)


def assert_refused(proc, code: int, *named: str) -> None:
    """Exit `code`, one message on stderr naming the problem, no traceback, no secret."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    for fragment in (KEY, KEY[:24], "AccountKey="):
        assert fragment not in out, out
    for words in named:
        assert words in out, out


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "--container", "backups", "--dry-run"],
        ["cost", "--container", "backups"],
        ["doctor", "--container", "backups"],
        ["restore-plan", "--container", "backups"],
        ["replay", "--dead-letter-container", "retier-dead-letter", "--dry-run"],
    ],
)
def test_a_connection_string_in_the_url_setting_is_named_never_printed(command, run_retier):
    """The leak as reported: RETIER_STORAGE__blobServiceUri holding a connection string."""
    plant(KEY)
    proc = run_retier(*command, env={"RETIER_STORAGE__blobServiceUri": CONNECTION})
    assert_refused(
        proc,
        2,
        "RETIER_STORAGE__blobServiceUri",
        "looks like a connection string",
        "RETIER_STORAGE",
    )


def test_a_connection_string_typed_as_an_argument_is_not_printed_back(run_retier):
    plant(KEY)
    proc = run_retier("sweep", CONNECTION)
    assert_refused(proc, 2, "unrecognized arguments", "looks like a connection string")


def test_a_connection_string_as_the_dead_letter_url_is_named_never_printed(run_retier):
    plant(KEY)
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        "retier-dead-letter",
        "--dead-letter-storage",
        f"https://acct.blob.core.windows.net/?sv=2024-11-04&sig={KEY}",
        env={"RETIER_STORAGE": "UseDevelopmentStorage=true"},
    )
    assert_refused(proc, 2, "--dead-letter-storage", "SAS")
