#!/usr/bin/env python3
"""A loopback TCP proxy that delays every HTTP request by a fixed time, as a distant Azure region would.

Azurite answers in about a millisecond over loopback, which hides what a round trip
costs. Put this proxy in front of it and each HTTP request waits `delay` (default
20 ms) before it is forwarded, so N sequential requests cost at least N x delay, while
requests on different connections wait side by side, as they would over a network.

Requests are found by following HTTP/1.1 framing on the client's side of each
connection (headers up to the blank line, then Content-Length bytes of body), so a
keep-alive connection that carries many requests is delayed once per request, and a
Blob Batch body that happens to contain "PUT /..." lines is delayed once, not per line.
A request with a chunked body (the storage SDK sends none) switches that connection to
a fallback: a read that starts with a method token starts a request. Responses pass
unchanged. It listens on 127.0.0.1 only and connects only to 127.0.0.1.

    proxy = DelayProxy(upstream_port=10000, delay=0.020)
    port = proxy.start()          # a free port; the loop runs in a background thread
    ...                           # connect to 127.0.0.1:port instead of 127.0.0.1:10000
    proxy.stop()

    python bench/delay_proxy.py --upstream-port 10000 --delay-ms 20   # standalone, until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
from pathlib import Path

from typing_extensions import Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from faultbed.proxy import LOOPBACK, proxied_connection_string

DEFAULT_DELAY = 0.020
_METHOD = re.compile(rb"^(GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH) ", re.ASCII)
_HEADER_END = b"\r\n\r\n"
_MAX_HEADER = 1 << 20


class _RequestFramer:
    """Split a client's byte stream into pieces, marking the ones that start an HTTP request."""

    def __init__(self) -> None:
        self.body_left = 0  # bytes of the current request's body still to come
        self.in_headers = False
        self.headers = b""
        self.fallback = (
            False  # chunked body seen: start a request at any read that begins with a method
        )

    def split(self, data: bytes) -> list[tuple[bool, bytes]]:
        if self.fallback:
            return [(bool(_METHOD.match(data)), data)]
        pieces: list[tuple[bool, bytes]] = []
        pos = 0
        while pos < len(data):
            if self.body_left:
                take = min(self.body_left, len(data) - pos)
                pieces.append((False, data[pos : pos + take]))
                self.body_left -= take
                pos += take
                continue
            starts = not self.in_headers
            if starts:
                self.in_headers, self.headers = True, b""
            seen = len(self.headers)
            self.headers += data[pos:]
            end = self.headers.find(_HEADER_END, max(0, seen - 3))
            if end < 0:
                if len(self.headers) > _MAX_HEADER:
                    self.fallback = True
                pieces.append((starts, data[pos:]))
                break
            used = end + len(_HEADER_END) - seen  # bytes of `data` that finish the headers
            pieces.append((starts, data[pos : pos + used]))
            pos += used
            self.in_headers = False
            self.body_left, chunked = _body_length(self.headers[: end + 2])
            if chunked:
                self.fallback = True
                if pos < len(data):
                    pieces.append((False, data[pos:]))
                break
        return pieces


def _body_length(head: bytes) -> tuple[int, bool]:
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value.strip() or 0)
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


class DelayProxy:
    """A delaying proxy to 127.0.0.1:`upstream_port`, running its own event loop in a thread."""

    def __init__(self, upstream_port: int, delay: float = DEFAULT_DELAY, port: int = 0):
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = port
        self.requests = 0  # HTTP requests forwarded (and delayed)
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle (any thread) ----------------------------------------------------------------
    def start(self) -> int:
        """Start listening; return the port."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="delay-proxy", daemon=True
        )
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self.port

    def stop(self) -> None:
        if not self._loop:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection_string(self, azurite_connection_string: str) -> str:
        """`azurite_connection_string` with its BlobEndpoint pointed at this proxy."""
        return proxied_connection_string(azurite_connection_string, self.port)

    # -- the loop's side -----------------------------------------------------------------------
    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port, backlog=512)
        return self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        upstream_writer = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                LOOPBACK, self.upstream_port
            )
            requests = asyncio.create_task(self._requests(client_reader, upstream_writer))
            responses = asyncio.create_task(self._responses(upstream_reader, client_writer))
            # Either side closing ends the connection (HTTP clients do not half-close).
            _done, pending = await asyncio.wait(
                {requests, responses}, return_when=asyncio.FIRST_COMPLETED
            )
            for other in pending:
                other.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (the stream protocol reports a cancelled handler as an error)
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
            self._tasks.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = _RequestFramer()
        while data := await reader.read(1 << 16):
            for starts_request, piece in framer.split(data):
                if starts_request:
                    self.requests += 1
                    await asyncio.sleep(self.delay)
                writer.write(piece)
            await writer.drain()

    @staticmethod
    async def _responses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream-port",
        type=int,
        default=10000,
        help="Azurite's blob port on 127.0.0.1 (default 10000)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=DEFAULT_DELAY * 1000,
        help="delay per request (default 20)",
    )
    args = parser.parse_args()
    proxy = DelayProxy(args.upstream_port, args.delay_ms / 1000, args.port)
    port = proxy.start()
    print(
        f"127.0.0.1:{port} -> 127.0.0.1:{args.upstream_port}, +{args.delay_ms:g} ms per request (Ctrl-C stops)",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(f"{proxy.requests} requests on {proxy.connections} connections")


if __name__ == "__main__":
    main()
