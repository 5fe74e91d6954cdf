"""Local stand-in for Event Grid: watch containers, POST a BlobCreated event for each new or replaced blob.

Azurite sends no events and has no change feed, so `retier bridge` polls: it lists each container
every `interval` seconds, keeps the name -> ETag of every blob it has seen, and for each blob
that appears or is replaced (same name, new ETag) POSTs the event Azure would push to the
Functions host's Event Grid webhook. What it copies from Event Grid (retier.eventgrid holds the
documented contract):

- one event per request, as a JSON array of one (push delivery's default), Event Grid schema,
  headers `aeg-event-type: Notification` and `Content-Type: application/json`;
- 200-204 is delivered; other answers and no answer (refused, 30 s without one) are retried on
  Event Grid's back-off, compressed by `backoff_scale`, up to `max_attempts`; answers Event
  Grid never retries (400, 403, 413 for an Azure Function endpoint) end at once. An event that
  runs out is dead: reported, and optionally written where Event Grid would dead-letter it;
- a redelivery is the same event (same id), as Event Grid's is.

Ordering: first attempts go out one at a time in the order the blobs appeared (within one listing,
duplicity's upload order). A failed event waits for its own retry and does not hold back the
events after it: like Event Grid, which does not promise order either. retier does not need it,
since only a manifest's event moves anything, and it lists its whole set.

Cost: each poll is one List Blobs request per 5,000 blobs under `prefix`; memory is one name and
one ETag per blob seen (about 200 bytes, twice that during a poll: bench/bench_bridge_memory.py).
Narrow a big container with `prefix`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from retier import eventgrid
from retier.emulate import blob_created_event, upload_order
from retier.errors import StorageError
from retier.events import BLOB_CREATED

if TYPE_CHECKING:  # the storage SDK stays unloaded until the bridge runs (`retier --help`)
    from retier.storage import BlobItem

logger = logging.getLogger(__name__)

WEBHOOK_URL = "http://localhost:7071/runtime/webhooks/eventgrid?functionName=retier_blob_created"
HEADERS = {"Content-Type": "application/json", "aeg-event-type": "Notification"}
# The Functions host is an "AzureFunction" endpoint in the deployment, so its no-retry codes apply.
ENDPOINT_TYPE = "AzureFunction"
DEFAULT_INTERVAL = 2.0
# 10 s, 30 s, 1 min, 5 min ... become 0.1 s, 0.3 s, 0.6 s, 3 s ...: the retry path in seconds.
DEFAULT_BACKOFF_SCALE = 0.01

# What happened to one attempt.
DELIVERED = "delivered"
RETRYING = "retrying"
DEAD = "dead"


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to one POST: an HTTP status, or None when there was none."""

    status: int | None
    detail: str = ""  # why there was no answer, or the start of an error body


Transport = Callable[[str, bytes, Mapping[str, str], float], Answer]


