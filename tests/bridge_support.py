"""What the bridge tests share: Azure's documented sample event, and a stand-in for the Functions host.

Azure Functions Core Tools (`func start`) cannot be installed on this machine, so the nearest
thing to the host that runs here is `FunctionsHostStandIn`: an http.server that answers on the
host's Event Grid webhook the way the host's Event Grid extension does, and hands each event to
the registered Python function the way the worker does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)

# learn.microsoft.com/azure/event-grid/event-schema-blob-storage, "Event Grid event schema" tab,
# "Microsoft.Storage.BlobCreated event" (page dated 01/10/2024), copied verbatim: what Azure
# pushes for a new blob. The bridge's requests are checked against this, not against its own code.
DOCUMENTED_BLOB_CREATED = json.loads(
    r"""
[{
  "topic": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/my-storage-account",
  "subject": "/blobServices/default/containers/test-container/blobs/new-file.txt",
  "eventType": "Microsoft.Storage.BlobCreated",
  "eventTime": "2017-06-26T18:41:00.9584103Z",
  "id": "831e1650-001e-001b-66ab-eeb76e069631",
  "data": {
    "api": "PutBlockList",
    "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
    "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
    "eTag": "\"0x8D4BCC2E4835CD0\"",
    "contentType": "text/plain",
    "contentLength": 524288,
    "blobType": "BlockBlob",
    "url": "https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt",
    "sequencer": "00000000000004420000000000028963",
    "storageDiagnostics": {
      "batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"
    }
  },
  "dataVersion": "",
  "metadataVersion": "1"
}]
"""
)


def shape(value):
    """Key sets and value types, recursively: what two events must share to be the same schema."""
    if isinstance(value, dict):
        return {key: shape(v) for key, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def is_event_time(text: str) -> bool:
    """Event Grid's eventTime: ISO 8601 in UTC with a Z (Azure sends up to 7 fractional digits)."""
    if not text.endswith("Z"):
        return False
    whole, _, fraction = text[:-1].partition(".")
    try:
        datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return fraction == "" or (fraction.isdigit() and len(fraction) <= 7)


def load_functions() -> dict:
    """function_app.py's functions by name, indexed as the worker indexes them.

    A fresh module object each time: `FunctionApp.get_functions()` may run only once per app,
    and tests/test_function_app.py indexes the imported `function_app` itself.
    """
    spec = importlib.util.spec_from_file_location(
        f"function_app_{uuid.uuid4().hex[:8]}", ROOT / "function_app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {fn.get_function_name(): fn for fn in module.app.get_functions()}


def run_cli_bridge(host, delivered: int, storage: str, *args: str) -> tuple[int, str, str]:
    """`python -m retier bridge ARGS` with only RETIER_STORAGE=`storage` set, until `host` has
    answered 202 `delivered` times; then Ctrl-C. Returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONNECTION"))}
    env["RETIER_STORAGE"] = storage
    proc = subprocess.Popen(
        [sys.executable, "-m", "retier", "bridge", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while sum(r.status == 202 for r in host.received) < delivered:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    return proc.returncode, out, err


@dataclass
class Received:
    """One request as the stand-in saw it, and what it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int
    invoked: int  # how many function invocations it made

    def events(self) -> list[dict]:
        return json.loads(self.body)


class FunctionsHostStandIn:
    """The Functions host's Event Grid webhook, for tests (Core Tools cannot be installed here).

    It routes as the host's Event Grid extension does (Microsoft.Azure.WebJobs.Extensions.EventGrid,
    EventGridExtensionConfigProvider and HttpRequestProcessor): an unknown `functionName` is 404,
    an `aeg-event-type` other than Notification is 400, a JSON array (or one object) is one
    invocation per event, and the answer is 202 when every invocation succeeded, 500 with the
    exception's message when one raised. Each event reaches the Python function as the worker
    hands it over: decoded by azure-functions' own EventGridEventInConverter into a
    `func.EventGridEvent`. `fail_next` makes it answer 500 to that many requests without invoking
    anything, as a host whose function keeps failing would.
    """

    def __init__(self, functions: dict, port: int | None = None):
        self.functions = functions  # name -> azure.functions Function (from load_functions)
        self.port = port or free_port()
        self.received: list[Received] = []
        self.fail_next = 0
        self._server: HTTPServer | None = None
        self._lock = threading.Lock()

    def url(self, function_name: str = "retier_blob_created") -> str:
        return (
            f"http://127.0.0.1:{self.port}/runtime/webhooks/eventgrid?functionName={function_name}"
        )

    @property
    def started(self) -> bool:
        return self._server is not None

    def start(self) -> FunctionsHostStandIn:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, text, invoked = host._answer(self.path, self.headers, body)
                parts = urlsplit(self.path)
                with host._lock:
                    host.received.append(
                        Received(
                            "POST",
                            parts.path,
                            parse_qs(parts.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            invoked,
                        )
                    )
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, path: str, headers, body: bytes) -> tuple[int, str, int]:
        from azure.functions import meta
        from azure.functions.eventgrid import EventGridEventInConverter

        parts = urlsplit(path)
        name = (parse_qs(parts.query).get("functionName") or [""])[0]
        if parts.path != "/runtime/webhooks/eventgrid" or name not in self.functions:
            return 404, f"cannot find function: '{name}'", 0
        if (headers.get("aeg-event-type") or "").lower() != "notification":
            return 400, "", 0
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, "stand-in: the function failed", 0
        token = json.loads(body)
        events = token if isinstance(token, list) else [token]
        user_function = self.functions[name].get_user_function()
        failure = None
        for event in events:
            datum = meta.Datum(json.dumps(event), "json")
            try:
                user_function(EventGridEventInConverter.decode(datum, trigger_metadata={}))
            except Exception as exc:  # the host reports any failed invocation as 500
                logger.exception("stand-in host: %s failed", name)
                failure = failure or exc
        if failure is not None:
            return 500, str(failure), len(events)
        return 202, "", len(events)
