"""`retier doctor` on Azurite: each check's verdict, the exit codes, and that it changes nothing."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.storage.blob import StandardBlobTier
from conftest import connection_string, free_port, start_azurite

from retier import costs
from retier.doctor import FAIL, OK, ROLE, WARN, diagnose, tier_support
from retier.metering import CountingTransport, Meter
from retier.policy import Policy
from retier.settings import Connection
from retier.storage import AccountInfo, BlobStore, StorageError

T1, T2, T3 = "20240101T020304Z", "20240102T020304Z", "20240103T020304Z"
FULL_VOLS = [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_META = [f"duplicity-full.{T1}.manifest.gpg", f"duplicity-full-signatures.{T1}.sigtar.gpg"]
INC_VOLS = [f"duplicity-inc.{T1}.to.{T2}.vol{i}.difftar.gpg" for i in (1, 2)]
INC_META = [
    f"duplicity-inc.{T1}.to.{T2}.manifest.gpg",
    f"duplicity-new-signatures.{T1}.to.{T2}.sigtar.gpg",
]
# an interrupted incremental: volumes, no manifest
OPEN_VOLS = [f"duplicity-inc.{T2}.to.{T3}.vol{i}.difftar.gpg" for i in (1, 2)]
OPEN_LABEL = f"duplicity-inc.{T2}.to.{T3}"
SECRET_KEY = "U2VjcmV0S2V5VGhhdE11c3ROZXZlckJlUHJpbnRlZA=="  # base64, never a real key


def upload(blob_service, container, names, size=100, tier=None):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, b"x" * size, overwrite=True, standard_blob_tier=tier)


def state(blob_service, container):
    """Every blob's name, tier, ETag and metadata: what 'changes nothing' must keep."""
    client = blob_service.get_container_client(container)
    return {
        b.name: (b.blob_tier, b.etag, dict(b.metadata or {}))
        for b in client.list_blobs(include=["metadata"])
    }


def run(conn, containers=None, *, now=None, store=None, **settings):
    env = {"RETIER_STORAGE": conn, **settings}
    return diagnose(env, containers, now=now, store=store)


def checks(report, status=None):
    return {c.name: c for c in report.checks if status is None or c.status == status}


def statuses(report):
    return [(c.name, c.status) for c in report.checks]


# -- the tier decision, without a server --------------------------------------------------------
@pytest.mark.parametrize(
    ("sku", "kind", "volume_tier", "status"),
    [
        ("Standard_LRS", "StorageV2", "Archive", OK),
        ("Standard_GRS", "StorageV2", "Archive", OK),
        ("Standard_RAGRS", "StorageV2", "Archive", OK),
        ("Standard_RAGRS", "BlobStorage", "Cold", OK),
        ("Standard_ZRS", "StorageV2", "Cold", OK),
        ("Standard_GZRS", "StorageV2", "Cool", OK),
        ("Standard_ZRS", "StorageV2", "Archive", FAIL),
        ("Standard_GZRS", "StorageV2", "Archive", FAIL),
        ("Standard_RAGZRS", "StorageV2", "Archive", FAIL),
        ("Premium_LRS", "BlockBlobStorage", "Cold", FAIL),
        ("Premium_ZRS", "BlockBlobStorage", "Cool", FAIL),
        ("Premium_LRS", "StorageV2", "Cold", FAIL),  # premium page blobs
        ("Premium_LRS", "FileStorage", "Cold", FAIL),
        ("Standard_LRS", "Storage", "Cold", FAIL),  # general-purpose v1: no tiers
        ("Standard_XYZ", "StorageV2", "Cold", WARN),
        (None, None, "Cold", WARN),
    ],
)
def test_tier_support_follows_the_documented_sku_and_kind_limits(sku, kind, volume_tier, status):
    got, message = tier_support(sku, kind, Policy(volume_tier=volume_tier))
    assert got == status
    if status == FAIL and volume_tier == "Archive" and sku.startswith("Standard"):
        assert "no Archive" in message and "RETIER_VOLUME_TIER=Cold" in message
    if sku and sku.startswith("Premium"):
        assert "premium" in message


# -- against Azurite ----------------------------------------------------------------------------
def test_azurite_answers_account_information_as_standard_ragrs_storagev2(store):
    info = store.account_information()
    assert (info.sku_name, info.account_kind) == ("Standard_RAGRS", "StorageV2")


