"""retier bridge: new and replaced blobs become Event Grid deliveries, retried as Event Grid retries.

Storage is Azurite and the receiver is FunctionsHostStandIn (tests/bridge_support.py) running the
registered function, except in the retry-schedule tests: Event Grid's schedule runs for hours,
so there the clock is fake and the receiver is a script of answers (ScriptedAnswers).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from bridge_support import (
    DOCUMENTED_BLOB_CREATED,
    ROOT,
    FunctionsHostStandIn,
    is_event_time,
    load_functions,
    run_cli_bridge,
    shape,
)

from retier import names
from retier.bridge import (
    DEAD,
    DELIVERED,
    HEADERS,
    RETRYING,
    Answer,
    Bridge,
    diff,
)
from retier.eventgrid import strip_dead_letter_fields
from retier.storage import BlobItem

T1 = "20240101T020304Z"
FULL_VOLS = [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2)]
FULL_SIGS = f"duplicity-full-signatures.{T1}.sigtar.gpg"
FULL_MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
FULL_SET = [*FULL_VOLS, FULL_SIGS, FULL_MANIFEST]  # in duplicity's upload order
DOCUMENTED = DOCUMENTED_BLOB_CREATED[0]


def _item(name: str, etag: str, second: int = 0) -> BlobItem:
    when = datetime(2024, 1, 1, 2, 3, second, tzinfo=timezone.utc)
    return BlobItem(name, 10, "Hot", True, None, when, None, when, etag)


def _upload(blob_service, container: str, blob_names, data: bytes = b"data") -> None:
    client = blob_service.get_container_client(container)
    for name in blob_names:
        client.upload_blob(name, data, overwrite=True)


def _tiers(blob_service, container: str) -> dict[str, str]:
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


def _check_request(received) -> dict:
    """One request against Azure's documented webhook contract; returns its event."""
    assert (received.method, received.path) == ("POST", "/runtime/webhooks/eventgrid")
    assert received.query == {"functionName": ["retier_blob_created"]}
    assert received.headers["aeg-event-type"] == "Notification"
    assert received.headers["content-type"] == "application/json"
    batch = json.loads(received.body)
    assert isinstance(batch, list) and len(batch) == 1  # push delivery: an array of one event
    (event,) = batch
    assert shape(event) == shape(DOCUMENTED)
    for constant in ("eventType", "dataVersion", "metadataVersion"):
        assert event[constant] == DOCUMENTED[constant]
    assert event["data"]["blobType"] == DOCUMENTED["data"]["blobType"]
    assert is_event_time(event["eventTime"]), event["eventTime"]
    assert re.fullmatch(r'"0x[0-9A-F]+"', event["data"]["eTag"]), event["data"]["eTag"]
    assert re.fullmatch(
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage"
        r"/storageAccounts/devstoreaccount1",
        event["topic"],
    )
    return event


def _blob_of(event: dict) -> str:
    return event["subject"].split("/blobs/", 1)[1]


@pytest.fixture(scope="module")
def functions():
    return load_functions()


@pytest.fixture
def host(functions, function_env):
    stand_in = FunctionsHostStandIn(functions).start()
    yield stand_in
    stand_in.stop()


