"""Parse Event Grid and CloudEvents BlobCreated events into the one blob each names, or say why not."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "BLOB_CREATED",
    "BlobCreated",
    "EventError",
    "IgnoredEvent",
    "InvalidEvent",
    "account_from_topic",
    "parse_event",
    "parse_events",
    "restore_ready",
]

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
# Raised when Set Blob Tier changes a blob's tier, and so when an in-place rehydration completes
# (a copy's completion raises BlobCreated): learn.microsoft.com/azure/storage/blobs/
# archive-rehydrate-overview#handle-an-event-on-blob-rehydration
BLOB_TIER_CHANGED = "Microsoft.Storage.BlobTierChanged"
_ONLINE_TIERS = frozenset({"hot", "cool", "cold"})

SCHEMA_EVENTGRID = "eventgrid"
SCHEMA_CLOUDEVENTS = "cloudevents"

_SUBJECT_PREFIX = "/blobServices/default/containers/"
_SUBJECT_BLOBS = "blobs/"

# Azure's limits; anything longer is not a real event, and capping keeps hostile
# payloads from being copied around or echoed into logs.
_MAX_BLOB_NAME = 1024
_MAX_URL = 16 * 1024  # a 1,024-character name, every character 4 UTF-8 bytes, each %XX
_MAX_SUBJECT = _MAX_URL
_MAX_SHORT = 1024  # id, times, api, eTag, sequencer, resource ids
_MAX_CONTENT_LENGTH = 2**63 - 1  # Azure's Int64; also keeps to_dict() JSON-serialisable

_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER_RE = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_SPECIAL_CONTAINERS = frozenset({"$root", "$web"})
_STORAGE_SERVICES = frozenset({"blob", "dfs"})
_DNS_ZONE_RE = re.compile(r"z[0-9]{2}")  # <acct>.z12.blob.storage.azure.net endpoints
_TOPIC_RE = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+"
    r"/providers/Microsoft\.Storage/storageAccounts/([^/]+)/?",
    re.IGNORECASE,
)


class EventError(ValueError):
    """An event this app will not act on; ``reason`` says why, without secrets."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidEvent(EventError):
    """Malformed, hostile or self-contradictory: retrying cannot help (HTTP 400)."""


class IgnoredEvent(EventError):
    """Well-formed, but not for this app: another type, account or container."""


@dataclass(frozen=True)
class BlobCreated:
    """The facts of one BlobCreated event that the rest of retier needs."""

    id: str
    schema: str
    event_time: str | None
    account: str
    container: str
    blob: str
    url: str
    api: str | None
    content_length: int | None
    blob_type: str | None
    access_tier: str | None
    e_tag: str | None
    sequencer: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_events(payload: Any) -> list[Mapping]:
    """Return the events in a decoded request body: one event object or an array of them."""
    if isinstance(payload, Mapping):
        return [payload]
    if isinstance(payload, (list, tuple)):
        return list(payload)
    raise InvalidEvent(f"expected an event object or an array of events, got {_type_name(payload)}")


def account_from_topic(topic: str) -> str | None:
    """Return the lower-case storage account named by an ARM resource id, or None."""
    if not isinstance(topic, str) or len(topic) > _MAX_SHORT:
        return None
    match = _TOPIC_RE.fullmatch(topic)
    return match.group(1).lower() if match else None


