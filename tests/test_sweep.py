"""`sweep` against Azurite: tiers of every blob after a sweep of a realistic container."""

from __future__ import annotations

import json
import time

import pytest

from retier.metering import CountingTransport, Meter
from retier.settings import Connection, load_settings
from retier.storage import BlobStore
from retier.sweep import sweep_container

pytestmark = pytest.mark.azurite

T = [
    "20240101T020304Z",
    "20240102T020304Z",
    "20240103T020304Z",
    "20240104T020304Z",
    "20240201T020304Z",
    "20240202T020304Z",
]


def chain(prefix, full, incs, vols=3):
    """A finished chain: full at T[full], incrementals to each T[i] in incs."""
    names, volumes = [], []
    volumes += [f"{prefix}duplicity-full.{T[full]}.vol{i}.difftar.gpg" for i in range(1, vols + 1)]
    names += [
        f"{prefix}duplicity-full.{T[full]}.manifest.gpg",
        f"{prefix}duplicity-full-signatures.{T[full]}.sigtar.gpg",
    ]
    previous = T[full]
    for i in incs:
        volumes += [
            f"{prefix}duplicity-inc.{previous}.to.{T[i]}.vol{v}.difftar.gpg" for v in (1, 2)
        ]
        names += [
            f"{prefix}duplicity-inc.{previous}.to.{T[i]}.manifest.gpg",
            f"{prefix}duplicity-new-signatures.{previous}.to.{T[i]}.sigtar.gpg",
        ]
        previous = T[i]
    return volumes, names


VOLS_A, META_A = chain("", 0, [1, 2])
VOLS_B, META_B = chain("host2-", 4, [5], vols=2)
# interrupted: the incremental to T[3] never got its manifest
INTERRUPTED = [f"duplicity-inc.{T[2]}.to.{T[3]}.vol{v}.difftar.gpg" for v in (1, 2)]
FOREIGN = ["notes.txt", f"duplicity-full.{T[0]}.vol9.difftar.gpg.part", "photos/2024/img.jpg"]
ALL = VOLS_A + META_A + VOLS_B + META_B + INTERRUPTED + FOREIGN


@pytest.fixture
def populated(blob_service, container):
    client = blob_service.get_container_client(container)
    for name in ALL:
        client.upload_blob(name, b"x" * 10)
    # already tiered by an earlier event
    client.get_blob_client(VOLS_A[0]).set_standard_blob_tier("Cold")
    client.get_blob_client(VOLS_A[1]).set_standard_blob_tier("Archive")
    return client


def tiers(client):
    return {b.name: b.blob_tier for b in client.list_blobs()}


def make(conn, **env):
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    )
    return store, load_settings({"RETIER_STORAGE": conn, **env}), meter


def expected(volume_tier):
    want = {name: "Hot" for name in ALL}
    want.update({v: volume_tier for v in VOLS_A + VOLS_B})
    want[VOLS_A[1]] = "Archive"  # never moved warmer
    if volume_tier == "Cool":
        want[VOLS_A[0]] = "Cold"
    return want


def test_sweep_moves_finished_sets_volumes_only(populated, container, azurite_connection_string):
    store, settings, meter = make(azurite_connection_string)
    report = sweep_container(store, container, settings)
    assert report.ok and report.applied.failed == 0
    assert tiers(populated) == expected("Cold")
    assert report.plan.moves.count == len(VOLS_A) + len(VOLS_B) - 2
    assert report.applied.done.count == report.plan.moves.count
    assert [u.label for u in report.plan.unfinished] == [f"duplicity-inc.{T[2]}.to.{T[3]}"]
    assert report.plan.unknown.count == len(FOREIGN)
    assert meter.by_operation == {"container-properties": 1, "list": 1, "batch": 1}