def test_healthy_container_is_all_ok_costs_six_requests_and_changes_nothing(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META + INC_VOLS + INC_META)
    before = state(blob_service, container)
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string),
        transport=CountingTransport(meter),
    )
    report = run(azurite_connection_string, store=store, RETIER_CONTAINERS=container)
    assert report.exit_code == 0
    assert statuses(report) == [
        ("settings", OK),
        ("sweep schedule", OK),
        ("prices", OK),
        ("storage", OK),
        ("account", OK),
        ("data lake", OK),
        ("soft delete", OK),
        (container, OK),
        (f"{container} hold", OK),
        (f"{container} immutability", OK),
        (f"{container} versioning", OK),
        (f"{container} listing", OK),
        (f"{container} tier changes", OK),
        (f"{container} explicit Cool", OK),
        (f"{container} unfinished sets", OK),
    ]
    listing = checks(report)[f"{container} listing"]
    assert listing.details == {"listed": 9, "to_move": 5, "to_move_bytes": 500}
    # account information, service properties (soft delete), container properties (hold and
    # immutability), one listing of one blob with versions, one listing, one conditional write
    assert meter.by_operation == {"get": 2, "container-properties": 1, "list": 2, "put": 1}
    assert state(blob_service, container) == before


def test_missing_container_fails_and_exits_1(azurite_connection_string):
    report = run(azurite_connection_string, ["no-such-container-here"])
    failed = checks(report, FAIL)
    assert list(failed) == ["no-such-container-here"]
    assert "does not exist" in failed["no-such-container-here"].message
    assert report.exit_code == 1


def test_held_container_warns_with_the_hold_note_and_still_exits_0(
    blob_service, container, store, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META)
    store.set_hold(container, "restore since 2026-11-28T10:00:00Z to Hot priority High")
    report = run(azurite_connection_string, [container], RETIER_CONTAINERS=container)
    hold = checks(report)[f"{container} hold"]
    assert hold.status == WARN
    assert "restore since 2026-11-28T10:00:00Z to Hot priority High" in hold.message
    assert f"retier release --container {container}" in hold.hint
    assert report.exit_code == 0 and not checks(report, FAIL)


def test_volumes_uploaded_as_explicit_cool_warn_with_count_bytes_and_charge(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META)  # Hot, inferred: no trap
    upload(blob_service, container, INC_VOLS, size=1000, tier=StandardBlobTier.COOL)
    upload(blob_service, container, OPEN_VOLS, size=500, tier=StandardBlobTier.COOL)
    upload(blob_service, container, INC_META, tier=StandardBlobTier.COOL)  # metadata: not volumes
    uploaded = {b.name: b for b in blob_service.get_container_client(container).list_blobs()}
    now = max(b.last_modified for b in uploaded.values()) + timedelta(days=10)
    report = run(azurite_connection_string, [container], now=now, RETIER_CONTAINERS=container)
    cool = checks(report)[f"{container} explicit Cool"]
    assert cool.status == WARN
    assert cool.details["volumes"] == 4 and cool.details["bytes"] == 3000
    # Cool's 30 days minus the 10 since each was set: 20 days of Cool storage, prorated.
    prices = costs.load_prices({})
    expected = sum(
        costs.early_deletion(
            b.size, "Cool", b.blob_tier_change_time or b.creation_time, now, prices
        )
        for name, b in uploaded.items()
        if name in INC_VOLS + OPEN_VOLS
    )
    assert expected == pytest.approx(
        3000 / costs.GB * prices["storage_per_gb_month"]["Cool"] * 20 / 30
    )
    assert cool.details["charge"] == pytest.approx(expected)
    assert "4 volume(s)" in cool.message and "--azure-blob-tier" in cool.hint
    assert report.exit_code == 0

    # Volumes bound for Cool anyway are no trap.
    as_cool = run(azurite_connection_string, [container], now=now, RETIER_VOLUME_TIER="Cool")
    assert checks(as_cool)[f"{container} explicit Cool"].status == OK


class BlobStorageAccountStandIn(BlobStore):
    """Azurite answers StorageV2: this answers as a legacy Blob Storage account, whose Cool tier
    has no minimum days (Azure bills Cool's early deletion on general-purpose v2 only)."""

    def account_information(self):
        return AccountInfo("Standard_LRS", "BlobStorage")


