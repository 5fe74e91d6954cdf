"""Races between a restore (rehydrate and its hold) and a sweep or an event in flight, on Azurite.

Each interleaving is forced at an exact point by InterleavingStore: real Azurite, with a restore
run at the moment a sweep or the event handler has just read the hold or finished a listing.
Azurite rehydrates instantly, so a volume "brought back" is online at once: that is the state in
which a stale "no hold" would send it back to Archive.
"""

from __future__ import annotations

import pytest

from retier.emulate import events_for
from retier.restore import plan_restore, refresh, rehydrate
from retier.service import HANDLED, IGNORED, RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobStore, connect
from retier.sweep import sweep_container

pytestmark = pytest.mark.azurite

T = ["20240101T000000Z", "20240102T000000Z", "20240103T000000Z"]
FULL = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_META = [f"duplicity-full.{T[0]}.manifest.gpg", f"duplicity-full-signatures.{T[0]}.sigtar.gpg"]
INC = [f"duplicity-inc.{T[0]}.to.{T[1]}.vol{i}.difftar.gpg" for i in (1, 2)]
INC_META = [
    f"duplicity-inc.{T[0]}.to.{T[1]}.manifest.gpg",
    f"duplicity-new-signatures.{T[0]}.to.{T[1]}.sigtar.gpg",
]
NEW = [f"duplicity-inc.{T[1]}.to.{T[2]}.vol{i}.difftar.gpg" for i in (1, 2)]
NEW_META = [
    f"duplicity-inc.{T[1]}.to.{T[2]}.manifest.gpg",
    f"duplicity-new-signatures.{T[1]}.to.{T[2]}.sigtar.gpg",
]


class InterleavingStore(BlobStore):
    """Real Azurite; runs `then()` once, right after the first hold read (`after="hold"`) or
    right after the first listing was read to its end (`after="list"`), before the caller goes on."""

    def __init__(self, client, *, after: str, then):
        super().__init__(client)
        self._after, self._then = after, then
        self.hold_reads = 0

    def _fire(self, point: str) -> None:
        if self._then and point == self._after:
            then, self._then = self._then, None
            then()

    def get_hold(self, container):
        self.hold_reads += 1
        held = super().get_hold(container)
        self._fire("hold")
        return held

    def list_blobs(self, container, prefix=None):
        yield from super().list_blobs(container, prefix)
        self._fire("list")


@pytest.fixture
def env(azurite_connection_string):
    return {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}


@pytest.fixture
def archived(blob_service, container, env):
    """A full and an incremental, volumes archived by the sweep as the function would leave them."""
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META + INC + INC_META:
        client.upload_blob(name, b"v" * 1000)
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    sweep_container(store, container, settings)
    assert tiers(client) == want(archive=FULL + INC)
    return client, store, settings


def tiers(client):
    return {b.name: b.blob_tier for b in client.list_blobs()}


def want(archive=()):
    every = FULL + FULL_META + INC + INC_META
    return {n: ("Archive" if n in archive else "Hot") for n in every}


def event_for(store, container, name):
    (event,) = events_for(
        store, container, [i for i in store.list_blobs(container, name) if i.name == name]
    )
    return event


def seam(azurite_connection_string, **kw) -> InterleavingStore:
    return InterleavingStore(connect(Connection(connection_string=azurite_connection_string)), **kw)


def test_a_sweep_that_read_no_hold_does_not_re_archive_what_a_restore_brought_back(
    archived, container, azurite_connection_string
):
    client, store, settings = archived
    restore = {}

    def restore_starts():  # the sweep has just read "no hold"; its listing has not begun
        restore["result"] = rehydrate(store, plan_restore(store, container, settings), to="Hot")

    racing = seam(azurite_connection_string, after="hold", then=restore_starts)
    report = sweep_container(racing, container, settings, retry_delays=())
    assert restore["result"].requested == len(FULL + INC)
    # The listing saw the rehydrated volumes online (their tier set), planned to archive them,
    # and read the hold again right before the batch: nothing was sent.
    assert report.plan.moves.count == len(FULL + INC) and report.applied.done.count == 0
    assert {f["outcome"] for f in report.failures} == {"held"}
    assert sorted(f["name"] for f in report.failures) == sorted(FULL + INC)
    assert "restore hold during the sweep" in report.failures[0]["error"]
    assert racing.hold_reads == 2  # at the start, and before the one batch
    assert tiers(client) == want()  # everything online, as the restore needs it
    assert store.get_hold(container)  # and the sweep never lifts a hold


def test_a_sweep_moves_new_volumes_without_reading_the_hold_again(
    blob_service, container, env, azurite_connection_string
):
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META:
        client.upload_blob(name, b"v")
    racing = seam(azurite_connection_string, after="none", then=None)
    report = sweep_container(racing, container, load_settings(env), retry_delays=())
    assert report.applied.done.count == len(FULL) and racing.hold_reads == 1
    assert {n: t for n, t in tiers(client).items() if n in FULL} == {n: "Archive" for n in FULL}


def test_a_late_event_after_a_restore_began_reads_the_hold_and_moves_nothing(archived, container):
    client, store, settings = archived
    rehydrate(store, plan_restore(store, container, settings), to="Hot")
    # Event Grid redelivers the sets' manifest events during the restore.
    service = RetierService(settings, store)
    for name in (INC_META[0], FULL_META[0]):
        outcome = service.handle_event(event_for(store, container, name))
        assert outcome.status == IGNORED and outcome.moved == []
        assert "restore hold" in outcome.reason
    assert tiers(client) == want()


