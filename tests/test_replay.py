"""`retier replay` on Azurite: dead-letter blobs in Azure's documented format, replayed and filed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import connection_string, free_port

from retier import eventgrid
from retier.emulate import events_for
from retier.metering import CountingTransport, Meter
from retier.replay import (
    KEPT,
    MALFORMED,
    MOVED,
    InvalidRecord,
    Summary,
    dead_letter_connection,
    decode_record,
    replay,
)
from retier.service import HANDLED, IGNORED, INVALID, RetierService
from retier.settings import Connection, SettingsError, load_settings
from retier.storage import BlobStore

T1, T2 = "20240101T020304Z", "20240102T020304Z"
FULL_VOLS = [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
FULL_SIGS = f"duplicity-full-signatures.{T1}.sigtar.gpg"
INC_VOLS = [f"duplicity-inc.{T1}.to.{T2}.vol{i}.difftar.gpg" for i in (1, 2)]
INC_MANIFEST = f"duplicity-inc.{T1}.to.{T2}.manifest.gpg"
INC_SIGS = f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg"
BACKUPS = FULL_VOLS + [FULL_MANIFEST, FULL_SIGS] + INC_VOLS + [INC_MANIFEST, INC_SIGS]
SUBSCRIPTION = eventgrid.SUBSCRIPTION
FAILED_AT = datetime(2026, 11, 28, 5, 30, tzinfo=timezone.utc)

# Azure's documented dead-lettered event, Event Grid schema, verbatim from
# https://learn.microsoft.com/azure/event-grid/delivery-and-retry ("Delivery event formats").
AZURE_DEAD_LETTER_SAMPLE = """\
{
    "id": "93902694-901e-008f-6f95-7153a806873c",
    "eventTime": "2020-08-13T17:18:13.1647262Z",
    "eventType": "Microsoft.Storage.BlobCreated",
    "dataVersion": "",
    "metadataVersion": "1",
    "topic": "/subscriptions/0000000000-0000-0000-0000-000000000000000/resourceGroups/rgwithoutpolicy/providers/Microsoft.Storage/storageAccounts/myegteststgfoo",
    "subject": "/blobServices/default/containers/deadletter/blobs/myBlobFile.txt",    
    "data": {
        "api": "PutBlob",
        "clientRequestId": "c0d879ad-88c8-4bbe-8774-d65888dc2038",
        "requestId": "93902694-901e-008f-6f95-7153a8000000",
        "eTag": "0x8D83FACDC0C3402",
        "contentType": "text/plain",
        "contentLength": 0,
        "blobType": "BlockBlob",
        "url": "https://myegteststgfoo.blob.core.windows.net/deadletter/myBlobFile.txt",
        "sequencer": "00000000000000000000000000015508000000000005101c",
        "storageDiagnostics": { "batchId": "cfb32f79-3006-0010-0095-711faa000000" }
    },

    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 1,
    "lastDeliveryOutcome": "NotFound",
    "publishTime": "2020-08-13T17:18:14.0265758Z",
    "lastDeliveryAttemptTime": "2020-08-13T17:18:14.0465788Z" 
}
"""
# The same page's CloudEvents 1.0 dead-letter sample: the added fields in lower case, no
# lastdeliveryattempttime. As published it has a trailing comma (so it is a dict here) and no
# specversion, which CloudEvents 1.0 requires; Event Grid delivers CloudEvents with it.
AZURE_CLOUDEVENTS_DEAD_LETTER_SAMPLE = {
    "id": "caee971c-3ca0-4254-8f99-1395b394588e",
    "source": "mysource",
    "dataversion": "1.0",
    "subject": "mySubject",
    "type": "fooEventType",
    "datacontenttype": "application/json",
    "data": {"prop1": "value1", "prop2": 5},
    "deadletterreason": "MaxDeliveryAttemptsExceeded",
    "deliveryattempts": 1,
    "lastdeliveryoutcome": "NotFound",
    "publishtime": "2020-08-13T21:21:36.4018726Z",
}


# -- helpers ---------------------------------------------------------------------------------------
def upload(blob_service, container, names):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, b"duplicity bytes " + name.encode(), overwrite=True)


def tiers(blob_service, container):
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


def contents(blob_service, container):
    client = blob_service.get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def grid_event(store, container, name):
    """The Event Grid-schema BlobCreated event Azure sends for an existing blob."""
    (event,) = events_for(
        store, container, [i for i in store.list_blobs(container, name) if i.name == name]
    )
    return event


def cloud_event(event):
    """The same event in the CloudEvents 1.0 schema, as Event Grid delivers it to such a subscription."""
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "datacontenttype": "application/json",
        "data": event["data"],
    }


def grid_record(event, attempts=30):
    return eventgrid.dead_letter_record(
        event,
        reason=eventgrid.MAX_DELIVERY_ATTEMPTS_EXCEEDED,
        attempts=attempts,
        last_outcome=eventgrid.delivery_outcome(503),
        publish_time=FAILED_AT - timedelta(hours=24),
        last_attempt_time=FAILED_AT,
    )


def cloud_record(event):
    # Azure's CloudEvents dead-letter sample: the added fields are lower-case extension names.
    return {
        **cloud_event(event),
        "deadletterreason": eventgrid.TIME_TO_LIVE_EXCEEDED,
        "deliveryattempts": 12,
        "lastdeliveryoutcome": "GenericError",
        "publishtime": "2026-11-27T05:30:00.0000000Z",
    }


def dead_letter(blob_service, container, payload, *, blob_id=None, when=FAILED_AT):
    """Write a dead-letter blob where Event Grid writes it; `payload` is a list or raw text/bytes."""
    name = eventgrid.dead_letter_blob_name(SUBSCRIPTION, when, blob_id)
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload, indent=2)
    blob_service.get_container_client(container).upload_blob(name, data)
    return name


@pytest.fixture
def dead_letters(blob_service):
    """Event Grid's dead-letter container (in the tests: on the same Azurite account)."""
    name = "retier-dead-letter-" + datetime.now().strftime("%H%M%S%f")
    blob_service.create_container(name)
    yield name
    blob_service.delete_container(name)