def test_explicit_cool_on_a_legacy_blob_storage_account_warns_with_no_charge(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META, tier=StandardBlobTier.COOL)
    report = run(
        azurite_connection_string, [container], store=BlobStorageAccountStandIn(blob_service)
    )
    cool = checks(report)[f"{container} explicit Cool"]
    assert cool.status == WARN
    assert (cool.details["volumes"], cool.details["bytes"], cool.details["charge"]) == (3, 300, 0)


class CoolDefaultAccountStandIn(BlobStore):
    """Azurite's account default tier is Hot: this lists its blobs as an account whose default is
    Cool would (tier Cool, inferred), which Azure bills no early deletion for when moved on."""

    def list_blobs(self, container, prefix=None):
        for item in super().list_blobs(container, prefix):
            yield replace(item, tier="Cool", tier_inferred=True) if item.tier_inferred else item


def test_volumes_cool_by_the_account_default_are_no_trap(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META)
    store = CoolDefaultAccountStandIn(blob_service)
    assert {i.tier for i in store.list_blobs(container)} == {"Cool"}
    report = run(azurite_connection_string, [container], store=store)
    assert checks(report)[f"{container} explicit Cool"].status == OK
    assert checks(report)[f"{container} listing"].details["to_move"] == 3  # Cool -> Cold


def test_volumes_listed_before_their_manifest_are_relisted_and_counted_as_to_move(
    blob_service, container, azurite_connection_string
):
    # Per-type prefixes: the "a/" volumes are listed before their "m/" manifest (as legacy short
    # names are), so the planner decides them only from a second listing of the set.
    upload(blob_service, container, [f"a/{v}" for v in FULL_VOLS] + [f"m/{FULL_META[0]}"])
    prefixes = {"RETIER_FILE_PREFIX_ARCHIVE": "a/", "RETIER_FILE_PREFIX_MANIFEST": "m/"}
    report = run(azurite_connection_string, [container], **prefixes)
    listing = checks(report)[f"{container} listing"]
    assert listing.details == {"listed": 4, "to_move": 3, "to_move_bytes": 300}
    assert checks(report)[f"{container} unfinished sets"].status == OK


def test_an_unfinished_set_older_than_a_day_warns_with_its_age_size_and_the_cleanup_hint(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META + OPEN_VOLS, size=250)
    newest = max(b.last_modified for b in blob_service.get_container_client(container).list_blobs())

    young = run(azurite_connection_string, [container], now=newest + timedelta(hours=23))
    assert checks(young)[f"{container} unfinished sets"].status == OK
    assert "1 younger than 2 days" in checks(young)[f"{container} unfinished sets"].message

    old = run(azurite_connection_string, [container], now=newest + timedelta(days=2, hours=12))
    unfinished = checks(old)[f"{container} unfinished sets"]
    assert unfinished.status == WARN
    assert unfinished.details == {
        "set": OPEN_LABEL,
        "volumes": 2,
        "bytes": 500,
        "age_days": 2.5,
    }
    assert f"duplicity cleanup azure://{container}" in unfinished.hint
    assert old.exit_code == 0


class AccountInfoRefusedStandIn(BlobStore):
    """Azurite only knows shared keys and SAS: this stands in for an identity holding Storage Blob
    Data Contributor, which Azure refuses Get Account Information (it needs .../getInfo/action)."""

    def account_information(self):
        raise StorageError(
            "get account information: HTTP 403 AuthorizationPermissionMismatch",
            transient=True,
            status=403,
            code="AuthorizationPermissionMismatch",
        )


def test_an_identity_refused_the_account_sku_gets_a_warning_not_a_failure(
    blob_service, container, azurite_connection_string
):
    upload(blob_service, container, FULL_VOLS + FULL_META)
    store = AccountInfoRefusedStandIn(blob_service)
    endpoint = azurite_connection_string.split("BlobEndpoint=")[1].rstrip(";")
    env = {"RETIER_STORAGE__blobServiceUri": endpoint, "RETIER_CONTAINERS": container}
    report = diagnose(env, now=None, store=store)
    account = checks(report)["account"]
    assert account.status == WARN and "getInfo/action" in account.message
    assert "az storage account show" in account.hint
    assert report.exit_code == 0 and not checks(report, FAIL)


