"""Event Grid's push delivery as Azure documents it: back-off, what counts as delivered, dead-letter blobs (pure).

One place for the contract that the local bridge, the test bed's Event Grid stand-in and
`retier replay` all follow. Source: https://learn.microsoft.com/azure/event-grid/delivery-and-retry
and https://learn.microsoft.com/azure/event-grid/manage-event-delivery (checked 2026-11).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

# The name the local bridge and the test bed's Event Grid stand-in give their subscription (their
# dead-letter files are named after it). A deployment names its subscription after its function
# app instead (subscription_name), so that two installs can share one account's system topic.
SUBSCRIPTION = "retier-blob-created"
# infra/main.json: deadLetterContainerName, in each install's own host storage account.
DEAD_LETTER_CONTAINER = "retier-dead-letter"
# Where `retier replay` files a dead-letter blob once every event in it was delivered; the probe
# and replay itself read only what is outside it.
REPLAYED_PREFIX = "replayed/"
# Event subscription names: 3-64 letters, digits and hyphens.
# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsofteventgrid
SUBSCRIPTION_NAME_MAX = 64
_SUBSCRIPTION_SUFFIX = "-blob-created"

# Only these answers count as delivered; anything else (or no answer in 30 s) is a failure.
DELIVERED = frozenset({200, 201, 202, 203, 204})
RESPONSE_TIMEOUT_SECONDS = 30
# Answers that are never retried: the event is dead-lettered at once (dropped without a
# dead-letter destination). Endpoint type AzureFunction ("Azure resources"), and webhooks.
NOT_RETRIED_AZURE_FUNCTION = frozenset({400, 403, 413})
NOT_RETRIED_WEBHOOK = frozenset({400, 401, 403, 413})
# Waits before the 2nd, 3rd, ... attempt: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h,
# 6 h, then every 12 h, until maxDeliveryAttempts or eventTimeToLiveInMinutes runs out. Azure
# adds a little randomness and may skip retries to an unhealthy endpoint.
BACKOFF_SECONDS = (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600)
BACKOFF_CEILING_SECONDS = 12 * 3600
# The subscription's retry policy: defaults and limits.
DEFAULT_MAX_DELIVERY_ATTEMPTS = 30  # 1..30
DEFAULT_EVENT_TTL_MINUTES = 1440  # 1..1440
# Dead-letter blobs are written about five minutes after the last attempt.
DEAD_LETTER_DELAY_SECONDS = 300

# What Event Grid adds to each event it dead-letters (Event Grid schema).
DEAD_LETTER_FIELDS = (
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "publishTime",
    "lastDeliveryAttemptTime",
)
MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"


def subscription_name(app_name: str) -> str:
    """The event subscription a deployment creates for the function app `app_name` (infra/main.json:
    eventSubscriptionName): `<app>-blob-created`, or the app name alone when that would pass Event
    Grid's 64 characters. Function app names are unique, so two installs never share one."""
    if len(app_name) + len(_SUBSCRIPTION_SUFFIX) <= SUBSCRIPTION_NAME_MAX:
        return app_name + _SUBSCRIPTION_SUFFIX
    return app_name


def backoff(attempt: int) -> int:
    """Seconds Event Grid waits after failed attempt number `attempt` (1-based) before the next one."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt <= len(BACKOFF_SECONDS):
        return BACKOFF_SECONDS[attempt - 1]
    return BACKOFF_CEILING_SECONDS


def is_delivered(status: int | None) -> bool:
    return status in DELIVERED


def is_retried(status: int | None, *, endpoint: str = "AzureFunction") -> bool:
    """Whether a failed attempt with this answer (None: no answer) is tried again."""
    if is_delivered(status):
        return False
    never = NOT_RETRIED_AZURE_FUNCTION if endpoint == "AzureFunction" else NOT_RETRIED_WEBHOOK
    return status not in never


def delivery_outcome(status: int | None) -> str:
    """`lastDeliveryOutcome` as Event Grid words it for an answer (None: no answer in time)."""
    if status is None:
        return "TimedOut"
    return _OUTCOMES.get(status, "GenericError" if status >= 500 else "Rejected")


_OUTCOMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "Rejected",
}


def dead_letter_blob_name(subscription: str, when: datetime, blob_id: str | None = None) -> str:
    """`<SUBSCRIPTION-NAME>/<yyyy>/<m>/<d>/<h>/<guid>.json`: upper case, UTC, no zero padding."""
    when = when.astimezone(timezone.utc)
    name = blob_id or str(uuid.uuid4())
    return f"{subscription.upper()}/{when.year}/{when.month}/{when.day}/{when.hour}/{name}.json"


def _timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def dead_letter_record(
    event: Mapping[str, Any],
    *,
    reason: str,
    attempts: int,
    last_outcome: str,
    publish_time: datetime,
    last_attempt_time: datetime,
) -> dict[str, Any]:
    """The event as Event Grid writes it into a dead-letter blob (a JSON array of these)."""
    record = dict(event)
    record.update(
        {
            "deadLetterReason": reason,
            "deliveryAttempts": attempts,
            "lastDeliveryOutcome": last_outcome,
            "publishTime": _timestamp(publish_time),
            "lastDeliveryAttemptTime": _timestamp(last_attempt_time),
        }
    )
    return record


def strip_dead_letter_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The original event of a dead-letter record (Event Grid or CloudEvents field spellings)."""
    added = {f.lower() for f in DEAD_LETTER_FIELDS}
    return {k: v for k, v in record.items() if k.lower() not in added}
