"""Smart tier accounts: volumes leave Smart for their explicit tier, metadata stays Smart.

Azurite refuses the Smart tier, so every storage test here runs through the fault proxy with
faultbed.smart.SmartTierStandIn, which rewrites Azurite's real listing and properties answers
into a Smart-default, zone-redundant account's (`AccessTier` Smart with `SmartAccessTier`;
`x-ms-access-tier: Smart` with `x-ms-smart-access-tier`) so that the SDK parses what Azure sends.
"""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import given
from hypothesis import strategies as st

from faultbed import smart
from faultbed.proxy import FaultProxy
from retier import doctor, model, policy, restore
from retier.costs import DEFAULT_PRICES, GB
from retier.emulate import blob_created_event
from retier.names import parse
from retier.report import build_report
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


@given(
    obj=st.sampled_from(
        [*FULL_SET, INC_VOL, f"{FULL_VOLS[0]}.par2", f"{FULL_VOLS[0]}.vol000+01.par2", "notes.txt"]
    ),
    underlying=st.sampled_from(["Hot", "Cool", "Cold", "cold", None, "Archive", "P10"]),
    status=st.sampled_from([None, "rehydrate-pending-to-smart"]),
    volume_tier=st.sampled_from(["Cool", "Cold", "Archive"]),
    metadata_tier=st.sampled_from([None, "Hot", "Cool", "Cold"]),
)
def test_a_smart_blob_moves_only_if_a_volume_and_never_warmer(
    obj, underlying, status, volume_tier, metadata_tier
):
    name = parse(obj)
    pol = policy.Policy(volume_tier=volume_tier, metadata_tier=metadata_tier)
    d = policy.decide(name, "Smart", status, pol, underlying)
    # Stated independently: only a volume's own data (volumes and their par2 recovery blocks),
    # not rehydrating, to a tier no warmer than where Smart has it (unknown: Cold).
    where = {"hot": "Hot", "cool": "Cool", "cold": "Cold"}.get(str(underlying).lower(), "Cold")
    order = ["Hot", "Cool", "Cold", "Archive"]
    must_move = (
        name.kind.value == "volume"
        and not name.par2_index
        and not status
        and order.index(volume_tier) >= order.index(where)
    )
    assert d.move is must_move
    assert d.current.startswith("Smart")
    if d.move:
        assert d.target == volume_tier


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


# -- the cost report ---------------------------------------------------------------------------------
KIB = 1024


def test_cost_report_prices_smart_blobs_at_their_underlying_tier_plus_the_monitoring_fee(
    blob_service, container, account
):
    client = blob_service.get_container_client(container)
    for name in FULL_VOLS:
        client.upload_blob(name, b"v" * (200 * KIB))
    client.upload_blob(FULL_SIGS, b"s" * (130 * KIB))  # monitored: 128 KiB or more
    client.upload_blob(FULL_MANIFEST, b"m" * KIB)  # under 128 KiB: no fee, stays Hot
    smart_account = account()
    prices = DEFAULT_PRICES

    report = build_report(smart_account.store, container, smart_account.settings, prices)

    p = prices["storage_per_gb_month"]
    fee = prices["smart_monitoring_per_10k_objects"] / 10_000
    vol, sigs, manifest = 200 * KIB / GB, 130 * KIB / GB, KIB / GB
    assert {t: (x.count, x.bytes) for t, x in report.by_tier().items()} == {
        "Smart/Hot": (3, (200 + 130 + 1) * KIB),
        "Smart/Cool": (1, 200 * KIB),
        "Smart/Cold": (1, 200 * KIB),
    }
    assert report.storage_per_month == pytest.approx(
        (vol + sigs + manifest) * p["Hot"] + vol * p["Cool"] + vol * p["Cold"] + 4 * fee
    )
    # After the moves: the volumes in explicit Cold, out of Smart; the signatures keep their fee.
    assert report.after_moves_per_month == pytest.approx(
        3 * vol * p["Cold"] + (sigs + manifest) * p["Hot"] + 1 * fee
    )
    d = report.to_dict()
    assert d["smart"]["monitored_blobs"] == 4 and d["smart"]["monitored_blobs_after"] == 1
    assert d["to_move"]["blobs"] == 3
    assert d["early_deletion_exposure"] == {}  # Smart charges no early deletion


def test_cli_cost_report_names_the_smart_fee(blob_service, container, smart_conn, run_retier):
    client = blob_service.get_container_client(container)
    for name in FULL_VOLS:
        client.upload_blob(name, b"v" * (200 * KIB))
    client.upload_blob(FULL_MANIFEST, b"m")

    proc = run_retier("cost", "--container", container, env={"RETIER_STORAGE": smart_conn})

    assert proc.returncode == 0, proc.stderr
    assert "Smart/Cool" in proc.stdout and "Smart/Cold" in proc.stdout
    assert "of which Smart tier's monitoring fee" in proc.stdout
    assert "for 3 blobs of 128 KiB or more" in proc.stdout


