"""Stand-in for Event Grid, which Azurite lacks: BlobCreated events for blobs that already exist."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from retier.names import Kind, parse

if TYPE_CHECKING:  # only a type here: no storage SDK to import
    from retier.storage import BlobItem

# Above this size the SDK (and duplicity through it) uploads in blocks, so Azure reports
# PutBlockList; smaller blobs are a single PutBlob. (azure-storage-blob's max_single_put_size.)
SINGLE_PUT_LIMIT = 64 * 1024 * 1024


def blob_created_event(
    *,
    account: str,
    container: str,
    item: BlobItem,
    url: str,
    subscription: str = "00000000-0000-0000-0000-000000000000",
    resource_group: str = "local",
) -> dict:
    """The Event Grid-schema event Azure would deliver for `item`, as documented for Blob Storage."""
    return {
        "topic": (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{account}"
        ),
        "subject": f"/blobServices/default/containers/{container}/blobs/{item.name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": (item.last_modified.isoformat() if item.last_modified else None),
        "id": str(uuid.uuid4()),
        "data": {
            "api": "PutBlockList" if item.size > SINGLE_PUT_LIMIT else "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": item.etag,
            "contentType": "application/octet-stream",
            "contentLength": item.size,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{(item.creation_time or item.last_modified).timestamp():032.6f}"
            if (item.creation_time or item.last_modified)
            else None,
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


# duplicity uploads a set's volumes, then its signatures, then the manifest, then jsonstat.
_UPLOAD_RANK = {
    Kind.VOLUME: 0,
    Kind.SIGNATURES: 1,
    Kind.MANIFEST: 2,
    Kind.JSONSTAT: 3,
    Kind.UNKNOWN: 4,
}


def upload_order(item: BlobItem):
    """Sort key: the order duplicity uploaded blobs in (events_for, and retier bridge's polls).

    Storage timestamps have one-second resolution; within a second, it falls back to the
    order in which duplicity writes a set's objects.
    """
    name = parse(item.name)
    return (
        item.creation_time or item.last_modified,
        _UPLOAD_RANK[name.kind],
        name.volume or 0,
        name.par2,
        item.name,
    )


def events_for(store, container: str, items: Iterable[BlobItem]) -> list[dict]:
    """Events for `items` in upload order (oldest first), the order Azure would most likely send them."""
    ordered = sorted(items, key=upload_order)
    return [
        blob_created_event(
            account=store.account_name,
            container=container,
            item=item,
            url=store.blob_url(container, item.name),
        )
        for item in ordered
    ]
