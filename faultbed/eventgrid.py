"""Event Grid stand-in: delivers BlobCreated events to the Function's entry point the way Event Grid does.

Event Grid pushes one event per delivery, in no promised order, at least once (a delivered
event may come again), and treats an exception in the Function (the host answers 500) or any
answer but 200-204 as a failed attempt: it tries again after the documented back-off
(`retier.eventgrid.backoff`), until the subscription's maxDeliveryAttempts or the event's time
to live runs out, and then writes the event to the dead-letter container as a JSON array blob
named `<SUBSCRIPTION>/<yyyy>/<m>/<d>/<h>/<guid>.json` with Event Grid's added fields
(`retier.eventgrid.dead_letter_record`). 400 and 413 are dead-lettered at once.

`EventGridStandIn` does all of that on a virtual clock: a retry "10 s later" happens as soon as
nothing else is due, so hours of Event Grid back-off take no wall time (or `time_scale` of it).
It records every delivery and how it ended: handled, ignored with the Function's reason, or
dead-lettered with Event Grid's reason and the Function's last error.

    stand_in = EventGridStandIn(function_endpoint(), seed=3, shuffle=True, duplicate_rate=0.1,
                                max_delivery_attempts=5, dead_letter=dead_letter_container)
    stand_in.publish(events)
    report = stand_in.run()          # report.ends() -> Counter({'handled': 9, 'ignored': 14})

Contract sources: https://learn.microsoft.com/azure/event-grid/delivery-and-retry (retry
schedule, codes not retried, 30 s answer limit, "duplicates may still be received"),
.../manage-event-delivery (dead-letter blobs). The reason written for a 400/413 answer,
`UndeliverableDueToHttpBadRequest`, is not in the documentation: it is what users report
seeing (https://stackoverflow.com/questions/52173869).
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from retier import eventgrid

logger = logging.getLogger(__name__)

# How a delivery ends.
HANDLED = "handled"
IGNORED = "ignored"
DEAD_LETTERED = "dead-lettered"
ENDS = (HANDLED, IGNORED, DEAD_LETTERED)

UNDELIVERABLE_BAD_REQUEST = "UndeliverableDueToHttpBadRequest"


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered one delivery attempt: an HTTP status (None: no answer in 30 s)."""

    status: int | None
    outcome: Mapping[str, Any] | None = None  # retier's outcome, when the Function returned one
    detail: str = ""  # the Function's error, for a failed attempt


Endpoint = Callable[[Mapping[str, Any]], Answer]


@dataclass
class Attempt:
    number: int
    at: float  # virtual seconds since the stand-in's start
    status: int | None
    seconds: float  # wall time the endpoint took
    detail: str


@dataclass
class Delivery:
    """One event's way through Event Grid: the original, or a duplicate Event Grid sent again."""

    event: Mapping[str, Any]
    published_at: float
    duplicate: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    end: str | None = None
    reason: str = ""
    outcome: Mapping[str, Any] | None = None
    dead_letter_blob: str | None = None

    @property
    def subject(self) -> str:
        return str(self.event.get("subject", ""))


@dataclass
class Report:
    deliveries: list[Delivery]
    filtered: int  # events the subscription's filter kept out (never delivered)
    virtual_seconds: float

    def ends(self) -> Counter[str]:
        return Counter(d.end or "unended" for d in self.deliveries)

    @property
    def unended(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.end not in ENDS]

    @property
    def without_reason(self) -> list[Delivery]:
        """Deliveries that were ignored or dead-lettered without saying why."""
        return [d for d in self.deliveries if d.end in (IGNORED, DEAD_LETTERED) and not d.reason]

    @property
    def dead_lettered(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.end == DEAD_LETTERED]

    @property
    def attempts(self) -> list[Attempt]:
        return [a for d in self.deliveries for a in d.attempts]

    def handling_seconds(self) -> list[float]:
        return [a.seconds for a in self.attempts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "deliveries": len(self.deliveries),
            "duplicates": sum(d.duplicate for d in self.deliveries),
            "attempts": len(self.attempts),
            "failed_attempts": sum(not eventgrid.is_delivered(a.status) for a in self.attempts),
            "ends": dict(self.ends()),
            "filtered": self.filtered,
            "virtual_hours": round(self.virtual_seconds / 3600, 3),
        }


@dataclass(frozen=True)
class SubjectFilter:
    """The subscription's filter on `subject`: begins/ends with, and StringContains (any of)."""

    begins_with: str = ""
    ends_with: str = ""
    contains: tuple[str, ...] = ()

    def __call__(self, event: Mapping[str, Any]) -> bool:
        # Event Grid compares case-insensitively.
        subject = str(event.get("subject", "")).lower()
        return (
            subject.startswith(self.begins_with.lower())
            and subject.endswith(self.ends_with.lower())
            and (not self.contains or any(c.lower() in subject for c in self.contains))
        )