def _run_until_idle(bridge: Bridge, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    bridge.poll()
    while True:
        bridge.deliver_due()
        if bridge.idle:
            return
        assert time.monotonic() < deadline, f"still pending: {[d.blob for d in bridge.pending]}"
        time.sleep(bridge.seconds_to_next())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedAnswers:
    """Stands in for the receiver where the clock is fake: answers from a script, per blob.

    Records (time, blob, event id, body) for every POST.
    """

    def __init__(self, clock: FakeClock, script, default: int | None = 500):
        self.clock = clock
        self.script = script  # list of statuses, or {blob: [statuses]}
        self.default = default
        self.calls: list[tuple[float, str, str, bytes]] = []

    def __call__(self, url, body, headers, timeout) -> Answer:
        assert dict(headers) == HEADERS
        (event,) = json.loads(body)
        blob = _blob_of(event)
        self.calls.append((self.clock.now, blob, event["id"], body))
        queue = self.script.get(blob, []) if isinstance(self.script, dict) else self.script
        status = queue.pop(0) if queue else self.default
        return Answer(status, "" if status else "connection refused")


def _deliver_on_fake_clock(bridge: Bridge, clock: FakeClock, rounds: int = 100) -> list:
    attempts = []
    for _ in range(rounds):
        attempts += bridge.deliver_due()
        if bridge.idle:
            return attempts
        clock.now = min(d.due for d in bridge.pending)
    raise AssertionError("never idle")


# -- the poll/diff logic (pure) ----------------------------------------------------------------


def test_diff_finds_new_and_replaced_blobs_and_forgets_deleted_ones():
    seen = {"kept": "0x1", "replaced": "0x2", "deleted": "0x3"}
    listing = [_item("kept", "0x1"), _item("new", "0x4", 1), _item("replaced", "0x9", 2)]
    changed, now = diff(seen, listing)
    assert [i.name for i in changed] == ["new", "replaced"]
    assert now == {"kept": "0x1", "new": "0x4", "replaced": "0x9"}


def test_diff_puts_one_listing_in_duplicitys_upload_order():
    # Listings are alphabetical: signatures and manifest before the volumes. Within one second
    # of creation time, duplicity uploads volumes, then signatures, then the manifest.
    listing = [_item(n, "0x1") for n in sorted(FULL_SET)]
    assert [n for n in sorted(FULL_SET)][:2] == [FULL_SIGS, FULL_MANIFEST]
    changed, _ = diff({}, listing)
    assert [i.name for i in changed] == FULL_SET


def test_diff_of_an_unchanged_listing_is_empty():
    listing = [_item(n, "0x1") for n in FULL_SET]
    _, seen = diff({}, listing)
    assert diff(seen, listing) == ([], seen)


def test_wire_event_is_azure_eventgrids_model_plus_the_field_event_grid_stamps():
    from azure.eventgrid import EventGridEvent

    from retier.bridge import wire_event

    item = _item(FULL_MANIFEST, "0x8DC0000000000AB")
    url = f"http://127.0.0.1:10000/devstoreaccount1/backups/{FULL_MANIFEST}"
    event = wire_event(account="devstoreaccount1", container="backups", item=item, url=url)
    assert shape(event) == shape(DOCUMENTED)
    # Why the bridge adds metadataVersion: the model's own output has every other wire field.
    model = EventGridEvent(subject="s", event_type="t", data={}, data_version="").serialize()
    assert set(event) - set(model) == {"topic", "metadataVersion"}  # topic: set when given
    assert event["eventTime"] == "2024-01-01T02:03:00.000Z"
    assert event["data"]["eTag"] == '"0x8DC0000000000AB"' and event["data"]["url"] == url


# -- polling Azurite ---------------------------------------------------------------------------


def test_first_poll_sends_nothing_unless_from_start(store, container, blob_service):
    _upload(blob_service, container, FULL_SET)
    bridge = Bridge(store, [container])
    assert bridge.poll() == [] and bridge.pending == []
    _upload(blob_service, container, ["notes.txt"])
    assert [d.blob for d in bridge.poll()] == ["notes.txt"]

    from_start = Bridge(store, [container], from_start=True)
    assert [d.blob for d in from_start.poll()] == [*FULL_SET, "notes.txt"]
    assert from_start.poll() == []  # nothing new: nothing more


def test_a_replaced_blob_is_sent_again_and_a_tier_change_is_not(store, container, blob_service):
    _upload(blob_service, container, [FULL_VOLS[0]])
    bridge = Bridge(store, [container])
    bridge.poll()
    _upload(blob_service, container, [FULL_VOLS[0]], b"resumed: uploaded again")
    (replaced,) = bridge.poll()
    etag = blob_service.get_blob_client(container, FULL_VOLS[0]).get_blob_properties().etag
    assert replaced.blob == FULL_VOLS[0] and replaced.event["data"]["eTag"] == etag
    # retier's own work must not come back as events: Set Blob Tier keeps the ETag.
    blob_service.get_blob_client(container, FULL_VOLS[0]).set_standard_blob_tier("Cold")
    assert bridge.poll() == []


def test_a_deleted_blob_is_forgotten_and_sent_again_when_uploaded_again(
    store, container, blob_service
):
    _upload(blob_service, container, FULL_SET)
    bridge = Bridge(store, [container])
    bridge.poll()
    blob_service.get_blob_client(container, FULL_MANIFEST).delete_blob()
    assert bridge.poll() == []
    assert FULL_MANIFEST not in bridge.watches[0].seen
    _upload(blob_service, container, [FULL_MANIFEST])
    assert [d.blob for d in bridge.poll()] == [FULL_MANIFEST]


def test_a_container_that_does_not_exist_yet_is_watched_until_it_does(store, blob_service):
    # duplicity creates the container on its first backup: start the bridge first.
    name = f"t{uuid.uuid4().hex[:20]}"
    bridge = Bridge(store, [name])
    assert bridge.poll() == [] and bridge.watches[0].missing
    blob_service.create_container(name)
    try:
        _upload(blob_service, name, FULL_SET)
        assert [d.blob for d in bridge.poll()] == FULL_SET  # new since "now", when it was empty
    finally:
        blob_service.delete_container(name)


def test_a_listing_that_fails_leaves_what_was_seen_alone(
    store, container, blob_service, monkeypatch
):
    from retier.settings import Connection
    from retier.storage import BlobStore

    _upload(blob_service, container, FULL_SET)
    bridge = Bridge(store, [container])
    bridge.poll()
    seen = dict(bridge.watches[0].seen)
    # Storage unreachable for one poll (a refused port; no SDK retries, for speed only).
    monkeypatch.setattr("retier.storage.RETRY_TOTAL", 0)
    bridge.store = BlobStore.from_connection(
        Connection(
            connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        )
    )
    assert bridge.poll() == [] and bridge.tally.list_failures == 1
    assert bridge.watches[0].seen == seen
    bridge.store = store
    _upload(blob_service, container, ["notes.txt"])
    assert [d.blob for d in bridge.poll()] == ["notes.txt"]  # not the whole container again


def test_each_poll_lists_each_container_once(store, container, blob_service):
    other = f"t{uuid.uuid4().hex[:20]}"
    blob_service.create_container(other)
    try:
        _upload(blob_service, container, FULL_SET)
        _upload(blob_service, other, ["notes.txt"])
        calls = []

        class CountingStore:
            account_name = store.account_name
            blob_url = staticmethod(store.blob_url)

            def list_blobs(self, c, prefix=None):
                calls.append((c, prefix))
                return store.list_blobs(c, prefix)

        bridge = Bridge(CountingStore(), [container, other], prefix="duplicity-", from_start=True)
        assert [d.blob for d in bridge.poll()] == FULL_SET  # notes.txt is outside the prefix
        assert calls == [(container, "duplicity-"), (other, "duplicity-")]
    finally:
        blob_service.delete_container(other)


# -- delivery and Event Grid's retry schedule (fake clock) --------------------------------------


def _queued_bridge(store, container, blob_service, clock, transport, **kw) -> Bridge:
    _upload(blob_service, container, kw.pop("blobs", [FULL_MANIFEST]))
    bridge = Bridge(store, [container], from_start=True, transport=transport, clock=clock, **kw)
    bridge.poll()
    return bridge


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_retries_follow_event_grids_backoff_compressed_by_the_scale(
    store, container, blob_service, scale
):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, [500, None, 503, 404, 202])
    bridge = _queued_bridge(store, container, blob_service, clock, answers, backoff_scale=scale)
    attempts = _deliver_on_fake_clock(bridge, clock)
    assert [round(t / scale, 6) for t, *_ in answers.calls] == [0, 10, 40, 100, 400]
    assert [(a.attempt, a.status, a.outcome) for a in attempts] == [
        (1, 500, RETRYING),
        (2, None, RETRYING),
        (3, 503, RETRYING),
        (4, 404, RETRYING),
        (5, 202, DELIVERED),
    ]
    # A redelivery is the same event, byte for byte: the same id.
    assert len({body for *_, body in answers.calls}) == 1
    assert (bridge.tally.delivered, bridge.tally.redeliveries, bridge.tally.dead) == (1, 4, 0)


