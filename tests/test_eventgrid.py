"""retier.eventgrid against the examples and tables in Azure's delivery-and-retry documentation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from retier import eventgrid

EVENT = {
    "id": "93902694-901e-008f-6f95-7153a806873c",
    "eventTime": "2020-08-13T17:18:13.1647262Z",
    "eventType": "Microsoft.Storage.BlobCreated",
    "dataVersion": "",
    "metadataVersion": "1",
    "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
    "subject": "/blobServices/default/containers/c/blobs/b",
    "data": {"api": "PutBlob", "url": "https://acct.blob.core.windows.net/c/b"},
}


def test_dead_letter_blob_name_is_upper_case_subscription_and_unpadded_utc_hour():
    # The documentation's example: My-Blob-Subscription at 2019-08-08 05:xx UTC.
    when = datetime(2019, 8, 8, 7, 30, tzinfo=timezone(timedelta(hours=2)))
    name = eventgrid.dead_letter_blob_name("My-Blob-Subscription", when, "111")
    assert name == "MY-BLOB-SUBSCRIPTION/2019/8/8/5/111.json"


def test_dead_letter_record_adds_exactly_the_documented_fields_and_strips_back():
    t = datetime(2020, 8, 13, 17, 18, 14, 26575, tzinfo=timezone.utc)
    record = eventgrid.dead_letter_record(
        EVENT,
        reason="MaxDeliveryAttemptsExceeded",
        attempts=1,
        last_outcome="NotFound",
        publish_time=t,
        last_attempt_time=t,
    )
    assert set(record) - set(EVENT) == set(eventgrid.DEAD_LETTER_FIELDS)
    assert record["publishTime"] == "2020-08-13T17:18:14.0265750Z"
    assert eventgrid.strip_dead_letter_fields(record) == EVENT
    # CloudEvents spells the added fields in lower case.
    cloud = {"id": "x", "specversion": "1.0", "deadletterreason": "r", "deliveryattempts": 1}
    assert eventgrid.strip_dead_letter_fields(cloud) == {"id": "x", "specversion": "1.0"}


def test_backoff_follows_the_documented_schedule_then_every_12_hours():
    got = [eventgrid.backoff(n) for n in range(1, 12)]
    assert got == [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 43200]
    with pytest.raises(ValueError):
        eventgrid.backoff(0)


@pytest.mark.parametrize(
    ("status", "delivered", "retried"),
    [
        (200, True, False),
        (204, True, False),
        (205, False, True),
        (500, False, True),
        (503, False, True),
        (None, False, True),
        (400, False, False),
        (413, False, False),
    ],
)
def test_only_200_to_204_deliver_and_400_413_are_never_retried(status, delivered, retried):
    assert eventgrid.is_delivered(status) is delivered
    assert eventgrid.is_retried(status) is retried


def test_webhook_endpoints_also_give_up_on_401():
    assert eventgrid.is_retried(401, endpoint="AzureFunction")
    assert not eventgrid.is_retried(401, endpoint="WebHook")
