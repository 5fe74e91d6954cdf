"""A private Azurite whose one container is filled with many blobs in seconds, not hours.

Azurite 3.35 keeps blob metadata in LokiJS and finds a blob by scanning every blob of the
account, so each Put Blob costs more the fuller the account is: uploading 100,000 blobs
takes about an hour (bench/README.md). `SeededAzurite` builds the same container without
uploading each blob:

1. it starts Azurite with an on-disk store (`--location`) in a fresh directory, creates
   the container and uploads one template blob (a one-byte body, like the benchmark's
   uploads), and stops Azurite cleanly, so the store is one Azurite itself wrote;
2. `seed_azurite_db.js` (Node, with Azurite's own LokiJS) replaces the template by one
   copy per wanted name, optionally at a given tier, and rebuilds the indexes as LokiJS
   does;
3. it starts Azurite again on that directory and checks, through the service, that the
   container lists exactly the wanted names.

After that it is an ordinary Azurite: listing, Set Blob Tier, Blob Batch and downloads go
through Azurite's own code, and every blob's body is the template's byte. Two differences
from an uploaded container: every blob has the template's etag and times, and the store is
on disk, which Azurite writes out every 5 s while it changes (the shared benchmark Azurite
runs in memory), so write timings are slower here. Memory on the client side does not
depend on either. Each instance holds one account with one container, and is stopped and
deleted on exit.

    with SeededAzurite(azurite_bin, "bench-100k", [(name, None), ...]) as azurite:
        azurite.connection_string, azurite.pid
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from typing_extensions import Self

HERE = Path(__file__).resolve().parent
SEEDER = HERE / "seed_azurite_db.js"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's published key
TEMPLATE = "retier-seed-template"
TIERS = ("Hot", "Cool", "Cold", "Archive")


class SeedError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeededAzurite:
    def __init__(
        self, azurite_bin: str | os.PathLike, container: str, blobs: list[tuple[str, str | None]]
    ) -> None:
        self.azurite_bin = Path(azurite_bin)
        if not self.azurite_bin.exists():
            raise SeedError(
                f"Azurite not found at {self.azurite_bin} (run bench/run_sweep, which installs it)"
            )
        # .tools/node_modules/.bin/azurite-blob -> .tools/node_modules, where Azurite's lokijs is.
        self.node_modules = self.azurite_bin.resolve().parent
        while (
            self.node_modules.name != "node_modules"
            and self.node_modules != self.node_modules.parent
        ):
            self.node_modules = self.node_modules.parent
        if not (self.node_modules / "lokijs").is_dir():
            raise SeedError(
                f"lokijs (Azurite's metadata store) not found under {self.node_modules}"
            )
        for name, tier in blobs:
            if not name or "\t" in name or "\n" in name or "\r" in name:
                raise SeedError(
                    f"blob name {name!r}: empty, or with a tab or line break (the seeder reads one name per line)"
                )
            if tier is not None and tier not in TIERS:
                raise SeedError(f"blob {name!r}: tier {tier!r} is not one of {', '.join(TIERS)}")
        self.container = container
        self.blobs = blobs
        self.dir: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.seconds = 0.0

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Self:
        started = time.perf_counter()
        self.dir = Path(tempfile.mkdtemp(prefix="retier-seeded-azurite."))
        try:
            self._start()
            client = BlobServiceClient.from_connection_string(
                self.connection_string
            ).get_container_client(self.container)
            client.create_container()
            client.upload_blob(TEMPLATE, b"x")
            self._stop()
            names_file = self.dir / "names.tsv"
            names_file.write_text(
                "".join(f"{name}\t{tier or ''}\n" for name, tier in self.blobs), encoding="utf-8"
            )
            seeded = subprocess.run(
                ["node", str(SEEDER), str(self.dir), self.container, str(names_file)],
                env=dict(os.environ, NODE_PATH=str(self.node_modules)),
                capture_output=True,
                text=True,
                check=False,
            )
            if seeded.returncode != 0:
                raise SeedError(
                    f"seed_azurite_db.js failed: {seeded.stderr.strip() or seeded.stdout.strip()}"
                )
            names_file.unlink()
            self._start()
            self._check()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.seconds = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _start(self) -> None:
        assert self.dir is not None
        self.port = _free_port()
        with open(
            self.dir / "azurite.log", "ab"
        ) as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    str(self.azurite_bin),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--location",
                    str(self.dir),
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--silent",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120  # loading a store of 100,000 blobs takes a few seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeedError(
                    f"Azurite exited at start: {(self.dir / 'azurite.log').read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SeedError(f"Azurite did not listen on port {self.port} within 120 s")

    def _stop(self) -> None:
        """Stop Azurite cleanly: on SIGINT it saves its store before it exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _check(self) -> None:
        """The service lists exactly the seeded names, at the seeded tiers."""
        client = BlobServiceClient.from_connection_string(
            self.connection_string
        ).get_container_client(self.container)
        wanted = {name: tier or "Hot" for name, tier in self.blobs}
        listed = 0
        for blob in client.list_blobs():
            listed += 1
            if wanted.get(blob.name) != blob.blob_tier:
                raise SeedError(
                    f"seeded container lists {blob.name!r} at {blob.blob_tier}, expected {wanted.get(blob.name)}"
                )
        if listed != len(wanted):
            raise SeedError(f"seeded container lists {listed} blobs, expected {len(wanted)}")