def test_dry_run_plans_the_same_and_changes_nothing(
    populated, container, azurite_connection_string
):
    store, settings, meter = make(azurite_connection_string, RETIER_VOLUME_TIER="Archive")
    before = tiers(populated)
    report = sweep_container(store, container, settings, dry_run=True)
    assert tiers(populated) == before
    assert report.applied is None
    assert (
        report.plan.moves.count == len(VOLS_A) + len(VOLS_B) - 1
    )  # all but the one already Archive
    assert meter.by_operation == {"container-properties": 1, "list": 1}


def test_second_sweep_plans_nothing_and_sends_no_tier_change(
    populated, container, azurite_connection_string
):
    store, settings, meter = make(azurite_connection_string, RETIER_VOLUME_TIER="cool")
    sweep_container(store, container, settings)
    meter.reset()
    again = sweep_container(store, container, settings)
    assert again.plan.moves.count == 0 and again.applied.done.count == 0
    assert meter.by_operation == {"container-properties": 1, "list": 1}
    assert tiers(populated) == expected("Cool")


def test_metadata_moves_only_when_asked(populated, container, azurite_connection_string):
    store, settings, _ = make(azurite_connection_string, RETIER_METADATA_TIER="Cool")
    sweep_container(store, container, settings)
    want = expected("Cold")
    want.update({m: "Cool" for m in META_A + META_B})
    assert tiers(populated) == want


def test_held_container_is_left_alone(populated, container, azurite_connection_string):
    store, settings, meter = make(azurite_connection_string)
    store.set_hold(container, "restore in progress")
    before = tiers(populated)
    meter.reset()
    report = sweep_container(store, container, settings)
    assert report.held == "restore in progress" and report.plan is None
    assert meter.by_operation == {
        "container-properties": 1
    }  # the hold check only: not even a listing
    assert tiers(populated) == before
    store.clear_hold(container)
    assert store.get_hold(container) is None
    assert (
        sweep_container(store, container, settings).applied.done.count == len(VOLS_A + VOLS_B) - 2
    )
    assert tiers(populated) == expected("Cold")


def test_hold_stops_the_event_handler_too(populated, container, azurite_connection_string):
    from retier.emulate import events_for
    from retier.service import IGNORED, RetierService

    store, settings, _ = make(azurite_connection_string)
    # The full set's volumes as a finished rehydration leaves them: online, tier set explicitly.
    full_b = [v for v in VOLS_B if "-full." in v]
    for name in full_b:
        populated.get_blob_client(name).set_standard_blob_tier("Hot")
    store.set_hold(container, "restore")
    (event,) = events_for(store, container, store.list_blobs(container, META_B[0]))
    before = tiers(populated)
    outcome = RetierService(settings, store).handle_event(event)
    assert outcome.status == IGNORED and "restore hold" in outcome.reason
    assert sorted(d.name for d in outcome.decisions if d.reason == "container on restore hold") == (
        sorted(full_b)
    )
    assert tiers(populated) == before


class DeletingStore(BlobStore):
    """Real Azurite, with a blob deleted between the listing and its batch (a race a test must force)."""

    victim: str = ""

    def list_blobs(self, container, prefix=None):
        for item in super().list_blobs(container, prefix):
            yield item
            if item.name == self.victim:
                self._client.get_container_client(container).delete_blob(item.name)


def test_blob_deleted_between_listing_and_batch_is_reported_not_fatal(
    populated, container, azurite_connection_string
):
    store = DeletingStore.from_connection(Connection(connection_string=azurite_connection_string))
    store.victim = VOLS_A[4]
    report = sweep_container(
        store, container, load_settings({"RETIER_STORAGE": azurite_connection_string})
    )
    assert report.ok and report.applied.gone == 1
    want = expected("Cold")
    del want[VOLS_A[4]]
    assert tiers(populated) == want


def test_per_blob_failure_is_reported_with_its_reason_and_the_rest_done(
    populated, container, azurite_connection_string
):
    lease = populated.get_blob_client(VOLS_B[0]).acquire_lease()
    try:
        store, settings, _ = make(azurite_connection_string)
        report = sweep_container(store, container, settings)
    finally:
        lease.release()
    assert not report.ok and report.applied.failed == 1
    (failure,) = report.failures
    assert (failure["name"], failure["status"], failure["code"]) == (
        VOLS_B[0],
        412,
        "LeaseIdMissing",
    )
    want = expected("Cold")
    want[VOLS_B[0]] = "Hot"
    assert tiers(populated) == want