# The deployment's manifest-only filter (README: --advanced-filter subject StringContains .manifest).
MANIFESTS_ONLY = SubjectFilter(contains=(".manifest",))


class EventGridStandIn:
    """Event Grid's push delivery to one endpoint, on a virtual clock; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        seed: int = 0,
        shuffle: bool = False,
        duplicate_rate: float = 0.0,
        max_delivery_attempts: int = eventgrid.DEFAULT_MAX_DELIVERY_ATTEMPTS,
        event_ttl_minutes: int = eventgrid.DEFAULT_EVENT_TTL_MINUTES,
        concurrency: int = 1,
        time_scale: float = 0.0,
        dead_letter=None,  # azure.storage.blob.ContainerClient, or None to drop (no destination)
        subscription: str = eventgrid.SUBSCRIPTION,
        subject_filter: Callable[[Mapping[str, Any]], bool] | None = None,
        before_delivery: Callable[[Delivery], None] | None = None,
        start: datetime | None = None,
    ):
        if not 1 <= max_delivery_attempts <= 30:
            raise ValueError("maxDeliveryAttempts is 1..30")
        if not 1 <= event_ttl_minutes <= 1440:
            raise ValueError("eventTimeToLiveInMinutes is 1..1440")
        self.endpoint = endpoint
        self.rng = random.Random(seed)
        self.shuffle = shuffle
        self.duplicate_rate = duplicate_rate
        self.max_delivery_attempts = max_delivery_attempts
        self.ttl = event_ttl_minutes * 60
        self.concurrency = max(1, concurrency)
        self.time_scale = time_scale
        self.dead_letter = dead_letter
        self.subscription = subscription
        self.subject_filter = subject_filter
        # Called on the dispatching thread just before an event's first attempt: a test can
        # create the blob there, so that an event never arrives before its blob exists.
        self.before_delivery = before_delivery
        self.start = start or datetime.now(timezone.utc)
        self.now = 0.0
        self.deliveries: list[Delivery] = []
        self.filtered = 0
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = 0
        self._lock = threading.Lock()

    def wall(self, virtual: float) -> datetime:
        return self.start + timedelta(seconds=virtual)

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, events: Iterable[Mapping[str, Any]], *, delay: float = 0.0) -> None:
        """Events that happened `delay` virtual seconds from now, in the order given (unless shuffled)."""
        events = list(events)
        if self.shuffle:
            self.rng.shuffle(events)
        for event in events:
            if self.subject_filter is not None and not self.subject_filter(event):
                self.filtered += 1
                continue
            delivery = Delivery(event, published_at=self.now + delay)
            self.deliveries.append(delivery)
            self._schedule(self.now + delay, delivery)

    def _schedule(self, due: float, delivery: Delivery) -> None:
        heapq.heappush(self._queue, (due, self._seq, delivery))
        self._seq += 1

    # -- delivering ---------------------------------------------------------------------------
    def run(self) -> Report:
        """Deliver until every delivery has ended."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="event-grid") as pool:
            in_flight: dict[Future, Delivery] = {}
            while self._queue or in_flight:
                while (
                    len(in_flight) < self.concurrency
                    and self._queue
                    and self._queue[0][0] <= self.now
                ):
                    _, _, delivery = heapq.heappop(self._queue)
                    if self.before_delivery and not delivery.attempts and not delivery.duplicate:
                        self.before_delivery(delivery)
                    in_flight[pool.submit(self._attempt, delivery)] = delivery
                if in_flight:
                    done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    for future in done:
                        self._after(in_flight.pop(future), future.result())
                    continue
                due = self._queue[0][0]
                if self.time_scale:
                    time.sleep((due - self.now) * self.time_scale)
                self.now = due
        return Report(self.deliveries, self.filtered, self.now)

    def _attempt(self, delivery: Delivery) -> tuple[Answer, float]:
        started = time.perf_counter()
        try:
            answer = self.endpoint(delivery.event)
        except Exception as exc:  # an endpoint adapter bug still counts as a failed attempt
            logger.exception("event grid stand-in: endpoint raised")
            answer = Answer(500, None, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        if seconds > eventgrid.RESPONSE_TIMEOUT_SECONDS:
            # Event Grid stops waiting after 30 s: the attempt failed even if the work was done.
            answer = Answer(None, None, f"no answer in {eventgrid.RESPONSE_TIMEOUT_SECONDS} s")
        return answer, seconds

    def _after(self, delivery: Delivery, result: tuple[Answer, float]) -> None:
        answer, seconds = result
        number = len(delivery.attempts) + 1
        delivery.attempts.append(Attempt(number, self.now, answer.status, seconds, answer.detail))
        if eventgrid.is_delivered(answer.status):
            self._delivered(delivery, answer)
            return
        if not eventgrid.is_retried(answer.status):
            self._dead_letter(delivery, UNDELIVERABLE_BAD_REQUEST, answer)
        elif number >= self.max_delivery_attempts:
            self._dead_letter(delivery, eventgrid.MAX_DELIVERY_ATTEMPTS_EXCEEDED, answer)
        else:
            due = self.now + eventgrid.backoff(number)
            if due > delivery.published_at + self.ttl:
                self._dead_letter(delivery, eventgrid.TIME_TO_LIVE_EXCEEDED, answer)
            else:
                self._schedule(due, delivery)

    def _delivered(self, delivery: Delivery, answer: Answer) -> None:
        outcome = answer.outcome or {}
        status = outcome.get("status")
        if status in ("ignored", "invalid"):
            delivery.end, delivery.reason = IGNORED, str(outcome.get("reason") or "")
        else:
            delivery.end, delivery.reason = HANDLED, str(outcome.get("reason") or "delivered")
        delivery.outcome = answer.outcome
        # At least once: Event Grid may deliver an event it already delivered.
        if not delivery.duplicate and self.rng.random() < self.duplicate_rate:
            again = Delivery(delivery.event, published_at=self.now, duplicate=True)
            self.deliveries.append(again)
            self._schedule(self.now + self.rng.uniform(0, 180), again)

    def _dead_letter(self, delivery: Delivery, reason: str, answer: Answer) -> None:
        last = delivery.attempts[-1]
        delivery.end = DEAD_LETTERED
        delivery.reason = f"{reason}: {answer.detail or eventgrid.delivery_outcome(answer.status)}"
        if self.dead_letter is None:
            return  # no dead-letter destination: Event Grid drops the event
        record = eventgrid.dead_letter_record(
            delivery.event,
            reason=reason,
            attempts=len(delivery.attempts),
            last_outcome=eventgrid.delivery_outcome(answer.status),
            publish_time=self.wall(delivery.published_at),
            last_attempt_time=self.wall(last.at),
        )
        if answer.status is not None:
            record["lastHttpStatusCode"] = answer.status  # seen in real dead-letter records
        written = self.wall(last.at + eventgrid.DEAD_LETTER_DELAY_SECONDS)
        name = eventgrid.dead_letter_blob_name(self.subscription, written)
        self.dead_letter.upload_blob(name, json.dumps([record]).encode(), overwrite=False)
        delivery.dead_letter_blob = name


def read_dead_letters(container) -> list[tuple[str, dict[str, Any]]]:
    """Every (blob name, record) in a dead-letter container: each blob is a JSON array of records."""
    records = []
    for blob in container.list_blobs():
        for record in json.loads(container.download_blob(blob.name).readall()):
            records.append((blob.name, record))
    return records


# -- the Function's entry point -------------------------------------------------------------------
def to_function_event(event: Mapping[str, Any]):
    """The `azure.functions.EventGridEvent` the Functions host builds from an Event Grid event."""
    import azure.functions as func

    when = event.get("eventTime")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return func.EventGridEvent(
        id=event.get("id"),
        data=event.get("data"),
        topic=event.get("topic"),
        subject=event.get("subject"),
        event_type=event.get("eventType"),
        event_time=when,
        data_version=event.get("dataVersion"),
    )


def function_endpoint(handler: Callable | None = None) -> Endpoint:
    """The Function's entry point as the host runs it: an exception is a 500, a return a 200.

    `handler` defaults to `retier.functions.handle_grid_event`, which `function_app.
    retier_blob_created` calls, and which also returns retier's outcome (status and reason).
    """

    def call(event: Mapping[str, Any]) -> Answer:
        from retier.functions import handle_grid_event

        try:
            outcome = (handler or handle_grid_event)(to_function_event(event))
        except Exception as exc:  # noqa: BLE001 - the host answers 500 for any exception
            return Answer(500, None, f"{type(exc).__name__}: {exc}")
        return Answer(200, outcome if isinstance(outcome, Mapping) else None)

    return call


@contextmanager
def serving(service) -> Iterator:
    """Make the Function's entry point use `service` (the worker otherwise builds one from env).

    The Functions worker builds one RetierService per process (`service_from_environment`);
    the test bed builds its own, on a client that goes through the fault proxy with a short read
    timeout, and hands it to the entry point for the duration of the block.
    """
    from retier import functions

    saved = functions.service_from_environment
    functions.service_from_environment = lambda: service
    try:
        yield service
    finally:
        functions.service_from_environment = saved