class NoRoleStandIn(AccountInfoRefusedStandIn):
    """Stands in for an identity with no data role, which Azure answers 403
    AuthorizationPermissionMismatch on every container and blob request (Azurite has no RBAC)."""

    def _refuse(self, what):
        raise StorageError(
            f"{what}: HTTP 403 AuthorizationPermissionMismatch",
            transient=True,
            status=403,
            code="AuthorizationPermissionMismatch",
        )

    def get_hold(self, container):
        self._refuse(f"read properties of {container}")

    def container_state(self, container):
        self._refuse(f"read properties of {container}")

    def list_blobs(self, container, prefix=None):
        self._refuse(f"list {container}/*")

    def probe_blob_write(self, container, name):
        self._refuse(f"probe blob write in {container}")


def test_an_identity_without_the_role_fails_each_container_check_naming_role_and_scope(
    blob_service, container, azurite_connection_string
):
    endpoint = azurite_connection_string.split("BlobEndpoint=")[1].rstrip(";")
    env = {"RETIER_STORAGE__blobServiceUri": endpoint, "RETIER_CONTAINERS": container}
    report = diagnose(env, store=NoRoleStandIn(blob_service))
    failed = checks(report, FAIL)
    assert list(failed) == [container, f"{container} listing", f"{container} tier changes"]
    for check in failed.values():
        assert check.hint.startswith("the signed-in identity (here: your az login")
        assert f'needs the role "{ROLE}"' in check.hint
        assert "storageAccounts/devstoreaccount1" in check.hint
    assert report.exit_code == 1

    env["RETIER_STORAGE__clientId"] = "11111111-2222-3333-4444-555555555555"
    report = diagnose(env, store=NoRoleStandIn(blob_service))
    assert checks(report, FAIL)[f"{container} listing"].hint.startswith(
        f'the managed identity needs the role "{ROLE}"'
    )


