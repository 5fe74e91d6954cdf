"""A loopback proxy between retier's storage client and Azurite that injects Azure's failures at seeded rates.

Azurite never throttles, never drops a connection and never fails part of a Blob Batch;
Azure Storage does all three. `FaultProxy` sits on 127.0.0.1 in front of Azurite and, for
each HTTP request, decides from a seeded random draw whether to:

- answer in Azurite's place with Azure's error (XML body, `x-ms-error-code`): 503 ServerBusy
  and 500 OperationTimedOut, the two answers Azure documents for throttling; 500 InternalError;
  429 (the Python storage SDK does not retry a 429 itself, so retier's own handling sees it);
- reset the connection (RST) before forwarding the request, or after Azurite has carried it
  out and answered, so the answer is lost: the client cannot tell whether it happened;
- stall, before forwarding or after Azurite answered, until the client's read timeout fires;
- refuse one sub-request of a Blob Batch: that sub-request is not carried out (the proxy points
  it at a blob that does not exist) and its part of the multipart answer says 503 ServerBusy
  or 500 InternalError, while the other sub-requests take effect as usual.

The draw for a request depends only on the seed, what the request asks (method, path, query
and, for a batch, its sub-requests) and how many times the same request was seen before, so a
run is reproducible even when requests travel on several connections at once.

It counts the faults it injected by type, and logs every Set Blob Tier that reached Azurite
(a plain one or a sub-request of a batch) with the blob, the tier and Azurite's answer, so a
test can assert which blobs were ever asked to change tier, not just where they ended.

    with FaultProxy(upstream_port, seed=7, rates={SERVER_BUSY: 0.05, RESET_AFTER: 0.02}) as proxy:
        conn = proxy.connection_string(azurite_connection_string)
        ...                                   # retier's BlobStore on `conn`
    proxy.injected                            # Counter({'server_busy': 3, 'reset_after': 1})
    proxy.tier_changes                        # [TierChange(container, blob, tier, batch, status)]

It listens on 127.0.0.1 only and forwards to 127.0.0.1 only. Each forwarded request uses a
new upstream connection, so an idle keep-alive connection that Azurite closed can never
become a failure nobody injected (`unexpected` counts any failure the proxy did not choose).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import re
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import parse_qsl, unquote, urlsplit

from typing_extensions import Self

from faultbed import http1

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Fault types. Answered in Azurite's place (nothing forwarded):
SERVER_BUSY = "server_busy"  # 503 ServerBusy: Azure's throttling answer
TIMED_OUT = "timed_out"  # 500 OperationTimedOut: Azure's other throttling answer
INTERNAL_ERROR = "internal_error"  # 500 InternalError
TOO_MANY_REQUESTS = "too_many_requests"  # 429: not retried by the SDK, so retier decides
# The connection:
RESET_BEFORE = "reset_before"  # RST instead of forwarding
RESET_AFTER = "reset_after"  # forwarded and carried out, then RST instead of the answer
STALL_BEFORE = "stall_before"  # nothing forwarded, no answer until the client gives up
STALL_AFTER = "stall_after"  # carried out, answer held until the client gives up
# One sub-request of a Blob Batch not carried out, its part of the answer an error:
BATCH_PART_SERVER_BUSY = "batch_part_server_busy"
BATCH_PART_INTERNAL_ERROR = "batch_part_internal_error"

FAULTS = (
    SERVER_BUSY,
    TIMED_OUT,
    INTERNAL_ERROR,
    TOO_MANY_REQUESTS,
    RESET_BEFORE,
    RESET_AFTER,
    STALL_BEFORE,
    STALL_AFTER,
    BATCH_PART_SERVER_BUSY,
    BATCH_PART_INTERNAL_ERROR,
)
BATCH_PART_FAULTS = frozenset({BATCH_PART_SERVER_BUSY, BATCH_PART_INTERNAL_ERROR})
CARRIED_OUT = frozenset({RESET_AFTER, STALL_AFTER})  # Azurite did the work; the answer is lost

# Status, reason phrase, x-ms-error-code and message, as Azure Storage words them
# (https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes and
# .../blob-service-error-codes). Blob Storage documents no code for a 429.
_ANSWERS = {
    SERVER_BUSY: (
        503,
        "Service Unavailable",
        "ServerBusy",
        "Operations per second is over the account limit.",
    ),
    TIMED_OUT: (
        500,
        "Internal Server Error",
        "OperationTimedOut",
        "The operation could not be completed within the permitted time.",
    ),
    INTERNAL_ERROR: (
        500,
        "Internal Server Error",
        "InternalError",
        "The server encountered an internal error. Please retry the request.",
    ),
    TOO_MANY_REQUESTS: (
        429,
        "Too Many Requests",
        "ServerBusy",
        "The server is currently unable to receive requests. Please retry your request.",
    ),
    BATCH_PART_SERVER_BUSY: (
        503,
        "Service Unavailable",
        "ServerBusy",
        "The server is currently unable to receive requests. Please retry your request.",
    ),
    BATCH_PART_INTERNAL_ERROR: (
        500,
        "Internal Server Error",
        "InternalError",
        "The server encountered an internal error. Please retry the request.",
    ),
}


@dataclass(frozen=True)
class RequestInfo:
    """What a request asks of storage, read from its request line (path-style, as Azurite's)."""

    method: str
    operation: str  # list, set-tier, batch, container-properties, put-blob, get-blob, ...
    container: str | None
    blob: str | None
    key: str  # what the request asks, without what changes on every send (dates, ids)

    @classmethod
    def of(cls, request: http1.Message, subrequests: list[SubRequest] | None = None) -> RequestInfo:
        parts = urlsplit(request.target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        segments = parts.path.lstrip("/").split("/", 2)  # account, container, blob
        container = unquote(segments[1]) if len(segments) > 1 and segments[1] else None
        blob = unquote(segments[2]) if len(segments) > 2 and segments[2] else None
        comp, method = query.get("comp"), request.method
        if comp == "batch":
            operation = "batch"
        elif comp == "tier":
            operation = "set-tier"
        elif comp == "list":
            operation = "list"
        elif comp:
            operation = f"{method.lower()}-{comp}"
        elif blob is None and query.get("restype") == "container":
            operation = "container-properties" if method in ("GET", "HEAD") else method.lower()
        elif blob is not None:
            operation = f"{method.lower()}-blob"
        else:
            operation = method.lower()
        stable = sorted((k, v) for k, v in query.items() if k != "timeout")
        key = f"{method} {parts.path} {stable}"
        if subrequests:
            key += " " + " ".join(f"{s.blob}={s.tier}" for s in subrequests)
        return cls(method, operation, container, blob, key)


class StandIn:
    """What Azure would answer where Azurite cannot: a FaultProxy's `stand_in` may answer a request
    in Azurite's place (`answer`) or rewrite Azurite's answer (`rewrite`). Subclasses say in their
    name and docstring which Azure behaviour they stand in for (faultbed.smart.SmartTierStandIn)."""

    def answer(self, info: RequestInfo, request: http1.Message) -> http1.Message | None:
        return None

    def rewrite(
        self, info: RequestInfo, request: http1.Message, response: http1.Message
    ) -> http1.Message:
        return response


@dataclass(frozen=True)
class SubRequest:
    """One Set Blob Tier inside a Blob Batch request."""

    container: str | None
    blob: str | None
    tier: str | None


@dataclass(frozen=True)
class TierChange:
    """A Set Blob Tier that reached Azurite, and Azurite's answer (None: the proxy lost it)."""

    container: str
    blob: str
    tier: str
    batch: bool
    status: int | None


class FaultProxy:
    """A fault-injecting proxy to 127.0.0.1:`upstream_port`; one thread per client connection.

    `rates` maps fault types (FAULTS) to the probability that a request gets that fault; they
    must sum to at most 1. `fault_filter(info)` may limit faults to some requests. A stall holds
    the connection `stall_seconds` (set it above the client's read timeout), then resets it.
    Refusing a batch sub-request means signing it again: that needs `account` (name, key),
    which `in_front_of` takes from an Azurite connection string.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        account: tuple[str, str] | None = None,
        seed: int = 0,
        rates: Mapping[str, float] | None = None,
        stall_seconds: float = 2.0,
        fault_filter: Callable[[RequestInfo], bool] | None = None,
        port: int = 0,
        stand_in: StandIn | None = None,
    ):
        self.upstream_port = upstream_port
        self._account = account
        self.seed = seed
        self.rates = self._checked(rates or {})
        self.stall_seconds = stall_seconds
        self.fault_filter = fault_filter
        self.port = port
        self.stand_in = stand_in
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # by operation
        self.tier_changes: list[TierChange] = []
        self.refused: list[SubRequest] = []  # batch sub-requests refused (not carried out)
        self.unexpected: list[str] = []  # failures the proxy did not choose (must stay empty)
        self.log: list[
            tuple[str, str | None]
        ] = []  # (request key, fault or None), in arrival order
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._clients: set[socket.socket] = set()

    @classmethod
    def in_front_of(cls, connection_string: str, **kwargs) -> FaultProxy:
        """A proxy for the Azurite (on 127.0.0.1) that `connection_string` names."""
        fields = _connection_fields(connection_string)
        account = (fields["accountname"], fields["accountkey"])
        return cls(endpoint_port(connection_string), account=account, **kwargs)

    def _checked(self, rates: Mapping[str, float]) -> dict[str, float]:
        unknown = set(rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault types: {sorted(unknown)}")
        if any(r < 0 for r in rates.values()) or sum(rates.values()) > 1 + 1e-9:
            raise ValueError("fault rates must be >= 0 and sum to at most 1")
        if self._account is None and any(rates.get(f) for f in BATCH_PART_FAULTS):
            raise ValueError("refusing batch sub-requests needs the account key (in_front_of)")
        return {f: float(rates.get(f, 0.0)) for f in FAULTS}

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """New rates from the next request on (e.g. none while a test arranges its blobs)."""
        checked = self._checked(rates)
        with self._lock:
            self.rates = checked

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(256)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        thread.start()
        self._threads.add(thread)
        return self.port

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(timeout=10)
        if self._listener:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection_string(self, azurite_connection_string: str) -> str:
        """`azurite_connection_string` with its BlobEndpoint pointed at this proxy."""
        return proxied_connection_string(azurite_connection_string, self.port)

    # -- what happened ------------------------------------------------------------------------
    def tier_change_counts(self, container: str | None = None) -> Counter[str]:
        """How many Set Blob Tier requests for each blob reached Azurite."""
        with self._lock:
            return Counter(
                c.blob for c in self.tier_changes if container is None or c.container == container
            )

    # -- the proxy's side ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True
            )
            with self._lock:
                self._clients.add(client)
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        reset = False
        try:
            while not self._stopping.is_set():
                request = http1.read_request(reader)
                if request is None:
                    return
                if not self._one(client, request):
                    reset = True
                    return
                if request.close:
                    return
        except (OSError, http1.ProtocolError):
            pass  # the client went away (a timed-out client closes its end)
        except Exception as exc:  # a bug here must show in the test, not vanish with the thread
            logger.exception("fault proxy: connection handler failed")
            with self._lock:
                self.unexpected.append(f"handler: {exc!r}")
            reset = True
        finally:
            reader.close()
            if reset:
                _reset(client)
            else:
                client.close()
            with self._lock:
                self._clients.discard(client)
                self._threads.discard(threading.current_thread())

    def _one(self, client: socket.socket, request: http1.Message) -> bool:
        """Handle one request; False when the connection must be reset."""
        subrequests = _batch_subrequests(request)
        info = RequestInfo.of(request, subrequests)
        with self._lock:
            self.requests[info.operation] += 1
        fault, rng = self._choose(info)
        if fault in _ANSWERS and fault not in BATCH_PART_FAULTS:
            self._count(fault)
            client.sendall(azure_error(request, *_ANSWERS[fault]).to_bytes())
            return True
        if fault == RESET_BEFORE:
            self._count(fault)
            return False
        if fault == STALL_BEFORE:
            self._count(fault)
            self._stopping.wait(self.stall_seconds)
            return False
        if self.stand_in is not None:
            answer = self.stand_in.answer(info, request)
            if answer is not None:
                self._log_tier_changes(info, request, subrequests, answer, None)
                client.sendall(answer.to_bytes())
                return True
        refused = None
        if fault in BATCH_PART_FAULTS and subrequests:
            refused = rng.randrange(len(subrequests))
            request = _refuse_subrequest(request, refused, self._account)
        try:
            response = self._forward(request)
        except (OSError, http1.ProtocolError) as exc:
            with self._lock:
                self.unexpected.append(f"{info.operation} {info.key[:120]}: {exc!r}")
            logger.warning("fault proxy: upstream failed on %s: %r", info.operation, exc)
            return False
        self._log_tier_changes(info, request, subrequests, response, refused)
        if fault in CARRIED_OUT:
            self._count(fault)
            if fault == STALL_AFTER:
                self._stopping.wait(self.stall_seconds)
            return False
        if refused is not None:
            response = _fail_part(response, refused, *_ANSWERS[fault], request=request)
            self._count(fault)
        if self.stand_in is not None:
            response = self.stand_in.rewrite(info, request, response)
        client.sendall(response.to_bytes())
        return True

    def _choose(self, info: RequestInfo) -> tuple[str | None, random.Random]:
        with self._lock:
            n = self._seen[info.key]
            self._seen[info.key] += 1
            rates = self.rates
        # str seeds are hashed with SHA-512: the same on every run, whatever PYTHONHASHSEED is.
        rng = random.Random(f"{self.seed}|{info.key}|{n}")
        chosen = None
        if self.fault_filter is None or self.fault_filter(info):
            draw, edge = rng.random(), 0.0
            for fault in FAULTS:
                if fault in BATCH_PART_FAULTS and info.operation != "batch":
                    continue
                edge += rates[fault]
                if draw < edge:
                    chosen = fault
                    break
        with self._lock:
            self.log.append((info.key, chosen))
        return chosen, rng

    def _count(self, fault: str) -> None:
        with self._lock:
            self.injected[fault] += 1

    def _forward(self, request: http1.Message) -> http1.Message:
        with socket.create_connection((LOOPBACK, self.upstream_port), timeout=120) as upstream:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(request.to_bytes())
            with upstream.makefile("rb") as reader:
                return http1.read_response(reader, request.method)

    def _log_tier_changes(self, info, request, subrequests, response, refused) -> None:
        changes: list[TierChange] = []
        if info.operation == "set-tier" and info.container and info.blob:
            tier = request.header("x-ms-access-tier") or ""
            changes.append(TierChange(info.container, info.blob, tier, False, response.status))
        elif info.operation == "batch" and subrequests:
            statuses = _part_statuses(response)
            for i, sub in enumerate(subrequests):
                if i == refused or sub.blob is None:
                    continue
                status = statuses[i] if i < len(statuses) else None
                changes.append(TierChange(sub.container, sub.blob, sub.tier or "", True, status))
        with self._lock:
            self.tier_changes.extend(changes)
            if refused is not None:
                self.refused.append(subrequests[refused])


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def azure_error(
    request: http1.Message, status: int, reason: str, code: str, message: str
) -> http1.Message:
    """Azure Storage's error answer: XML body, x-ms-error-code, request id, echoed version."""
    request_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc)
    headers = [
        ("Content-Type", "application/xml"),
        ("Server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"),
        ("x-ms-request-id", request_id),
        ("x-ms-version", request.header("x-ms-version") or "2021-12-02"),
        ("x-ms-error-code", code),
        ("Date", format_datetime(now, usegmt=True)),
    ]
    client_request_id = request.header("x-ms-client-request-id")
    if client_request_id:
        headers.append(("x-ms-client-request-id", client_request_id))
    body = b""
    if request.method != "HEAD":
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{code}</Code><Message>{message}\nRequestId:{request_id}\nTime:{stamp}"
            "</Message></Error>"
        ).encode()
    return http1.Message(f"HTTP/1.1 {status} {reason}", headers, body)


