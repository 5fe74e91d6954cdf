"""The event handler against Azurite: tiers of every blob after each scenario."""

from __future__ import annotations

import pytest

from retier.emulate import blob_created_event, events_for
from retier.metering import CountingTransport, Meter
from retier.service import HANDLED, IGNORED, INVALID, RETRY, VOLUME_WAITS, RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobStore

pytestmark = pytest.mark.azurite

T1, T2, T3 = "20240101T020304Z", "20240102T020304Z", "20240103T020304Z"
FULL_VOLS = [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_SIGS = f"duplicity-full-signatures.{T1}.sigtar.gpg"
FULL_MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
FULL_JSONSTAT = f"duplicity-full.{T1}.jsonstat.gpg"
INC_VOLS = [f"duplicity-inc.{T1}.to.{T2}.vol{i}.difftar.gpg" for i in (1, 2)]
INC_SIGS = f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg"
INC_MANIFEST = f"duplicity-inc.{T1}.to.{T2}.manifest.gpg"
# an unfinished incremental: volumes uploaded, no manifest yet
OPEN_VOLS = [f"duplicity-inc.{T2}.to.{T3}.vol{i}.difftar.gpg" for i in (1, 2)]
FOREIGN = [
    "notes.txt",
    "duplicity-full.20240101T020304Z.vol1.difftar.gpg.part",
    f"duplicity-full.{T1}.vol1.difftar.gpg.bak",
]

FULL_SET = [*FULL_VOLS, FULL_SIGS, FULL_MANIFEST, FULL_JSONSTAT]
INC_SET = [*INC_VOLS, INC_SIGS, INC_MANIFEST]


def upload(blob_service, container, names):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, b"duplicity bytes " + name.encode(), overwrite=True)


def tiers(blob_service, container):
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


class Harness:
    def __init__(self, conn, container, **settings):
        self.meter = Meter()
        env = {"RETIER_STORAGE": conn, **settings}
        self.store = BlobStore.from_connection(
            Connection(connection_string=conn), transport=CountingTransport(self.meter)
        )
        self.service = RetierService(load_settings(env), self.store)
        self.container = container

    def event(self, name, container=None):
        container = container or self.container
        item = next(iter(self.store.list_blobs(container, name)), None)
        if (
            item is None or item.name != name
        ):  # an event for a blob that is not (or no longer) there
            from retier.storage import BlobItem

            item = BlobItem(name, 1, "Hot", True, None, None, None, None)
        return blob_created_event(
            account=self.store.account_name,
            container=container,
            item=item,
            url=self.store.blob_url(container, name),
        )

    def deliver(self, name, container=None):
        event = self.event(name, container)
        self.meter.reset()
        return self.service.handle_event(event)


@pytest.fixture
def harness(azurite_connection_string, container):
    return lambda **settings: Harness(azurite_connection_string, container, **settings)


def expect(blob_service, container, cold=(), archive=(), cool=(), default="Hot"):
    got = tiers(blob_service, container)
    want = {name: default for name in got}
    want.update({n: "Cold" for n in cold})
    want.update({n: "Archive" for n in archive})
    want.update({n: "Cool" for n in cool})
    assert got == want


def test_manifest_event_moves_only_that_sets_volumes(blob_service, container, harness):
    upload(blob_service, container, FULL_SET + INC_SET + OPEN_VOLS + FOREIGN)
    outcome = harness().deliver(FULL_MANIFEST)
    assert outcome.status == HANDLED
    assert sorted(d.name for d in outcome.moved) == sorted(FULL_VOLS)
    expect(blob_service, container, cold=FULL_VOLS)


def test_incremental_manifest_moves_its_volumes_to_archive_and_keeps_metadata_online(
    blob_service, container, harness
):
    upload(blob_service, container, FULL_SET + INC_SET + OPEN_VOLS + FOREIGN)
    h = harness(RETIER_VOLUME_TIER="archive")
    assert h.deliver(INC_MANIFEST).status == HANDLED
    expect(blob_service, container, archive=INC_VOLS)


def test_duplicate_manifest_event_costs_one_listing_and_no_tier_change(
    blob_service, container, harness
):
    upload(blob_service, container, FULL_SET)
    h = harness()
    h.deliver(FULL_MANIFEST)
    again = h.deliver(FULL_MANIFEST)
    assert again.status == HANDLED and again.moved == []
    assert h.meter.by_operation == {"list": 1}
    expect(blob_service, container, cold=FULL_VOLS)