def test_rehydrate_pins_needed_volumes_whose_event_was_never_handled(blob_service, container, env):
    # The full set was archived; the incremental finished but its events were lost (say the
    # function was down): its volumes are Hot, never tiered, and the restore needs them.
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META + INC + INC_META:
        client.upload_blob(name, b"v" * 1000)
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    service = RetierService(settings, store)
    assert len(service.handle_event(event_for(store, container, FULL_META[0])).moved) == len(FULL)

    result = rehydrate(store, plan_restore(store, container, settings), to="Hot")
    assert (result.requested, result.pinned, result.failures) == (len(FULL), len(INC), [])
    # Event Grid finally delivers the incremental's manifest event: the hold now guards its
    # volumes, whose tier rehydrate set explicitly.
    late = service.handle_event(event_for(store, container, INC_META[0]))
    assert late.status == IGNORED and late.moved == [] and "restore hold" in late.reason
    assert tiers(client) == want()


def test_without_the_pin_a_late_event_would_archive_a_volume_the_restore_counts_online(
    blob_service, container, env
):
    """The reason for the pin, shown: the hold alone does not guard a never-tiered volume."""
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META + INC + INC_META:
        client.upload_blob(name, b"v")
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    store.set_hold(container, "a restore, held by hand without rehydrate's pin")
    late = RetierService(settings, store).handle_event(event_for(store, container, INC_META[0]))
    assert late.status == HANDLED and sorted(d.name for d in late.moved) == sorted(INC)
    assert {n: t for n, t in tiers(client).items() if n in INC} == {n: "Archive" for n in INC}


def test_a_volume_archived_between_planning_and_the_hold_is_rehydrated_too(
    blob_service, container, env
):
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META:
        client.upload_blob(name, b"v")
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    plan = plan_restore(store, container, settings)
    assert {v.state for v in plan.volumes} == {"online"}  # the set's event is not handled yet
    # ... and is handled now, after the plan was made and before rehydrate holds the container.
    RetierService(settings, store).handle_event(event_for(store, container, FULL_META[0]))
    result = rehydrate(store, plan, to="Hot")
    assert (result.requested, result.already_online, result.pinned) == (len(FULL), 0, 0)
    assert {v.state for v in result.plan.volumes} == {"archived"}  # as re-read under the hold
    assert {n: t for n, t in tiers(client).items() if n in FULL} == {n: "Hot" for n in FULL}


def test_residual_window_an_event_that_listed_before_the_pin_is_reported_not_hidden(
    blob_service, container, env, azurite_connection_string
):
    """The one interleaving the hold cannot close: the handler listed a new set's volumes (never
    tiered, so it reads no hold) and the restore pinned them before its Set Blob Tier arrived.
    It is as wide as one event's listing-to-batch gap; the outcome is visible in `status` and a
    second rehydrate fixes it. Nothing is lost."""
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META:
        client.upload_blob(name, b"v")
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    restore = {}

    def restore_runs():  # the handler has just listed the set
        restore["first"] = rehydrate(store, plan_restore(store, container, settings), to="Hot")

    racing = seam(azurite_connection_string, after="list", then=restore_runs)
    outcome = RetierService(settings, racing).handle_event(
        event_for(store, container, FULL_META[0])
    )
    assert restore["first"].pinned == len(FULL) and racing.hold_reads == 0
    assert sorted(d.name for d in outcome.moved) == sorted(FULL)
    status = refresh(store, restore["first"].plan).by_state()
    assert len(status["archived"]) == len(FULL) and not status["rehydrating"]
    again = rehydrate(store, plan_restore(store, container, settings), to="Hot")
    assert again.requested == len(FULL)
    assert {n: t for n, t in tiers(client).items() if n in FULL} == {n: "Hot" for n in FULL}


def test_a_backup_finishing_during_a_restore_is_tiered_and_the_restored_volumes_are_not(
    archived, container
):
    client, store, settings = archived
    rehydrate(store, plan_restore(store, container, settings), to="Hot")
    for name in NEW + NEW_META:  # tonight's incremental runs while the restore is under way
        client.upload_blob(name, b"n" * 1000)
    outcome = RetierService(settings, store).handle_event(event_for(store, container, NEW_META[0]))
    assert outcome.status == HANDLED and sorted(d.name for d in outcome.moved) == sorted(NEW)
    got = tiers(client)
    assert {n: got[n] for n in NEW} == {n: "Archive" for n in NEW}
    assert {n: got[n] for n in FULL + INC} == {n: "Hot" for n in FULL + INC}


class SameTierRefusedStandIn(BlobStore):
    """Real Azurite, but a Set Blob Tier Hot without a rehydrate priority (the pin) is answered
    409, as Azure might answer a blob already Hot: whether it does is not documented."""

    def set_tier(self, container, names, tier, **kwargs):
        from retier.storage import FAILED, TierResult

        if tier == "Hot" and not kwargs.get("rehydrate_priority"):
            return [TierResult(n, tier, FAILED, 409, "InvalidBlobTier") for n in names]
        return super().set_tier(container, names, tier, **kwargs)


def test_a_refused_pin_is_reported_and_does_not_fail_the_rehydration(
    blob_service, container, env, azurite_connection_string
):
    client = blob_service.get_container_client(container)
    for name in FULL + FULL_META + INC + INC_META:
        client.upload_blob(name, b"v")
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    RetierService(settings, store).handle_event(event_for(store, container, FULL_META[0]))
    refusing = SameTierRefusedStandIn(connect(settings.connection))
    result = rehydrate(refusing, plan_restore(store, container, settings), to="Hot")
    assert (result.requested, result.pinned, result.failures) == (len(FULL), 0, [])
    assert sorted(result.unpinned) == sorted(INC)
    assert set(tiers(client).values()) == {"Hot"}
