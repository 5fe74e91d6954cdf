"""Just enough HTTP/1.1 to sit between the storage SDK and Azurite: read, edit and write whole messages.

The fault proxy needs whole requests and responses (to answer instead of Azurite, to lose an
answer Azurite gave, or to rewrite one part of a Blob Batch answer), so it frames both sides of
each connection: headers up to the blank line, then a body by Content-Length, chunked encoding or,
for a response with neither, up to the end of the connection. A message is written back with a
Content-Length (a chunked body is forwarded decoded), which every HTTP/1.1 peer accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_LINE = 64 * 1024
MAX_HEADERS = 200
_HOP_BY_HOP = frozenset({"transfer-encoding", "content-length"})


class ProtocolError(Exception):
    """The peer sent something this module cannot frame."""


@dataclass
class Message:
    """One request or response: its first line, its headers in order, and its whole body."""

    start: str  # "PUT /acct/c/b?comp=tier HTTP/1.1" or "HTTP/1.1 202 Accepted"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False  # the peer will close (or must close) the connection after this message
    # A response with no body by definition (to HEAD; 1xx, 204, 304): its headers are written
    # as received, since a HEAD answer's Content-Length is the size of the blob.
    bodiless: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    # -- request line -------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ")[1]

    # -- status line --------------------------------------------------------------------------
    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])

    def to_bytes(self) -> bytes:
        lines = [self.start]
        if self.bodiless:
            lines += [f"{k}: {v}" for k, v in self.headers]
        else:
            lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("line too long")
    return line


def _head(stream: BinaryIO) -> tuple[str, list[tuple[str, str]]] | None:
    first = _line(stream)
    while first in (b"\r\n", b"\n"):  # tolerated between messages (RFC 9112 2.2)
        first = _line(stream)
    if not first:
        return None  # the peer closed the connection between messages
    if not first.endswith(b"\n"):
        raise ProtocolError("connection closed inside a message head")
    headers = []
    while True:
        line = _line(stream)
        if not line.endswith(b"\n"):
            raise ProtocolError("connection closed inside the headers")
        if line in (b"\r\n", b"\n"):
            break
        key, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        headers.append((key.strip(), value.strip()))
        if len(headers) > MAX_HEADERS:
            raise ProtocolError("too many headers")
    return first.decode("latin-1").rstrip("\r\n"), headers


def _exactly(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ProtocolError(f"connection closed after {len(data)} of {n} body bytes")
    return data


def _chunked(stream: BinaryIO) -> bytes:
    body = bytearray()
    while True:
        size_line = _line(stream)
        if not size_line.endswith(b"\n"):
            raise ProtocolError("connection closed inside a chunk size")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while _line(stream) not in (b"\r\n", b"\n", b""):  # trailers: dropped
                pass
            return bytes(body)
        body += _exactly(stream, size)
        _line(stream)  # the CRLF after the chunk


def _wants_close(version: str, headers: Message) -> bool:
    connection = (headers.header("Connection") or "").lower()
    return "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)


def read_request(stream: BinaryIO) -> Message | None:
    """The next request on a client connection, or None when the client closed it."""
    head = _head(stream)
    if head is None:
        return None
    message = Message(*head)
    if (message.header("Transfer-Encoding") or "").lower().endswith("chunked"):
        message.body = _chunked(stream)
    else:
        message.body = _exactly(stream, int(message.header("Content-Length") or 0))
    message.close = _wants_close(message.start.rsplit(" ", 1)[-1], message)
    return message


def read_response(stream: BinaryIO, method: str) -> Message:
    """The response to a `method` request (HEAD answers have headers only)."""
    head = _head(stream)
    if head is None:
        raise ProtocolError("upstream closed the connection before answering")
    message = Message(*head)
    status = message.status
    message.close = _wants_close(message.start.split(" ", 1)[0], message)
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        message.bodiless = True
        return message
    if (message.header("Transfer-Encoding") or "").lower().endswith("chunked"):
        message.body = _chunked(stream)
    elif message.header("Content-Length") is not None:
        message.body = _exactly(stream, int(message.header("Content-Length")))
    else:
        message.body = stream.read()  # delimited by the end of the connection
        message.close = True
    return message


# -- multipart/mixed (Blob Batch) -----------------------------------------------------------------
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def boundary(message: Message) -> str | None:
    match = _BOUNDARY.search(message.header("Content-Type") or "")
    return match.group(1) if match else None


def split_multipart(body: bytes, boundary_: str) -> tuple[bytes, list[bytes], bytes]:
    """(preamble, parts, epilogue) of a multipart body; each part is its bytes between delimiters."""
    delimiter = b"--" + boundary_.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise ProtocolError("multipart body without parts")
    preamble, parts, last = pieces[0], pieces[1:-1], pieces[-1]
    if not last.startswith(b"--"):
        raise ProtocolError("multipart body without a closing delimiter")
    return preamble, parts, last


def join_multipart(preamble: bytes, parts: list[bytes], epilogue: bytes, boundary_: str) -> bytes:
    delimiter = b"--" + boundary_.encode("latin-1")
    return delimiter.join([preamble, *parts, epilogue])


def part_sections(part: bytes) -> tuple[bytes, bytes]:
    """A batch part is MIME headers, a blank line, then an HTTP message: split the two."""
    head, sep, inner = part.partition(b"\r\n\r\n")
    if not sep:
        raise ProtocolError("batch part without a blank line after its headers")
    return head + sep, inner
