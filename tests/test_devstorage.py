"""UseDevelopmentStorage=true: read as the storage SDK reads it, and working on Azurite at 127.0.0.1:10000.

The shorthand always means the emulator's default blob port, so the Azurite tests here need
127.0.0.1:10000: a session Azurite is started there (in memory) when the port is free, an Azurite
already there is used, and anything else there fails the tests (never skips them).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from bridge_support import ROOT, FunctionsHostStandIn, load_functions, run_cli_bridge
from conftest import start_azurite

from retier import settings as s
from retier.functions import service_from_environment
from retier.settings import SettingsError, account_from_connection_string, load_settings

DEV = "UseDevelopmentStorage=true"
PORT = 10000
T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2)]
SIGS = f"duplicity-full-signatures.{T}.sigtar.gpg"
MANIFEST = f"duplicity-full.{T}.manifest.gpg"
RETIERED = {VOLS[0]: "Cold", VOLS[1]: "Cold", SIGS: "Hot", MANIFEST: "Hot"}


# -- the shorthand, exactly as azure-storage-blob reads it (no server) ---------------------------


@pytest.mark.parametrize("value", [DEV, DEV + ";", "usedevelopmentstorage=true", " " + DEV + " "])
def test_the_shorthand_names_the_account_and_endpoint_the_storage_sdk_uses(value):
    cfg = load_settings({"RETIER_STORAGE": value})
    sdk = BlobServiceClient.from_connection_string(value.strip())
    assert cfg.account_name == sdk.account_name == s.DEVELOPMENT_STORAGE_ACCOUNT
    assert sdk.url.rstrip("/") == s.DEVELOPMENT_STORAGE_BLOB_ENDPOINT


@pytest.mark.parametrize(
    "value",
    ["UseDevelopmentStorage=True", "UseDevelopmentStorage = true", "UseDevelopmentStorage=1"],
)
def test_a_spelling_the_storage_sdk_refuses_is_refused_with_the_right_spelling(value):
    with pytest.raises(ValueError):
        BlobServiceClient.from_connection_string(value)
    with pytest.raises(SettingsError, match="exactly as UseDevelopmentStorage=true"):
        load_settings({"RETIER_STORAGE": value})


@pytest.mark.parametrize(
    "extra, named",
    [
        ("DevelopmentStorageProxyUri=http://ipv4.fiddler", "DevelopmentStorageProxyUri"),
        ("AccountName=other;AccountKey=c2VjcmV0LWtleQ==", "AccountKey, AccountName"),
    ],
)
def test_keys_the_storage_sdk_would_ignore_beside_the_shorthand_are_refused(extra, named):
    value = f"{DEV};{extra}"
    # The Python SDK silently ignores them (the .NET one honours a proxy URI) ...
    assert BlobServiceClient.from_connection_string(value).url.startswith("http://127.0.0.1:10000/")
    # ... so retier says so instead of talking to an endpoint the user did not mean.
    with pytest.raises(SettingsError, match=named) as info:
        account_from_connection_string(value)
    assert "c2VjcmV0LWtleQ" not in str(info.value)


def test_the_cli_takes_the_shorthand_from_duplicitys_variable_too():
    cli = load_settings({"AZURE_CONNECTION_STRING": DEV}, allow_duplicity_env=True)
    assert (cli.connection.source, cli.account_name) == (
        "AZURE_CONNECTION_STRING",
        "devstoreaccount1",
    )


def test_local_settings_example_uses_the_shorthand_for_retier_and_the_host():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert values["RETIER_STORAGE"] == values["AzureWebJobsStorage"] == DEV
    assert load_settings(values).account_name == "devstoreaccount1"


# -- on Azurite at 127.0.0.1:10000 ---------------------------------------------------------------


def _server_at_port() -> str | None:
    """The Server header of whatever answers HTTP on 127.0.0.1:10000; None if nothing listens."""
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
    except OSError:
        return None
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{PORT}/devstoreaccount1?comp=list", timeout=5
        ) as r:
            return r.headers.get("Server", "")
    except urllib.error.HTTPError as exc:  # Azurite answers 403 to an unsigned request
        return exc.headers.get("Server", "")
    except OSError as exc:
        return f"not HTTP ({type(exc).__name__})"


@pytest.fixture(scope="session")
def development_storage():
    """Azurite on the shorthand's fixed port: started here if free, reused if already Azurite."""
    server = _server_at_port()
    if server is not None:
        if not server.startswith("Azurite"):
            pytest.fail(
                f"127.0.0.1:{PORT} is taken by something that is not Azurite (Server: {server!r}); "
                f"{DEV} always means that port: free it to run these tests",
                pytrace=False,
            )
        yield DEV  # someone's Azurite: use it (containers here are unique and deleted)
        return
    with start_azurite(PORT):
        yield DEV