def service_for(conn, **settings):
    return RetierService(
        load_settings({"RETIER_STORAGE": conn, **settings}),
        BlobStore.from_connection(Connection(connection_string=conn)),
    )


def run_replay(store, container, service, **kwargs):
    summary = Summary()
    results = list(replay(store, container, service, **kwargs))
    for r in results:
        summary.add(r)
    return results, summary


# -- decoding, without a server --------------------------------------------------------------------
def test_azures_sample_decodes_with_the_model_and_keeps_the_event_mapping_intact():
    record = json.loads(AZURE_DEAD_LETTER_SAMPLE)
    event, model = decode_record(record)
    assert event == {k: v for k, v in record.items() if k not in eventgrid.DEAD_LETTER_FIELDS}
    assert set(record) - set(event) == set(eventgrid.DEAD_LETTER_FIELDS)
    assert model.id == "93902694-901e-008f-6f95-7153a806873c"
    assert model.subject == "/blobServices/default/containers/deadletter/blobs/myBlobFile.txt"
    assert model.event_type == "Microsoft.Storage.BlobCreated"

    with pytest.raises(InvalidRecord, match="without specversion"):
        decode_record(AZURE_CLOUDEVENTS_DEAD_LETTER_SAMPLE)
    event, model = decode_record({**AZURE_CLOUDEVENTS_DEAD_LETTER_SAMPLE, "specversion": "1.0"})
    assert "deadletterreason" not in event and event["data"] == {"prop1": "value1", "prop2": 5}
    assert (model.id, model.source, model.type) == (
        "caee971c-3ca0-4254-8f99-1395b394588e",
        "mysource",
        "fooEventType",
    )


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ([1, 2], "not a JSON object"),
        ({"id": "x", "data": {}}, "neither eventType"),
        (
            {k: v for k, v in json.loads(AZURE_DEAD_LETTER_SAMPLE).items() if k != "eventTime"},
            "without eventTime",
        ),
        ({**json.loads(AZURE_DEAD_LETTER_SAMPLE), "eventTime": "yesterday"}, "Event Grid"),
        ({"specversion": "1.0", "id": "x", "type": "t", "data": {}}, "CloudEvents"),
    ],
)
def test_records_the_models_refuse_are_invalid(record, why):
    with pytest.raises(InvalidRecord, match=why):
        decode_record(record)


def test_dead_letter_storage_is_a_connection_string_or_a_plain_url_and_never_echoed():
    host = dead_letter_connection("https://retierhost.blob.core.windows.net")
    assert (host.blob_service_uri, host.account_name) == (
        "https://retierhost.blob.core.windows.net",
        "retierhost",
    )
    secret = "AccountName=retierhost;AccountKey=c2VjcmV0"
    assert dead_letter_connection(secret).account_name == "retierhost"
    for bad in (
        "https://retierhost.blob.core.windows.net/?sv=2024&sig=c2VjcmV0",
        "c2VjcmV0",
        "AccountKey=c2VjcmV0",
    ):
        with pytest.raises(SettingsError) as info:
            dead_letter_connection(bad)
        assert "c2VjcmV0" not in str(info.value) and "--dead-letter-storage" in str(info.value)