def parse_event(
    event: Mapping,
    *,
    account: str | None = None,
    containers: Collection[str] | None = None,
) -> BlobCreated:
    """Validate one decoded event and return the blob it created.

    Raises InvalidEvent when the event is malformed or contradicts itself and
    IgnoredEvent when it is well-formed but not a BlobCreated event for
    ``account`` and one of ``containers``; an empty or None ``account`` or
    ``containers`` means any. Both compare case-insensitively.
    """
    if isinstance(containers, str):
        raise TypeError("containers must be a collection of container names, not one str")
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"an event must be a JSON object, got {_type_name(event)}")

    schema = _detect_schema(event)
    if schema == SCHEMA_CLOUDEVENTS:
        type_key, time_key, origin_key = "type", "time", "source"
        specversion = event.get("specversion")
        if specversion != "1.0":
            raise InvalidEvent(f"unsupported CloudEvents specversion {_show(specversion)}")
    else:
        type_key, time_key, origin_key = "eventType", "eventTime", "topic"

    event_id = _required_str(event, "id", _MAX_SHORT)
    event_type = _required_str(event, type_key, _MAX_SHORT)
    subject = _required_str(event, "subject", _MAX_SUBJECT, allow_empty=True)
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"event data must be a JSON object, got {_type_name(data)}")
    if schema == SCHEMA_CLOUDEVENTS:
        origin = _required_str(event, origin_key, _MAX_SHORT)  # CloudEvents 1.0 requires source
    else:
        origin = _optional_str(event, origin_key, _MAX_SHORT)  # set by Event Grid on delivery only
    event_time = _optional_str(event, time_key, _MAX_SHORT)

    if event_type != BLOB_CREATED:
        raise IgnoredEvent(f"event type {_show(event_type)} is not {BLOB_CREATED}")

    url = _required_str(data, "url", _MAX_URL, where="data.")
    url_account, container, raw_name, blob = _parse_blob_url(url)
    _check_subject(subject, container, raw_name, blob)

    origin_account = account_from_topic(origin) if origin is not None else None
    if origin_account is not None and origin_account != url_account:
        raise InvalidEvent(
            f"{origin_key} names storage account {_show(origin_account)} "
            f"but data.url names {_show(url_account)}"
        )

    if account and account.lower() != url_account:
        raise IgnoredEvent(
            f"event for storage account {url_account}, this app serves {account.lower()}"
        )
    if containers:
        allowed = {c.lower() for c in containers}
        if container not in allowed:
            raise IgnoredEvent(
                f"container {container} is not one of the configured containers "
                f"({', '.join(sorted(allowed))})"
            )

    content_length = data.get("contentLength")
    if content_length is not None and (
        type(content_length) is not int  # bool is an int subclass, and not a length
        or not 0 <= content_length <= _MAX_CONTENT_LENGTH
    ):
        raise InvalidEvent(
            f"data.contentLength must be an integer from 0 to 2**63-1, got {_show(content_length)}"
        )

    return BlobCreated(
        id=event_id,
        schema=schema,
        event_time=event_time,
        account=url_account,
        container=container,
        blob=blob,
        url=url,
        api=_optional_str(data, "api", _MAX_SHORT, where="data."),
        content_length=content_length,
        blob_type=_optional_str(data, "blobType", _MAX_SHORT, where="data."),
        access_tier=_optional_str(data, "accessTier", _MAX_SHORT, where="data."),
        e_tag=_optional_str(data, "eTag", _MAX_SHORT, where="data."),
        sequencer=_optional_str(data, "sequencer", _MAX_SHORT, where="data."),
    )


def restore_ready(event: Any) -> tuple[str, str, str] | None:
    """(container, blob, how) when `event` says a volume came online out of Archive, else None.

    BlobTierChanged from Archive to an online tier is an in-place rehydration that completed;
    BlobCreated by CopyBlob of a duplicity volume is a copy that completed (Azure raises it once
    the data is in the destination). Only a hint for an alert: it never changes what is done.
    """
    from retier import names  # pure, like this module

    try:
        if not isinstance(event, Mapping):
            return None
        cloud = _detect_schema(event) == SCHEMA_CLOUDEVENTS
        event_type = event.get("type" if cloud else "eventType")
        data = event.get("data")
        if not isinstance(data, Mapping) or event_type not in (BLOB_TIER_CHANGED, BLOB_CREATED):
            return None
        url = data.get("url")
        if not isinstance(url, str) or len(url) > _MAX_URL:
            return None
        _, container, _, blob = _parse_blob_url(url)
    except EventError:
        return None
    if event_type == BLOB_TIER_CHANGED:
        before, after = data.get("previousTier"), data.get("accessTier")
        if (
            isinstance(before, str)
            and isinstance(after, str)
            and before.lower() == "archive"
            and after.lower() in _ONLINE_TIERS
        ):
            return container, blob, f"rehydrated in place to {after.capitalize()}"
        return None
    if data.get("api") == "CopyBlob" and names.parse(blob).kind is names.Kind.VOLUME:
        return container, blob, "copied online"
    return None


def _detect_schema(event: Mapping) -> str:
    is_cloud = "specversion" in event
    is_grid = "eventType" in event
    if is_cloud and is_grid:
        raise InvalidEvent("event has both specversion (CloudEvents) and eventType (Event Grid)")
    if is_cloud:
        return SCHEMA_CLOUDEVENTS
    if is_grid:
        return SCHEMA_EVENTGRID
    raise InvalidEvent("event has neither specversion (CloudEvents 1.0) nor eventType (Event Grid)")