def test_event_grids_schedule_runs_out_at_max_attempts_with_12_hour_waits(
    store, container, blob_service
):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, [], default=500)
    bridge = _queued_bridge(
        store, container, blob_service, clock, answers, backoff_scale=1.0, max_attempts=12
    )
    attempts = _deliver_on_fake_clock(bridge, clock)
    times = [t for t, *_ in answers.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 43200]
    assert [a.outcome for a in attempts] == [RETRYING] * 11 + [DEAD]
    assert bridge.tally.dead == 1 and bridge.idle


@pytest.mark.parametrize("status", [400, 403, 413])
def test_an_answer_event_grid_never_retries_is_dead_at_once(store, container, blob_service, status):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, [status])
    bridge = _queued_bridge(store, container, blob_service, clock, answers)
    (attempt,) = _deliver_on_fake_clock(bridge, clock)
    assert (attempt.attempt, attempt.status, attempt.outcome) == (1, status, DEAD)


@pytest.mark.parametrize("status", [401, 404, 408, 429, 500, 503])
def test_other_failures_are_retried(store, container, blob_service, status):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, [status, 200])
    bridge = _queued_bridge(store, container, blob_service, clock, answers)
    attempts = _deliver_on_fake_clock(bridge, clock)
    assert [a.outcome for a in attempts] == [RETRYING, DELIVERED]