# -- against Azurite -------------------------------------------------------------------------------


def test_replay_tiers_a_finished_sets_volumes_and_moves_the_blob_then_a_second_run_changes_nothing(
    blob_service, container, dead_letters, store, azurite_connection_string, run_retier
):
    upload(blob_service, container, BACKUPS)
    manifest = grid_event(store, container, FULL_MANIFEST)
    volume = grid_event(store, container, FULL_VOLS[1])
    grid_blob = dead_letter(
        blob_service, dead_letters, [grid_record(manifest), grid_record(volume)]
    )
    inc = grid_event(store, container, INC_MANIFEST)
    cloud_blob = dead_letter(
        blob_service, dead_letters, [cloud_record(inc)], when=FAILED_AT.replace(hour=6)
    )
    written = contents(blob_service, dead_letters)
    env = {"RETIER_STORAGE": azurite_connection_string}

    first = run_retier("replay", "--dead-letter-container", dead_letters, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    expected = {name: "Hot" for name in BACKUPS}
    expected.update({name: "Cold" for name in FULL_VOLS + INC_VOLS})
    assert tiers(blob_service, container) == expected
    assert contents(blob_service, dead_letters) == {
        f"replayed/{grid_blob}": written[grid_blob],
        f"replayed/{cloud_blob}": written[cloud_blob],
    }
    lines = first.stdout.splitlines()
    assert (
        f"{grid_blob}  {manifest['id']}  {manifest['subject']}  handled: set finished: 3 volume(s) listed"
        in lines
    )
    assert (
        f"{cloud_blob}  {inc['id']}  {inc['subject']}  handled: set finished: 2 volume(s) listed"
        in lines
    )
    assert f"{grid_blob}: moved to replayed/{grid_blob}: every event handled or ignored" in lines
    assert lines[-1] == "replay: dead-letter blobs: 2 moved; events: 2 handled, 1 ignored"

    etags = {b.name: b.etag for b in blob_service.get_container_client(container).list_blobs()}
    # The second run names the dead-letter account itself (here the same Azurite account).
    second = run_retier(
        "replay",
        "--dead-letter-container",
        dead_letters,
        "--dead-letter-storage",
        azurite_connection_string,
        env=env,
    )
    assert second.returncode == 0
    assert second.stdout.splitlines() == ["replay: dead-letter blobs: none; events: none"]
    assert tiers(blob_service, container) == expected
    assert {
        b.name: b.etag for b in blob_service.get_container_client(container).list_blobs()
    } == etags
    assert set(contents(blob_service, dead_letters)) == {
        f"replayed/{grid_blob}",
        f"replayed/{cloud_blob}",
    }


def test_a_replayed_blob_is_not_read_again_one_listing_is_all_a_second_run_costs(
    blob_service, container, dead_letters, store, azurite_connection_string
):
    upload(blob_service, container, BACKUPS)
    for name in (FULL_MANIFEST, INC_MANIFEST):
        dead_letter(blob_service, dead_letters, [grid_record(grid_event(store, container, name))])
    meter = Meter()
    dl_store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string), transport=CountingTransport(meter)
    )
    service = service_for(azurite_connection_string)
    # One blob at a time: the first result comes after one read, not after reading them all.
    lazily = replay(dl_store, dead_letters, service, dry_run=True)
    next(lazily)
    assert meter.by_operation == {"list": 2, "get": 1}
    meter.reset()

    results, summary = run_replay(dl_store, dead_letters, service)
    assert [r.fate for r in results] == [MOVED, MOVED] and summary.exit_code == 0
    # per blob: one read, one write under replayed/, one conditional delete; one top-level listing
    # and one listing of the subscription's folder
    assert meter.by_operation == {"list": 2, "get": 2, "put": 2, "delete": 2}

    meter.reset()
    results, summary = run_replay(dl_store, dead_letters, service)
    assert results == [] and summary.exit_code == 0
    assert meter.by_operation == {"list": 1}