def test_per_type_prefixes_relist_sets_whose_volumes_sort_first(
    blob_service, container, azurite_connection_string
):
    client = blob_service.get_container_client(container)
    vols = [f"a/duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2)]
    names = vols + [
        f"m/duplicity-full.{T[0]}.manifest.gpg",
        f"s/duplicity-full-signatures.{T[0]}.sigtar.gpg",
        f"a/duplicity-full.{T[1]}.vol1.difftar.gpg",
    ]  # no manifest: unfinished
    for name in names:
        client.upload_blob(name, b"x")
    store, settings, meter = make(
        azurite_connection_string, RETIER_FILE_PREFIX_ARCHIVE="a/", RETIER_FILE_PREFIX_MANIFEST="m/"
    )
    report = sweep_container(store, container, settings)
    assert (
        meter.by_operation["list"] == 2
    )  # the container, then the one set whose volumes came first
    assert tiers(client) == {n: ("Cold" if n in vols else "Hot") for n in names}
    assert len(report.plan.unfinished) == 1


def test_many_volumes_go_in_parallel_batches_of_at_most_256(
    blob_service, container, azurite_connection_string
):
    from concurrent.futures import ThreadPoolExecutor

    client = blob_service.get_container_client(container)
    vols = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in range(1, 601)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: client.upload_blob(n, b"x"),
                vols + [f"duplicity-full.{T[0]}.manifest.gpg"],
            )
        )
    store, settings, meter = make(azurite_connection_string, RETIER_VOLUME_TIER="Archive")
    report = sweep_container(store, container, settings, workers=3)
    assert report.applied.done.count == 600 and report.applied.batches == 3
    assert meter.by_operation["batch"] == 3 and meter.billable == 1 + 1 + 3 + 600
    assert {t for n, t in tiers(client).items() if n in vols} == {"Archive"}


def test_cli_sweep_dry_run_json_then_apply(
    populated, container, azurite_connection_string, run_retier
):
    env = {"RETIER_STORAGE": azurite_connection_string}
    dry = run_retier("sweep", "--container", container, "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    summary = json.loads(dry.stdout)
    assert (
        summary["dry_run"]
        and summary["containers"][0]["plan"]["move"]["blobs"] == len(VOLS_A) + len(VOLS_B) - 2
    )
    assert tiers(populated)[VOLS_B[0]] == "Hot"  # the dry run changed nothing
    done = run_retier("sweep", "--container", container, env=env)
    assert done.returncode == 0 and "moved" in done.stdout and "unfinished set" in done.stdout
    assert tiers(populated) == expected("Cold")


def test_cli_sweep_exit_codes(populated, container, azurite_connection_string, run_retier):
    env = {"RETIER_STORAGE": azurite_connection_string}
    assert run_retier("sweep", env=env).returncode == 2  # no container named, none configured
    lease = populated.get_blob_client(VOLS_B[0]).acquire_lease()
    try:
        failed = run_retier("sweep", "--container", container, env=env)
    finally:
        lease.release()
    assert failed.returncode == 1 and "LeaseIdMissing" in failed.stdout
    missing = run_retier("sweep", "--container", "no-such-container", env=env)
    assert missing.returncode == 2 and "ContainerNotFound" in missing.stdout


class SlowBatchStandIn(BlobStore):
    """Real Azurite, with each batch held back 0.3 s as a busy account would, so progress ticks while waiting."""

    def set_tier(self, container, names, tier, *, rehydrate_priority=None):
        import time

        time.sleep(0.3)
        return super().set_tier(container, names, tier, rehydrate_priority=rehydrate_priority)


def test_progress_is_reported_from_the_sweeping_thread_only_while_batches_run(
    populated, container, azurite_connection_string
):
    import threading

    store = SlowBatchStandIn.from_connection(
        Connection(connection_string=azurite_connection_string)
    )
    calls = []
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        progress=lambda plan, applied: calls.append(
            (threading.current_thread(), plan.listed, applied, applied.done.count)
        ),
    )
    assert report.ok and calls
    assert {thread for thread, *_ in calls} == {threading.current_thread()}
    assert all(
        applied is report.applied for _, _, applied, _ in calls
    )  # the live tally, not a copy
    done = [count for *_, count in calls]
    assert done == sorted(done) and done[-1] <= report.applied.done.count
    assert calls[-1][1] == len(ALL)


