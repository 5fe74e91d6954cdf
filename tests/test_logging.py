"""The function's logs as the Python worker forwards them: one line per outcome, no SDK request
dumps, and exactly one `retier-sweep-summary` record per reconciliation run."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest
from test_function_app import _functions, _grid_event

from retier.functions import SDK_HTTP_LOGGER, SUMMARY_TOKEN, service_from_environment

T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2)]
MANIFEST = f"duplicity-full.{T}.manifest.gpg"
SIGS = f"duplicity-full-signatures.{T}.sigtar.gpg"


def _user_function(name):
    # get_functions() indexes the app and may run only once per app object: share the one index.
    return _functions()[name].get_user_function()


class _Timer(func.TimerRequest):
    past_due = False


def _worker_records(caplog):
    """What the worker would forward: every record at Information or above, any logger."""
    return [r for r in caplog.records if r.levelno >= logging.INFO]


def _manifest_event_records(blob_service, container, caplog):
    client = blob_service.get_container_client(container)
    for name in [*VOLS, SIGS, MANIFEST]:
        client.upload_blob(name, b"data")
    handler = _user_function("retier_blob_created")  # indexing the app logs once, before
    caplog.clear()
    # The worker's root logger passes Information on (its handler forwards it to the host).
    with caplog.at_level(logging.INFO):
        handler(_grid_event(container, MANIFEST, blob_service.url.rstrip("/")))
    assert {b.name: b.blob_tier for b in client.list_blobs()}[VOLS[0]] == "Cold"
    return _worker_records(caplog)


@pytest.mark.azurite
def test_a_manifest_event_logs_one_outcome_line_and_one_per_moved_volume_and_no_sdk_dump(
    blob_service, container, function_env, caplog
):
    records = _manifest_event_records(blob_service, container, caplog)
    assert [(r.name, r.getMessage()) for r in records if not r.name.startswith("retier")] == []
    outcome = [r.getMessage() for r in records if r.getMessage().startswith("event e-1 ")]
    assert len(outcome) == 1 and "status=handled moved=2" in outcome[0]
    moved = sorted(r.getMessage() for r in records if "-> Cold" in r.getMessage())
    assert [m.split()[0] for m in moved] == VOLS
    assert len(records) == 3  # nothing else: one outcome, two decisions


@pytest.mark.azurite
def test_without_function_apps_setting_the_sdk_would_dump_every_request(
    blob_service, container, function_env, caplog
):
    # The counter-test: the SDK logger at its default level adds its Information records.
    sdk = logging.getLogger(SDK_HTTP_LOGGER)
    level = sdk.level
    assert level == logging.WARNING  # as function_app set it on import
    sdk.setLevel(logging.NOTSET)
    try:
        records = _manifest_event_records(blob_service, container, caplog)
    finally:
        sdk.setLevel(level)
    dumps = [r for r in records if r.name == SDK_HTTP_LOGGER]
    # two per storage call (request, response); the event makes a listing and a batch at least
    assert len(dumps) >= 4 and len(dumps) % 2 == 0


def test_the_summary_token_is_the_one_the_deployments_alert_looks_for():
    assert SUMMARY_TOKEN == "retier-sweep-summary"  # infra's alert query matches this text


def _summaries(caplog):
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(SUMMARY_TOKEN)]
    return [json.loads(s[len(SUMMARY_TOKEN) + 1 :]) for s in said]


@pytest.mark.azurite
def test_a_timer_run_logs_exactly_one_complete_summary_with_what_it_did(
    blob_service, container, function_env, caplog
):
    function_env.setenv("RETIER_CONTAINERS", container)
    client = blob_service.get_container_client(container)
    for name in [*VOLS, SIGS, MANIFEST]:
        client.upload_blob(name, b"x" * 1000)
    with caplog.at_level(logging.INFO):
        _user_function("retier_sweep")(_Timer())
    (summary,) = _summaries(caplog)
    assert summary["complete"] is True and summary["error"] is None
    assert summary["containers"] == [container]
    assert summary["sets_finished"] == 1
    assert summary["volumes_moved"] == 2 and summary["bytes_moved"] == 2000
    assert summary["bytes_by_tier"] == {"Cold": 2000, "Hot": 2000}
    assert summary["failures"] == 0 and summary["failed_containers"] == []
    from retier.costs import DEFAULT_PRICES, storage_per_month

    saving = storage_per_month(2000, "Hot", DEFAULT_PRICES) - storage_per_month(
        2000, "Cold", DEFAULT_PRICES
    )
    assert summary["saving_per_month"] == pytest.approx(saving) and saving > 0
    assert summary["currency"] == "USD"


@pytest.mark.azurite
def test_a_failed_timer_run_logs_one_incomplete_summary_naming_the_container(
    blob_service, container, function_env, caplog
):
    from retier.functions import RetryLater

    gone = container + "-gone"
    function_env.setenv("RETIER_CONTAINERS", f"{container},{gone}")
    with caplog.at_level(logging.INFO), pytest.raises(RetryLater):
        _user_function("retier_sweep")(_Timer())
    (summary,) = _summaries(caplog)
    assert summary["complete"] is False and summary["failed_containers"] == [gone]
    (record,) = [r for r in caplog.records if r.getMessage().startswith(SUMMARY_TOKEN)]
    assert record.levelno == logging.WARNING


@pytest.mark.azurite
def test_a_timer_run_that_cannot_start_still_logs_one_incomplete_summary(function_env, caplog):
    from retier.settings import SettingsError

    function_env.setenv("RETIER_VOLUME_TIER", "Frozen")
    service_from_environment.cache_clear()
    with caplog.at_level(logging.INFO), pytest.raises(SettingsError):
        _user_function("retier_sweep")(_Timer())
    (summary,) = _summaries(caplog)
    assert summary["complete"] is False
    assert (
        summary["error"].startswith("SettingsError: ") and "RETIER_VOLUME_TIER" in summary["error"]
    )


@pytest.mark.azurite
def test_a_timer_run_with_no_containers_is_complete_and_says_it_swept_none(function_env, caplog):
    with caplog.at_level(logging.INFO):
        _user_function("retier_sweep")(_Timer())
    (summary,) = _summaries(caplog)
    assert summary["complete"] is True and summary["containers"] == []


def test_the_summary_prices_with_the_runs_prices_and_smart_labels_as_their_tier():
    from types import SimpleNamespace

    from retier.costs import DEFAULT_PRICES, storage_per_month
    from retier.functions import sweep_summary
    from retier.sweep import Tally

    gib = 1 << 30
    plan = SimpleNamespace(
        sets_finished=1,
        rows={
            ("volume", "Smart/Hot", "Cold"): Tally(1, gib),
            ("manifest", "Smart/Cool", "Smart/Cool"): Tally(1, gib),
        },
    )
    report = SimpleNamespace(container="c1", held=False, ok=True, applied=None, plan=plan)
    mine = {**DEFAULT_PRICES, "storage_per_gb_month": {**DEFAULT_PRICES["storage_per_gb_month"]}}
    mine["storage_per_gb_month"]["Hot"] = 1.0  # a user's RETIER_PRICES
    summary = sweep_summary([report], prices=mine)
    expected = sum(
        storage_per_month(gib, "Hot", mine) - storage_per_month(gib, tier, mine)
        for tier in ("Cold", "Cool")  # Smart/Cool is billed as Cool, not left out
    )
    assert summary["saving_per_month"] == pytest.approx(expected)
    assert summary["saving_per_month"] > sweep_summary([report])["saving_per_month"]