def test_azures_own_samples_are_decoded_ignored_for_another_account_and_filed(
    blob_service, dead_letters, azurite_connection_string, run_retier
):
    name = dead_letter(blob_service, dead_letters, "[" + AZURE_DEAD_LETTER_SAMPLE + "]")
    cloud = dead_letter(
        blob_service,
        dead_letters,
        [{**AZURE_CLOUDEVENTS_DEAD_LETTER_SAMPLE, "specversion": "1.0"}],
        blob_id="cloud",
    )
    as_published = dead_letter(
        blob_service, dead_letters, [AZURE_CLOUDEVENTS_DEAD_LETTER_SAMPLE], blob_id="published"
    )
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        dead_letters,
        "--json",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    *blobs, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {b["blob"]: b for b in blobs}
    (event,) = by_name[name]["events"]
    assert (event["id"], event["status"]) == ("93902694-901e-008f-6f95-7153a806873c", IGNORED)
    assert event["reason"] == (
        "event for storage account myegteststgfoo, this app serves devstoreaccount1"
    )
    assert event["dead_letter"] == {
        "reason": "MaxDeliveryAttemptsExceeded",
        "attempts": 1,
        "last_outcome": "NotFound",
    }
    (cloud_result,) = by_name[cloud]["events"]
    assert cloud_result["status"] == IGNORED and "'fooEventType'" in cloud_result["reason"]
    (published_result,) = by_name[as_published]["events"]
    assert published_result["status"] == INVALID
    assert "without specversion" in published_result["reason"]
    assert {b["blob"]: b["fate"] for b in blobs} == {name: MOVED, cloud: MOVED, as_published: KEPT}
    assert summary["summary"] == {
        "exit": 2,
        "blobs": {MOVED: 2, KEPT: 1},
        "events": {IGNORED: 2, INVALID: 1},
    }
    assert proc.returncode == 2  # an invalid event needs a person, not a retry
    assert set(contents(blob_service, dead_letters)) == {
        f"replayed/{name}",
        f"replayed/{cloud}",
        as_published,
    }


def test_an_event_that_needs_a_retry_keeps_its_blob_and_exits_1(
    blob_service, container, dead_letters, store, azurite_connection_string
):
    upload(blob_service, container, BACKUPS)
    name = dead_letter(
        blob_service, dead_letters, [grid_record(grid_event(store, container, FULL_MANIFEST))]
    )
    written = contents(blob_service, dead_letters)
    # The backup account does not answer (no SDK retries: the CLI's take ~8 s); the dead-letter
    # account does.
    unreachable = connection_string(free_port())
    service = RetierService(
        load_settings({"RETIER_STORAGE": unreachable}),
        BlobStore.from_connection(Connection(connection_string=unreachable), retry_total=0),
    )
    (result,), summary = run_replay(store, dead_letters, service)
    assert (result.name, result.fate, result.retry) == (name, KEPT, True)
    assert result.reason == "not every event is done (1 retry)"
    assert summary.exit_code == 1
    assert contents(blob_service, dead_letters) == written
    assert set(tiers(blob_service, container).values()) == {"Hot"}


def test_malformed_blobs_are_reported_and_left_alone_and_the_rest_replayed(
    blob_service, container, dead_letters, store, azurite_connection_string, run_retier
):
    upload(blob_service, container, BACKUPS)
    good = dead_letter(
        blob_service, dead_letters, [grid_record(grid_event(store, container, FULL_MANIFEST))]
    )
    malformed = {
        dead_letter(blob_service, dead_letters, "{not json", blob_id="a"): "not JSON",
        dead_letter(blob_service, dead_letters, b"\xff\xfe", blob_id="b"): "not JSON",
        dead_letter(blob_service, dead_letters, '{"id": "x"}', blob_id="c"): "not a JSON array",
        dead_letter(blob_service, dead_letters, "[]", blob_id="d"): "not a JSON array",
        dead_letter(blob_service, dead_letters, "[1, 2]", blob_id="e"): "not a JSON object",
    }
    top_level = "notes.txt"  # not in Event Grid's layout: read like the rest, and left alone
    blob_service.get_container_client(dead_letters).upload_blob(top_level, b"hello")
    malformed[top_level] = "not JSON"
    before = contents(blob_service, dead_letters)
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        dead_letters,
        "--json",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    *blobs, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    fates = {b["blob"]: (b["fate"], b["reason"]) for b in blobs}
    assert fates.pop(good)[0] == MOVED
    assert set(fates) == set(malformed)
    for name, why in malformed.items():
        assert fates[name][0] == MALFORMED and why in fates[name][1]
    after = contents(blob_service, dead_letters)
    assert {n: after[n] for n in malformed} == {n: before[n] for n in malformed}
    assert set(after) == set(malformed) | {f"replayed/{good}"}
    assert summary["summary"]["blobs"] == {MOVED: 1, MALFORMED: len(malformed)}


