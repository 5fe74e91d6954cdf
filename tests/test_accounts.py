"""Accounts Azurite cannot be: Data Lake (hierarchical namespace), immutability, versioning, soft
delete. Azurite answers behind faultbed's proxy, which rewrites what such an account answers
differently (named as a stand-in below); the requests retier makes are the real ones."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import RetentionPolicy

from faultbed.proxy import FaultProxy, azure_error
from retier.doctor import OK, diagnose
from retier.metering import CountingTransport, Meter
from retier.service import HANDLED, RetierService
from retier.settings import Connection, load_settings
from retier.storage import FAILED, BlobStore
from retier.sweep import sweep_container

T1 = "20240101T020304Z"
MANIFEST = f"duplicity-full.{T1}.manifest.gpg"
SIGS = f"duplicity-full-signatures.{T1}.sigtar.gpg"


def vols(n):
    return [f"duplicity-full.{T1}.vol{i}.difftar.gpg" for i in range(1, n + 1)]


# Azure has answered Blob APIs a hierarchical-namespace account does not support with this 400
# (github.com/Azure/azure-storage-azcopy/issues/522, hashicorp/terraform-provider-azurerm#3590);
# a Blob Batch Set Blob Tier on such an account was reported refused with a 400
# (github.com/Azure/azure-sdk-for-js/issues/9578). retier's fallback keys on the 400 alone.
HNS_REFUSAL = (
    400,
    "Bad Request",
    "BlobApiNotYetSupportedForHierarchicalNamespaceAccounts",
    "Blob API is not yet supported for hierarchical namespace accounts.",
)
# learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
IMMUTABLE = (
    409,
    "Conflict",
    "BlobImmutableDueToPolicy",
    "This operation is not permitted as the blob is immutable due to a policy.",
)


class AccountStandIn(FaultProxy):
    """Azurite behind faultbed's proxy, answering where a real account of another kind differs:

    - `hns`: Get Account Information says x-ms-is-hns-enabled: true, and every Blob Batch request
      is refused with HNS_REFUSAL (Set Blob Tier on one blob works, as Azure's feature table says);
    - `versioned`: a List Blobs that includes versions gets a version id on every blob;
    - `immutable`: a Set Blob Tier on these blob names is refused with IMMUTABLE (Azure documents
      that tier changes are allowed on immutable blobs: this is retier's answer if one is not).
    """

    def __init__(self, *args, hns=False, versioned=False, immutable=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.hns, self.versioned, self.immutable = hns, versioned, set(immutable)
        self.refused_batches = 0

    def _one(self, client, request):
        target = urlsplit(request.target)
        if self.hns and request.method == "POST" and "comp=batch" in target.query:
            with self._lock:
                self.refused_batches += 1
            client.sendall(azure_error(request, *HNS_REFUSAL).to_bytes())
            return True
        blob = unquote(target.path).split("/", 3)[-1]
        if "comp=tier" in target.query and blob in self.immutable:
            client.sendall(azure_error(request, *IMMUTABLE).to_bytes())
            return True
        return super()._one(client, request)

    def _forward(self, request):
        response = super()._forward(request)
        query = urlsplit(request.target).query
        if self.hns and "restype=account" in query:
            response.headers = [
                (k, v) for k, v in response.headers if k.lower() != "x-ms-is-hns-enabled"
            ] + [("x-ms-is-hns-enabled", "true")]
        if self.versioned and "comp=list" in query and "versions" in unquote(query):
            response.body = re.sub(
                rb"(<Name>[^<]*</Name>)",
                rb"\1<VersionId>2024-01-01T02:03:04.0000000Z</VersionId>"
                rb"<IsCurrentVersion>true</IsCurrentVersion>",
                response.body,
            )
        return response


@pytest.fixture
def stand_in(request, azurite_connection_string):
    options = getattr(request, "param", {})
    with AccountStandIn.in_front_of(azurite_connection_string, **options) as proxy:
        yield proxy


def upload(blob_service, container, blob_names):
    client = blob_service.get_container_client(container)
    for name in blob_names:
        client.upload_blob(name, b"x" * 10)


def tiers(blob_service, container):
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


def settings_for(conn, **extra):
    return load_settings({"RETIER_STORAGE": conn, **extra})


# -- Data Lake: Blob Batch refused, one Set Blob Tier per blob -----------------------------------
@pytest.mark.parametrize("stand_in", [{"hns": True}], indirect=True)
def test_on_a_data_lake_account_the_sweep_falls_back_to_one_set_blob_tier_per_blob(
    blob_service, container, azurite_connection_string, stand_in
):
    volumes = vols(300)
    upload(blob_service, container, [*volumes, SIGS, MANIFEST])
    conn = stand_in.connection_string(azurite_connection_string)
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    )
    report = sweep_container(store, container, settings_for(conn), retry_delays=())
    assert report.ok and report.applied.done.count == 300
    assert tiers(blob_service, container) == {
        **{v: "Cold" for v in volumes},
        SIGS: "Hot",
        MANIFEST: "Hot",
    }
    # The measured cost: the batches already in flight when the first refusal came back are
    # refused (here both of the two; once per store, i.e. per worker process), then one request
    # per volume; the tier writes Azure bills are the same 300 either way.
    refused = stand_in.refused_batches
    assert 1 <= refused <= 2 and store.batch is False
    assert meter.by_operation["set-tier"] == 300
    assert stand_in.tier_change_counts(container) == {v: 1 for v in volumes}

    # A manifest event later on the same store sends no batch at all.
    upload(
        blob_service,
        container,
        [f"duplicity-inc.{T1}.to.20240102T020304Z.vol{i}.difftar.gpg" for i in (1, 2)],
    )
    upload(blob_service, container, [f"duplicity-inc.{T1}.to.20240102T020304Z.manifest.gpg"])
    service = RetierService(settings_for(conn), store)
    outcome = service.handle_event(
        _event(store, container, f"duplicity-inc.{T1}.to.20240102T020304Z.manifest.gpg")
    )
    assert outcome.status == HANDLED and len(outcome.moved) == 2
    assert stand_in.refused_batches == refused


def test_on_a_flat_account_the_same_sweep_sends_two_batches(
    blob_service, container, azurite_connection_string
):
    volumes = vols(300)
    upload(blob_service, container, [*volumes, MANIFEST])
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string),
        transport=CountingTransport(meter),
    )
    report = sweep_container(store, container, settings_for(azurite_connection_string))
    assert report.applied.done.count == 300 and store.batch is None
    assert meter.by_operation.get("batch") == 2 and "set-tier" not in meter.by_operation


@pytest.mark.parametrize("stand_in", [{"hns": True}], indirect=True)
def test_doctor_reports_a_data_lake_account_and_what_to_expect(
    blob_service, container, azurite_connection_string, stand_in
):
    upload(blob_service, container, [*vols(2), MANIFEST])
    conn = stand_in.connection_string(azurite_connection_string)
    report = diagnose({"RETIER_STORAGE": conn, "RETIER_CONTAINERS": container})
    (lake,) = [c for c in report.checks if c.name == "data lake"]
    assert lake.status == OK and lake.details == {"is_hns_enabled": True}
    assert "one Set Blob Tier per blob" in lake.message
    assert report.exit_code == 0


# -- immutability ---------------------------------------------------------------------------------
def test_a_tier_change_refused_as_immutable_is_a_permanent_failure_named_and_not_retried(
    blob_service, container, azurite_connection_string
):
    (volume,) = vols(1)
    upload(blob_service, container, [volume, MANIFEST])
    with AccountStandIn.in_front_of(azurite_connection_string, immutable={volume}) as proxy:
        conn = proxy.connection_string(azurite_connection_string)
        store = BlobStore.from_connection(Connection(connection_string=conn))
        outcome = RetierService(settings_for(conn), store).handle_event(
            _event(store, container, MANIFEST)
        )
        # Not RETRY: Event Grid redelivering would meet the same policy until it lapses.
        assert outcome.status == HANDLED and not outcome.moved
        (failure,) = outcome.failures
        assert (failure["name"], failure["outcome"], failure["code"]) == (
            volume,
            FAILED,
            "BlobImmutableDueToPolicy",
        )
        report = sweep_container(store, container, settings_for(conn), retry_delays=(0.0,))
        assert not report.ok and report.applied.failed == 1 and report.applied.retried == 0
        assert proxy.tier_change_counts(container) == {}  # Azurite was never asked
    assert tiers(blob_service, container) == {volume: "Hot", MANIFEST: "Hot"}


# -- versioning ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stand_in", [{"versioned": True}], indirect=True)
def test_doctor_reports_versioning_from_a_listing_that_includes_versions(
    blob_service, container, azurite_connection_string, stand_in
):
    upload(blob_service, container, [*vols(1), MANIFEST])
    conn = stand_in.connection_string(azurite_connection_string)
    report = diagnose({"RETIER_STORAGE": conn, "RETIER_CONTAINERS": container})
    (versioning,) = [c for c in report.checks if c.name == f"{container} versioning"]
    assert versioning.details == {"versioning": True}
    assert "previous version" in versioning.message
    plain = diagnose({"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container})
    (off,) = [c for c in plain.checks if c.name == f"{container} versioning"]
    assert off.message == "blob versioning off"


# -- soft delete -------------------------------------------------------------------------------------
class RecordingTransport(RequestsTransport):
    """The SDK's own transport, keeping every request's URL (what retier asked for)."""

    def __init__(self, urls, **kwargs):
        super().__init__(**kwargs)
        self.urls = urls

    def send(self, request, **kwargs):
        self.urls.append(request.url)
        return super().send(request, **kwargs)


def test_no_listing_retier_makes_asks_for_soft_deleted_blobs_or_versions(
    blob_service, container, azurite_connection_string
):
    # List Blobs returns soft-deleted blobs (and previous versions) only when `include` names
    # them (learn.microsoft.com/rest/api/storageservices/list-blobs): never, here.
    upload(blob_service, container, [*vols(2), SIGS, MANIFEST])
    urls: list[str] = []
    conn = Connection(connection_string=azurite_connection_string)
    store = BlobStore.from_connection(conn, transport=RecordingTransport(urls))
    settings = settings_for(azurite_connection_string)
    RetierService(settings, store).handle_event(_event(store, container, MANIFEST))
    sweep_container(store, container, settings, dry_run=True)
    listings = [u for u in urls if "comp=list" in u]
    assert len(listings) >= 3
    assert not any("include=" in u for u in listings), listings


def test_doctor_reports_soft_delete_and_its_retention(
    blob_service, container, azurite_connection_string
):
    blob_service.set_service_properties(
        delete_retention_policy=RetentionPolicy(enabled=True, days=7)
    )
    try:
        report = diagnose(
            {"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container}
        )
    finally:
        blob_service.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))
    (soft,) = [c for c in report.checks if c.name == "soft delete"]
    assert soft.details == {"soft_delete_days": 7} and "7 day(s)" in soft.message
    after = diagnose({"RETIER_STORAGE": azurite_connection_string, "RETIER_CONTAINERS": container})
    assert [c.message for c in after.checks if c.name == "soft delete"] == [
        "blob soft delete is off: a deleted blob is gone at once"
    ]


def _event(store, container, name):
    from retier.emulate import blob_created_event

    (item,) = [i for i in store.list_blobs(container, name) if i.name == name]
    return blob_created_event(
        account=store.account_name,
        container=container,
        item=item,
        url=store.blob_url(container, name),
    )
