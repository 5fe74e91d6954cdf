"""Shared fixtures: a real Azurite (from scripts/test, or started here), unique containers, helpers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Fails the session if any log record or CLI output of any test carries a key, SAS or connection string.
pytest_plugins = ["secret_guard"]

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def free_port() -> int:
    """A port nothing listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azurite_binary() -> str:
    binary = str(AZURITE_BIN) if AZURITE_BIN.exists() else shutil.which("azurite-blob")
    if not binary:
        pytest.fail(
            "Azurite is not installed: run scripts/test (it installs azurite@3.35.0 into .tools), "
            "or set RETIER_TEST_STORAGE to an Azurite connection string",
            pytrace=False,
        )
    return binary


@contextmanager
def start_azurite(
    port: int, env: dict[str, str] | None = None, *, skip_api_version_check: bool = True
) -> Iterator[None]:
    """An in-memory Azurite on 127.0.0.1:`port` until the block ends; failing to start fails the test."""
    proc = subprocess.Popen(
        [
            azurite_binary(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            *(["--skipApiVersionCheck"] if skip_api_version_check else []),
            "--disableTelemetry",
            "--silent",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start on 127.0.0.1:{port}", pytrace=False)
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite_connection_string():
    """Azurite's connection string. Missing Azurite is an error, never a skip."""
    given = os.environ.get("RETIER_TEST_STORAGE")
    if given:
        yield given
        return
    port = free_port()
    with start_azurite(port):
        yield connection_string(port)


@pytest.fixture(scope="session")
def blob_service(azurite_connection_string):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite_connection_string)


@pytest.fixture
def container(blob_service):
    """A fresh, uniquely named container, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:20]}"
    client = blob_service.create_container(name)
    yield name
    client.delete_container()


@pytest.fixture
def store(azurite_connection_string):
    from retier.settings import Connection
    from retier.storage import BlobStore

    return BlobStore.from_connection(Connection(connection_string=azurite_connection_string))


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses Azurite, and run fast pure tests first, real duplicity last."""
    for item in items:
        if "azurite_connection_string" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.azurite)

    def cost(item):
        if item.get_closest_marker("duplicity"):
            return 2
        return 1 if item.get_closest_marker("azurite") else 0

    items.sort(key=cost)  # stable: keeps file order within each group


@pytest.fixture
def run_retier():
    """Run the real `python -m retier` with only the given RETIER_* settings (none leak in from outside)."""

    def run(
        *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONNECTION"))
        }
        clean.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "retier", *args],
            check=False,
            input=stdin,
            capture_output=True,
            text=True,
            env=clean,
            timeout=300,
        )

    return run


@pytest.fixture
def function_env(monkeypatch, azurite_connection_string):
    """The function's settings, as `func start` would read them from local.settings.json: storage
    on Azurite, every other RETIER_* setting unset (each test sets what it needs)."""
    from retier.functions import service_from_environment
    from retier.settings import ALL_SETTINGS, STORAGE

    monkeypatch.setenv(STORAGE, azurite_connection_string)
    for name in ALL_SETTINGS:
        if name != STORAGE:
            monkeypatch.delenv(name, raising=False)
    service_from_environment.cache_clear()
    yield monkeypatch
    service_from_environment.cache_clear()