# -- the command ----------------------------------------------------------------------------------
def test_cli_doctor_prints_one_line_per_check_and_exits_0(
    blob_service, container, azurite_connection_string, run_retier
):
    upload(blob_service, container, FULL_VOLS + FULL_META)
    proc = run_retier(
        "doctor", env={"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "doctor: 15 ok, 0 warn, 0 fail"
    assert all(line.split(" ", 1)[0] == "ok" for line in lines[:-1])
    assert "ok    account: Standard_RAGRS StorageV2: Cold available" in lines


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"RETIER_VOLUME_TIER": "Frozen"}, "RETIER_VOLUME_TIER"),
        ({"RETIER_METADATA_TIER": "Archive"}, "RETIER_METADATA_TIER"),
        ({"RETIER_SWEEP_SCHEDULE": "every day"}, "RETIER_SWEEP_SCHEDULE"),
        ({"RETIER_PRICES": "/nonexistent/prices.json"}, "RETIER_PRICES"),
        ({"RETIER_STORAGE": f"AccountKey={SECRET_KEY};Foo=bar"}, "RETIER_STORAGE: connection"),
        ({"RETIER_STORAGE": SECRET_KEY}, "RETIER_STORAGE: connection string"),
        ({"RETIER_STORAGE": "just-a-name"}, "RETIER_STORAGE must be a connection string"),
        (
            {"RETIER_STORAGE": None, "RETIER_STORAGE__blobServiceUri": "nonsense"},
            "RETIER_STORAGE__blobServiceUri",
        ),
        ({"RETIER_STORAGE": None}, "RETIER_STORAGE"),
    ],
)
def test_a_bad_setting_exits_2_names_it_and_prints_no_secret(
    settings, named, azurite_connection_string, run_retier
):
    conn = azurite_connection_string.replace(
        azurite_connection_string.split("AccountKey=")[1].split(";")[0], SECRET_KEY
    )
    env = {"RETIER_STORAGE": conn, **settings}
    env = {k: v for k, v in env.items() if v is not None}
    proc = run_retier("doctor", "--json", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert SECRET_KEY not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    failed = [c["message"] for c in report["checks"] if c["status"] == FAIL]
    assert any(named in message for message in failed) and report["exit"] == 2


def test_a_bad_setting_in_text_output_is_one_fail_line_and_exit_2(
    azurite_connection_string, run_retier
):
    env = {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Frozen"}
    proc = run_retier("doctor", env=env)
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == (
        "fail  settings: RETIER_VOLUME_TIER: 'Frozen' is not an access tier; "
        "use one of Hot, Cool, Cold, Archive"
    )
    assert proc.stdout.splitlines()[-1] == "doctor: 2 ok, 0 warn, 1 fail"


def test_unreachable_storage_fails_and_exits_1():
    closed = connection_string(free_port())
    # No SDK retries (the CLI's two take ~8 s against a closed port): the verdict is the same.
    store = BlobStore.from_connection(Connection(connection_string=closed), retry_total=0)
    report = run(closed, ["backups"], store=store)
    assert report.exit_code == 1
    failed = checks(report, FAIL)
    assert list(failed) == ["storage"]
    assert failed["storage"].message.startswith("no answer from http://127.0.0.1:")
    # Nothing else can be checked without an answer: no container lines follow.
    assert [c.name for c in report.checks] == [
        "settings",
        "sweep schedule",
        "prices",
        "containers",
        "storage",
    ]


def test_a_refused_credential_fails_naming_the_role_and_its_scope(
    blob_service, container, azurite_connection_string, run_retier
):
    upload(blob_service, container, FULL_VOLS + FULL_META)
    key = azurite_connection_string.split("AccountKey=")[1].split(";")[0]
    wrong = azurite_connection_string.replace(key, SECRET_KEY)
    proc = run_retier("doctor", "--container", container, "--json", env={"RETIER_STORAGE": wrong})
    assert proc.returncode == 1
    assert SECRET_KEY not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    by_name = {c["check"]: c for c in report["checks"]}
    listing = by_name[f"{container} listing"]
    assert listing["status"] == FAIL and "HTTP 403" in listing["message"]
    assert f'"{ROLE}"' in listing["hint"]
    assert "storageAccounts/devstoreaccount1" in listing["hint"]
    assert by_name[f"{container} tier changes"]["status"] == FAIL
    assert by_name["storage"]["status"] == OK  # it answered; it said no


def test_a_sas_in_the_connection_string_is_never_printed(
    blob_service, container, azurite_connection_string, run_retier
):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    upload(blob_service, container, FULL_VOLS + FULL_META)
    key = azurite_connection_string.split("AccountKey=")[1].split(";")[0]
    sas = generate_account_sas(
        "devstoreaccount1",
        key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, list=True, write=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    endpoint = azurite_connection_string.split("BlobEndpoint=")[1].rstrip(";")
    conn = f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"
    proc = run_retier("doctor", "--container", container, env={"RETIER_STORAGE": conn})
    signature = sas.split("sig=")[1].split("&")[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert signature not in proc.stdout + proc.stderr
    assert f"answered at {endpoint}" in proc.stdout


# An Azurite whose clock runs three days behind: the blobs it stores really are three days old
# when the doctor (on the real clock) reads them. Started here, stopped after the test.
@pytest.fixture
def azurite_three_days_behind():
    env = dict(os.environ)
    env["NODE_OPTIONS"] = f"--require {Path(__file__).with_name('azurite_clock_behind.js')}"
    env["RETIER_TEST_CLOCK_OFFSET_MS"] = str(-3 * 86400 * 1000)
    port = free_port()
    with start_azurite(port, env):
        yield connection_string(port)


def test_cli_names_an_unfinished_set_really_left_three_days_ago(
    azurite_three_days_behind, run_retier
):
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azurite_three_days_behind)
    client.create_container("backups")
    upload(client, "backups", FULL_VOLS + FULL_META + OPEN_VOLS, size=1000)
    stored = [b.last_modified for b in client.get_container_client("backups").list_blobs()]
    assert all(datetime.now(timezone.utc) - t > timedelta(days=2, hours=23) for t in stored)

    proc = run_retier(
        "doctor", env={"RETIER_STORAGE": azurite_three_days_behind, "RETIER_CONTAINERS": "backups"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warned = [line for line in proc.stdout.splitlines() if line.startswith("warn")]
    assert warned == [
        (
            f"warn  backups unfinished sets: set {OPEN_LABEL} has 2 volume(s), 2.0 KiB, and no "
            "manifest; its newest volume is 3.0 days old: an abandoned backup, still billed"
        )
    ]
    assert "duplicity cleanup azure://backups" in proc.stdout


def test_doctor_and_replay_help_show_examples(run_retier):
    for command in ("doctor", "replay"):
        proc = run_retier(command, "--help")
        assert proc.returncode == 0 and "example" in proc.stdout
