"""Smart tier accounts: volumes leave Smart for their explicit tier, metadata stays Smart.

Azurite refuses the Smart tier, so every storage test here runs through the fault proxy with
faultbed.smart.SmartTierStandIn, which rewrites Azurite's real listing and properties answers
into a Smart-default, zone-redundant account's (`AccessTier` Smart with `SmartAccessTier`;
`x-ms-access-tier: Smart` with `x-ms-smart-access-tier`) so that the SDK parses what Azure sends.
"""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from faultbed import smart
from faultbed.proxy import FaultProxy
from retier import policy
from retier.emulate import blob_created_event
from retier.names import parse
from retier.service import HANDLED, RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobStore
from retier.sweep import sweep_container

T1, T2 = "20240101T020304Z", "20240102T020304Z"
FULL_VOLS = [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_SIGS = f"duplicity-full-signatures.{T1}.sigtar.gpg"
FULL_MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
FULL_SET = [*FULL_VOLS, FULL_SIGS, FULL_MANIFEST]
INC_VOL = f"duplicity-inc.{T1}.to.{T2}.vol1.difftar.gpg"
INC_SIGS = f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg"
INC_MANIFEST = f"duplicity-inc.{T1}.to.{T2}.manifest.gpg"
INC_SET = [INC_VOL, INC_SIGS, INC_MANIFEST]
METADATA = [FULL_SIGS, FULL_MANIFEST, INC_SIGS, INC_MANIFEST]

VOLUME = parse(FULL_VOLS[0])
MANIFEST = parse(FULL_MANIFEST)


# -- the decision (pure) --------------------------------------------------------------------------
@pytest.mark.parametrize("underlying", ["Hot", "Cool", "Cold", None])
def test_a_smart_volume_goes_to_explicit_cold_on_day_0_whatever_smart_has_done(underlying):
    d = policy.decide(VOLUME, "Smart", None, policy.Policy(), underlying)
    assert d.move and d.target == "Cold"
    assert d.current == (f"Smart/{underlying}" if underlying else "Smart")


@pytest.mark.parametrize("underlying", ["Hot", "Cool"])
def test_a_smart_volume_goes_to_a_cool_target_unless_smart_has_it_colder(underlying):
    d = policy.decide(VOLUME, "Smart", None, policy.Policy(volume_tier="Cool"), underlying)
    assert d.move and (d.current, d.target) == (f"Smart/{underlying}", "Cool")


@pytest.mark.parametrize("underlying", ["Cold", None])
def test_never_warmer_than_where_smart_has_it(underlying):
    # Unknown underlying: assumed Cold (the coldest Smart reaches), so Cool is never forced.
    d = policy.decide(VOLUME, "Smart", None, policy.Policy(volume_tier="Cool"), underlying)
    assert not d.move and d.reason == "never moves warmer (Smart/Cold -> Cool)"


@pytest.mark.parametrize("metadata_tier", [None, "Cool", "Cold"])
@pytest.mark.parametrize("obj", [FULL_MANIFEST, FULL_SIGS, f"{FULL_VOLS[0]}.par2"])
def test_smart_metadata_stays_smart_even_with_a_metadata_tier(obj, metadata_tier):
    pol = policy.Policy(metadata_tier=metadata_tier)
    d = policy.decide(parse(obj), "Smart", None, pol, "Hot")
    assert not d.move and d.current == "Smart/Hot"


def test_tier_labels_and_the_tier_they_are_priced_at():
    assert policy.tier_label("Smart", "Cold") == "Smart/Cold"
    assert policy.tier_label("Smart", None) == "Smart"
    assert policy.tier_label("Hot", "Cold") == "Hot"
    assert policy.priced_tier("Smart/Cold") == "Cold"
    assert policy.priced_tier("Smart") is None
    assert policy.priced_tier("Archive") == "Archive"


# -- the stand-in: what the SDK parses --------------------------------------------------------------
@pytest.fixture
def stand_in():
    return smart.SmartTierStandIn({FULL_VOLS[1]: "Cool", FULL_VOLS[2]: "Cold"})


@pytest.fixture
def proxy(azurite_connection_string, stand_in):
    with FaultProxy.in_front_of(azurite_connection_string, stand_in=stand_in) as p:
        yield p


@pytest.fixture
def smart_conn(proxy, azurite_connection_string):
    return proxy.connection_string(azurite_connection_string)


def upload(blob_service, container, names):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, b"duplicity bytes " + name.encode(), overwrite=True)


def azurite_tiers(blob_service, container):
    """Tiers as Azurite itself reports them (not through the stand-in)."""
    client = blob_service.get_container_client(container)
    return {b.name: (b.blob_tier, bool(b.blob_tier_inferred)) for b in client.list_blobs()}


def test_the_sdk_reads_smart_and_its_underlying_tier_from_the_rewritten_answers(
    blob_service, container, smart_conn, stand_in
):
    upload(blob_service, container, FULL_VOLS)
    client = BlobServiceClient.from_connection_string(smart_conn).get_container_client(container)
    blob_service.get_blob_client(container, FULL_VOLS[0]).set_standard_blob_tier("Cool")

    listed = {b.name: (b.blob_tier, b.smart_access_tier) for b in client.list_blobs()}
    props = client.get_blob_client(FULL_VOLS[2]).get_blob_properties()
    explicit = client.get_blob_client(FULL_VOLS[0]).get_blob_properties()

    assert listed == {
        FULL_VOLS[0]: ("Cool", None),  # an explicit tier is out of Smart
        FULL_VOLS[1]: ("Smart", "Cool"),
        FULL_VOLS[2]: ("Smart", "Cold"),
    }
    assert (props.blob_tier, props.smart_access_tier) == ("Smart", "Cold")
    assert (explicit.blob_tier, explicit.smart_access_tier) == ("Cool", None)
    assert stand_in.rewritten["list-blob"] == 2 and stand_in.rewritten["properties"] == 1