# -- Blob Batch ---------------------------------------------------------------------------------
_SUB_REQUEST_LINE = re.compile(
    rb"^(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.[01]\r?$", re.MULTILINE
)
_TIER_HEADER = re.compile(rb"^x-ms-access-tier:\s*(?P<tier>\S+)\s*$", re.MULTILINE | re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (?P<status>\d{3})", re.MULTILINE)


def _batch_subrequests(request: http1.Message) -> list[SubRequest] | None:
    if request.method != "POST" or "comp=batch" not in request.target:
        return None
    marker = http1.boundary(request)
    if not marker:
        return None
    try:
        _, parts, _ = http1.split_multipart(request.body, marker)
    except http1.ProtocolError:
        return None
    subs = []
    for part in parts:
        line = _SUB_REQUEST_LINE.search(part)
        tier = _TIER_HEADER.search(part)
        if not line:
            subs.append(SubRequest(None, None, None))
            continue
        segments = urlsplit(line["target"].decode("latin-1")).path.lstrip("/").split("/", 2)
        subs.append(
            SubRequest(
                unquote(segments[1]) if len(segments) > 1 else None,
                unquote(segments[2]) if len(segments) > 2 else None,
                tier["tier"].decode("latin-1") if tier else None,
            )
        )
    return subs


def _refuse_subrequest(
    request: http1.Message, index: int, account: tuple[str, str]
) -> http1.Message:
    """The batch request with sub-request `index` pointed at a blob that does not exist.

    Azurite, like Azure, checks each sub-request's own SharedKey signature and fails the whole
    batch if one is wrong, and the batch's signature covers its Content-Length. So the blob
    name keeps its length (its last character becomes "~", which duplicity never writes) and
    the sub-request is signed again with the account key; the batch itself is unchanged.
    """
    marker = http1.boundary(request)
    preamble, parts, epilogue = http1.split_multipart(request.body, marker)
    mime_head, inner = http1.part_sections(parts[index])
    head, sep, body = inner.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    path, qsep, query = target.partition("?")
    # Same length, and still valid percent-encoding if the name ended in an escaped character.
    tail = 3 if re.search(r"%[0-9A-Fa-f]{2}\Z", path) else 1
    path = path[:-tail] + ("!" if path.endswith("~") else "~") * tail
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    signature = _shared_key(method, f"{path}{qsep}{query}", headers, account)
    headers = [(k, signature if k.lower() == "authorization" else v) for k, v in headers]
    head = "\r\n".join(
        [f"{method} {path}{qsep}{query} {version}", *(f"{k}: {v}" for k, v in headers)]
    )
    parts[index] = mime_head + head.encode("latin-1") + sep + body
    new_body = http1.join_multipart(preamble, parts, epilogue, marker)
    if len(new_body) != len(request.body):
        raise http1.ProtocolError("a refused sub-request changed the batch's length")
    return http1.Message(request.start, list(request.headers), new_body, request.close)


def _shared_key(
    method: str, target: str, headers: list[tuple[str, str]], account: tuple[str, str]
) -> str:
    """`SharedKey <account>:<signature>` for a request, as Azure Storage documents the scheme.

    https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key (path-style
    endpoints such as Azurite's repeat the account name in the canonicalized resource).
    """
    name, key = account
    values = {k.lower(): v for k, v in headers if v}
    if values.get("content-length") == "0":
        del values["content-length"]
    standard = [
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ]
    parts = urlsplit(target)
    to_sign = method + "\n" + "".join(values.get(h, "") + "\n" for h in standard)
    to_sign += "".join(f"{k}:{v}\n" for k, v in sorted(values.items()) if k.startswith("x-ms-"))
    to_sign += f"/{name}{parts.path}"
    for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True)):
        to_sign += f"\n{k.lower()}:{v}"
    digest = hmac.new(base64.b64decode(key), to_sign.encode("utf-8"), hashlib.sha256).digest()
    return f"SharedKey {name}:{base64.b64encode(digest).decode()}"