def test_a_failing_event_does_not_hold_back_the_blobs_after_it(store, container, blob_service):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, {FULL_VOLS[0]: [500, 500, 202]}, default=202)
    bridge = _queued_bridge(
        store, container, blob_service, clock, answers, blobs=FULL_SET, backoff_scale=1.0
    )
    _deliver_on_fake_clock(bridge, clock)
    order = [(t, blob) for t, blob, *_ in answers.calls]
    # First attempts in upload order, at once; the failing volume's retries come when due.
    assert order == [
        (0, FULL_VOLS[0]),
        (0, FULL_VOLS[1]),
        (0, FULL_SIGS),
        (0, FULL_MANIFEST),
        (10, FULL_VOLS[0]),
        (40, FULL_VOLS[0]),
    ]


def test_a_dead_event_is_dead_lettered_as_event_grid_would_and_replays(
    store, container, blob_service, tmp_path, run_retier, azurite_connection_string
):
    clock = FakeClock()
    answers = ScriptedAnswers(clock, [], default=None)  # nothing listening at all
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    bridge = _queued_bridge(
        store,
        container,
        blob_service,
        clock,
        answers,
        blobs=FULL_SET,
        max_attempts=2,
        dead_letter_dir=tmp_path,
        wall_clock=lambda: when,
    )
    attempts = _deliver_on_fake_clock(bridge, clock)
    dead = [a for a in attempts if a.outcome == DEAD]
    assert [a.blob for a in dead] == FULL_SET and bridge.tally.dead == 4
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 4
    sent = {event["id"]: event for _, _, _, body in answers.calls for event in json.loads(body)}
    for path in files:
        rel = path.relative_to(tmp_path).as_posix()
        assert re.fullmatch(r"RETIER-BLOB-CREATED/2024/5/6/7/[0-9a-f-]{36}\.json", rel), rel
        (record,) = json.loads(path.read_text())
        assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
        assert record["deliveryAttempts"] == 2
        assert record["publishTime"].startswith("2024-05-06T07:08:09")
        assert strip_dead_letter_fields(record) == sent[record["id"]]
    # An operator replays the manifest's dead letter with handle-event: the set is retiered.
    (manifest_file,) = [p for p in files if FULL_MANIFEST in p.read_text()]
    proc = run_retier(
        "handle-event", str(manifest_file), env={"RETIER_STORAGE": azurite_connection_string}
    )
    assert proc.returncode == 0, proc.stderr
    assert _tiers(blob_service, container) == {
        FULL_VOLS[0]: "Cold",
        FULL_VOLS[1]: "Cold",
        FULL_SIGS: "Hot",
        FULL_MANIFEST: "Hot",
    }


