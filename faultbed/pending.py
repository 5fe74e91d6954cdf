"""A stand-in for Azure's hours-long rehydration, which Azurite completes at once.

`RehydrationDelayStandIn` is a `FaultProxy` (it injects no faults unless given rates) that
forwards every request to Azurite and then rewrites Azurite's real List Blobs answers, so the
storage SDK parses Azure's wire format, not a Python object made up by a test:

- after a Set Blob Tier that carries `x-ms-rehydrate-priority` (plain or inside a Blob Batch),
  the blob lists as Azure shows an in-place rehydration: `AccessTier` Archive, `ArchiveStatus`
  `rehydrate-pending-to-<tier>`, `RehydratePriority` Standard or High;
- after a Copy Blob that carries `x-ms-rehydrate-priority` (a copy out of Archive), the
  destination lists as Azure shows it: the same, plus `CopyStatus` pending
  (https://learn.microsoft.com/azure/storage/blobs/archive-rehydrate-overview: "its tier will be
  set to Archive" until the data is read; `x-ms-copy-status: pending` for an asynchronous copy);
- a later Set Blob Tier with High priority on a pending blob raises it to High, as Azure allows
  (never back to Standard).

Each pending blob stays pending for `pending_listings` listings that show it (None: until
`complete()`). Every priority that reached Azurite is logged in `priority_requests`, so a test
can assert which blobs were asked for High, not just where they ended.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from faultbed import http1
from faultbed.proxy import FaultProxy, RequestInfo, _batch_subrequests

_BLOB = re.compile(rb"<Blob>.*?</Blob>", re.DOTALL)
_NAME = re.compile(rb"<Name>(.*?)</Name>", re.DOTALL)
_PRIORITY = re.compile(rb"x-ms-rehydrate-priority:\s*(\w+)", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3})")
_REWRITTEN = (
    "AccessTier",
    "AccessTierInferred",
    "ArchiveStatus",
    "RehydratePriority",
    "CopyStatus",
)


@dataclass(frozen=True)
class PriorityRequest:
    """A Set Blob Tier or Copy Blob that asked for a rehydration priority, as Azurite took it."""

    container: str
    blob: str
    tier: str
    priority: str
    operation: str  # "set-tier" or "copy"


@dataclass
class _Pending:
    tier: str
    priority: str
    copy: bool
    listings_left: int | None


class RehydrationDelayStandIn(FaultProxy):
    """Stands in for Azure's pending rehydration (in place and by copy) in front of Azurite."""

    def __init__(self, upstream_port: int, *, pending_listings: int | None = None, **kwargs):
        super().__init__(upstream_port, **kwargs)
        self.pending_listings = pending_listings
        self.priority_requests: list[PriorityRequest] = []
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._pending_lock = threading.Lock()

    def pending(self, container: str | None = None) -> dict[str, str]:
        """Blob -> priority of every blob still shown pending (in `container`)."""
        with self._pending_lock:
            return {
                b: p.priority
                for (c, b), p in self._pending.items()
                if container is None or c == container
            }

    def finish_after(self, listings: int) -> None:
        """From now on, every pending blob (those pending now too) finishes after `listings`
        more listings that show it."""
        with self._pending_lock:
            self.pending_listings = listings
            for p in self._pending.values():
                p.listings_left = listings

    def complete(self, container: str | None = None, names=None) -> None:
        """Let these blobs (default: all) list as Azurite has them: rehydrated."""
        with self._pending_lock:
            for key in list(self._pending):
                if (container is None or key[0] == container) and (
                    names is None or key[1] in names
                ):
                    del self._pending[key]

    # -- the proxy's side -------------------------------------------------------------------
    def _forward(self, request: http1.Message) -> http1.Message:
        response = super()._forward(request)
        info = RequestInfo.of(request)
        if info.operation == "list" and response.status == 200 and info.container:
            return self._rewrite_listing(info.container, response)
        if not 200 <= response.status < 300:
            return response
        if info.operation == "set-tier":
            priority = request.header("x-ms-rehydrate-priority")
            if priority and info.container and info.blob:
                tier = request.header("x-ms-access-tier") or ""
                self._asked(info.container, info.blob, tier, priority, copy=False)
        elif info.operation == "batch":
            self._batch(request, response)
        elif info.operation == "put-blob" and request.header("x-ms-copy-source"):
            priority = request.header("x-ms-rehydrate-priority")
            if priority and info.container and info.blob:
                tier = request.header("x-ms-access-tier") or "Hot"
                self._asked(info.container, info.blob, tier, priority, copy=True)
        return response

    def _batch(self, request: http1.Message, response: http1.Message) -> None:
        subs = _batch_subrequests(request) or []
        _, parts, _ = http1.split_multipart(request.body, http1.boundary(request))
        marker = http1.boundary(response)
        answers = http1.split_multipart(response.body, marker)[1] if marker else []
        for i, (sub, part) in enumerate(zip(subs, parts, strict=False)):
            found = _PRIORITY.search(part)
            status = _STATUS_LINE.search(answers[i]) if i < len(answers) else None
            if not (found and sub.container and sub.blob and status):
                continue
            if 200 <= int(status.group(1)) < 300:
                self._asked(sub.container, sub.blob, sub.tier or "", found.group(1).decode(), False)

    def _asked(self, container: str, blob: str, tier: str, priority: str, copy: bool) -> None:
        with self._pending_lock:
            self.priority_requests.append(
                PriorityRequest(container, blob, tier, priority, "copy" if copy else "set-tier")
            )
            known = self._pending.get((container, blob))
            if known is not None:
                if priority == "High":  # raised; a pending High is never lowered
                    known.priority = "High"
                return
            self._pending[(container, blob)] = _Pending(tier, priority, copy, self.pending_listings)

    def _rewrite_listing(self, container: str, response: http1.Message) -> http1.Message:
        def one(match: re.Match) -> bytes:
            blob_xml = match.group(0)
            name = _NAME.search(blob_xml)
            if not name:
                return blob_xml
            key = (container, name.group(1).decode("utf-8"))
            with self._pending_lock:
                p = self._pending.get(key)
                if p is None:
                    return blob_xml
                if p.listings_left is not None:
                    if p.listings_left <= 0:
                        del self._pending[key]
                        return blob_xml
                    p.listings_left -= 1
                tier, priority, copy = p.tier, p.priority, p.copy
            for element in _REWRITTEN:
                blob_xml = re.sub(
                    rf"<{element}>.*?</{element}>".encode(), b"", blob_xml, flags=re.DOTALL
                )
            shown = (
                b"<AccessTier>Archive</AccessTier><AccessTierInferred>false</AccessTierInferred>"
                + f"<ArchiveStatus>rehydrate-pending-to-{tier.lower()}</ArchiveStatus>".encode()
                + f"<RehydratePriority>{priority}</RehydratePriority>".encode()
                + (b"<CopyStatus>pending</CopyStatus>" if copy else b"")
            )
            return blob_xml.replace(b"</Properties>", shown + b"</Properties>", 1)

        body = _BLOB.sub(one, response.body)
        return http1.Message(response.start, list(response.headers), body, response.close)
