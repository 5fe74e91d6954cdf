"""The only module that talks to Azure Storage: list blobs with their tiers, set tiers in batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobPrefix, BlobServiceClient, ExponentialRetry, StandardBlobTier

from retier import policy
from retier.errors import SettingsError, StorageError, refused_is_transient
from retier.settings import Connection

logger = logging.getLogger(__name__)

BATCH_LIMIT = 256  # Blob Batch's maximum number of sub-requests per request

# Outcomes of one blob's tier change, decided here once for every caller.
OK = "ok"
GONE = "gone"  # 404: deleted since it was listed; nothing to do
SKIPPED = "skipped"  # 409: archived or rehydrating; never force it
TRANSIENT = "transient"  # throttled, server error, timeout: a retry may succeed
FAILED = "failed"  # anything else: a retry will not help

# Container metadata key that puts a container on restore hold (metadata names are C# identifiers).
HOLD_KEY = "retier_restore_hold"
# Blob metadata key on each copy retier makes into a restore container: the source container's
# name. `release --copy-to` deletes only blobs that carry it.
COPY_KEY = "retier_copy_of"

# Set Blob Tier to a tier the account does not have: Archive on a zone-redundant (ZRS, GZRS,
# RA-GZRS) account, which is every account that can use Smart tier. Azure documents the code
# (learn.microsoft.com/rest/api/storageservices/blob-service-error-codes; BlobErrorCode in the
# SDKs) but not its status (400 is reported in github.com/Azure/azure-sdk-for-net/issues/38465):
# it is FAILED by its code, whatever the status. No retry or other tier can be right for it.
TIER_NOT_SUPPORTED = "BlobAccessTierNotSupportedForAccountType"

_TRANSIENT_STATUS = frozenset({401, 403, 408, 429, 500, 502, 503, 504})


def classify(status: int, code: str | None = None) -> str:
    """Map an HTTP status (and storage error code) to OK / GONE / SKIPPED / TRANSIENT / FAILED."""
    if 200 <= status < 300:
        return OK
    if code == TIER_NOT_SUPPORTED:
        return FAILED
    if status == 404:
        return GONE
    if status == 409 and code in (
        "BlobArchived",
        "BlobBeingRehydrated",
        "BlobTierInadequateForContentLength",
    ):
        return SKIPPED
    # 401/403 are transient on purpose: a role assignment that is still propagating, or one the
    # user is about to fix, should see Event Grid redeliver rather than lose the event.
    if status in _TRANSIENT_STATUS:
        return TRANSIENT
    return FAILED


@dataclass(frozen=True)
class Where:
    """What a failure message names besides the call: the endpoint and the credential used."""

    endpoint: str = "storage"
    credential: str = "the credential"
    refused_hint: str = "check the credential"


# DefaultAzureCredential's chain, as azure-identity 1.27 documents it (DefaultAzureCredential's
# docstring; learn.microsoft.com/python/api/azure-identity/azure.identity.defaultazurecredential).
DEFAULT_CREDENTIAL_CHAIN = (
    "environment variables (AZURE_CLIENT_ID, ...), workload identity, managed identity, "
    "VS Code, Azure CLI, Azure PowerShell, Azure Developer CLI"
)


def _refused(what: str, where: Where, detail: str, **kwargs) -> StorageError:
    """A refused credential, named as such: what was refused, what to check, whether it retries.

    In the Function it stays transient (Event Grid redelivers while a new role assignment
    applies), and the message says so; at a terminal it is a mistake to fix (retier.errors).
    """
    transient = refused_is_transient()
    retried = (
        "; retried meanwhile, in case a new role assignment is still applying" if transient else ""
    )
    return StorageError(
        f"{what}: storage refused {where.credential} ({detail}): {where.refused_hint}{retried}",
        transient=transient,
        refused=True,
        **kwargs,
    )


# Azurite answers a request newer than it knows with 400 InvalidHeaderValue and a message that
# says what to do (--skipApiVersionCheck); storage's own messages are not repeated otherwise.
_AZURITE_API_VERSION = "is not supported by Azurite"


@contextmanager
def _translated(what: str, where: Where | None = None) -> Iterator[None]:
    where = where or Where()
    try:
        yield
    except ClientAuthenticationError as exc:
        # Before HttpResponseError (its base): 401/403 from storage, a key that cannot sign
        # (AzureSigningError), or no token at all (CredentialUnavailableError and the like).
        status = exc.status_code
        if status is not None:
            code = getattr(getattr(exc, "error_code", None), "value", exc.error_code)
            raise _refused(
                what, where, f"HTTP {status} {code or ''}".strip(), status=status, code=code
            ) from None
        if type(exc).__name__ == "AzureSigningError":
            raise _refused(
                what, where, "the key could not sign the request: is it the base64 key Azure gave?"
            ) from None
        raise StorageError(
            f"{what}: no token for {where.credential}: tried {DEFAULT_CREDENTIAL_CHAIN} "
            "(sign in with `az login`, or set RETIER_STORAGE to a connection string)"
            if where.credential.startswith("your Azure sign-in")
            else f"{what}: {where.credential} got no token ({type(exc).__name__}): a managed "
            "identity exists only inside Azure; outside it, unset RETIER_STORAGE__clientId and "
            "RETIER_STORAGE__credential and sign in with `az login`",
            transient=refused_is_transient(),
            refused=True,
        ) from None
    except HttpResponseError as exc:
        if exc.status_code is None:
            raise StorageError(
                f"{what}: no answer from {where.endpoint}: {type(exc).__name__}", transient=True
            ) from None
        status = exc.status_code
        code = getattr(exc, "error_code", None)
        code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum, as Azure spells it
        if status in (401, 403):
            raise _refused(
                what, where, f"HTTP {status} {code or ''}".strip(), status=status, code=code
            ) from None
        verdict = classify(status, code)
        said = (exc.message or "").split("\n")[0].strip()
        if code == "InvalidHeaderValue" and _AZURITE_API_VERSION in said:
            raise StorageError(
                f"{what}: HTTP {status} {code}: Azurite says: {said}",
                transient=False,
                status=status,
                code=code,
            ) from None
        raise StorageError(
            f"{what}: HTTP {status} {code or exc.reason or ''}".strip(),
            transient=verdict == TRANSIENT,
            status=status,
            code=code,
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StorageError(
            f"{what}: no answer from {where.endpoint} (connection failed: {type(exc).__name__}): "
            "is the endpoint right, and is storage (or Azurite) running and reachable?",
            transient=True,
        ) from None


@dataclass(frozen=True)
class BlobItem:
    name: str
    size: int
    tier: str | None
    tier_inferred: bool
    archive_status: str | None
    last_modified: datetime | None
    tier_change_time: datetime | None
    creation_time: datetime | None
    etag: str | None = None
    # Where a Smart blob (tier "Smart") sits now: Hot, Cool or Cold. The listing's SmartAccessTier
    # and properties' x-ms-smart-access-tier, which azure-storage-blob 12.31 exposes as
    # BlobProperties.smart_access_tier (_deserialize.get_blob_properties_from_generated_code for
    # listings; BlobProperties.__init__ from the x-ms-smart-access-tier header for properties).
    smart_tier: str | None = None
    # Read only by listings `with_copy` (restore containers); None otherwise.
    rehydrate_priority: str | None = None  # Standard or High while a rehydration is pending
    copy_status: str | None = None  # pending, success, aborted, failed: the last Copy Blob into it
    copy_of: str | None = None  # the COPY_KEY metadata: retier copied it from that container

    @property
    def tier_label(self) -> str | None:
        """The tier as plans and reports show it ("Smart/Cold" for a Smart blob in Cold)."""
        return policy.tier_label(self.tier, self.smart_tier)

    @property
    def tier_set(self) -> bool:
        """Whether the blob's tier may ever have been set, by retier, a person, or a restore.

        A blob whose tier is still inferred from the account's default has never been given one
        (Azure: `x-ms-access-tier-inferred: true`), so it cannot be a blob a restore rehydrated:
        rehydration is a Set Blob Tier, which makes the tier explicit. Only a blob whose tier was
        set needs the restore hold checked before it moves. (Azure omits
        `x-ms-access-tier-change-time` for such a blob too, but Azurite reports one, equal to its
        creation time; both report the inferred flag, so that is what is relied on. Unknown
        counts as set.)
        """
        return not self.tier_inferred

    @property
    def since(self) -> datetime | None:
        """When the blob reached its current tier, for minimum-days (early-deletion) charges.

        The tier-change time when Azure reports one; else the creation time, since a blob whose
        tier was never set has had its tier since it was created (Last-Modified as a last resort).
        """
        return self.tier_change_time or self.creation_time or self.last_modified


@dataclass(frozen=True)
class AccountInfo:
    """Get Account Information's answer: `sku_name` e.g. Standard_LRS, `account_kind` e.g. StorageV2,
    `is_hns_enabled` (x-ms-is-hns-enabled) whether it is a Data Lake (hierarchical namespace) one."""

    sku_name: str | None
    account_kind: str | None
    is_hns_enabled: bool | None = None


@dataclass(frozen=True)
class ContainerProtection:
    """A container's immutability, from its properties (x-ms-has-immutability-policy,
    x-ms-has-legal-hold, x-ms-immutable-storage-with-versioning-enabled)."""

    immutability_policy: bool = False
    legal_hold: bool = False
    version_level_worm: bool = False


@dataclass(frozen=True)
class StoredBlob:
    """A blob's bytes as read, with the ETag they had (for a delete that must not lose a newer write)."""

    data: bytes
    etag: str | None


