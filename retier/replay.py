"""Replay Event Grid's dead-lettered events through the function's own code path, then file them away.

Event Grid dead-letters an event it could not deliver as a blob
`<SUBSCRIPTION-NAME>/<yyyy>/<m>/<d>/<h>/<guid>.json` holding a JSON array of the events, each with
`deadLetterReason`, `deliveryAttempts`, `lastDeliveryOutcome`, `publishTime` and
`lastDeliveryAttemptTime` added (retier.eventgrid has the contract). Each event goes through
`RetierService.handle_event`, exactly as the function and `retier handle-event` run it.

A blob whose every event was handled or deliberately ignored is moved to `replayed/<its name>`
(written there, then deleted on its ETag): the record of what was undelivered and why stays, a
second replay does not read it again, and a lifecycle rule on `replayed/` can expire it. A blob
with an event that still needs a retry, or that no retry can fix, stays where it is.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from retier import events, names
from retier.eventgrid import REPLAYED_PREFIX, strip_dead_letter_fields
from retier.names import Kind
from retier.service import HANDLED, IGNORED, INVALID, RETRY, VOLUME_WAITS, RetierService
from retier.settings import Connection, SettingsError
from retier.storage import BlobItem, BlobStore, StorageError

logger = logging.getLogger(__name__)

# Event Grid events are at most 1 MB and a dead-letter blob holds one delivery's batch; anything
# far larger is not Event Grid's, and is not read into memory.
MAX_BLOB_BYTES = 16 * 1024 * 1024

# What became of a dead-letter blob.
MOVED = "moved"  # every event handled or deliberately ignored: now under replayed/
KEPT = "kept"  # an event needs a retry, is invalid, or the move failed: read again next time
MALFORMED = "malformed"  # not a JSON array of event objects: reported, never touched
WOULD_MOVE = "would move"  # dry run
WOULD_KEEP = "would keep"  # dry run
# A dry-run event that parse_event accepts: the service would act on it.
WOULD_HANDLE = "would handle"

_FINAL = frozenset({HANDLED, IGNORED})
# Event Grid schema fields the azure-eventgrid model requires (EventGridEvent's constructor).
_EVENTGRID_REQUIRED = (
    ("id", "id"),
    ("subject", "subject"),
    ("data", "data"),
    ("eventType", "event_type"),
    ("eventTime", "event_time"),
    ("dataVersion", "data_version"),
)
_DEAD_LETTER_INFO = {
    "deadletterreason": "reason",
    "deliveryattempts": "attempts",
    "lastdeliveryoutcome": "last_outcome",
}


class InvalidRecord(ValueError):
    """A dead-lettered record that is not an event the models accept; no retry can fix it."""


def dead_letter_connection(value: str) -> Connection:
    """The dead-letter account from --dead-letter-storage: a connection string, or an https blob
    service URL used with DefaultAzureCredential."""
    value = value.strip()
    source = "--dead-letter-storage"
    if value.lower().startswith(("https://", "http://")):
        if urlsplit(value).query:
            # A SAS in a URL would be printed by every error message that names the URL.
            raise SettingsError(
                f"{source}: a URL with a query (a SAS?) is not accepted; give a connection string "
                "with a SharedAccessSignature field, or a plain URL used with your Azure login"
            )
        connection = Connection(blob_service_uri=value, source=source)
    elif "=" in value:
        connection = Connection(connection_string=value, source=source)
    else:
        raise SettingsError(
            f"{source} must be a connection string (Key=Value;...) or an https blob service URL"
        )
    try:
        _ = connection.account_name  # validate now; the message never repeats a connection string
    except SettingsError as exc:
        raise SettingsError(f"{source}: {exc}") from None
    return connection


def decode_record(record: Any) -> tuple[dict, Any]:
    """(the event as the service reads it, azure-eventgrid's model of it) for one dead-letter record.

    The model validates: Event Grid schema through `azure.eventgrid.EventGridEvent`, CloudEvents
    1.0 through azure-core's `CloudEvent`. The service still gets the plain mapping, with only the
    fields dead-lettering added taken off, so it parses exactly what Event Grid would have sent.
    """
    if not isinstance(record, Mapping):
        raise InvalidRecord("an element of the array is not a JSON object")
    event = strip_dead_letter_fields(record)
    if "specversion" in event:
        from azure.core.messaging import CloudEvent

        try:
            model = CloudEvent.from_dict(event)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRecord(f"not a CloudEvents 1.0 event: {exc}") from None
    elif "eventType" in event:
        from azure.core.exceptions import DeserializationError
        from azure.eventgrid import EventGridEvent

        try:
            model = EventGridEvent.from_dict(event)
        except (DeserializationError, ValueError, TypeError) as exc:
            raise InvalidRecord(f"not an Event Grid event: {type(exc).__name__}") from None
        missing = [key for key, attr in _EVENTGRID_REQUIRED if getattr(model, attr) is None]
        if missing:
            raise InvalidRecord(f"Event Grid event without {', '.join(missing)}")
    elif "source" in event and "type" in event:
        # Azure's own CloudEvents dead-letter sample looks like this; without specversion there
        # is no telling which spec the rest follows, and the function would refuse it too.
        raise InvalidRecord(
            "CloudEvents fields without specversion, which CloudEvents 1.0 requires"
        )
    else:
        raise InvalidRecord("neither eventType (Event Grid schema) nor specversion (CloudEvents)")
    return event, model


@dataclass
class EventResult:
    id: str | None
    subject: str | None
    status: str  # HANDLED, IGNORED, RETRY, INVALID; in a dry run WOULD_HANDLE, IGNORED, INVALID
    reason: str
    dead_letter: dict = field(default_factory=dict)
    outcome: dict | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "reason": self.reason,
            "dead_letter": self.dead_letter,
            "outcome": self.outcome,
        }


@dataclass
class BlobResult:
    name: str
    fate: str  # MOVED, KEPT, MALFORMED, WOULD_MOVE, WOULD_KEEP
    reason: str
    events: list[EventResult] = field(default_factory=list)
    moved_to: str | None = None
    retry: bool = False  # kept for a reason a later run can fix

    def to_dict(self) -> dict:
        return {
            "blob": self.name,
            "fate": self.fate,
            "reason": self.reason,
            "moved_to": self.moved_to,
            "events": [e.to_dict() for e in self.events],
        }


@dataclass
class Summary:
    blobs: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    retry: bool = False

    def add(self, result: BlobResult) -> None:
        self.blobs[result.fate] += 1
        self.events.update(e.status for e in result.events)
        self.retry = self.retry or result.retry

    @property
    def exit_code(self) -> int:
        """2 when something needs a person (malformed blob, invalid event: no retry can fix it);
        else 1 when a later run can finish the job; else 0."""
        if self.blobs[MALFORMED] or self.events[INVALID]:
            return 2
        return 1 if self.retry else 0

    def to_dict(self) -> dict:
        return {"exit": self.exit_code, "blobs": dict(self.blobs), "events": dict(self.events)}


def replay(
    store: BlobStore,
    container: str,
    service: RetierService,
    *,
    dry_run: bool = False,
) -> Iterator[BlobResult]:
    """Replay every dead-letter blob of `container` not yet under replayed/, one blob at a time.

    The listing streams by "folder" (Event Grid writes under the subscription's name), so the
    blobs already replayed are not even listed again.
    """
    for entry in store.walk(container):
        if isinstance(entry, str):
            if entry == REPLAYED_PREFIX:
                continue
            for item in store.list_blobs(container, entry):
                yield _replay_blob(store, container, item, service, dry_run)
        else:
            yield _replay_blob(store, container, entry, service, dry_run)


def _replay_blob(
    store: BlobStore, container: str, item: BlobItem, service: RetierService, dry_run: bool
) -> BlobResult:
    if item.size > MAX_BLOB_BYTES:
        return _malformed(item.name, f"{item.size:,} bytes: too large for a dead-letter blob")
    stored = store.read_blob(container, item.name)
    try:
        records = json.loads(stored.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _malformed(item.name, f"not JSON ({getattr(exc, 'msg', 'not UTF-8')})")
    if not isinstance(records, list) or not records:
        return _malformed(item.name, "not a JSON array of events")
    if not all(isinstance(r, Mapping) for r in records):
        return _malformed(item.name, "an element of the array is not a JSON object")

    results = [_replay_record(record, service, dry_run) for record in records]
    done = all(r.status in _FINAL for r in results)
    if dry_run:
        every = all(r.status in (*_FINAL, WOULD_HANDLE) for r in results)
        fate = WOULD_MOVE if every else WOULD_KEEP
        return BlobResult(item.name, fate, "dry run: nothing handled or moved", results)
    if not done:
        statuses = Counter(r.status for r in results if r.status not in _FINAL)
        why = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        result = BlobResult(item.name, KEPT, f"not every event is done ({why})", results)
        result.retry = RETRY in statuses
        _log(result)
        return result
    target = REPLAYED_PREFIX + item.name
    try:
        store.write_blob(container, target, stored.data)
        store.delete_blob(container, item.name, etag=stored.etag)
    except StorageError as exc:
        # Handling is idempotent: the next run reads the blob again and finds nothing to do.
        result = BlobResult(item.name, KEPT, f"events done, but not moved: {exc}", results)
        result.retry = True
    else:
        result = BlobResult(item.name, MOVED, "every event handled or ignored", results, target)
    _log(result)
    return result


def _replay_record(record: Mapping, service: RetierService, dry_run: bool) -> EventResult:
    info = {
        name: record[key]
        for key in record
        if (name := _DEAD_LETTER_INFO.get(str(key).lower())) is not None
    }
    try:
        event, model = decode_record(record)
    except InvalidRecord as exc:
        raw_id = record.get("id")
        return EventResult(raw_id if isinstance(raw_id, str) else None, None, INVALID, str(exc))
    result = EventResult(model.id, model.subject, "", "", info)
    if dry_run:
        settings = service.settings
        try:
            blob_event = events.parse_event(
                event, account=settings.account_name, containers=settings.containers or None
            )
        except events.IgnoredEvent as exc:
            result.status, result.reason = IGNORED, exc.reason
        except events.InvalidEvent as exc:
            result.status, result.reason = INVALID, exc.reason
        else:
            ignored = _ignored_at_no_cost(blob_event.blob, service)
            if ignored:
                result.status, result.reason = IGNORED, ignored
            else:
                result.status = WOULD_HANDLE
                result.reason = "the function's code path would act on it"
        return result
    outcome = service.handle_event(event)
    result.status, result.reason, result.outcome = outcome.status, outcome.reason, outcome.to_dict()
    return result


def _ignored_at_no_cost(blob: str, service: RetierService) -> str | None:
    """Why the service ignores this blob's event without a storage call, in its own words; None
    when it would list or tier something. (A volume's event waits for its manifest's; a name that
    is no duplicity object is never touched; metadata stays unless RETIER_METADATA_TIER is set.)"""
    name = names.parse(blob)
    if name.kind is Kind.UNKNOWN:
        return "not a duplicity object"
    if name.kind is Kind.VOLUME:
        return VOLUME_WAITS
    if name.kind is Kind.MANIFEST and not name.par2:
        return None
    if not service.settings.policy.metadata_tier:
        return "metadata stays as uploaded"
    return None


def _malformed(name: str, reason: str) -> BlobResult:
    logger.info("dead-letter blob %s left alone: %s", name, reason)
    return BlobResult(name, MALFORMED, reason)


def _log(result: BlobResult) -> None:
    # The command prints every blob's fate; the log line is for -v and for callers' logs.
    logger.info("dead-letter blob %s %s: %s", result.name, result.fate, result.reason)
