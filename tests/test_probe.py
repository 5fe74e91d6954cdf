"""retier probe: a canary set goes through Event Grid -> function -> tier change, and is deleted.

Storage is Azurite. Events reach the real function (function_app.py, run by FunctionsHostStandIn)
through `retier bridge`'s Bridge, as `func start` would get them; the dead-letter cases use the
test bed's Event Grid stand-in (faultbed/eventgrid.py). The duplicity test runs the real
duplicity against the same container while the canary is there and after it is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from bridge_support import FunctionsHostStandIn, load_functions
from conftest import ACCOUNT_KEY

from faultbed.eventgrid import Answer, EventGridStandIn, function_endpoint, serving
from retier import names
from retier.bridge import Bridge
from retier.costs import early_deletion_for_days, load_prices
from retier.emulate import blob_created_event
from retier.names import Kind
from retier.probe import (
    CANARY_PREFIX,
    EVENT,
    FUNCTION_NAME,
    INVOCATION,
    MANIFEST_DATA,
    TIER,
    VOLUME_DATA,
    Canary,
    Hints,
    Prober,
    diagnosis_commands,
    make_canary,
)
from retier.service import RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobStore

WHEN = datetime(2026, 12, 4, 15, 0, 0, tzinfo=timezone.utc)
PREFIX_SETTINGS = [
    {},
    {"RETIER_FILE_PREFIX_ARCHIVE": "archive_"},
    {"RETIER_FILE_PREFIX_MANIFEST": "meta-"},
    {"RETIER_FILE_PREFIX_ARCHIVE": "cold/", "RETIER_FILE_PREFIX_MANIFEST": "hot/"},
]


def _settings(conn: str | None = None, **env: str):
    return load_settings({**({"RETIER_STORAGE": conn} if conn else {}), **env})


def _listing(store: BlobStore, container: str) -> dict[str, str]:
    return {item.name: item.tier for item in store.list_blobs(container)}


def _canary_blobs(store: BlobStore, container: str) -> list[str]:
    return [item.name for item in store.list_blobs(container, CANARY_PREFIX)]


# -- the canary's names (pure, with duplicity's own parser as the oracle) ------------------------


@contextlib.contextmanager
def duplicity_prefixes(prefix: str = "", archive: str = "", manifest: str = "") -> Iterator:
    """duplicity's --file-prefix, --file-prefix-archive, --file-prefix-manifest for the block."""
    from duplicity import config, file_naming

    attrs = ("file_prefix", "file_prefix_archive", "file_prefix_manifest")
    saved = {a: getattr(config, a) for a in attrs}
    try:
        for attr, value in zip(attrs, (prefix, archive, manifest), strict=True):
            setattr(config, attr, re.escape(value.encode()))
        file_naming.prepare_regex(force=True)
        yield file_naming
    finally:
        for attr, value in saved.items():
            setattr(config, attr, value)
        file_naming.prepare_regex(force=True)


@pytest.mark.parametrize("env", PREFIX_SETTINGS, ids=lambda e: ",".join(e.values()) or "none")
def test_canary_is_a_finished_set_to_retier_that_the_filter_delivers_and_duplicity_ignores(env):
    settings = _settings(**env)
    canary = make_canary(settings, run_id="abc123", when=WHEN)
    volume, manifest = names.parse(canary.volume), names.parse(canary.manifest)
    # retier: one finished full set, found where the function lists it.
    assert (volume.kind, manifest.kind) == (Kind.VOLUME, Kind.MANIFEST)
    assert names.set_key(volume, **settings.name_prefixes) == names.set_key(
        manifest, **settings.name_prefixes
    )
    assert canary.volume.startswith(names.volume_listing_prefix(manifest, **settings.name_prefixes))
    assert settings.policy.target(volume) == "Cold" and settings.policy.target(manifest) is None
    # the deployment's filter: the manifest's event is delivered, the volume's is not needed
    assert any(canary.manifest.endswith(s) for s in names.event_filter_suffixes())
    assert not any(canary.volume.endswith(s) for s in names.event_filter_suffixes())
    assert all(n.startswith(canary.prefix) and "/" not in canary.prefix for n in canary.blobs)
    # duplicity, configured as the user's backups are, does not recognise either name...
    archive = env.get("RETIER_FILE_PREFIX_ARCHIVE", "")
    meta = env.get("RETIER_FILE_PREFIX_MANIFEST", "")
    for dup_prefixes in [("", archive, meta), ("host1/", archive, meta), ("", "", "")]:
        with duplicity_prefixes(*dup_prefixes) as file_naming:
            assert [file_naming.parse(n.encode()) for n in canary.blobs] == [None, None]
    # ...but would, were the run prefix its --file-prefix: the test can see a recognised name.
    with duplicity_prefixes(canary.prefix, archive, meta) as file_naming:
        assert file_naming.parse(canary.volume.encode()).volume_number == 1
        assert file_naming.parse(canary.manifest.encode()).manifest