@dataclass(frozen=True)
class TierResult:
    name: str
    tier: str
    outcome: str  # OK, GONE, SKIPPED, TRANSIENT, FAILED
    status: int
    code: str | None = None


def _blob_item(props) -> BlobItem:
    metadata = {k.lower(): v for k, v in (props.metadata or {}).items()}
    copy = getattr(props, "copy", None)
    return BlobItem(
        name=props.name,
        size=props.size or 0,
        tier=props.blob_tier,
        tier_inferred=bool(props.blob_tier_inferred),
        archive_status=props.archive_status,
        last_modified=props.last_modified,
        tier_change_time=props.blob_tier_change_time,
        creation_time=props.creation_time,
        etag=props.etag,
        smart_tier=getattr(props, "smart_access_tier", None),
        rehydrate_priority=props.rehydrate_priority,
        copy_status=copy.status if copy else None,
        copy_of=metadata.get(COPY_KEY),
    )


def _split_hold(metadata: dict[str, str] | None) -> tuple[str | None, dict[str, str]]:
    """A container's metadata as (the hold's note or None, every other key): the one place that
    knows the hold key (metadata keys come back in any case; an empty note still holds)."""
    hold, others = None, {}
    for key, value in (metadata or {}).items():
        if key.lower() == HOLD_KEY:
            hold = value or "on hold"
        else:
            others[key] = value
    return hold, others