def test_a_blob_too_large_for_event_grid_is_reported_and_never_read(
    blob_service, dead_letters, azurite_connection_string, monkeypatch
):
    monkeypatch.setattr("retier.replay.MAX_BLOB_BYTES", 100)  # 16 MB in the code: kept small here
    name = dead_letter(blob_service, dead_letters, "[" + " " * 100 + "]")
    meter = Meter()
    dl_store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string), transport=CountingTransport(meter)
    )
    (result,), summary = run_replay(dl_store, dead_letters, service_for(azurite_connection_string))
    assert (result.name, result.fate) == (name, MALFORMED) and "too large" in result.reason
    assert meter.by_operation == {"list": 2} and summary.exit_code == 2  # listed, not downloaded
    assert set(contents(blob_service, dead_letters)) == {name}


def test_an_invalid_event_keeps_its_blob_while_the_valid_one_beside_it_is_handled(
    blob_service, container, dead_letters, store, azurite_connection_string
):
    upload(blob_service, container, BACKUPS)
    manifest = grid_event(store, container, FULL_MANIFEST)
    forged = {**grid_event(store, container, INC_MANIFEST), "subject": manifest["subject"]}
    name = dead_letter(blob_service, dead_letters, [grid_record(manifest), grid_record(forged)])
    service = service_for(azurite_connection_string)
    for _ in range(2):  # a second run handles the valid event again, harmlessly, and still keeps it
        (result,), summary = run_replay(store, dead_letters, service)
        assert result.fate == KEPT and not result.retry
        assert [e.status for e in result.events] == [HANDLED, INVALID]
        assert "differs from data.url blob" in result.events[1].reason
        assert summary.exit_code == 2
        expected = {n: "Hot" for n in BACKUPS} | {n: "Cold" for n in FULL_VOLS}
        assert tiers(blob_service, container) == expected
        assert set(contents(blob_service, dead_letters)) == {name}


def test_dry_run_shows_what_would_happen_and_changes_nothing(
    blob_service, container, dead_letters, store, azurite_connection_string, run_retier
):
    upload(blob_service, container, BACKUPS)
    manifest = grid_event(store, container, FULL_MANIFEST)
    elsewhere = {**manifest, "id": "other-container"}
    elsewhere["subject"] = manifest["subject"].replace(container, "photos")
    elsewhere["data"] = {
        **manifest["data"],
        "url": manifest["data"]["url"].replace(container, "photos"),
    }
    name = dead_letter(blob_service, dead_letters, [grid_record(manifest), grid_record(elsewhere)])
    before = contents(blob_service, dead_letters)
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        dead_letters,
        "--dry-run",
        env={"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{name}  {manifest['id']}  {manifest['subject']}  would handle:" in proc.stdout
    assert (
        f"{name}  other-container  {elsewhere['subject']}  ignored: container photos" in proc.stdout
    )
    assert f"{name}: would move: dry run: nothing handled or moved" in proc.stdout
    assert set(tiers(blob_service, container).values()) == {"Hot"}
    assert contents(blob_service, dead_letters) == before


def test_a_missing_dead_letter_container_is_bad_usage(azurite_connection_string, run_retier):
    proc = run_retier(
        "replay",
        "--dead-letter-container",
        "no-such-dead-letters",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 2
    assert "404 ContainerNotFound" in proc.stderr


@pytest.mark.parametrize(
    ("metadata_tier", "would_handle"),
    [(None, {FULL_MANIFEST}), ("Cool", {FULL_MANIFEST, FULL_SIGS, FULL_MANIFEST + ".par2"})],
)
def test_dry_run_says_ignored_in_the_services_own_words_for_events_it_ignores_at_no_cost(
    blob_service,
    container,
    dead_letters,
    store,
    azurite_connection_string,
    metadata_tier,
    would_handle,
):
    blobs = [FULL_VOLS[0], FULL_MANIFEST, FULL_SIGS, FULL_MANIFEST + ".par2", "notes.txt"]
    upload(blob_service, container, blobs)
    grid = [grid_event(store, container, b) for b in blobs]
    dead_letter(blob_service, dead_letters, [grid_record(e) for e in grid])
    settings = {"RETIER_METADATA_TIER": metadata_tier} if metadata_tier else {}
    service = service_for(azurite_connection_string, **settings)
    (result,), _ = run_replay(store, dead_letters, service, dry_run=True)
    dry = {e.subject.rsplit("/", 1)[1]: (e.status, e.reason) for e in result.events}
    assert {b for b, (status, _) in dry.items() if status == "would handle"} == would_handle
    # Every other event: ignored, for the reason the real handler gives when it runs it.
    for event in grid:
        blob = event["subject"].rsplit("/", 1)[1]
        if blob in would_handle:
            continue
        outcome = service.handle_event(event)
        assert dry[blob] == (IGNORED, outcome.reason) and outcome.status == IGNORED
    assert set(tiers(blob_service, container).values()) == {"Hot"}