class ServerBusyStandIn(BlobStore):
    """Real Azurite, but the first `busy_calls` tier changes answer as a throttled Azure would.

    Azurite never throttles: this stand-in makes `victims` come back from their batch as
    503 ServerBusy (or, with `whole_batch`, the whole batch request fail with no answer after
    the SDK's retries) for the first `busy_calls` calls; everything else goes to Azurite.
    """

    victims: frozenset = frozenset()
    busy_calls = 1
    whole_batch = False
    batch_status = (
        None  # a whole batch failing with no answer (connection reset after the SDK's retries)
    )
    status = 503
    hold_on_first_call = False  # a restore puts the container on hold while the sweep runs

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.sent: list[list[str]] = []
        self.started: list[float] = []

    def set_tier(self, container, names, tier, **kwargs):
        from retier.storage import TRANSIENT, StorageError, TierResult

        names = list(names)
        self.calls += 1
        self.sent.append(names)
        self.started.append(time.monotonic())
        if self.calls > self.busy_calls:
            return super().set_tier(container, names, tier, **kwargs)
        if self.whole_batch:
            raise StorageError("batch request failed", transient=True, status=self.batch_status)
        if self.hold_on_first_call and self.calls == 1:
            self.set_hold(container, "restore started mid-sweep")
        busy = [n for n in names if n in self.victims]
        rest = {
            r.name: r
            for r in super().set_tier(
                container, [n for n in names if n not in self.victims], tier, **kwargs
            )
        }
        return [
            rest[n]
            if n not in self.victims
            else TierResult(n, tier, TRANSIENT, self.status, "ServerBusy")
            for n in names
            if n in rest or n in busy
        ]


def busy_store(conn, **attrs):
    store = ServerBusyStandIn.from_connection(Connection(connection_string=conn))
    for key, value in attrs.items():
        setattr(store, key, value)
    return store


def test_blobs_throttled_inside_a_batch_are_sent_again_and_end_at_their_tier(
    populated, container, azurite_connection_string
):
    victims = frozenset({VOLS_A[3], VOLS_B[1]})
    store = busy_store(azurite_connection_string, victims=victims)
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0, 0),
    )
    assert report.ok and report.applied.failed == 0 and report.applied.retried == 2
    assert sorted(store.sent[-1]) == sorted(victims)  # only they were sent again
    assert report.applied.done.count == len(VOLS_A + VOLS_B) - 2  # two were already tiered
    assert tiers(populated) == expected("Cold")


def test_a_batch_lost_in_transit_is_sent_again(populated, container, azurite_connection_string):
    store = busy_store(azurite_connection_string, whole_batch=True)
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0,),
    )
    assert report.ok and report.applied.retried == len(VOLS_A + VOLS_B) - 2
    assert tiers(populated) == expected("Cold")


def test_throttling_that_outlasts_the_retries_is_reported_with_its_reason(
    populated, container, azurite_connection_string
):
    store = busy_store(azurite_connection_string, victims=frozenset({VOLS_A[3]}), busy_calls=3)
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0, 0),
    )
    assert store.calls == 3  # the batch, then one retry after each delay
    assert not report.ok and report.applied.failed == 1 and report.applied.retried == 2
    (failure,) = report.failures
    assert (failure["name"], failure["outcome"], failure["status"], failure["code"]) == (
        VOLS_A[3],
        "transient",
        503,
        "ServerBusy",
    )
    want = expected("Cold")
    want[VOLS_A[3]] = "Hot"
    assert tiers(populated) == want