# The SDK's default waits 15 s, 18 s, 24 s between retries. Event Grid redelivers a failed
# event with its own back-off for 24 h, so in-process retries only need to ride out brief
# throttling: about 1 s, then 5 s.
RETRY_TOTAL = 2


def connect(connection: Connection, **client_kwargs) -> BlobServiceClient:
    """A BlobServiceClient for a connection string or a managed identity (Functions' convention)."""
    if "retry_policy" not in client_kwargs and "retry_total" not in client_kwargs:
        client_kwargs["retry_policy"] = ExponentialRetry(
            initial_backoff=1, increment_base=2, retry_total=RETRY_TOTAL, random_jitter_range=1
        )
    if connection.connection_string:
        return BlobServiceClient.from_connection_string(
            connection.connection_string, **client_kwargs
        )
    if urlsplit(connection.blob_service_uri or "").scheme.lower() != "https":
        # azure-storage-blob refuses a token credential over plain HTTP ("Token credential is
        # only supported with HTTPS", a ValueError): say so, naming the setting.
        raise SettingsError(
            f"{connection.source}: an identity signs in over https only; for the emulator set "
            "RETIER_STORAGE=UseDevelopmentStorage=true (or its connection string)"
        )
    # Imported here: only identity-based deployments pay azure-identity's import time.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if connection.client_id or (connection.credential or "").lower() == "managedidentity":
        credential = ManagedIdentityCredential(client_id=connection.client_id)
    else:
        credential = DefaultAzureCredential()
    return BlobServiceClient(connection.blob_service_uri, credential=credential, **client_kwargs)