# -- the model ------------------------------------------------------------------------------------------
def test_the_smart_strategy_by_hand():
    # One full a day kept 120 days (a chain of one set living 1 + 120 days), 1 GiB source,
    # 1 GiB volumes: one volume and a 10.24 MiB signature file, both monitored.
    s = model.Schedule(1, 0, 1, 120, volsize_mb=1024, restores_per_year=0)
    r = model.run_model(s, DEFAULT_PRICES).by_name(model.SMART)
    p = DEFAULT_PRICES["storage_per_gb_month"]
    days = {"Hot": 30, "Cool": 60, "Cold": 31}
    assert model.smart_days(121) == days
    per_gb = sum(days[t] * p[t] for t in days)  # one chain a day: GB-days a day = GB-months
    fee = 121 * 2 * DEFAULT_PRICES["smart_monitoring_per_10k_objects"] / 10_000
    assert r.storage == pytest.approx(1.01 * per_gb + fee)
    assert r.early_deletion == 0 and r.details["retier_per_month"] is None
    assert r.details["smart_monitored_objects"] == 242


def test_retier_on_volumes_beats_smart_alone_for_a_typical_schedule():
    result = model.run_model(model.Schedule(500, 1, 30, 180), DEFAULT_PRICES)
    assert result.by_name("volumes-Cold").total < result.by_name(model.SMART).total
    assert result.by_name(model.SMART).total < result.by_name("all-Hot").total


def test_the_smart_row_of_docs_smart_tier_is_what_the_model_says():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "smart-tier.md").read_text()
    result = model.run_model(model.Schedule(500, 1, 30, 180), DEFAULT_PRICES)
    for name in (model.SMART, "volumes-Cold", "all-Hot"):
        s = result.by_name(name)
        (row,) = [line for line in page.splitlines() if line.startswith(f"| {name} |")]
        cells = [c.strip().strip("*").removesuffix(" USD") for c in row.strip("|").split("|")]
        assert [float(c) for c in cells[1:]] == [
            round(x, 2) for x in (s.storage, s.operations, s.early_deletion, s.restores, s.total)
        ], name


# -- doctor -----------------------------------------------------------------------------------------
def test_doctor_reports_a_smart_default_tier_and_what_retier_does_there(
    blob_service, container, smart_conn
):
    upload(blob_service, container, FULL_SET + [INC_VOL])

    report = doctor.diagnose({"RETIER_STORAGE": smart_conn, "RETIER_CONTAINERS": container})

    checks = {c.name: c for c in report.checks}
    assert report.exit_code == 0
    assert checks["account"].status == doctor.OK
    assert checks["account"].details["sku_name"] == "Standard_ZRS"
    smart_check = checks[f"{container} default tier"]
    assert smart_check.status == doctor.OK
    assert smart_check.details == {
        "smart_blobs": {"Smart/Hot": 4, "Smart/Cool": 1, "Smart/Cold": 1},
        "volumes_to_move": 3,  # the unfinished set's volume stays
        "volume_tier": "Cold",
    }
    assert "manifests and signatures stay Smart" in smart_check.message


def test_doctor_fails_archive_on_a_smart_account(blob_service, container, smart_conn):
    upload(blob_service, container, FULL_SET)

    report = doctor.diagnose(
        {
            "RETIER_STORAGE": smart_conn,
            "RETIER_CONTAINERS": container,
            "RETIER_VOLUME_TIER": "Archive",
        }
    )

    checks = {c.name: c for c in report.checks}
    assert report.exit_code == 1
    assert checks["account"].status == doctor.FAIL  # Standard_ZRS has no Archive
    assert checks[f"{container} default tier"].status == doctor.FAIL
    assert "RETIER_VOLUME_TIER=Cold" in checks[f"{container} default tier"].hint


def test_doctor_says_nothing_of_the_default_tier_on_an_ordinary_account(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_SET)
    report = doctor.diagnose(
        {"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container}
    )
    assert f"{container} default tier" not in {c.name for c in report.checks}


# -- the restore plan -------------------------------------------------------------------------------
def test_a_restore_plan_counts_smart_volumes_as_online_and_rehydrates_nothing(
    blob_service, container, account, proxy
):
    upload(blob_service, container, FULL_SET)
    smart_account = account()

    plan = restore.plan_restore(smart_account.store, container, smart_account.settings)
    result = restore.rehydrate(smart_account.store, plan)

    states = plan.by_state()
    assert {v.name for v in states["online"]} == set(FULL_VOLS)
    assert states["archived"] == [] and states["rehydrating"] == []
    assert {v.tier for v in states["online"]} == {"Smart"}
    # Nothing to rehydrate, and no pin: Smart volumes cannot be archived by a late event (a Smart
    # account has no Archive), so they keep Smart rather than get an explicit Hot.
    assert result.pinned == 0
    assert set_tier_requests(proxy, container) == {}