def test_a_missing_role_is_reported_at_once_not_retried(
    populated, container, azurite_connection_string
):
    store = busy_store(
        azurite_connection_string, victims=frozenset({VOLS_A[3]}), status=403, busy_calls=5
    )
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0, 0),
    )
    assert store.calls == 1 and report.applied.retried == 0 and report.applied.failed == 1
    assert report.failures[0]["status"] == 403
    want = expected("Cold")
    want[VOLS_A[3]] = "Hot"
    assert tiers(populated) == want


def test_with_no_retry_delays_transient_failures_are_reported_at_once(
    populated, container, azurite_connection_string
):
    store = busy_store(
        azurite_connection_string, victims=frozenset({VOLS_A[3], VOLS_B[1]}), busy_calls=5
    )
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(),
    )
    assert store.calls == 1 and report.applied.retried == 0 and report.applied.failed == 2
    assert {(f["name"], f["outcome"], f["status"]) for f in report.failures} == {
        (VOLS_A[3], "transient", 503),
        (VOLS_B[1], "transient", 503),
    }


def test_a_whole_batch_refused_for_a_missing_role_is_not_retried(
    populated, container, azurite_connection_string
):
    store = busy_store(azurite_connection_string, whole_batch=True, batch_status=403, busy_calls=5)
    before = tiers(populated)
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0, 0),
    )
    assert store.calls == 1 and report.applied.retried == 0
    assert report.applied.failed == len(VOLS_A + VOLS_B) - 2 and {
        f["status"] for f in report.failures
    } == {403}
    assert tiers(populated) == before  # nothing moved


def test_retries_wait_their_delay_first(populated, container, azurite_connection_string):
    store = busy_store(azurite_connection_string, victims=frozenset({VOLS_A[3]}))
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0.4,),
    )
    assert report.ok and report.applied.retried == 1
    first, retry = store.started
    assert retry - first >= 0.4


def test_past_the_retry_limit_failures_are_reported_at_once_with_their_reason(
    populated, container, azurite_connection_string, monkeypatch
):
    from retier import sweep

    monkeypatch.setattr(sweep, "MAX_RETRY_BLOBS", 1)
    store = busy_store(azurite_connection_string, victims=frozenset({VOLS_A[3], VOLS_B[1]}))
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0,),
    )
    assert report.applied.retried == 1 and report.applied.failed == 1
    (failure,) = report.failures
    assert (failure["outcome"], failure["status"], failure["code"]) == (
        "transient",
        503,
        "ServerBusy",
    )
    assert tiers(populated)[failure["name"]] == "Hot"


def test_no_retry_once_a_restore_has_put_the_container_on_hold(
    populated, container, azurite_connection_string
):
    victims = frozenset({VOLS_A[3], VOLS_B[1]})
    store = busy_store(azurite_connection_string, victims=victims, hold_on_first_call=True)
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0, 0),
    )
    assert store.calls == 1 and report.applied.retried == 0 and report.applied.failed == 2
    assert {f["outcome"] for f in report.failures} == {
        "not retried"
    } and "restore hold" in report.failures[0]["error"]
    assert {n for n, t in tiers(populated).items() if n in victims and t == "Hot"} == victims
    assert store.get_hold(container) == "restore started mid-sweep"  # the sweep never clears a hold


def test_the_sweep_summary_says_how_many_were_sent_again(
    populated, container, azurite_connection_string, capsys
):
    from retier.cli.sweep import print_report

    store = busy_store(azurite_connection_string, victims=frozenset({VOLS_A[3], VOLS_B[1]}))
    report = sweep_container(
        store,
        container,
        load_settings({"RETIER_STORAGE": azurite_connection_string}),
        retry_delays=(0,),
    )
    print_report(report)
    out = capsys.readouterr().out
    assert "failed 0; 2 tier change(s) sent again after transient failures" in out
