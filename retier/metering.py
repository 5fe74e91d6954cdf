"""Count what a client really sends: HTTP round trips and billable storage transactions."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from azure.core.pipeline.transport import RequestsTransport

_SUBREQUEST = re.compile(rb"^Content-ID:", re.IGNORECASE | re.MULTILINE)


@dataclass
class Meter:
    """Totals, updated by CountingTransport for every request it sends."""

    round_trips: int = 0
    billable: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, operation: str, billable: int) -> None:
        with self._lock:
            self.round_trips += 1
            self.billable += billable
            self.by_operation[operation] = self.by_operation.get(operation, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self.round_trips = 0
            self.billable = 0
            self.by_operation = {}


def _operation(request) -> tuple[str, int]:
    url = request.url
    if "comp=batch" in url:
        body = request.body if isinstance(request.body, (bytes, bytearray)) else b""
        subrequests = len(_SUBREQUEST.findall(body))
        # Azure bills a batch as one transaction plus one per sub-request.
        return "batch", 1 + subrequests
    if "comp=list" in url:
        return "list", 1
    if "comp=tier" in url:
        return "set-tier", 1
    if "restype=container" in url and request.method == "GET":
        return "container-properties", 1
    return request.method.lower(), 1


class CountingTransport(RequestsTransport):
    """The SDK's default transport, counting each request on the wire into `meter`."""

    def __init__(self, meter: Meter, **kwargs):
        super().__init__(**kwargs)
        self.meter = meter

    def send(self, request, **kwargs):
        operation, billable = _operation(request)
        self.meter.record(operation, billable)
        return super().send(request, **kwargs)