# -- against the Functions host stand-in -------------------------------------------------------


def test_every_request_matches_azures_documented_webhook_contract(
    store, container, blob_service, host
):
    odd = ["backups/host 1/" + FULL_VOLS[0], "r\u00e9sum\u00e9 + notes.txt", *FULL_SET]
    _upload(blob_service, container, odd)
    bridge = Bridge(store, [container], url=host.url(), from_start=True)
    _run_until_idle(bridge)
    assert len(host.received) == len(odd)
    events = [_check_request(r) for r in host.received]
    assert sorted(_blob_of(e) for e in events) == sorted(odd)
    # The registered function took every one through azure-functions' own EventGridEvent.
    assert [(r.status, r.invoked) for r in host.received] == [(202, 1)] * len(odd)
    assert _tiers(blob_service, container)[FULL_VOLS[0]] == "Cold"


def test_the_bridge_respects_an_unknown_function_as_a_retried_404(
    store, container, blob_service, host
):
    _upload(blob_service, container, [FULL_MANIFEST])
    attempts = []
    bridge = Bridge(
        store,
        [container],
        url=host.url("no_such_function"),
        from_start=True,
        max_attempts=2,
        on_attempt=attempts.append,
    )
    _run_until_idle(bridge)
    assert [(a.status, a.outcome) for a in attempts] == [(404, RETRYING), (404, DEAD)]


def test_cli_prints_a_line_per_delivery_and_ctrl_c_stops_it_with_a_summary(
    container, blob_service, host, azurite_connection_string
):
    _upload(blob_service, container, FULL_SET)
    host.fail_next = 1
    returncode, out, err = run_cli_bridge(
        host,
        len(FULL_SET),
        azurite_connection_string,
        *("--container", container, "--to", host.url(), "--from-start", "--interval", "0.2"),
    )
    assert returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == len(FULL_SET) + 1  # one per delivery attempt: one was retried
    assert re.fullmatch(
        rf"{container}/{re.escape(FULL_VOLS[0])}  HTTP 500  attempt 1  retry in 0\.1s  \(.*\)",
        lines[0],
    )
    for blob in FULL_SET:
        (line,) = [x for x in lines if f"/{blob}  HTTP 202" in x]
        attempt = 2 if blob == FULL_VOLS[0] else 1
        assert line == f"{container}/{blob}  HTTP 202  attempt {attempt}  delivered"
    assert "Traceback" not in err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("bridge stopped:")
    assert "4 event(s) queued, 4 delivered, 1 redelivery attempt(s), 0 dead" in summary
    assert "AccountKey" not in out + err  # the connection string is never printed


def test_cli_help_has_examples_and_the_hosts_webhook(run_retier):
    proc = run_retier("bridge", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout
    assert "localhost:7071/runtime/webhooks/eventgrid?functionName=retier_blob_created" in (
        proc.stdout.replace("\n", "").replace(" ", "")
    )


def test_the_cli_parser_does_not_load_azure_eventgrid():
    # Every command builds the whole parser, `retier bridge`'s defaults included (from
    # retier.bridge): only delivering an event needs the azure-eventgrid model.
    code = "import sys; from retier.cli import build_parser; build_parser(); "
    code += "print('azure.eventgrid' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--container", "backups", "--max-attempts", "0"],
        ["--container", "backups", "--max-attempts", "31"],
        ["--container", "backups", "--backoff-scale", "-1"],
        ["--container", "backups", "--interval", "0"],
    ],
)
def test_cli_bad_usage_exits_2(run_retier, args):
    proc = run_retier("bridge", *args, env={"RETIER_STORAGE": "UseDevelopmentStorage=true"})
    assert proc.returncode == 2, proc.stderr