def test_volume_events_leave_the_set_alone_and_cost_no_request(blob_service, container, harness):
    upload(blob_service, container, FULL_VOLS + [FULL_SIGS])
    h = harness(RETIER_VOLUME_TIER="Archive")
    for name in FULL_VOLS + [FULL_SIGS]:
        outcome = h.deliver(name)
        assert outcome.status == IGNORED and outcome.moved == []
    assert h.deliver(FULL_VOLS[0]).reason == VOLUME_WAITS
    assert h.meter.round_trips == 0
    expect(blob_service, container)


def test_reordered_events_end_with_exactly_the_volumes_archived(blob_service, container, harness):
    upload(blob_service, container, FULL_SET + INC_SET)
    h = harness(RETIER_VOLUME_TIER="Archive")
    # Event Grid does not promise order: manifest first, then the volumes' own events, twice over.
    for name in [
        INC_MANIFEST,
        *INC_VOLS,
        INC_SIGS,
        FULL_JSONSTAT,
        FULL_MANIFEST,
        *FULL_VOLS,
        *INC_VOLS,
        INC_MANIFEST,
    ]:
        assert h.deliver(name).status in (HANDLED, IGNORED)
    expect(blob_service, container, archive=FULL_VOLS + INC_VOLS)


def test_volume_events_of_a_finished_set_leave_it_to_the_manifests_event(
    blob_service, container, harness
):
    upload(blob_service, container, FULL_SET + INC_SET)
    h = harness()
    # Event Grid retried the manifest's event later than the volumes' events: the manifest is
    # already in storage when the volumes' events arrive. They change nothing and cost nothing,
    # so they can never race the manifest's event into tiering the set twice.
    for name in FULL_VOLS:
        outcome = h.deliver(name)
        assert outcome.status == IGNORED and outcome.moved == []
    assert h.meter.round_trips == 0
    expect(blob_service, container)
    moved = h.deliver(FULL_MANIFEST).moved
    assert sorted(d.name for d in moved) == sorted(FULL_VOLS)
    # the set in one listing, one batch (volumes never tiered before: no restore-hold read)
    assert h.meter.by_operation == {"list": 1, "batch": 1}
    expect(blob_service, container, cold=FULL_VOLS)


def test_one_volume_set_is_tiered_with_a_single_set_blob_tier(blob_service, container, harness):
    one = [f"duplicity-inc.{T1}.to.{T2}.vol1.difftar.gpg", INC_MANIFEST]
    upload(blob_service, container, one)
    h = harness()
    assert [d.name for d in h.deliver(INC_MANIFEST).moved] == [one[0]]
    # the floor: one listing and one Set Blob Tier (a new volume cannot be a rehydrated one)
    assert h.meter.by_operation == {"list": 1, "set-tier": 1} and h.meter.billable == 2
    expect(blob_service, container, cold=one[:1])


