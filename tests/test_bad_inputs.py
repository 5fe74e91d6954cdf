"""What a tired admin types: every bad input named, exit 2 (usage) or 1 (failure), no traceback,
no secret (issue 15). Each case runs the real `python -m retier` in a subprocess."""

from __future__ import annotations

import pytest
from conftest import free_port
from secret_guard import plant

# A made-up account key with the shape of Azure's (88 characters of base64): planted in settings,
# watched by the session's secret guard in every CLI output.
KEY = "Zm9vYmFy" * 10 + "S2V5MTIzNDU2Nzg5MA=="
CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    "EndpointSuffix=core.windows.net"
)


def run_each(run_retier, commands, env):
    """Run every command side by side (each is a fresh interpreter: mostly waiting)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: run_retier(*command, env=env), commands))


def assert_refused(proc, code: int, *named: str) -> None:
    """Exit `code`, one message on stderr naming the problem, no traceback, no secret."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    for fragment in (KEY, KEY[:24], "AccountKey="):
        assert fragment not in out, out
    for words in named:
        assert words in out, out


LEAK_COMMANDS = [
    ["sweep", "--container", "backups", "--dry-run"],
    ["cost", "--container", "backups"],
    ["doctor", "--container", "backups"],
    ["restore-plan", "--container", "backups"],
    ["replay", "--dead-letter-container", "retier-dead-letter", "--dry-run"],
]