# -- the local loop, end to end, with the real duplicity ----------------------------------------


@pytest.mark.duplicity
def test_live_backups_are_retiered_through_the_bridge_although_the_host_was_down_then_failing(
    store, container, blob_service, host, azurite_connection_string, tmp_path
):
    from retier.demo import Duplicity, change_sample_tree, make_sample_tree

    host.stop()  # `func start` not up yet: the first deliveries are refused
    attempts = []
    bridge = Bridge(store, [container], url=host.url(), interval=0.25, on_attempt=attempts.append)
    stop = threading.Event()
    runner = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    runner.start()

    def host_comes_up() -> None:
        # Once a delivery has been refused the host starts, and its first 3 answers are 500.
        if not host.started and any(a.status is None for a in attempts):
            host.fail_next = 3
            host.start()

    dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
    source = make_sample_tree(tmp_path / "source")
    try:
        dup.backup("full", source, while_running=host_comes_up)
        time.sleep(1.1)  # set names have one-second resolution
        change_sample_tree(source, 1)
        dup.backup("incremental", source, while_running=host_comes_up)
        # An unfinished set: the next backup's first volumes, no manifest (yet).
        (inc_manifest,) = [
            n
            for n in _tiers(blob_service, container)
            if names.parse(n).kind is names.Kind.MANIFEST and n.startswith("duplicity-inc.")
        ]
        end = names.parse(inc_manifest).end_time
        later = (datetime.strptime(end, "%Y%m%dT%H%M%SZ") + timedelta(days=1)).strftime(
            "%Y%m%dT%H%M%SZ"
        )
        unfinished = [f"duplicity-inc.{end}.to.{later}.vol{i}.difftar.gpg" for i in (1, 2)]
        _upload(blob_service, container, unfinished)
        all_blobs = set(_tiers(blob_service, container))

        deadline = time.monotonic() + 60
        while not (bridge.idle and set(bridge.watches[0].seen) == all_blobs):
            host_comes_up()
            assert time.monotonic() < deadline, [d.blob for d in bridge.pending]
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=30)

    tiers = _tiers(blob_service, container)
    kinds = {n: names.parse(n).kind for n in tiers}
    finished_volumes = [n for n in tiers if kinds[n] is names.Kind.VOLUME and n not in unfinished]
    assert len(finished_volumes) >= 4  # --volsize 1: several volumes in the full backup
    assert sum(k is names.Kind.MANIFEST for k in kinds.values()) == 2
    assert {n: t for n, t in tiers.items() if n in finished_volumes} == dict.fromkeys(
        finished_volumes, "Cold"
    )
    assert {n: t for n, t in tiers.items() if n not in finished_volumes} == dict.fromkeys(
        set(tiers) - set(finished_volumes), "Hot"
    )  # manifests, signatures and the unfinished set's volumes untouched

    # The host was down, then failed: those events came again, the same events, and got through.
    refused = [a for a in attempts if a.status is None]
    failed = [r for r in host.received if r.status == 500]
    assert refused and len(failed) == 3
    delivered = [a for a in attempts if a.outcome == DELIVERED]
    assert {a.event_id for a in attempts if a.outcome == RETRYING} <= {
        a.event_id for a in delivered
    }
    assert Counter(a.blob for a in delivered) == Counter(all_blobs)  # each blob exactly once
    assert bridge.tally.dead == 0 and bridge.tally.redeliveries >= len(refused) + 3 - 1
    assert sum(r.invoked for r in host.received) == len(all_blobs)
    for received in host.received:
        _check_request(received)