def _part_statuses(response: http1.Message) -> list[int | None]:
    marker = http1.boundary(response)
    if response.status != 202 or not marker:
        return []
    try:
        _, parts, _ = http1.split_multipart(response.body, marker)
    except http1.ProtocolError:
        return []
    statuses: list[int | None] = []
    for part in parts:
        match = _STATUS_LINE.search(part)
        statuses.append(int(match["status"]) if match else None)
    return statuses


def _fail_part(
    response: http1.Message,
    index: int,
    status: int,
    reason: str,
    code: str,
    message: str,
    *,
    request: http1.Message,
) -> http1.Message:
    """The batch answer with part `index` replaced by Azure's error answer for a sub-request."""
    marker = http1.boundary(response)
    preamble, parts, epilogue = http1.split_multipart(response.body, marker)
    mime_head, _inner = http1.part_sections(parts[index])
    error = azure_error(request, status, reason, code, message)
    parts[index] = mime_head + error.to_bytes() + b"\r\n"
    body = http1.join_multipart(preamble, parts, epilogue, marker)
    return http1.Message(response.start, list(response.headers), body, response.close)


# -- connection strings ---------------------------------------------------------------------------
def proxied_connection_string(connection_string: str, port: int) -> str:
    """Replace the port of the BlobEndpoint (which must be on 127.0.0.1) with `port`."""
    parts, found = [], False
    for item in connection_string.split(";"):
        key, sep, value = item.partition("=")
        if key.strip().lower() == "blobendpoint":
            match = re.fullmatch(r"(https?://)(127\.0\.0\.1|localhost)(:\d+)?(/.*)?", value.strip())
            if not match:
                raise ValueError("the proxy only fronts a BlobEndpoint on 127.0.0.1")
            value = f"{match.group(1)}{LOOPBACK}:{port}{match.group(4) or ''}"
            found = True
        parts.append(f"{key}{sep}{value}" if sep else item)
    if not found:
        raise ValueError("connection string has no BlobEndpoint")
    return ";".join(parts)


def _connection_fields(connection_string: str) -> dict[str, str]:
    fields = {}
    for item in connection_string.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def endpoint_port(connection_string: str) -> int:
    """The port of a BlobEndpoint on 127.0.0.1."""
    for item in connection_string.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() == "blobendpoint":
            match = re.fullmatch(
                r"https?://(?:127\.0\.0\.1|localhost):(\d+)(?:/.*)?", value.strip()
            )
            if match:
                return int(match.group(1))
    raise ValueError("connection string has no BlobEndpoint on 127.0.0.1:<port>")