class BlobStore:
    """Blob listing and tiering for one storage account.

    `batch=False` sends one Set Blob Tier per blob instead of Blob Batch (see set_tier); None (the
    default) tries Blob Batch and stops using it for good if the account refuses a batch request.
    """

    batch: bool | None = None  # a class default: stand-ins that subclass BlobStore inherit it

    def __init__(
        self, client: BlobServiceClient, where: Where | None = None, *, batch: bool | None = None
    ):
        self._client = client
        self._where = where or Where(endpoint=self.endpoint)
        if batch is not None:
            self.batch = batch

    @classmethod
    def from_connection(
        cls, connection: Connection, *, batch: bool | None = None, **client_kwargs
    ) -> BlobStore:
        client = connect(connection, **client_kwargs)
        store = cls(client)
        if batch is not None:
            store.batch = batch
        store._where = Where(
            endpoint=store.endpoint,
            credential=connection.credential_text,
            refused_hint=connection.refused_hint,
        )
        return store

    def _translated(self, what: str):
        """Failures of the calls inside, named with this store's endpoint and credential."""
        return _translated(what, self._where)

    @property
    def account_name(self) -> str:
        return self._client.account_name

    def blob_url(self, container: str, name: str) -> str:
        return self._client.get_blob_client(container, name).url

    # -- restore hold: one metadata key on the container, shared by handler, sweep and timer --------
    def get_hold(self, container: str) -> str | None:
        """The hold's note if `container` is on restore hold, else None (one request; a container
        that does not exist raises StorageError 404)."""
        return self.container_state(container)[0]

    def set_hold(self, container: str, note: str) -> None:
        client = self._client.get_container_client(container)
        with self._translated(f"set restore hold on {container}"):
            _, others = _split_hold(client.get_container_properties().metadata)
            client.set_container_metadata({**others, HOLD_KEY: note})

    def clear_hold(self, container: str) -> str | None:
        """Lift the hold; return its note (None when there was none, and then nothing is written)."""
        client = self._client.get_container_client(container)
        with self._translated(f"clear restore hold on {container}"):
            hold, others = _split_hold(client.get_container_properties().metadata)
            if hold is not None:
                client.set_container_metadata(others)
        return hold

    def create_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self._translated(f"create container {container}"):
            try:
                self._client.create_container(container)
            except ResourceExistsError:
                pass

    def delete_container(self, container: str) -> None:
        with self._translated(f"delete container {container}"):
            self._client.delete_container(container)

    @property
    def endpoint(self) -> str:
        """The blob service URL without its query: a SAS in a connection string stays out of sight."""
        parts = urlsplit(self._client.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

    def account_information(self) -> AccountInfo:
        """SKU and kind of the account (one request; an identity needs .../blobServices/getInfo/action)."""
        with self._translated("get account information"):
            info = self._client.get_account_information()
        return AccountInfo(
            info.get("sku_name"), info.get("account_kind"), info.get("is_hns_enabled")
        )

    def soft_delete_days(self) -> int | None:
        """Blob soft delete's retention in days (Get Blob Service Properties), None when it is off."""
        with self._translated("get blob service properties"):
            policy = self._client.get_service_properties().get("delete_retention_policy")
        return policy.days if policy is not None and policy.enabled else None

    def container_state(self, container: str) -> tuple[str | None, ContainerProtection]:
        """The restore hold's note (as get_hold) and the container's immutability, in one read."""
        with self._translated(f"read properties of {container}"):
            props = self._client.get_container_client(container).get_container_properties()
        protection = ContainerProtection(
            bool(props.has_immutability_policy),
            bool(props.has_legal_hold),
            bool(getattr(props, "immutable_storage_with_versioning_enabled", False)),
        )
        return _split_hold(props.metadata)[0], protection

    def versioned(self, container: str) -> bool | None:
        """Whether the container's first blob carries a version id (blob versioning is on); None
        for an empty container. One List Blobs request of one result, versions included."""
        pages = self._client.get_container_client(container).list_blobs(
            include=["versions"], results_per_page=1
        )
        with self._translated(f"list {container} with versions"):
            for page in pages.by_page():
                for props in page:
                    return props.version_id is not None
                return None
        return None

    def probe_blob_write(self, container: str, name: str) -> None:
        """Ask to write a blob's metadata on a condition no blob meets: it changes nothing, and says
        whether the credential may write blobs here (Set Blob Tier needs the same permission).

        Returns when storage would have allowed it (404 no such blob, 412 condition not met); raises
        StorageError when it refuses (403: no role that writes blobs).
        """
        blob = self._client.get_blob_client(container, name)
        with self._translated(f"probe blob write in {container}"):
            try:
                # Blob ETags are the hex of a write's timestamp ("0x8D83FACDC0C3402" in Azure's own
                # samples): "0x0" is no blob's, so the condition fails and nothing is written.
                blob.set_blob_metadata(
                    {}, etag='"0x0"', match_condition=MatchConditions.IfNotModified
                )
            except ResourceNotFoundError as exc:
                if exc.error_code != "BlobNotFound":
                    raise  # ContainerNotFound says nothing about the permission
                return
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    return
                raise
        raise StorageError(
            f"probe blob write in {container}: {name} was written; it should not exist",
            transient=False,
        )

    def walk(self, container: str) -> Iterator[BlobItem | str]:
        """The container's top level, streamed: a BlobItem per blob, the name of each "folder" ("x/")."""
        items = self._client.get_container_client(container).walk_blobs(delimiter="/")
        with self._translated(f"list {container}/ by folder"):
            for item in items:
                if isinstance(item, BlobPrefix):
                    yield item.name
                else:
                    yield _blob_item(item)

    def read_blob(self, container: str, name: str) -> StoredBlob:
        """A blob's whole content and ETag (for small blobs: dead-letter files, not volumes)."""
        with self._translated(f"read {container}/{name}"):
            downloader = self._client.get_container_client(container).download_blob(name)
            data = downloader.readall()
        return StoredBlob(data, downloader.properties.etag)

    def write_blob(self, container: str, name: str, data: bytes, *, overwrite: bool = True) -> None:
        """Create or replace a small blob (with overwrite=False, create only: 409 if it exists)."""
        with self._translated(f"write {container}/{name}"):
            self._client.get_container_client(container).upload_blob(
                name, data, overwrite=overwrite
            )

    def blob_properties(self, container: str, name: str) -> BlobItem:
        """One blob's properties, tier and tier-change time included (Get Blob Properties; 404 raises)."""
        with self._translated(f"read properties of {container}/{name}"):
            props = self._client.get_blob_client(container, name).get_blob_properties()
        return _blob_item(props)

    def delete_blob(self, container: str, name: str, etag: str | None = None) -> None:
        """Delete a blob; with `etag`, only if it is unchanged since it was read (412 otherwise)."""
        kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        with self._translated(f"delete {container}/{name}"):
            self._client.get_container_client(container).delete_blob(name, **kwargs)

    def list_blobs(
        self, container: str, prefix: str | None = None, *, with_copy: bool = False
    ) -> Iterator[BlobItem]:
        """Stream the blobs under `prefix`, tiers included (one request per page of 5,000);
        `with_copy` adds each blob's metadata and last copy (copy_status, copy_of)."""
        pages = self._client.get_container_client(container).list_blobs(
            name_starts_with=prefix or None, include=["metadata", "copy"] if with_copy else None
        )
        with self._translated(f"list {container}/{prefix or ''}*"):
            for props in pages:
                yield _blob_item(props)

    def set_tier(
        self,
        container: str,
        names: Iterable[str],
        tier: str,
        *,
        rehydrate_priority: str | None = None,
    ) -> list[TierResult]:
        """Set `tier` on every blob in `names` with Blob Batch, 256 per request; one result per blob.

        Per-blob failures come back as results; a failure of a whole batch request raises
        StorageError (the blobs of earlier batches keep their new tier: the operation is idempotent).
        """
        names = list(names)
        container_client = self._client.get_container_client(container)
        results: list[TierResult] = []
        for start in range(0, len(names), BATCH_LIMIT):
            chunk = names[start : start + BATCH_LIMIT]
            if len(chunk) == 1 or self.batch is False:
                # A batch of one is billed as two transactions; a plain Set Blob Tier as one.
                results.extend(
                    self._set_one(container_client, name, tier, rehydrate_priority)
                    for name in chunk
                )
                continue
            kwargs = {"raise_on_any_failure": False}
            if rehydrate_priority:
                kwargs["rehydrate_priority"] = rehydrate_priority
            try:
                with self._translated(f"set tier {tier} on {len(chunk)} blobs in {container}"):
                    parts = list(
                        container_client.set_standard_blob_tier_blobs(tier, *chunk, **kwargs)
                    )
            except StorageError as exc:
                if exc.status != 400 or self.batch:
                    raise
                # The whole batch refused as a bad request, not one of its sub-requests: Blob
                # Batch is not available on this account (Data Lake accounts with a hierarchical
                # namespace answer so: docs/accounts.md). Set Blob Tier itself is: from now on
                # one per blob, which bills the same tier writes without the batch's own request.
                logger.warning(
                    "Blob Batch refused (%s): one Set Blob Tier per blob from now on", exc
                )
                self.batch = False
                results.extend(
                    self._set_one(container_client, name, tier, rehydrate_priority)
                    for name in chunk
                )
                continue
            if len(parts) != len(chunk):
                raise StorageError(
                    f"batch answered {len(parts)} sub-responses for {len(chunk)} blobs",
                    transient=True,
                )
            for name, part in zip(chunk, parts, strict=True):
                code = part.headers.get("x-ms-error-code")
                results.append(
                    TierResult(name, tier, classify(part.status_code, code), part.status_code, code)
                )
        return results

    def _set_one(
        self, container_client, name: str, tier: str, rehydrate_priority: str | None
    ) -> TierResult:
        blob = container_client.get_blob_client(name)
        try:
            with self._translated(f"set tier {tier} on {container_client.container_name}/{name}"):
                blob.set_standard_blob_tier(tier, rehydrate_priority=rehydrate_priority)
        except StorageError as exc:
            if (
                exc.status is None
            ):  # no answer at all (connection): the same as a failed batch request
                raise
            return TierResult(name, tier, classify(exc.status, exc.code), exc.status, exc.code)
        return TierResult(name, tier, OK, 200)

    def copy_blob(
        self,
        source_container: str,
        name: str,
        container: str,
        *,
        tier: str,
        rehydrate_priority: str | None = None,
    ) -> TierResult:
        """Copy Blob `source_container/name` to `container/name` in `tier`, marked with COPY_KEY.

        Out of Archive the copy is asynchronous: the destination lists as Archive with
        `rehydrate-pending-to-<tier>` and a pending copy until the source is read, which takes up
        to 15 hours at Standard priority; the source stays archived and unmodified, with no early
        deletion. Supported within one account (the source needs no SAS then).
        https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-overview#copy-an-archived-blob-to-an-online-tier
        `rehydrate_priority` only for an archived source. The outcome is classified as for a tier
        change; no answer at all raises StorageError.
        """
        source = self._client.get_blob_client(source_container, name).url
        blob = self._client.get_blob_client(container, name)
        kwargs = {"standard_blob_tier": StandardBlobTier(tier)}
        if rehydrate_priority:
            kwargs["rehydrate_priority"] = rehydrate_priority
        try:
            with self._translated(f"copy {source_container}/{name} to {container}"):
                blob.start_copy_from_url(source, metadata={COPY_KEY: source_container}, **kwargs)
        except StorageError as exc:
            if exc.status is None:
                raise
            return TierResult(name, tier, classify(exc.status, exc.code), exc.status, exc.code)
        return TierResult(name, tier, OK, 202)