@pytest.fixture
def dev_container(development_storage):
    service = BlobServiceClient.from_connection_string(development_storage)
    name = f"t{uuid.uuid4().hex[:20]}"
    client = service.create_container(name)
    yield client
    client.delete_container()


def _tiers(client) -> dict[str, str]:
    return {b.name: b.blob_tier for b in client.list_blobs()}


@pytest.mark.azurite
def test_cli_sweeps_with_the_shorthand_from_either_variable(dev_container, run_retier):
    for name in [*VOLS, SIGS, MANIFEST]:
        dev_container.upload_blob(name, b"data")
    plan = run_retier(
        "sweep",
        "--container",
        dev_container.container_name,
        "--dry-run",
        "--json",
        env={"AZURE_CONNECTION_STRING": DEV},
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["containers"][0]["plan"]["listed"] == 4
    done = run_retier(
        "sweep", "--container", dev_container.container_name, env={"RETIER_STORAGE": DEV}
    )
    assert done.returncode == 0, done.stderr
    assert _tiers(dev_container) == RETIERED


@pytest.mark.azurite
def test_function_app_and_bridge_run_the_local_loop_on_the_shorthand(dev_container, monkeypatch):
    # local.settings.example.json's setting for the function, and the README's for the bridge.
    monkeypatch.setenv("RETIER_STORAGE", DEV)
    for name in ("RETIER_VOLUME_TIER", "RETIER_METADATA_TIER", "RETIER_CONTAINERS"):
        monkeypatch.delenv(name, raising=False)
    service_from_environment.cache_clear()
    host = FunctionsHostStandIn(load_functions()).start()
    try:
        for name in [*VOLS, SIGS, MANIFEST]:
            dev_container.upload_blob(name, b"data")
        returncode, out, err = run_cli_bridge(
            host,
            4,
            DEV,
            *("--container", dev_container.container_name, "--from-start", "--interval", "0.2"),
            *("--to", host.url() + "&code=c2VjcmV0LWtleQ", "--json"),
        )
    finally:
        host.stop()
        service_from_environment.cache_clear()
    assert returncode == 0, err
    assert _tiers(dev_container) == RETIERED
    urls = [json.loads(r.body)[0]["data"]["url"] for r in host.received]
    assert all(u.startswith("http://127.0.0.1:10000/devstoreaccount1/") for u in urls), urls
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted((x["blob"], x["status"], x["outcome"]) for x in lines) == sorted(
        (name, 202, "delivered") for name in RETIERED
    )
    assert "c2VjcmV0LWtleQ" not in out + err and "code=***" in err  # a function key is not shown
    assert "bridge stopped:" in err and "4 delivered" in err


@pytest.mark.azurite
@pytest.mark.duplicity
def test_duplicity_itself_accepts_the_shorthand(dev_container, tmp_path):
    from retier.demo import Duplicity

    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_text("the quick brown fox\n" * 100)
    Duplicity(DEV, dev_container.container_name, tmp_path / "cache").backup("full", source)
    kinds = sorted(n.split(".")[0] for n in _tiers(dev_container))
    assert kinds == ["duplicity-full", "duplicity-full", "duplicity-full-signatures"]
