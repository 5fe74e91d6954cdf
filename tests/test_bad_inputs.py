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


# -- container names (item 3) ----------------------------------------------------------------------
CONTAINER_COMMANDS = [
    ["sweep", "--dry-run"],
    ["cost"],
    ["doctor"],
    ["restore-plan"],
    ["status"],
    ["rehydrate", "--dry-run"],
    ["release"],
    ["emit-events"],
    ["bridge"],
]


@pytest.mark.parametrize("command", CONTAINER_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    "typed, named",
    [
        ("", "empty container name (an unset shell variable?)"),
        ("Backups", "did you mean 'backups'?"),
        ("back_ups", "did you mean 'back-ups'?"),
    ],
)
def test_a_bad_container_name_is_refused_before_any_request(command, typed, named, run_retier):
    # A closed port: any request would fail differently (exit 1, "connection").
    env = {"RETIER_STORAGE": _closed_port_connection()}
    proc = run_retier(*command, "--container", typed, env=env)
    assert_refused(proc, 2, "argument --container", named, "lowercase letters, digits and hyphens")


def test_a_bad_dead_letter_container_is_refused_too(run_retier):
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        "Retier-Dead-Letter",
        env={"RETIER_STORAGE": _closed_port_connection()},
    )
    assert_refused(proc, 2, "--dead-letter-container", "did you mean 'retier-dead-letter'?")


def test_containers_separated_by_a_space_stop_doctor_and_name_the_fix(run_retier):
    proc = run_retier(
        "doctor",
        env={"RETIER_STORAGE": _closed_port_connection(), "RETIER_CONTAINERS": "backups other"},
    )
    assert_refused(proc, 2, "RETIER_CONTAINERS", "did you mean 'backups,other'?")
    assert proc.stdout.startswith("fail  settings:"), proc.stdout


@pytest.mark.azurite
def test_duplicitys_url_for_a_container_is_taken_for_the_container(
    container, azurite_connection_string, run_retier
):
    proc = run_retier(
        "sweep",
        "--container",
        f"azure://{container}",
        "--dry-run",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{container}: 0 blobs listed (dry run")


def _closed_port_connection() -> str:
    from conftest import ACCOUNT_KEY, connection_string, free_port

    plant(ACCOUNT_KEY)
    return connection_string(free_port())