def test_each_probe_has_its_own_names():
    settings = _settings()
    a = make_canary(settings, run_id="a1", when=WHEN)
    b = make_canary(settings, run_id="b2", when=WHEN)
    assert a.prefix == f"{CANARY_PREFIX}a1." and not b.volume.startswith(a.prefix)


def test_the_checked_function_is_the_one_function_app_registers():
    assert FUNCTION_NAME in load_functions()


def test_failure_checks_name_the_hints_and_placeholders_otherwise():
    canary = Canary("retier-probe-x.", "v", "retier-probe-x.duplicity-full.T.manifest")
    given = diagnosis_commands(
        Hints(
            function_app="retier-abc",
            resource_group="rg-retier",
            system_topic="evgt-retier-abc",
            event_subscription="retier-blob-created-retier-abc",
        ),
        account="backupacct",
        canary=canary,
    )
    assert given[EVENT].startswith(
        "az eventgrid system-topic event-subscription show --name retier-blob-created-retier-abc "
        "--system-topic-name evgt-retier-abc --resource-group "
        '"$(az storage account show --name backupacct --query resourceGroup -o tsv)"'
    )
    assert "provisioningState" in given[EVENT] and "filter:filter" in given[EVENT]
    assert "--resource-group rg-retier" in given[INVOCATION]
    assert given["function"] == (
        "az functionapp function show --name retier-abc --resource-group rg-retier "
        '--function-name retier_blob_created --query "{name:name, disabled:isDisabled}"'
    )
    assert f'contains "{canary.prefix}"' in given["log_query"]
    bare = diagnosis_commands(Hints(), account="backupacct", canary=canary)
    assert "--name retier-blob-created " in bare[EVENT] and "<system-topic>" in bare[EVENT]
    assert "<function-app-resource-group>" in bare[INVOCATION]


# -- bad usage and --dry-run (the real CLI) ----------------------------------------------------


def test_bad_usage_exits_2_with_a_message(run_retier, azurite_connection_string, container):
    env = {"RETIER_STORAGE": azurite_connection_string}
    missing = run_retier("probe", env=env)
    assert missing.returncode == 2 and "--container" in missing.stderr
    for args, says in [
        (["--timeout", "0"], "--timeout must be more than 0"),
        (["--timeout", "soon"], "invalid float value"),
    ]:
        run = run_retier("probe", "--container", container, *args, env=env)
        assert run.returncode == 2 and says in run.stderr, run.stderr
    bad_name = run_retier("probe", "--container", "no_such--name", env=env)
    assert bad_name.returncode == 2 and "did you mean 'no-such-name'" in bad_name.stderr
    ignored = run_retier(
        "probe", "--container", container, env={**env, "RETIER_CONTAINERS": "backups,other"}
    )
    assert ignored.returncode == 2 and "not in RETIER_CONTAINERS" in ignored.stderr
    assert run_retier("probe", "--container", container).returncode == 2  # no connection
    assert _blob_names(azurite_connection_string, container) == []


def _blob_names(conn: str, container: str) -> list[str]:
    return [
        i.name
        for i in BlobStore.from_connection(Connection(connection_string=conn)).list_blobs(container)
    ]