def http_transport(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST with the standard library; a refused connection or a timeout is an Answer(None)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return Answer(response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read(200).decode("utf-8", "replace").strip()
        return Answer(exc.code, " ".join(detail.split())[:120])
    except urllib.error.URLError as exc:
        return Answer(None, str(exc.reason))
    except TimeoutError:
        return Answer(None, f"no answer in {timeout:g} s")
    except (ConnectionError, OSError) as exc:  # reset mid-answer, and the like
        return Answer(None, type(exc).__name__)


def diff(
    seen: Mapping[str, str | None], items: Iterable[BlobItem]
) -> tuple[list[BlobItem], dict[str, str | None]]:
    """Blobs that are new or replaced (new ETag) since `seen`, in upload order; and the new `seen`.

    Names no longer listed drop out of `seen` (a blob deleted and uploaded again is new again).
    """
    now: dict[str, str | None] = {}
    changed = []
    for item in items:
        now[item.name] = item.etag
        if item.name not in seen or seen[item.name] != item.etag:
            changed.append(item)
    return sorted(changed, key=upload_order), now


def wire_event(*, account: str, container: str, item: BlobItem, url: str) -> dict:
    """The BlobCreated event exactly as Event Grid puts it on the wire (Event Grid schema).

    The envelope comes from azure-eventgrid's EventGridEvent (id, eventTime, field names); its
    `serialize()` leaves out `metadataVersion`, which the model marks read-only because Event
    Grid stamps it on delivery, so it is added here as Event Grid adds it ("1"). The data is
    Blob Storage's, as retier.emulate documents it, with the ETag quoted as Azure sends it.
    """
    # Here, not at the top: the CLI's parser reads this module's defaults for every command.
    from azure.eventgrid import EventGridEvent

    documented = blob_created_event(account=account, container=container, item=item, url=url)
    etag = documented["data"].get("eTag")
    if etag and not etag.startswith('"'):
        # A listing gives the bare ETag; Blob Storage's events carry it quoted, as in its header.
        documented["data"]["eTag"] = f'"{etag}"'
    event = EventGridEvent(
        subject=documented["subject"],
        event_type=BLOB_CREATED,
        data=documented["data"],
        data_version="",
        topic=documented["topic"],
        event_time=item.last_modified or datetime.now(timezone.utc),
    )
    wire = event.serialize()
    wire["metadataVersion"] = "1"
    return wire


@dataclass
class Delivery:
    """One event on its way to the receiver, with its own retry schedule."""

    container: str
    blob: str
    event: dict
    seq: int
    published: datetime  # when it was queued: Event Grid's publishTime
    due: float  # monotonic time of the next attempt
    attempts: int = 0
    last_status: int | None = None
    last_detail: str = ""

    @property
    def event_id(self) -> str:
        return self.event["id"]


@dataclass(frozen=True)
class Attempt:
    """One POST and what came of it (one printed line)."""

    container: str
    blob: str
    event_id: str
    attempt: int
    status: int | None
    detail: str
    outcome: str  # DELIVERED, RETRYING or DEAD
    retry_in: float | None = None  # seconds until the next attempt, when RETRYING
    dead_letter: str | None = None  # file written, when DEAD and a directory was given

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "blob": self.blob,
            "id": self.event_id,
            "attempt": self.attempt,
            "status": self.status,
            "detail": self.detail,
            "outcome": self.outcome,
            "retry_in": self.retry_in,
            "dead_letter": self.dead_letter,
        }


@dataclass
class Tally:
    polls: int = 0
    queued: int = 0  # events queued (new or replaced blobs)
    delivered: int = 0
    redeliveries: int = 0  # attempts after the first
    dead: int = 0
    list_failures: int = 0


@dataclass
class _Watch:
    container: str
    seen: dict[str, str | None] = field(default_factory=dict)
    primed: bool = False  # the first listing done (without from_start it sends nothing)
    missing: bool = False  # the container did not exist at the last poll


class Bridge:
    """Polls containers and delivers their BlobCreated events; every edge is injectable for tests.

    `store` needs `account_name`, `blob_url(container, name)` and `list_blobs(container, prefix)`
    (retier.storage.BlobStore). `clock` is monotonic seconds; `wall_clock` the UTC time stamped
    on dead-letter records. `on_attempt` is called once per POST.
    """

    def __init__(
        self,
        store,
        containers: Sequence[str],
        *,
        url: str = WEBHOOK_URL,
        prefix: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        from_start: bool = False,
        max_attempts: int = eventgrid.DEFAULT_MAX_DELIVERY_ATTEMPTS,
        backoff_scale: float = DEFAULT_BACKOFF_SCALE,
        timeout: float = eventgrid.RESPONSE_TIMEOUT_SECONDS,
        dead_letter_dir: Path | None = None,
        transport: Transport = http_transport,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_attempt: Callable[[Attempt], None] | None = None,
    ):
        if not containers:
            raise ValueError("name at least one container")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff_scale < 0 or interval <= 0:
            raise ValueError("backoff_scale must be >= 0 and interval > 0")
        self.store = store
        self.watches = [_Watch(c) for c in dict.fromkeys(containers)]
        self.url = url
        self.prefix = prefix or None
        self.interval = interval
        self.from_start = from_start
        self.max_attempts = max_attempts
        self.backoff_scale = backoff_scale
        self.timeout = timeout
        self.dead_letter_dir = dead_letter_dir
        self.transport = transport
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_attempt = on_attempt or (lambda attempt: None)
        self.pending: list[Delivery] = []
        self.tally = Tally()
        self._seq = 0
        self._next_poll = clock()

    # -- watching -----------------------------------------------------------------------------
    def poll(self) -> list[Delivery]:
        """List every container once and queue an event for each new or replaced blob."""
        queued = []
        self.tally.polls += 1
        for watch in self.watches:
            # The first listing is "now" (nothing to send) unless from_start.
            send = watch.primed or self.from_start
            try:
                changed, seen = self._diff(watch, send)
            except StorageError as exc:
                if exc.status == 404:
                    # Not created yet (duplicity creates it on its first run): empty until it is.
                    if not watch.missing:
                        logger.warning("container %s does not exist (yet)", watch.container)
                    watch.missing = True
                    changed, seen = [], {}
                elif exc.transient:
                    # `seen` stays as it was: the next poll compares against the last full listing.
                    self.tally.list_failures += 1
                    logger.warning("listing %s failed, next poll retries: %s", watch.container, exc)
                    continue
                else:
                    raise
            else:
                watch.missing = False
            watch.seen, watch.primed = seen, True
            for item in changed:
                queued.append(self._queue(watch.container, item))
        self._next_poll = self.clock() + self.interval
        return queued

    def _diff(self, watch: _Watch, send: bool) -> tuple[list[BlobItem], dict[str, str | None]]:
        # Streamed page by page: only `seen` (old and new) and the changes are held in memory.
        listing = self.store.list_blobs(watch.container, self.prefix)
        if send:
            return diff(watch.seen, listing)
        return [], {item.name: item.etag for item in listing}

    def _queue(self, container: str, item: BlobItem) -> Delivery:
        event = wire_event(
            account=self.store.account_name,
            container=container,
            item=item,
            url=self.store.blob_url(container, item.name),
        )
        self._seq += 1
        delivery = Delivery(
            container=container,
            blob=item.name,
            event=event,
            seq=self._seq,
            published=self.wall_clock(),
            due=self.clock(),
        )
        self.pending.append(delivery)
        self.tally.queued += 1
        return delivery

    # -- delivering ---------------------------------------------------------------------------
    def deliver_due(self) -> list[Attempt]:
        """Send, one at a time, every queued event whose attempt is due (oldest due first)."""
        attempts = []
        while True:
            now = self.clock()
            due = [d for d in self.pending if d.due <= now]
            if not due:
                return attempts
            attempts.append(self.deliver(min(due, key=lambda d: (d.due, d.seq))))

    def deliver(self, delivery: Delivery) -> Attempt:
        """One POST of one event; reschedules it, or takes it off the queue (delivered or dead)."""
        body = json.dumps([delivery.event]).encode("utf-8")
        answer = self.transport(self.url, body, HEADERS, self.timeout)
        delivery.attempts += 1
        delivery.last_status, delivery.last_detail = answer.status, answer.detail
        if delivery.attempts > 1:
            self.tally.redeliveries += 1
        if eventgrid.is_delivered(answer.status):
            return self._finish(delivery, DELIVERED)
        retried = eventgrid.is_retried(answer.status, endpoint=ENDPOINT_TYPE)
        if not retried or delivery.attempts >= self.max_attempts:
            return self._finish(delivery, DEAD)
        wait = eventgrid.backoff(delivery.attempts) * self.backoff_scale
        delivery.due = self.clock() + wait
        attempt = self._attempt(delivery, RETRYING, retry_in=wait)
        self.on_attempt(attempt)
        return attempt

    def _finish(self, delivery: Delivery, outcome: str) -> Attempt:
        self.pending.remove(delivery)
        written = None
        if outcome == DELIVERED:
            self.tally.delivered += 1
        else:
            self.tally.dead += 1
            if self.dead_letter_dir is not None:
                written = str(self.write_dead_letter(delivery))
        attempt = self._attempt(delivery, outcome, dead_letter=written)
        self.on_attempt(attempt)
        return attempt

    def _attempt(self, delivery: Delivery, outcome: str, **extra) -> Attempt:
        return Attempt(
            container=delivery.container,
            blob=delivery.blob,
            event_id=delivery.event_id,
            attempt=delivery.attempts,
            status=delivery.last_status,
            detail=delivery.last_detail,
            outcome=outcome,
            **extra,
        )

    def dead_letter_record(self, delivery: Delivery) -> dict:
        # Event Grid's documented sample dead-letters a not-retried answer (404 after 1 attempt)
        # with reason MaxDeliveryAttemptsExceeded too.
        return eventgrid.dead_letter_record(
            delivery.event,
            reason=eventgrid.MAX_DELIVERY_ATTEMPTS_EXCEEDED,
            attempts=delivery.attempts,
            last_outcome=eventgrid.delivery_outcome(delivery.last_status),
            publish_time=delivery.published,
            last_attempt_time=self.wall_clock(),
        )

    def write_dead_letter(self, delivery: Delivery) -> Path:
        """Write the event where Event Grid would: `<dir>/RETIER-BLOB-CREATED/y/m/d/h/<guid>.json`."""
        assert self.dead_letter_dir is not None
        path = self.dead_letter_dir / eventgrid.dead_letter_blob_name(
            eventgrid.SUBSCRIPTION, self.wall_clock()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([self.dead_letter_record(delivery)], indent=2) + "\n")
        return path

    # -- the loop -----------------------------------------------------------------------------
    def step(self) -> list[Attempt]:
        """Poll if it is time, then deliver whatever is due."""
        if self.clock() >= self._next_poll:
            self.poll()
        return self.deliver_due()

    def seconds_to_next(self) -> float:
        """How long nothing needs doing: until the next poll or the next due retry."""
        wake = min([self._next_poll, *(d.due for d in self.pending)])
        return max(0.0, wake - self.clock())

    def run(self, stop: threading.Event | None = None) -> Tally:
        """Poll and deliver until `stop` is set (or KeyboardInterrupt, which propagates)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.step()
            stop.wait(self.seconds_to_next())
        return self.tally

    @property
    def idle(self) -> bool:
        """Nothing waiting to be delivered (every blob seen so far is delivered or dead)."""
        return not self.pending