def test_a_connection_string_in_the_url_setting_is_named_never_printed(run_retier):
    """The leak as reported: RETIER_STORAGE__blobServiceUri holding a connection string."""
    plant(KEY)
    env = {"RETIER_STORAGE__blobServiceUri": CONNECTION}
    for proc in run_each(run_retier, LEAK_COMMANDS, env):
        assert_refused(
            proc,
            2,
            "RETIER_STORAGE__blobServiceUri",
            "looks like a connection string",
            "belongs in RETIER_STORAGE",
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


BAD_CONTAINERS = [
    ("", "empty container name (an unset shell variable?)"),
    ("Backups", "did you mean 'backups'?"),
    ("back_ups", "did you mean 'back-ups'?"),
]


@pytest.mark.parametrize("command", CONTAINER_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("typed, named", BAD_CONTAINERS)
def test_every_command_refuses_a_bad_container_name_as_it_parses(command, typed, named, capsys):
    """In-process (the check is the parser's, so no request can come before it)."""
    from retier.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--container", typed])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "argument --container" in err and named in err, err
    assert "lowercase letters, digits and hyphens" in err


@pytest.mark.parametrize("typed, named", BAD_CONTAINERS)
def test_a_bad_container_name_is_refused_before_any_request(typed, named, run_retier):
    # A closed port: any request would fail differently (exit 1, "no answer").
    env = {"RETIER_STORAGE": _closed_port_connection()}
    proc = run_retier("sweep", "--container", typed, env=env)
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


# -- failures named for what they are (item 4) ------------------------------------------------------
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="  # base64, but not the account's key
STORAGE_COMMANDS = [
    ["sweep", "--container", "backups", "--dry-run"],
    ["cost", "--container", "backups"],
    ["restore-plan", "--container", "backups"],
    ["status", "--container", "backups"],
    ["emit-events", "--container", "backups"],
]


def _with_key(connection: str, key: str) -> str:
    from conftest import ACCOUNT_KEY

    return connection.replace(ACCOUNT_KEY, key)


@pytest.mark.azurite
def test_a_wrong_key_is_named_a_refused_credential_not_a_retry(
    azurite_connection_string, run_retier
):
    plant(WRONG_KEY)
    env = {"RETIER_STORAGE": _with_key(azurite_connection_string, WRONG_KEY)}
    for proc in run_each(run_retier, STORAGE_COMMANDS, env):
        assert_refused(
            proc,
            2,
            "storage refused the account key in RETIER_STORAGE (HTTP 403",
            "copy the key again",
        )
        assert "retried" not in proc.stdout + proc.stderr


@pytest.mark.azurite
def test_doctor_names_a_wrong_key_as_refused(azurite_connection_string, run_retier):
    plant(WRONG_KEY)
    proc = run_retier(
        "doctor",
        "--container",
        "backups",
        env={"RETIER_STORAGE": _with_key(azurite_connection_string, WRONG_KEY)},
    )
    assert_refused(proc, 1, "storage refused the account key in RETIER_STORAGE")


@pytest.mark.parametrize(
    "connection, named",
    [
        (
            lambda: _closed_port_connection().replace("AccountKey=", "AccountKy="),
            "did you mean AccountKey?",
        ),
        (
            lambda: _with_key(
                _closed_port_connection(), "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uS"
            ),
            "AccountKey is not base64 (cut short when copied?)",
        ),
    ],
    ids=["AccountKy typo", "key cut short"],
)
def test_a_broken_connection_string_is_named_before_any_request(connection, named, run_retier):
    proc = run_retier(*STORAGE_COMMANDS[0], env={"RETIER_STORAGE": connection()})
    assert_refused(proc, 2, "RETIER_STORAGE: connection string", named)


def test_a_closed_port_names_the_endpoint_in_every_command(run_retier):
    connection = _closed_port_connection()
    endpoint = connection.split("BlobEndpoint=")[1].rstrip(";")
    # The client retries a refused connection for some seconds: the commands run side by side.
    for proc in run_each(run_retier, STORAGE_COMMANDS, {"RETIER_STORAGE": connection}):
        assert_refused(proc, 1, f"no answer from {endpoint} (connection failed", "running")
        # said once: the sweep's log line for the Function is not repeated beside its report
        assert (proc.stdout + proc.stderr).count("no answer from") == 1, proc.stdout + proc.stderr


def test_no_azure_sign_in_is_one_line_naming_the_credentials_tried(tmp_path, run_retier):
    # No az, no PowerShell, no azd on PATH, no token cache in HOME: DefaultAzureCredential finds
    # nothing, as on a machine where nobody signed in.
    url = f"https://127.0.0.1:{free_port()}/devstoreaccount1"
    env = {"RETIER_STORAGE__blobServiceUri": url, "PATH": str(tmp_path), "HOME": str(tmp_path)}
    proc = run_retier("sweep", "--container", "backups", "--dry-run", env=env)
    assert_refused(proc, 2, "no token for your Azure sign-in", "Azure CLI", "az login")
    assert len(proc.stderr.strip().splitlines()) <= 1, proc.stderr  # not the 40-line dump
    assert "Attempted credentials" not in proc.stdout + proc.stderr


def test_an_identity_over_plain_http_is_a_setting_error(run_retier):
    env = {"RETIER_STORAGE__blobServiceUri": "http://127.0.0.1:10000/devstoreaccount1"}
    proc = run_retier("sweep", "--container", "backups", "--dry-run", env=env)
    assert_refused(proc, 2, "RETIER_STORAGE__blobServiceUri", "https only", "UseDevelopmentStorage")


@pytest.fixture(scope="module")
def strict_azurite():
    """An Azurite started without --skipApiVersionCheck, as a newcomer starts it."""
    from conftest import connection_string, start_azurite

    port = free_port()
    with start_azurite(port, skip_api_version_check=False):
        yield connection_string(port)


@pytest.mark.parametrize("command", STORAGE_COMMANDS[:3], ids=lambda c: c[0])
def test_azurite_without_skip_api_version_check_passes_on_azurites_advice(
    command, strict_azurite, run_retier
):
    proc = run_retier(*command, env={"RETIER_STORAGE": strict_azurite})
    assert_refused(proc, 2, "Azurite says", "--skipApiVersionCheck")


@pytest.mark.parametrize("model", [False, True], ids=["container", "model"])
def test_a_chart_path_that_cannot_be_written_is_refused_before_the_report(model, run_retier):
    args = (
        ["--model", "--source-gb", "10", "--daily-change", "1", "--full-every-days", "7"]
        + ["--keep-days", "30"]
        if model
        else ["--container", "backups"]
    )
    proc = run_retier(
        "cost",
        *args,
        "--chart",
        "/nonexistent/x.png",
        env={"RETIER_STORAGE": _closed_port_connection()},
    )
    assert_refused(proc, 2, "--chart /nonexistent/x.png: no directory /nonexistent")
    assert proc.stdout == ""  # refused before any work, not after the report


@pytest.mark.azurite
def test_the_function_keeps_retrying_a_refused_credential_and_says_why(
    container, azurite_connection_string
):
    """In the Function a 403 may be a role assignment still applying: retried, and said so."""
    from retier.service import RETRY, RetierService
    from retier.settings import load_settings
    from retier.storage import BlobStore

    plant(WRONG_KEY)
    settings = load_settings({"RETIER_STORAGE": _with_key(azurite_connection_string, WRONG_KEY)})
    service = RetierService(settings, BlobStore.from_connection(settings.connection))
    manifest = "duplicity-full.20240101T020304Z.manifest.gpg"
    event = {
        "id": "1",
        "topic": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{manifest}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-01-01T02:03:05Z",
        "dataVersion": "",
        "data": {
            "api": "PutBlob",
            "url": f"http://127.0.0.1:1/devstoreaccount1/{container}/{manifest}",
        },
    }
    outcome = service.handle_event(event)
    assert outcome.status == RETRY, outcome.reason
    assert "storage refused the account key" in outcome.reason
    assert "retried meanwhile, in case a new role assignment is still applying" in outcome.reason