def test_dry_run_prints_the_names_and_uploads_nothing(
    run_retier, azurite_connection_string, container
):
    env = {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    run = run_retier("probe", "--container", container, "--dry-run", "--json", env=env)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["dry_run"] is True and plan["target_tier"] == "Archive"
    assert names.parse(plan["canary"]["volume"]).kind is Kind.VOLUME
    assert plan["subject"] == (
        f"/blobServices/default/containers/{container}/blobs/{plan['canary']['manifest']}"
    )
    text = run_retier("probe", "--container", container, "--dry-run", env=env)
    assert text.returncode == 0 and "would upload" in text.stdout
    assert _blob_names(azurite_connection_string, container) == []


def test_a_missing_container_fails_the_upload_step(run_retier, azurite_connection_string):
    run = run_retier(
        "probe",
        "--container",
        f"t{uuid.uuid4().hex[:20]}",
        "--json",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    result = json.loads(run.stdout)
    assert run.returncode == 1 and result["failed_step"] == "upload" and not result["ok"]
    assert "ContainerNotFound" in result["message"] and result["left_behind"] == []


# -- the path on Azurite, with the real function behind a bridge -------------------------------


@contextlib.contextmanager
def deployed(store: BlobStore, container: str) -> Iterator[FunctionsHostStandIn]:
    """The function behind its webhook, and a bridge turning new blobs into its events."""
    host = FunctionsHostStandIn(load_functions()).start()
    bridge = Bridge(store, [container], url=host.url(), interval=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        # Primed (its first listing done, not just begun): only blobs uploaded from now are sent.
        while not bridge.watches[0].primed:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield host
    finally:
        stop.set()
        thread.join(10)
        host.stop()


def test_success_reports_the_service_delay_and_leaves_no_canary(
    function_env, run_retier, azurite_connection_string, store, container
):
    with deployed(store, container) as host:
        run = run_retier(
            "probe",
            "--container",
            container,
            "--json",
            "--timeout",
            "30",
            env={"RETIER_STORAGE": azurite_connection_string},
        )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] is True and result["failed_step"] is None
    assert result["volume_tier"] == result["target_tier"] == "Cold"
    changed = datetime.fromisoformat(result["tier_change_time"])
    landed = datetime.fromisoformat(result["manifest_last_modified"])
    assert result["delay_seconds"] == (changed - landed).total_seconds() >= 0
    assert result["message"] == (
        f"tiering works in devstoreaccount1: a volume reached Cold "
        f"{result['delay_seconds']:.0f} s after its manifest"
    )
    # Cold keeps a blob 90 days: deleting the canary at once is billed, a tiny amount.
    assert 0 < result["early_deletion"]["amount"] < 1e-6
    assert sorted(result["deleted"]) == sorted(result["canary"].values())
    assert result["left_behind"] == [] and _listing(store, container) == {}
    # the function was reached through its webhook for the manifest, and acted
    delivered = [e["subject"] for r in host.received if r.status == 202 for e in r.events()]
    assert delivered[-1].endswith("/blobs/" + result["canary"]["manifest"])

    with deployed(store, container):
        text = run_retier(
            "probe",
            "--container",
            container,
            env={"RETIER_STORAGE": azurite_connection_string},
        )
    assert text.returncode == 0 and text.stdout.startswith("tiering works in devstoreaccount1")
    assert "canary deleted (2 blobs); early-deletion charge" in text.stdout
    assert _listing(store, container) == {}


class RecordingStore(BlobStore):
    """The real store; it also keeps every property read, to compare with what the probe says."""

    def __init__(self, client):
        super().__init__(client)
        self.reads = []

    def blob_properties(self, container, name):
        item = super().blob_properties(container, name)
        self.reads.append(item)
        return item


def test_a_container_on_restore_hold_still_gets_the_new_canary_tiered_by_the_services_clock(
    function_env, azurite_connection_string, store, container
):
    store.set_hold(container, "restore in progress")
    recording = RecordingStore(store._client)
    # This machine's clock is four years off: neither the delay nor the success may depend on it.
    prober = Prober(
        recording,
        _settings(azurite_connection_string),
        now=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc),
        first_poll=0.1,
    )
    with deployed(store, container):
        result = prober.run(container, timeout=30)
    assert result.ok, result.message
    manifest = next(r for r in recording.reads if r.name == result.canary.manifest)
    volume = recording.reads[-1]
    assert volume.name == result.canary.volume and volume.tier == "Cold"
    assert (
        result.delay_seconds == (volume.tier_change_time - manifest.last_modified).total_seconds()
    )
    assert "20300101T000000Z" in result.canary.manifest  # the set time is only a name
    assert store.get_hold(container) == "restore in progress"  # the probe leaves the hold alone
    assert _listing(store, container) == {}


def test_the_functions_prefix_and_tier_settings_are_followed_end_to_end(
    function_env, azurite_connection_string, store, container
):
    settings = {
        "RETIER_FILE_PREFIX_ARCHIVE": "cold/",
        "RETIER_FILE_PREFIX_MANIFEST": "hot/",
        "RETIER_VOLUME_TIER": "Archive",
        "RETIER_METADATA_TIER": "Cool",
    }
    for name, value in settings.items():
        function_env.setenv(name, value)
    seen = {}

    def tiers_while_waiting(canary: Canary) -> None:
        seen["names"] = _canary_blobs(store, container)

    prober = Prober(
        store,
        _settings(azurite_connection_string, **settings),
        on_waiting=tiers_while_waiting,
        first_poll=0.1,
    )
    with deployed(store, container):
        result = prober.run(container, timeout=30)
    assert result.ok, result.message
    assert sorted(seen["names"]) == sorted(result.canary.blobs)
    assert ".cold/duplicity-full." in result.canary.volume
    assert ".hot/duplicity-full." in result.canary.manifest
    assert result.volume_tier == "Archive"
    # Deleted at once: Archive's 180 days for the volume, and Cool's 30 for the manifest, which
    # the function moved too (RETIER_METADATA_TIER).
    prices = load_prices({})
    assert result.early_deletion == pytest.approx(
        early_deletion_for_days(len(VOLUME_DATA), "Archive", 0, prices)
        + early_deletion_for_days(len(MANIFEST_DATA), "Cool", 0, prices),
        rel=1e-3,
    )
    assert _listing(store, container) == {}


def test_with_nobody_handling_events_it_times_out_names_the_step_and_leaves_no_canary(
    run_retier, azurite_connection_string, store, container
):
    started = time.monotonic()
    run = run_retier(
        "probe",
        "--container",
        container,
        "--timeout",
        "2",
        "--json",
        "--system-topic",
        "evgt-retier-abc",
        "--resource-group",
        "rg-retier",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert time.monotonic() - started < 20
    assert run.returncode == 1, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["ok"] is False and result["failed_step"] == "event"
    assert result["delay_seconds"] is None and result["volume_tier"] == "Hot"
    assert "no sign the function acted" in result["message"]
    assert "--system-topic-name evgt-retier-abc" in result["checks"]["event"]
    assert "--resource-group rg-retier" in result["checks"]["invocation"]
    assert result["dead_letter"]["checked"] is False
    assert result["left_behind"] == [] and _listing(store, container) == {}
    text = run_retier(
        "probe",
        "--container",
        container,
        "--timeout",
        "1",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert text.returncode == 1 and text.stdout.startswith("FAILED (event): ")
    assert "check the event subscription (state, filter):" in text.stdout
    assert "canary deleted" in text.stdout
    assert _listing(store, container) == {}


def _wrong_key_store(conn: str) -> BlobStore:
    """The same account with a key it does not have: every request is refused with 403, as the
    function's requests are when its role does not allow them."""
    wrong = conn.replace(ACCOUNT_KEY, "d3Jvbmcga2V5" * 8)
    return BlobStore.from_connection(Connection(connection_string=wrong), retry_total=0)


@pytest.mark.parametrize(
    "answer, step",
    [("function refused by storage", INVOCATION), ("no such function", EVENT)],
)
def test_a_dead_lettered_canary_event_names_the_step_that_failed(
    answer, step, azurite_connection_string, store, blob_service, container, caplog
):
    caplog.set_level(logging.INFO, logger="retier.service")
    dead_letters = blob_service.create_container(f"t{uuid.uuid4().hex[:20]}")
    settings = _settings(azurite_connection_string)
    function = RetierService(settings, _wrong_key_store(azurite_connection_string))

    def event_grid_gives_up(canary: Canary) -> None:
        # Event Grid delivers the manifest's event; the function's storage calls are refused
        # (it raises, the host answers 500) or there is no function (404), until it gives up.
        item = store.blob_properties(container, canary.manifest)
        event = blob_created_event(
            account=store.account_name,
            container=container,
            item=item,
            url=store.blob_url(container, canary.manifest),
        )
        endpoint = function_endpoint() if step == INVOCATION else (lambda e: Answer(404))
        grid = EventGridStandIn(endpoint, max_delivery_attempts=2, dead_letter=dead_letters)
        grid.publish([event])
        with serving(function):
            report = grid.run()
        assert [d.end for d in report.deliveries] == ["dead-lettered"]

    prober = Prober(
        store,
        settings,
        hints=Hints(dead_letter_container=dead_letters.container_name),
        dead_letter_store=store,
        on_waiting=event_grid_gives_up,
        first_poll=0.1,
    )
    try:
        result = prober.run(container, timeout=0.5)
    finally:
        dead_letters.delete_container()
    assert (result.ok, result.failed_step) == (False, step)
    found = result.dead_letter["found"]
    assert result.dead_letter["checked"] and found["attempts"] == 2
    assert found["last_outcome"] == ("GenericError" if step == INVOCATION else "NotFound")
    assert "dead-lettered the canary's event" in result.message
    # What the invocation check's log query finds: the function's own line for the canary's
    # event, with the storage refusal (the function ran only in the invocation case).
    lines = [r.getMessage() for r in caplog.records if r.name == "retier.service"]
    found_by_query = [line for line in lines if result.canary.prefix in line]
    if step == INVOCATION:
        assert found_by_query and all(
            "status=retry" in line and "HTTP 403" in line for line in found_by_query
        )
    else:
        assert found_by_query == []
    assert _listing(store, container) == {}


def test_ctrl_c_while_waiting_still_deletes_the_canary(azurite_connection_string, store, container):
    present = []

    def interrupted(canary: Canary) -> None:
        present.extend(_canary_blobs(store, container))
        raise KeyboardInterrupt

    prober = Prober(store, _settings(azurite_connection_string), on_waiting=interrupted)
    result = prober.run(container, timeout=60)
    assert sorted(present) == sorted(result.canary.blobs)
    assert result.interrupted and (result.ok, result.failed_step) == (False, TIER)
    assert result.left_behind == [] and _listing(store, container) == {}


def test_a_killed_probe_still_deletes_the_canary(azurite_connection_string, store, container):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONNECTION"))}
    env["RETIER_STORAGE"] = azurite_connection_string
    proc = subprocess.Popen(
        [sys.executable, "-m", "retier", "probe", "--container", container, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(_canary_blobs(store, container)) < 2:  # uploaded: now waiting for the tier
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    result = json.loads(out)
    assert proc.returncode == 1 and result["interrupted"] and result["failed_step"] == TIER
    assert result["left_behind"] == [] and _listing(store, container) == {}


def test_an_error_while_waiting_still_deletes_the_canary(
    azurite_connection_string, store, container
):
    def broken(canary: Canary) -> None:
        raise RuntimeError("boom")

    prober = Prober(store, _settings(azurite_connection_string), on_waiting=broken)
    with pytest.raises(RuntimeError, match="boom"):
        prober.run(container, timeout=60)
    assert _listing(store, container) == {}


def test_a_volume_moved_elsewhere_fails_the_tier_step_at_once(
    azurite_connection_string, store, container
):
    def someone_else(canary: Canary) -> None:
        store.set_tier(container, [canary.volume], "Cool")

    prober = Prober(store, _settings(azurite_connection_string), on_waiting=someone_else)
    started = time.monotonic()
    result = prober.run(container, timeout=60)
    assert time.monotonic() - started < 10
    assert (result.failed_step, result.volume_tier) == (TIER, "Cool")
    assert "moved to Cool, not Cold" in result.message
    assert result.early_deletion > 0  # Cool's 30 days, for a few bytes
    assert _listing(store, container) == {}


# -- duplicity next to the canary --------------------------------------------------------------


def _status_lines(output: str) -> list[str]:
    """collection-status without what changes between runs: the local time it prints, if any."""
    return [line.rstrip() for line in output.splitlines() if line.strip()]


@pytest.mark.duplicity
def test_duplicity_neither_lists_deletes_nor_chokes_on_the_canary(
    azurite_connection_string, store, container, tmp_path
):
    from retier.demo import Duplicity, change_sample_tree, make_sample_tree

    dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
    source = make_sample_tree(tmp_path / "source", files=1, size=40_000)
    dup.backup("full", source)
    time.sleep(1.1)  # set names have one-second resolution
    change_sample_tree(source, 1)
    dup.backup("incremental", source)
    chain = _listing(store, container)
    status = _status_lines(dup.collection_status().stdout)
    assert sum("Incremental" in line for line in status) == 1

    def duplicity_commands(step: int) -> list[str]:
        """collection-status, cleanup, remove-all-but-n-full, an incremental: their outputs."""
        outputs = []
        seen = dup.collection_status()
        outputs.append(seen.stdout + seen.stderr)
        cleanup = dup.run("cleanup", "--force", dup.url)
        outputs.append(cleanup.stdout + cleanup.stderr)
        assert "No extraneous files found" in outputs[-1]
        pruned = dup.run("remove-all-but-n-full", "1", "--force", dup.url)
        outputs.append(pruned.stdout + pruned.stderr)
        time.sleep(1.1)
        change_sample_tree(source, step)
        backup = dup.backup("incremental", source)
        outputs.append(backup.stdout + backup.stderr)
        return outputs

    during: dict = {}

    def while_the_canary_is_there(canary: Canary) -> None:
        during["status"] = _status_lines(dup.collection_status().stdout)
        during["outputs"] = duplicity_commands(2)
        during["canary"] = _canary_blobs(store, container)
        during["listing"] = _listing(store, container)

    result = Prober(
        store, _settings(azurite_connection_string), on_waiting=while_the_canary_is_there
    ).run(container, timeout=0.1)
    canary = result.canary
    assert result.left_behind == [] and not _canary_blobs(store, container)
    # While it was there: same chain, same status; nothing deleted, the canary still there.
    assert during["status"] == status
    assert sorted(during["canary"]) == sorted(canary.blobs)
    new_set = {n: t for n, t in during["listing"].items() if n not in chain}
    assert set(new_set) - set(canary.blobs) and all(
        names.parse(n).kind is not Kind.UNKNOWN and not n.startswith(CANARY_PREFIX)
        for n in set(new_set) - set(canary.blobs)
    )
    assert {n: t for n, t in during["listing"].items() if n in chain} == chain
    assert not any(CANARY_PREFIX in out for out in during["outputs"])

    # After the probe: the chain plus the new incremental, and duplicity carries on.
    after_probe = _listing(store, container)
    assert after_probe == {n: t for n, t in during["listing"].items() if n not in canary.blobs}
    status_after = _status_lines(dup.collection_status().stdout)
    assert sum("Incremental" in line for line in status_after) == 2
    outputs = duplicity_commands(3)
    assert not any(CANARY_PREFIX in out for out in outputs)
    final = _listing(store, container)
    assert {n: t for n, t in final.items() if n in after_probe} == after_probe
    assert all(names.parse(n).kind is not Kind.UNKNOWN for n in final)
    assert sum("Incremental" in line for line in _status_lines(dup.collection_status().stdout)) == 3
