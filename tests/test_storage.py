"""Storage against Azurite: listings carry tiers, batches of <= 256, every sub-response classified."""

import pytest

from retier.metering import CountingTransport, Meter
from retier.settings import Connection
from retier.storage import (
    BATCH_LIMIT,
    FAILED,
    GONE,
    OK,
    SKIPPED,
    TRANSIENT,
    BlobStore,
    StorageError,
    classify,
)

pytestmark = pytest.mark.azurite


def _upload(blob_service, container, names, data=b"x"):
    client = blob_service.get_container_client(container)
    for name in names:
        client.upload_blob(name, data)


def _tiers(blob_service, container):
    return {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}


def _metered_store(conn):
    meter = Meter()
    return BlobStore.from_connection(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    ), meter


@pytest.mark.parametrize(
    "status, code, verdict",
    [
        (200, None, OK),
        (202, None, OK),
        (404, "BlobNotFound", GONE),
        (409, "BlobArchived", SKIPPED),
        (409, "BlobBeingRehydrated", SKIPPED),
        (429, None, TRANSIENT),
        (500, None, TRANSIENT),
        (503, "ServerBusy", TRANSIENT),
        (403, "AuthorizationPermissionMismatch", TRANSIENT),
        (400, "InvalidHeaderValue", FAILED),
        (409, "LeaseIdMissing", FAILED),
    ],
)
def test_failures_are_classified_once(status, code, verdict):
    assert classify(status, code) == verdict


def test_listing_carries_tier_and_inference_in_one_request(
    blob_service, container, azurite_connection_string
):
    _upload(blob_service, container, ["a.vol1", "a.vol2", "b.other"])
    store, meter = _metered_store(azurite_connection_string)
    items = {i.name: i for i in store.list_blobs(container, "a.")}
    assert sorted(items) == ["a.vol1", "a.vol2"]
    assert all(
        i.tier == "Hot" and i.tier_inferred and i.archive_status is None and i.size == 1
        for i in items.values()
    )
    assert meter.round_trips == 1 and meter.by_operation == {"list": 1}


def test_set_tier_batches_at_most_256_and_reports_every_blob(
    blob_service, container, azurite_connection_string
):
    names = [f"v{i:04d}" for i in range(BATCH_LIMIT + 10)]
    _upload(blob_service, container, names)
    store, meter = _metered_store(azurite_connection_string)
    results = store.set_tier(container, names, "Cold")
    assert [r.name for r in results] == names
    assert {r.outcome for r in results} == {OK}
    assert meter.by_operation == {"batch": 2}
    assert meter.billable == 2 + len(names)
    assert set(_tiers(blob_service, container).values()) == {"Cold"}


def test_blob_deleted_before_the_batch_is_gone_not_fatal(blob_service, container, store):
    _upload(blob_service, container, ["keep", "vanishes"])
    blob_service.get_container_client(container).delete_blob("vanishes")
    results = {r.name: r for r in store.set_tier(container, ["keep", "vanishes"], "Archive")}
    assert results["keep"].outcome == OK
    assert (results["vanishes"].outcome, results["vanishes"].status, results["vanishes"].code) == (
        GONE,
        404,
        "BlobNotFound",
    )
    assert _tiers(blob_service, container) == {"keep": "Archive"}


def test_listing_shows_an_explicitly_set_archive_tier(blob_service, container, store):
    _upload(blob_service, container, ["x"])
    store.set_tier(container, ["x"], "Archive")
    (item,) = store.list_blobs(container)
    assert item.tier == "Archive" and not item.tier_inferred


def test_missing_container_is_a_permanent_error(store):
    with pytest.raises(StorageError) as info:
        list(store.list_blobs("no-such-container-here"))
    assert info.value.status == 404 and not info.value.transient


def test_unreachable_account_is_transient():
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    store = BlobStore.from_connection(Connection(connection_string=conn), retry_total=0)
    with pytest.raises(StorageError) as info:
        list(store.list_blobs("c"))
    assert info.value.transient
    assert "a2V5" not in str(info.value)


def test_a_single_blob_is_tiered_with_one_plain_request_and_its_failure_classified(
    blob_service, container, azurite_connection_string
):
    _upload(blob_service, container, ["one"])
    store, meter = _metered_store(azurite_connection_string)
    (done,) = store.set_tier(container, ["one"], "Cold")
    (gone,) = store.set_tier(container, ["missing"], "Cold")
    assert (done.outcome, gone.outcome, gone.status, gone.code) == (OK, GONE, 404, "BlobNotFound")
    assert meter.by_operation == {"set-tier": 2} and meter.billable == 2
    assert _tiers(blob_service, container) == {"one": "Cold"}


def test_identity_connection_uses_a_managed_identity_credential_and_no_key():
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    from retier.storage import connect

    user_assigned = connect(
        Connection(
            blob_service_uri="https://acct.blob.core.windows.net",
            client_id="11111111-2222-3333-4444-555555555555",
        )
    )
    assert isinstance(user_assigned.credential, ManagedIdentityCredential)
    assert user_assigned.account_name == "acct" and user_assigned.url.startswith(
        "https://acct.blob.core.windows.net"
    )
    system = connect(
        Connection(
            blob_service_uri="https://acct.blob.core.windows.net", credential="managedidentity"
        )
    )
    assert isinstance(system.credential, ManagedIdentityCredential)
    default = connect(Connection(blob_service_uri="https://acct.blob.core.windows.net"))
    assert isinstance(default.credential, DefaultAzureCredential)


class IdentityNotReadyStandIn:
    """A token credential that cannot get a token yet, as a just-assigned managed identity (no Azure here)."""

    def get_token(self, *scopes, **kwargs):
        from azure.identity import CredentialUnavailableError

        raise CredentialUnavailableError("ManagedIdentityCredential: no token yet")

    def get_token_info(self, *scopes, **kwargs):
        return self.get_token(*scopes, **kwargs)


def test_a_token_the_identity_cannot_get_yet_is_transient_so_the_event_is_redelivered():
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient(
        "https://acct.blob.core.windows.net", credential=IdentityNotReadyStandIn(), retry_total=0
    )
    with pytest.raises(StorageError) as info:
        BlobStore(client).get_hold("c")
    assert info.value.transient and info.value.status is None
    assert "CredentialUnavailableError" in str(info.value)


def test_creating_a_container_that_exists_is_not_an_error(store, container, blob_service):
    _upload(blob_service, container, ["kept"])
    store.create_container(container)
    assert _tiers(blob_service, container) == {"kept": "Hot"}


def test_the_hold_is_one_metadata_key_beside_the_containers_own_metadata(
    blob_service, container, azurite_connection_string
):
    client = blob_service.get_container_client(container)
    client.set_container_metadata({"owner": "ops"})
    store, meter = _metered_store(azurite_connection_string)
    store.set_hold(container, "restore since today")
    assert client.get_container_properties().metadata == {
        "owner": "ops",
        "retier_restore_hold": "restore since today",
    }
    assert store.get_hold(container) == "restore since today"
    meter.reset()
    assert store.clear_hold(container) == "restore since today"  # the note it lifted
    assert meter.by_operation == {"container-properties": 1, "put": 1}
    assert client.get_container_properties().metadata == {"owner": "ops"}
    meter.reset()
    assert store.clear_hold(container) is None and store.get_hold(container) is None
    assert meter.by_operation == {"container-properties": 2}  # nothing to lift: nothing written
