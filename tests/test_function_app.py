"""function_app.py as the Functions Python worker loads it: its binding, and its function called directly."""

from __future__ import annotations

import datetime
import functools
import json

import azure.functions as func
import pytest

import function_app
from retier.functions import RetryLater, service_from_environment

T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2)]
MANIFEST = f"duplicity-full.{T}.manifest.gpg"
SIGS = f"duplicity-full-signatures.{T}.sigtar.gpg"


@functools.lru_cache(maxsize=1)
def _functions():
    # get_functions() indexes the app as the worker does, and may run only once per app object.
    return {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def _function():
    return _functions()["retier_blob_created"]


def test_app_registers_exactly_the_event_and_the_timer_functions():
    assert sorted(_functions()) == ["retier_blob_created", "retier_sweep"]


def test_timer_binding_runs_daily_by_default():
    (binding,) = _functions()["retier_sweep"].get_bindings()
    spec = binding.get_dict_repr()
    assert spec["type"] == "timerTrigger" and spec["name"] == "timer"
    assert spec["schedule"] == "0 30 3 * * *" and spec["runOnStartup"] is False


def test_app_registers_one_event_grid_trigger_named_retier_blob_created():
    fn = _function()
    (binding,) = fn.get_bindings()
    assert binding.get_dict_repr() == {
        "type": "eventGridTrigger",
        "direction": func.decorators.core.BindingDirection.IN,
        "name": "event",
    }
    assert json.loads(fn.get_function_json())["bindings"][0]["type"] == "eventGridTrigger"


def _grid_event(container: str, blob: str, port_url: str) -> func.EventGridEvent:
    return func.EventGridEvent(
        id="e-1",
        data={
            "api": "PutBlob",
            "contentLength": 10,
            "blobType": "BlockBlob",
            "url": f"{port_url}/{container}/{blob}",
        },
        topic="/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        subject=f"/blobServices/default/containers/{container}/blobs/{blob}",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=datetime.datetime(2024, 1, 1, 2, 3, 5, tzinfo=datetime.timezone.utc),
        data_version="",
    )


@pytest.mark.azurite
def test_registered_function_archives_the_sets_volumes_on_a_manifest_event(
    blob_service, container, function_env
):
    function_env.setenv("RETIER_VOLUME_TIER", "Archive")
    client = blob_service.get_container_client(container)
    for name in [*VOLS, SIGS, MANIFEST]:
        client.upload_blob(name, b"data")
    base = blob_service.url.rstrip("/")
    user_function = _function().get_user_function()
    assert user_function(_grid_event(container, MANIFEST, base)) is None
    tiers = {b.name: b.blob_tier for b in client.list_blobs()}
    assert tiers == {VOLS[0]: "Archive", VOLS[1]: "Archive", SIGS: "Hot", MANIFEST: "Hot"}


@pytest.mark.azurite
def test_registered_function_raises_for_a_transient_failure_so_event_grid_redelivers(
    container, function_env
):
    unreachable = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    function_env.setenv("RETIER_STORAGE", unreachable)
    # Seam for speed only: the function's own in-process retries would wait ~10 s for a port that refuses.
    function_env.setattr("retier.storage.RETRY_TOTAL", 0)
    service_from_environment.cache_clear()
    with pytest.raises(RetryLater):
        _function().get_user_function()(
            _grid_event(container, MANIFEST, "http://127.0.0.1:9/devstoreaccount1")
        )


@pytest.mark.azurite
def test_registered_function_returns_quietly_for_an_event_it_ignores(
    blob_service, container, function_env, caplog
):
    client = blob_service.get_container_client(container)
    for name in [
        *VOLS,
        SIGS,
        MANIFEST,
        "notes.txt",
    ]:  # a finished set beside it: the event must not finish it
        client.upload_blob(name, b"data")
    with caplog.at_level("INFO"):
        assert (
            _function().get_user_function()(
                _grid_event(container, "notes.txt", blob_service.url.rstrip("/"))
            )
            is None
        )
    assert {b.blob_tier for b in client.list_blobs()} == {"Hot"}
    (said,) = [r.getMessage() for r in caplog.records if "notes.txt" in r.getMessage()]
    assert "status=ignored" in said and "not a duplicity object" in said


class _Timer(func.TimerRequest):
    past_due = False


@pytest.mark.azurite
def test_timer_sweeps_the_configured_containers(blob_service, container, function_env):
    function_env.setenv("RETIER_CONTAINERS", container)
    client = blob_service.get_container_client(container)
    for name in [*VOLS, SIGS, MANIFEST, "notes.txt"]:
        client.upload_blob(name, b"data")
    assert _functions()["retier_sweep"].get_user_function()(_Timer()) is None
    assert {b.name: b.blob_tier for b in client.list_blobs()} == {
        VOLS[0]: "Cold",
        VOLS[1]: "Cold",
        SIGS: "Hot",
        MANIFEST: "Hot",
        "notes.txt": "Hot",
    }


@pytest.mark.azurite
def test_timer_fails_the_run_naming_a_container_it_could_not_sweep_and_sweeps_the_others(
    blob_service, container, function_env
):
    from retier.functions import RetryLater

    gone = container + "-gone"
    function_env.setenv("RETIER_CONTAINERS", f"{container},{gone}")
    client = blob_service.get_container_client(container)
    for name in [*VOLS, MANIFEST]:
        client.upload_blob(name, b"data")
    with pytest.raises(RetryLater, match=f"sweep incomplete for {gone}$"):
        _functions()["retier_sweep"].get_user_function()(_Timer())
    assert {b.name: b.blob_tier for b in client.list_blobs()} == {
        VOLS[0]: "Cold",
        VOLS[1]: "Cold",
        MANIFEST: "Hot",
    }


@pytest.mark.azurite
def test_timer_without_containers_sweeps_nothing_and_says_so_once(function_env, caplog):
    import retier.functions

    function_env.setattr(retier.functions, "_said_no_containers", False)
    timer = _functions()["retier_sweep"].get_user_function()
    with caplog.at_level("WARNING"):
        timer(_Timer())
        timer(_Timer())
    said = [r for r in caplog.records if "RETIER_CONTAINERS is unset" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.azurite
def test_timer_leaves_a_held_container_alone(
    blob_service, container, function_env, azurite_connection_string
):
    from retier.settings import Connection
    from retier.storage import BlobStore

    function_env.setenv("RETIER_CONTAINERS", container)
    client = blob_service.get_container_client(container)
    for name in [*VOLS, MANIFEST]:
        client.upload_blob(name, b"data")
    BlobStore.from_connection(Connection(connection_string=azurite_connection_string)).set_hold(
        container, "restore"
    )
    _functions()["retier_sweep"].get_user_function()(_Timer())
    assert {b.blob_tier for b in client.list_blobs()} == {"Hot"}


def test_bad_schedule_is_refused_naming_the_setting(monkeypatch):
    from retier.settings import SettingsError, sweep_schedule

    with pytest.raises(SettingsError, match="RETIER_SWEEP_SCHEDULE"):
        sweep_schedule({"RETIER_SWEEP_SCHEDULE": "every day"})
    assert sweep_schedule({"RETIER_SWEEP_SCHEDULE": "0 0 */6 * * *"}) == "0 0 */6 * * *"


def test_a_cold_start_imports_only_what_an_event_needs():
    # The worker imports function_app before the first event: the handler's modules only. The
    # sweep (and the price table it imports) loads at the first timer run, azure.identity only for
    # an identity-based connection, the CLI never.
    import subprocess
    import sys
    from pathlib import Path

    probe = "import sys, function_app; print(*sorted(sys.modules))"
    root = Path(__file__).resolve().parent.parent
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in loaded if m.split(".")[0] == "retier"] == [
        "retier",
        "retier.errors",
        "retier.events",
        "retier.functions",
        "retier.names",
        "retier.policy",
        "retier.service",
        "retier.settings",
        "retier.storage",
    ]
    assert "azure.identity" not in loaded


def test_publish_leaves_out_the_local_tools_and_keeps_what_the_app_imports():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ignored = {
        line.strip().rstrip("/")
        for line in (root / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # Azurite (.tools), the virtualenv and the test and bench code must not be uploaded ...
    assert {".venv", ".tools", "tests", "bench", "local.settings.json"} <= ignored
    # ... and nothing the app imports or the host reads may be left out.
    assert not ignored & {"retier", "function_app.py", "host.json", "requirements.txt"}