def test_volumes_tiered_before_cost_one_restore_hold_read(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    client = blob_service.get_container_client(container)
    # Once Cool (or rehydrated): the tier was set, so a restore may be holding the container.
    for name in FULL_VOLS:
        client.get_blob_client(name).set_standard_blob_tier("Cool")
    h = harness()
    assert sorted(d.name for d in h.deliver(FULL_MANIFEST).moved) == sorted(FULL_VOLS)
    assert h.meter.by_operation == {"list": 1, "container-properties": 1, "batch": 1}
    expect(blob_service, container, cold=FULL_VOLS)


def test_unfinished_set_is_never_touched_even_with_other_sets_finished(
    blob_service, container, harness
):
    upload(blob_service, container, FULL_SET + OPEN_VOLS)
    h = harness(RETIER_VOLUME_TIER="Archive")
    for name in OPEN_VOLS:
        assert h.deliver(name).status == IGNORED
    h.deliver(FULL_MANIFEST)
    expect(blob_service, container, archive=FULL_VOLS)


def test_manifest_event_for_a_manifest_not_in_storage_does_nothing(
    blob_service, container, harness
):
    upload(blob_service, container, FULL_VOLS)
    outcome = harness(RETIER_VOLUME_TIER="Archive").deliver(FULL_MANIFEST)
    assert outcome.status == IGNORED and "not found" in outcome.reason
    expect(blob_service, container)


def test_volumes_are_never_moved_warmer(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    client = blob_service.get_container_client(container)
    client.get_blob_client(FULL_VOLS[0]).set_standard_blob_tier("Archive")
    outcome = harness(RETIER_VOLUME_TIER="Cool").deliver(FULL_MANIFEST)
    assert {d.name for d in outcome.moved} == set(FULL_VOLS[1:])
    expect(blob_service, container, archive=FULL_VOLS[:1], cool=FULL_VOLS[1:])


def test_metadata_moves_only_when_a_setting_asks(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    assert harness().deliver(FULL_SIGS).status == IGNORED
    expect(blob_service, container)
    h = harness(RETIER_METADATA_TIER="cool")
    for name in (FULL_SIGS, FULL_JSONSTAT, FULL_MANIFEST):
        assert h.deliver(name).status == HANDLED
    expect(blob_service, container, cold=FULL_VOLS, cool=[FULL_SIGS, FULL_JSONSTAT, FULL_MANIFEST])


def test_a_manifest_event_that_moves_volumes_and_the_manifest_lists_once(
    blob_service, container, harness
):
    manifest_par2 = FULL_MANIFEST + ".par2"
    upload(blob_service, container, FULL_SET + [manifest_par2])
    h = harness(RETIER_METADATA_TIER="Cool")
    assert h.deliver(FULL_MANIFEST).status == HANDLED
    # the set's listing, a batch for the volumes, one for the manifest and its par2 (all new)
    assert h.meter.by_operation == {"list": 1, "batch": 2}
    expect(blob_service, container, cold=FULL_VOLS, cool=[FULL_MANIFEST, manifest_par2])


class ThrottlingStandIn(BlobStore):
    """Real Azurite, but `victim` comes back from its batch as 503 ServerBusy (Azurite never throttles)."""

    victim = ""

    def set_tier(self, container, names, tier, **kwargs):
        from retier.storage import TRANSIENT, TierResult

        names = list(names)
        done = {
            r.name: r
            for r in super().set_tier(
                container, [n for n in names if n != self.victim], tier, **kwargs
            )
        }
        return [done.get(n) or TierResult(n, tier, TRANSIENT, 503, "ServerBusy") for n in names]


def test_a_volume_throttled_inside_the_batch_asks_event_grid_to_redeliver(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_SET)
    store = ThrottlingStandIn.from_connection(
        Connection(connection_string=azurite_connection_string)
    )
    store.victim = FULL_VOLS[1]
    service = RetierService(load_settings({"RETIER_STORAGE": azurite_connection_string}), store)
    (event,) = events_for(store, container, store.list_blobs(container, FULL_MANIFEST))
    outcome = service.handle_event(event)
    assert outcome.status == RETRY and outcome.retry
    assert [(f["name"], f["status"], f["code"]) for f in outcome.failures] == [
        (FULL_VOLS[1], 503, "ServerBusy")
    ]
    expect(
        blob_service, container, cold=[FULL_VOLS[0], FULL_VOLS[2]]
    )  # the redelivery moves the last one


def test_a_permanent_storage_error_gives_up_instead_of_retrying(harness, container):
    from retier.storage import BlobItem

    h = harness()
    missing = container + "-gone"  # no such container: 404, which no retry fixes
    item = BlobItem(FULL_MANIFEST, 1, "Hot", True, None, None, None, None)
    outcome = h.service.handle_event(
        blob_created_event(
            account=h.store.account_name,
            container=missing,
            item=item,
            url=h.store.blob_url(missing, FULL_MANIFEST),
        )
    )
    assert outcome.status == HANDLED and not outcome.retry
    assert outcome.reason.startswith("gave up:") and "404" in outcome.reason
    assert [f["name"] for f in outcome.failures] == [FULL_MANIFEST]


@pytest.mark.parametrize("name", FOREIGN)
def test_unrecognised_names_are_never_touched(blob_service, container, harness, name):
    upload(blob_service, container, FULL_SET + [name])
    outcome = harness(RETIER_VOLUME_TIER="Archive", RETIER_METADATA_TIER="Cool").deliver(name)
    assert outcome.status == IGNORED and outcome.reason == "not a duplicity object"
    expect(blob_service, container)


def test_par2_recovery_blocks_follow_their_volume_and_the_index_stays_online(
    blob_service, container, harness
):
    # duplicity's par2 wrapper reads "<volume>.par2" with every volume it restores, and the
    # ".volNN+MM.par2" recovery blocks only to repair one.
    index, blocks = FULL_VOLS[0] + ".par2", FULL_VOLS[0] + ".vol00+01.par2"
    upload(blob_service, container, FULL_SET + [index, blocks, FULL_MANIFEST + ".par2"])
    outcome = harness(RETIER_VOLUME_TIER="Archive").deliver(FULL_MANIFEST)
    assert [d.reason for d in outcome.decisions if d.name == index] == [
        "par2 index stays as uploaded"
    ]
    expect(blob_service, container, archive=FULL_VOLS + [blocks])


def test_per_type_prefixes_map_manifest_to_archive_prefix(blob_service, container, harness):
    names = [f"host1/a/{v}" for v in FULL_VOLS] + [
        f"host1/m/{FULL_MANIFEST}",
        f"host1/s/{FULL_SIGS}",
    ]
    other = [f"host2/a/{v}" for v in FULL_VOLS] + [f"host1/{v}" for v in FULL_VOLS]
    upload(blob_service, container, names + other)
    h = harness(RETIER_FILE_PREFIX_ARCHIVE="a/", RETIER_FILE_PREFIX_MANIFEST="m/")
    assert h.deliver(f"host1/m/{FULL_MANIFEST}").status == HANDLED
    expect(blob_service, container, cold=names[:3])


def test_events_outside_the_allowed_containers_are_ignored(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    outcome = harness(RETIER_CONTAINERS="photos,other").deliver(FULL_MANIFEST)
    assert outcome.status == IGNORED and container in outcome.reason
    expect(blob_service, container)


def test_event_for_another_storage_account_is_ignored(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    h = harness()
    event = h.event(FULL_MANIFEST)
    event["data"]["url"] = event["data"]["url"].replace("devstoreaccount1", "someoneelse")
    event["topic"] = event["topic"].replace("devstoreaccount1", "someoneelse")
    outcome = h.service.handle_event(event)
    assert outcome.status == IGNORED and "someoneelse" in outcome.reason
    expect(blob_service, container)


def test_malformed_event_is_invalid_and_touches_nothing(blob_service, container, harness):
    upload(blob_service, container, FULL_SET)
    h = harness()
    event = h.event(FULL_MANIFEST)
    event["subject"] = f"/blobServices/default/containers/{container}/blobs/{FULL_SIGS}"
    assert h.service.handle_event(event).status == INVALID
    assert h.service.handle_event({"id": 3}).status == INVALID
    expect(blob_service, container)


def test_unreachable_storage_asks_for_a_retry(container):
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    store = BlobStore.from_connection(Connection(connection_string=conn), retry_total=0)
    service = RetierService(load_settings({"RETIER_STORAGE": conn}), store)
    event = blob_created_event(
        account="devstoreaccount1",
        container=container,
        item=__import__("retier.storage", fromlist=["BlobItem"]).BlobItem(
            FULL_MANIFEST, 1, "Hot", True, None, None, None, None
        ),
        url=store.blob_url(container, FULL_MANIFEST),
    )
    outcome = service.handle_event(event)
    assert outcome.status == RETRY and outcome.retry


def test_a_crafted_name_that_embeds_a_set_is_not_a_member_of_it(blob_service, container, harness):
    crafted = [
        f"{FULL_MANIFEST}duplicity-full.{T1}.vol9.difftar.gpg",
        f"duplicity-full.{T1}.vol1.difftar.gpg.x/duplicity-full.{T1}.manifest",
    ]
    upload(blob_service, container, FULL_VOLS + crafted)
    h = harness(RETIER_VOLUME_TIER="Archive")
    # the second crafted name parses as a manifest of set T1 under another prefix: it must not finish the set
    assert h.deliver(crafted[1]).moved == []
    assert h.deliver(FULL_VOLS[0]).status == IGNORED
    expect(blob_service, container)