def _parse_blob_url(url: str) -> tuple[str, str, str, str]:
    """Split data.url into (account, container, raw blob name, decoded blob name).

    Host-style ``https://<account>.blob.<suffix>/<container>/<name>`` (or
    ``.dfs.``, or ``<account>.zNN.blob.<suffix>``) is what Azure sends.
    Path-style ``http://<host>/<account>/<container>/<name>`` is the emulator's
    shape and is recognised only when the host cannot be a host-style endpoint:
    an IP literal, ``localhost``, or a single-label name such as ``azurite``.
    """
    # urlsplit silently drops tabs and newlines and strips leading controls:
    # refuse them first so the name we act on is the name that was sent.
    if any(unicodedata.category(ch) == "Cc" for ch in url) or url != url.strip():
        raise InvalidEvent("data.url contains control characters or surrounding whitespace")
    if "?" in url or "#" in url:
        # Event Grid never sends a query; one here could be a SAS token, so the
        # url is not echoed either.
        raise InvalidEvent("data.url has a query string or fragment; blob event URLs carry neither")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidEvent("data.url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidEvent(f"data.url scheme {_show(parts.scheme)} is not http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidEvent("data.url must not carry user information")
    if not host:
        raise InvalidEvent("data.url has no host")

    path = parts.path
    if not path.startswith("/"):
        raise InvalidEvent("data.url has no path")
    path = path[1:]

    if is_path_style_host(host):
        raw_account, sep, path = path.partition("/")
        if not sep:
            raise InvalidEvent("path-style data.url needs /<account>/<container>/<blob>")
        account = _decode(raw_account, "account").lower()
    else:
        account = _account_from_host(host)
    if not _ACCOUNT_RE.fullmatch(account):
        raise InvalidEvent(f"{_show(account)} is not a valid storage account name")

    raw_container, sep, raw_name = path.partition("/")
    container = _decode(raw_container, "container")
    if not _is_container_name(container):
        raise InvalidEvent(f"{_show(container)} is not a valid container name")
    if not sep or not raw_name:
        raise InvalidEvent("data.url names no blob")
    blob = _decode(raw_name, "blob name")
    _check_blob_name(blob)
    return account, container, raw_name, blob


def is_path_style_host(host: str) -> bool:
    """True for the emulator's path-style endpoints (`127.0.0.1`, `localhost`, `azurite`): /<account>/... ."""
    if host == "localhost" or "." not in host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _account_from_host(host: str) -> str:
    labels = host.split(".")
    if len(labels) >= 3 and labels[1] in _STORAGE_SERVICES and all(labels):
        return labels[0]
    if (
        len(labels) >= 4
        and _DNS_ZONE_RE.fullmatch(labels[1])
        and labels[2] in _STORAGE_SERVICES
        and all(labels)
    ):
        return labels[0]
    raise InvalidEvent(f"data.url host {_show(host)} is not a blob or dfs storage endpoint")


def _decode(raw: str, what: str) -> str:
    try:
        # unquote, not unquote_plus: "+" is a literal plus in a blob path.
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidEvent(f"data.url {what} is not valid percent-encoded UTF-8") from None


def _is_container_name(name: str) -> bool:
    return name in _SPECIAL_CONTAINERS or _CONTAINER_RE.fullmatch(name) is not None


def _check_blob_name(blob: str) -> None:
    if not blob:
        raise InvalidEvent("data.url names no blob")
    if len(blob) > _MAX_BLOB_NAME:
        raise InvalidEvent(f"blob name is {len(blob)} characters; Azure allows {_MAX_BLOB_NAME}")
    if any(unicodedata.category(ch) == "Cc" for ch in blob):
        raise InvalidEvent(f"blob name {_show(blob)} contains control characters")
    # HTTP clients normalise "." and ".." path segments away, so such a name
    # cannot be addressed reliably: acting on it could touch a different blob.
    if any(segment in (".", "..") for segment in blob.split("/")):
        raise InvalidEvent(f"blob name {_show(blob)} has a '.' or '..' path segment")


def _check_subject(subject: str, container: str, raw_name: str, blob: str) -> None:
    """Require subject to name the same container and blob as data.url.

    Azure puts the name in subject unencoded while data.url is percent-encoded;
    either spelling is accepted.
    """
    if not subject.startswith(_SUBJECT_PREFIX):
        raise InvalidEvent(f"subject {_show(subject)} does not start with {_SUBJECT_PREFIX}")
    subject_container, sep, rest = subject[len(_SUBJECT_PREFIX) :].partition("/")
    if not sep or not rest.startswith(_SUBJECT_BLOBS):
        raise InvalidEvent(f"subject {_show(subject)} does not name a blob")
    subject_name = rest[len(_SUBJECT_BLOBS) :]
    if subject_container != container:
        raise InvalidEvent(
            f"subject container {_show(subject_container)} differs from data.url container "
            f"{_show(container)}"
        )
    if subject_name not in (blob, raw_name):
        raise InvalidEvent(
            f"subject blob {_show(subject_name)} differs from data.url blob {_show(blob)}"
        )


def _required_str(
    obj: Mapping, key: str, limit: int, *, where: str = "", allow_empty: bool = False
) -> str:
    if key not in obj:
        raise InvalidEvent(f"event has no {where}{key}")
    value = _optional_str(obj, key, limit, where=where)
    if value is None or (not value and not allow_empty):
        kind = "a string" if allow_empty else "a non-empty string"
        raise InvalidEvent(f"{where}{key} must be {kind}")
    return value


def _optional_str(obj: Mapping, key: str, limit: int, *, where: str = "") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{where}{key} must be a string, got {_type_name(value)}")
    if len(value) > limit:
        raise InvalidEvent(f"{where}{key} is {len(value)} characters; at most {limit} accepted")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, from a \udXXX JSON escape
            raise InvalidEvent(f"{where}{key} is not valid Unicode text") from None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def _show(value: Any, limit: int = 80) -> str:
    """A short printable form of a value for a reason, so hostile input stays small."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**30:
        return repr(value)
    return _type_name(value)