class SmartAccount:
    """retier on a Smart-default account: its storage client talks to the stand-in proxy."""

    def __init__(self, conn, container, **settings):
        self.settings = load_settings({"RETIER_STORAGE": conn, **settings})
        self.store = BlobStore.from_connection(Connection(connection_string=conn))
        self.service = RetierService(self.settings, self.store)
        self.container = container

    def deliver(self, name):
        item = next(iter(self.store.list_blobs(self.container, name)))
        event = blob_created_event(
            account=self.store.account_name,
            container=self.container,
            item=item,
            url=self.store.blob_url(self.container, name),
        )
        return self.service.handle_event(event)


@pytest.fixture
def account(smart_conn, container):
    return lambda **settings: SmartAccount(smart_conn, container, **settings)


def set_tier_requests(proxy, container):
    """Every Set Blob Tier that reached storage (plain or in a batch), per blob, and its tier."""
    return {c.blob: c.tier for c in proxy.tier_changes if c.container == container}


# -- the handler --------------------------------------------------------------------------------------
def test_manifest_event_on_a_smart_account_moves_volumes_to_cold_and_never_touches_metadata(
    blob_service, container, account, proxy, stand_in
):
    upload(blob_service, container, FULL_SET + INC_SET)

    outcome = account().deliver(FULL_MANIFEST)

    assert outcome.status == HANDLED
    assert {d.name: (d.current, d.target) for d in outcome.moved} == {
        FULL_VOLS[0]: ("Smart/Hot", "Cold"),
        FULL_VOLS[1]: ("Smart/Cool", "Cold"),
        FULL_VOLS[2]: ("Smart/Cold", "Cold"),
    }
    # On the wire: one Set Blob Tier per volume of the set, none for metadata or the other set.
    assert set_tier_requests(proxy, container) == {v: "Cold" for v in FULL_VOLS}
    tiers = azurite_tiers(blob_service, container)
    assert {v: tiers[v] for v in FULL_VOLS} == {v: ("Cold", False) for v in FULL_VOLS}
    # Everything else still has the account's default tier, which the stand-in shows as Smart.
    listed = {b.name: b.tier for b in account().store.list_blobs(container)}
    assert {n: listed[n] for n in [*METADATA, INC_VOL]} == {
        n: "Smart" for n in [*METADATA, INC_VOL]
    }
    assert stand_in.rewritten["list-blob"] > 0


def test_metadata_events_with_a_metadata_tier_leave_smart_metadata_alone(
    blob_service, container, account, proxy
):
    upload(blob_service, container, FULL_SET)
    smart_account = account(RETIER_METADATA_TIER="Cool")

    outcomes = [smart_account.deliver(n) for n in (FULL_SIGS, FULL_MANIFEST)]

    assert [o.status for o in outcomes] == [HANDLED, HANDLED]
    assert set_tier_requests(proxy, container) == {v: "Cold" for v in FULL_VOLS}
    assert all(azurite_tiers(blob_service, container)[n] == ("Hot", True) for n in METADATA[:2])


def test_archive_on_a_smart_account_fails_clearly_and_moves_nothing(
    blob_service, container, account, proxy, stand_in
):
    upload(blob_service, container, INC_SET)

    outcome = account(RETIER_VOLUME_TIER="Archive").deliver(INC_MANIFEST)

    assert outcome.status == HANDLED and not outcome.retry  # no redelivery can fix a setting
    assert [f["code"] for f in outcome.failures] == [smart.TIER_NOT_SUPPORTED]
    assert "set RETIER_VOLUME_TIER=Cold" in outcome.reason
    assert stand_in.rewritten["refused"] == 1
    assert azurite_tiers(blob_service, container)[INC_VOL] == ("Hot", True)


# -- the sweep ----------------------------------------------------------------------------------------
def test_sweep_of_a_smart_container_moves_finished_volumes_only(
    blob_service, container, account, proxy
):
    open_vol = f"duplicity-inc.{T2}.to.20240103T020304Z.vol1.difftar.gpg"
    upload(blob_service, container, FULL_SET + INC_SET + [open_vol, "notes.txt"])
    smart_account = account()

    report = sweep_container(smart_account.store, container, smart_account.settings)

    assert report.ok
    moved = {*FULL_VOLS, INC_VOL}
    assert set_tier_requests(proxy, container) == {v: "Cold" for v in moved}
    tiers = azurite_tiers(blob_service, container)
    assert {n for n, (tier, _) in tiers.items() if tier == "Cold"} == moved
    rows = {(r["kind"], r["from"], r["to"]): r["blobs"] for r in report.plan.to_dict()["rows"]}
    assert rows[("volume", "Smart/Hot", "Cold")] == 2
    assert rows[("volume", "Smart/Cool", "Cold")] == 1
    assert rows[("volume", "Smart/Cold", "Cold")] == 1
    assert rows[("volume", "Smart/Hot", "Smart/Hot")] == 1  # the unfinished set's volume
    assert rows[("manifest", "Smart/Hot", "Smart/Hot")] == 2
    assert report.plan.early_deletion_charge == 0  # Smart has no early deletion
