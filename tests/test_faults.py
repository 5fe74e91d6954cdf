"""The reliability test bed and its fast fault runs: the proxy's faults, the Event Grid stand-in, duplicity backups under faults."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import datetime, timezone

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.storage.blob import BlobServiceClient

from faultbed import proxy as fp
from faultbed.eventgrid import (
    DEAD_LETTERED,
    HANDLED,
    IGNORED,
    MANIFESTS_ONLY,
    UNDELIVERABLE_BAD_REQUEST,
    Answer,
    EventGridStandIn,
    function_endpoint,
    read_dead_letters,
    serving,
)
from faultbed.runs import DEFAULT_RATES, fast_retry, fault_run, record_backups
from retier import eventgrid
from retier.emulate import events_for
from retier.service import RetierService
from retier.settings import Connection, load_settings
from retier.storage import OK, TRANSIENT, BlobStore, StorageError

T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
MANIFEST = f"duplicity-full.{T}.manifest.gpg"
SIGS = f"duplicity-full-signatures.{T}.sigtar.gpg"


def _upload(blob_service, container, names):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, b"duplicity bytes " + name.encode())


def _tiers(blob_service, container):
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


def _client(proxy, conn, **kwargs) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(proxy.connection_string(conn), **kwargs)


# -- the proxy ---------------------------------------------------------------------------------------
ANSWERED = {
    fp.SERVER_BUSY: (503, "ServerBusy"),
    fp.TIMED_OUT: (500, "OperationTimedOut"),
    fp.INTERNAL_ERROR: (500, "InternalError"),
    fp.TOO_MANY_REQUESTS: (429, "ServerBusy"),
}


@pytest.mark.parametrize("fault", sorted(ANSWERED))
def test_proxy_answers_in_azures_words_and_forwards_nothing(
    fault, azurite_connection_string, blob_service, container
):
    _upload(blob_service, container, VOLS[:1])
    with fp.FaultProxy.in_front_of(azurite_connection_string, rates={fault: 1.0}) as proxy:
        blob = _client(proxy, azurite_connection_string, retry_total=0).get_blob_client(
            container, VOLS[0]
        )
        with pytest.raises(HttpResponseError) as raised:
            blob.set_standard_blob_tier("Cool")
    status, code = ANSWERED[fault]
    assert raised.value.status_code == status and raised.value.error_code == code
    body = raised.value.response.text()
    assert re.search(rf"<Error><Code>{code}</Code><Message>.+\nRequestId:", body)
    assert proxy.injected == {fault: 1} and proxy.tier_changes == []
    assert _tiers(blob_service, container) == {VOLS[0]: "Hot"}


@pytest.mark.parametrize(
    "fault, carried_out",
    [
        (fp.RESET_BEFORE, False),
        (fp.RESET_AFTER, True),
        (fp.STALL_BEFORE, False),
        (fp.STALL_AFTER, True),
    ],
)
def test_a_lost_answer_is_a_connection_failure_whether_or_not_azurite_did_the_work(
    fault, carried_out, azurite_connection_string, blob_service, container
):
    _upload(blob_service, container, VOLS[:1])
    with fp.FaultProxy.in_front_of(
        azurite_connection_string, rates={fault: 1.0}, stall_seconds=3.0
    ) as proxy:
        client = _client(proxy, azurite_connection_string, retry_total=0, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ServiceResponseError):
            client.get_blob_client(container, VOLS[0]).set_standard_blob_tier("Cool")
        # a stalled answer is given up by the client's read timeout, not by the proxy letting go
        assert time.monotonic() - started < 2.0
    assert proxy.injected == {fault: 1}
    assert _tiers(blob_service, container) == {VOLS[0]: "Cool" if carried_out else "Hot"}
    assert [(c.blob, c.status) for c in proxy.tier_changes] == (
        [(VOLS[0], 200)] if carried_out else []
    )


@pytest.mark.parametrize("fault", sorted(fp.BATCH_PART_FAULTS))
def test_a_refused_batch_sub_request_is_not_carried_out_and_says_so_in_its_part(
    fault, azurite_connection_string, blob_service, container
):
    names = [*VOLS, "x/with space%and percent.vol9.difftar.gpg"]
    _upload(blob_service, container, names)
    with fp.FaultProxy.in_front_of(azurite_connection_string, seed=4, rates={fault: 1.0}) as proxy:
        store = BlobStore(_client(proxy, azurite_connection_string, retry_total=0))
        results = store.set_tier(container, names, "Cool")
    (refused,) = proxy.refused
    status, code = (
        (503, "ServerBusy") if fault == fp.BATCH_PART_SERVER_BUSY else (500, "InternalError")
    )
    assert {(r.name, r.outcome, r.status, r.code) for r in results} == {
        (n, TRANSIENT, status, code) if n == refused.blob else (n, OK, 200, None) for n in names
    }
    tiers = _tiers(blob_service, container)
    assert tiers == {n: "Hot" if n == refused.blob else "Cool" for n in names}
    assert sorted(c.blob for c in proxy.tier_changes) == sorted(set(names) - {refused.blob})
    assert proxy.injected == {fault: 1} and proxy.unexpected == []


def test_every_refused_position_leaves_only_that_blob_untouched(
    azurite_connection_string, blob_service, container
):
    # Same-length renaming must work wherever the refused name ends (a letter, %XX, "~").
    names = ["a~", "b%20", "c.vol1.difftar.gpg"]
    _upload(blob_service, container, names)
    seen = set()
    # Which position is refused depends on the seed and the (random) container name: go on until
    # every position has been refused once. 12 seeds alone missed one about one run in fifty.
    for seed in range(200):
        if seen == set(names):
            break
        with fp.FaultProxy.in_front_of(
            azurite_connection_string, seed=seed, rates={fp.BATCH_PART_SERVER_BUSY: 1.0}
        ) as proxy:
            store = BlobStore(_client(proxy, azurite_connection_string, retry_total=0))
            results = store.set_tier(container, names, "Cool" if seed % 2 else "Hot")
        (refused,) = proxy.refused
        seen.add(refused.blob)
        assert [r.name for r in results if r.outcome != OK] == [refused.blob]
        assert proxy.unexpected == []
    assert seen == set(names)


def test_head_answers_keep_their_content_length(azurite_connection_string, blob_service, container):
    _upload(blob_service, container, VOLS[:1])
    with fp.FaultProxy.in_front_of(azurite_connection_string) as proxy:
        props = _client(proxy, azurite_connection_string).get_blob_client(container, VOLS[0])
        assert props.get_blob_properties().size == len(b"duplicity bytes " + VOLS[0].encode())


def test_the_same_seed_injects_the_same_faults_into_the_same_requests(
    azurite_connection_string, blob_service, container
):
    _upload(blob_service, container, VOLS)

    def run(seed):
        with fp.FaultProxy.in_front_of(
            azurite_connection_string, seed=seed, rates={fp.SERVER_BUSY: 0.5}
        ) as proxy:
            store = BlobStore(_client(proxy, azurite_connection_string, retry_total=0))
            for name in VOLS * 4:
                with contextlib.suppress(StorageError):  # only the proxy's log matters here
                    list(store.list_blobs(container, name))
        return proxy.log

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    assert 0 < sum(fault is not None for _, fault in first) < len(first)


def test_rates_must_name_known_faults_and_sum_to_at_most_one():
    with pytest.raises(ValueError, match="unknown"):
        fp.FaultProxy(1, rates={"gremlins": 0.1})
    with pytest.raises(ValueError, match="at most 1"):
        fp.FaultProxy(1, rates={fp.SERVER_BUSY: 0.6, fp.RESET_AFTER: 0.6})
    with pytest.raises(ValueError, match="account key"):
        fp.FaultProxy(1, rates={fp.BATCH_PART_SERVER_BUSY: 0.1})


# -- the Event Grid stand-in ---------------------------------------------------------------------------
def _event(name, container="c", n=0):
    return {
        "id": f"id-{n}-{name}",
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-01-01T02:03:05Z",
        "data": {"api": "PutBlob", "url": f"https://acct.blob.core.windows.net/{container}/{name}"},
        "dataVersion": "",
        "metadataVersion": "1",
    }


START = datetime(2024, 5, 6, 22, 59, 0, tzinfo=timezone.utc)


def test_failed_attempts_follow_event_grids_back_off_then_go_to_the_dead_letter_container(
    blob_service, container
):
    calls = []

    def failing(event):
        calls.append(event.id)  # the Function gets an azure.functions.EventGridEvent
        raise RuntimeError("storage unreachable")

    dead_letter = blob_service.get_container_client(container)
    stand_in = EventGridStandIn(
        function_endpoint(failing), max_delivery_attempts=5, dead_letter=dead_letter, start=START
    )
    stand_in.publish([_event(MANIFEST)])
    report = stand_in.run()
    (delivery,) = report.deliveries
    assert [a.at for a in delivery.attempts] == [0, 10, 40, 100, 400]
    assert [a.status for a in delivery.attempts] == [500] * 5 and len(calls) == 5
    assert delivery.end == DEAD_LETTERED
    assert delivery.reason == "MaxDeliveryAttemptsExceeded: RuntimeError: storage unreachable"
    # written 5 minutes after the last attempt (23:05:40 UTC): the next hour's folder
    assert re.fullmatch(
        r"RETIER-BLOB-CREATED/2024/5/6/23/[0-9a-f-]{36}\.json", delivery.dead_letter_blob
    )
    ((blob, record),) = read_dead_letters(dead_letter)
    assert blob == delivery.dead_letter_blob
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 5 and record["lastDeliveryOutcome"] == "GenericError"
    assert record["publishTime"] == "2024-05-06T22:59:00.0000000Z"
    assert record["lastDeliveryAttemptTime"] == "2024-05-06T23:05:40.0000000Z"
    stripped = eventgrid.strip_dead_letter_fields(record)
    stripped.pop("lastHttpStatusCode")
    assert stripped == _event(MANIFEST)


def test_time_to_live_ends_the_retries_before_the_attempts_run_out():
    stand_in = EventGridStandIn(lambda e: Answer(503), event_ttl_minutes=1)
    stand_in.publish([_event(MANIFEST)])
    (delivery,) = stand_in.run().deliveries
    # 0, 10, 40 s; the next try (100 s) would be past the minute
    assert [a.at for a in delivery.attempts] == [0, 10, 40]
    assert delivery.end == DEAD_LETTERED and delivery.reason.startswith("TimeToLiveExceeded")
    assert delivery.dead_letter_blob is None  # no destination configured: dropped, and recorded


def test_a_bad_request_answer_is_dead_lettered_at_once():
    stand_in = EventGridStandIn(lambda e: Answer(400, None, "malformed"))
    stand_in.publish([_event(MANIFEST)])
    (delivery,) = stand_in.run().deliveries
    assert len(delivery.attempts) == 1
    assert delivery.reason == f"{UNDELIVERABLE_BAD_REQUEST}: malformed"


def test_an_answer_slower_than_30_seconds_is_a_failed_attempt(monkeypatch):
    monkeypatch.setattr(eventgrid, "RESPONSE_TIMEOUT_SECONDS", 0.01)
    slow = iter([0.05, 0.0])

    def endpoint(event):
        time.sleep(next(slow))
        return Answer(200, {"status": "handled", "reason": "set finished"})

    stand_in = EventGridStandIn(endpoint)
    stand_in.publish([_event(MANIFEST)])
    (delivery,) = stand_in.run().deliveries
    assert [a.status for a in delivery.attempts] == [None, 200]
    assert delivery.end == HANDLED


def test_duplicates_shuffling_and_filters_are_seeded_and_every_delivery_ends():
    names = [*VOLS, SIGS, MANIFEST, "notes.txt"]

    def outcome(event):
        name = event["subject"].rsplit("/", 1)[1]
        if name == MANIFEST:
            return Answer(200, {"status": "handled", "reason": "set finished: 3 volume(s) listed"})
        return Answer(200, {"status": "ignored", "reason": f"nothing to do for {name}"})

    def run(seed, **kw):
        stand_in = EventGridStandIn(outcome, seed=seed, shuffle=True, **kw)
        stand_in.publish([_event(n) for n in names])
        return stand_in.run()

    first, again, other = run(1), run(1), run(2)
    order = [d.subject for d in first.deliveries]
    assert order == [d.subject for d in again.deliveries] != [d.subject for d in other.deliveries]
    assert sorted(order) == sorted(_event(n)["subject"] for n in names)

    doubled = run(3, duplicate_rate=1.0)
    assert doubled.ends() == {HANDLED: 2, IGNORED: 10} and not doubled.without_reason
    assert sum(d.duplicate for d in doubled.deliveries) == len(names)

    manifests = run(4, subject_filter=MANIFESTS_ONLY)
    assert [d.subject.rsplit("/", 1)[1] for d in manifests.deliveries] == [MANIFEST]
    assert manifests.filtered == len(names) - 1


def test_a_blob_can_be_created_just_before_its_first_delivery_and_never_before_a_retry():
    created, seen_by_endpoint = [], []
    answers = iter([Answer(500), Answer(200), Answer(200), Answer(200)])

    def endpoint(event):
        seen_by_endpoint.append((event["subject"], list(created)))
        return next(answers)

    stand_in = EventGridStandIn(
        endpoint, before_delivery=lambda d: created.append(d.subject), duplicate_rate=0.0
    )
    stand_in.publish([_event(VOLS[0]), _event(MANIFEST)])
    stand_in.run()
    first, second = _event(VOLS[0])["subject"], _event(MANIFEST)["subject"]
    assert created == [first, second]
    # each event's blob existed when it was delivered; the retry did not create it again
    assert seen_by_endpoint == [
        (first, [first]),
        (second, [first, second]),
        (first, [first, second]),
    ]


def test_concurrent_deliveries_never_exceed_the_limit():
    in_flight, peak, lock = 0, 0, threading.Lock()

    def endpoint(event):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return Answer(200)

    stand_in = EventGridStandIn(endpoint, concurrency=4)
    stand_in.publish([_event(f"b{i}") for i in range(24)])
    assert stand_in.run().ends() == {HANDLED: 24}
    assert peak == 4


# -- the Function's entry point behind the proxy --------------------------------------------------
@pytest.fixture
def proxied_service(azurite_connection_string):
    def make(proxy, **settings):
        conn = Connection(connection_string=proxy.connection_string(azurite_connection_string))
        store = BlobStore.from_connection(conn, read_timeout=0.4, retry_policy=fast_retry())
        env = {"RETIER_STORAGE": conn.connection_string, **settings}
        return RetierService(load_settings(env), store)

    return make


def test_throttled_storage_makes_the_function_fail_and_event_grid_redeliver_until_done(
    azurite_connection_string, blob_service, container, proxied_service, store
):
    _upload(blob_service, container, [*VOLS, SIGS, MANIFEST])
    with fp.FaultProxy.in_front_of(
        azurite_connection_string, rates={fp.TOO_MANY_REQUESTS: 1.0}
    ) as proxy:
        entry = function_endpoint()

        def throttled_once(event):
            answer = entry(event)
            proxy.set_rates({})  # the throttling passes before Event Grid's next attempt
            return answer

        stand_in = EventGridStandIn(throttled_once)
        stand_in.publish(events_for(store, container, store.list_blobs(container, MANIFEST)))
        with serving(proxied_service(proxy, RETIER_VOLUME_TIER="Archive")):
            (delivery,) = stand_in.run().deliveries
    assert [(a.at, a.status) for a in delivery.attempts] == [(0, 500), (10, 200)]
    assert delivery.attempts[0].detail.startswith("RetryLater: list ")
    assert delivery.end == HANDLED and delivery.reason == "set finished: 3 volume(s) listed"
    assert _tiers(blob_service, container) == {
        **dict.fromkeys(VOLS, "Archive"),
        SIGS: "Hot",
        MANIFEST: "Hot",
    }
    assert proxy.injected == {fp.TOO_MANY_REQUESTS: 1}


# -- fault runs over real duplicity backups -------------------------------------------------------
@pytest.fixture(scope="session")
def recording(azurite_connection_string, tmp_path_factory):
    """duplicity full + 2 incrementals + an interrupted one, recorded once per session."""
    return record_backups(azurite_connection_string, tmp_path_factory.mktemp("recording"))


@pytest.fixture(scope="session")
def baseline(azurite_connection_string, recording):
    return fault_run(
        azurite_connection_string, recording, 0, rates={}, shuffle=False, duplicate_rate=0
    )


@pytest.mark.duplicity
def test_the_recording_has_several_volumes_per_set_an_unfinished_set_and_foreign_blobs(recording):
    kinds = recording.kinds()
    assert kinds["manifest"] == 3 and kinds["signatures"] == 4 and kinds["jsonstat"] == 3
    assert kinds["foreign"] == 4
    runs = {b.run for b in recording.blobs if b.name in recording.finished_volumes}
    assert runs == {1, 2, 3}
    for run in (1, 2, 3):
        assert (
            sum(b.run == run for b in recording.blobs if b.name in recording.finished_volumes) >= 3
        )
    assert sum(".difftar" in n for n in recording.unfinished) >= 3


@pytest.mark.duplicity
def test_without_faults_each_finished_volume_is_tiered_exactly_once(baseline, recording):
    assert baseline.ok, baseline.problems
    assert baseline.end_state == recording.expected("Archive")
    assert baseline.injected == {} and baseline.dead_lettered == 0
    assert baseline.tier_changes == len(recording.finished_volumes)
    assert baseline.ends[HANDLED] + baseline.ends[IGNORED] == len(recording.blobs)


FAST_SEEDS = [(1, False), (2, False), (3, True), (4, True)]


@pytest.mark.duplicity
@pytest.mark.parametrize(
    "seed, manifests_only",
    FAST_SEEDS,
    ids=[f"seed{s}-{'manifests' if m else 'all'}" for s, m in FAST_SEEDS],
)
def test_under_faults_the_end_state_is_the_fault_free_one_and_nothing_else_was_touched(
    seed, manifests_only, azurite_connection_string, recording, baseline
):
    # Only the three manifests' events make requests (volume events cost none), a dozen or so
    # in either mode: at the default rates one run in eight drew fewer than 3 faults. Twice the
    # rates while events are delivered make that negligible; the sweep keeps the default rates,
    # under which bench/run_faults measured its three tries enough (at twice them, three
    # incomplete sweeps in a row happened).
    doubled = {k: v if k.startswith("batch_part") else 2 * v for k, v in DEFAULT_RATES.items()}
    result = fault_run(
        azurite_connection_string,
        recording,
        seed,
        rates=doubled,
        sweep_rates=DEFAULT_RATES,
        manifests_only=manifests_only,
        baseline=baseline.end_state,
    )
    assert result.ok, result.problems
    assert sum(result.injected.values()) >= 3  # the run was not fault-free by luck


@pytest.mark.duplicity
def test_an_outage_dead_letters_the_events_and_the_sweep_repairs_everything(
    azurite_connection_string, recording, baseline
):
    result = fault_run(
        azurite_connection_string,
        recording,
        7,
        rates={fp.SERVER_BUSY: 1.0},
        sweep_rates={},
        max_delivery_attempts=3,
        baseline=baseline.end_state,
    )
    assert result.ok, result.problems
    # Every event that needs storage (the manifests') failed three times and was dead-lettered;
    # volumes, metadata and foreign names need none and were ignored at once.
    acting = [b for b in recording.blobs if b.run and ".manifest" in b.name]
    assert result.dead_lettered == len(acting) and result.ends[DEAD_LETTERED] == len(acting)
    assert result.sweep_moved == len(recording.finished_volumes)
    assert result.tier_changes == len(recording.finished_volumes)
