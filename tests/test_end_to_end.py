"""The real duplicity program on Azurite, with retier handling the events Azure would send."""

from __future__ import annotations

import filecmp
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from retier import names
from retier.demo import (
    Duplicity,
    change_sample_tree,
    deliver_new_events,
    make_sample_tree,
)
from retier.restore import parse_required_volumes
from retier.service import HANDLED, IGNORED, RetierService
from retier.settings import load_settings
from retier.storage import BlobStore

pytestmark = [pytest.mark.azurite, pytest.mark.duplicity]


def archive_env(conn: str) -> dict[str, str]:
    return {"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": "Archive"}


def _tiers(store, container):
    return {item.name: item.tier for item in store.list_blobs(container)}


def _same_tree(a: Path, b: Path) -> list[str]:
    """Paths that differ between two trees, comparing file bytes (not just stat)."""
    diffs = []
    cmp = filecmp.dircmp(a, b)
    diffs += [str(a / n) for n in cmp.left_only + cmp.right_only + cmp.funny_files]
    for name in cmp.common_files:
        if (a / name).read_bytes() != (b / name).read_bytes():
            diffs.append(str(a / name))
    for sub in cmp.common_dirs:
        diffs += _same_tree(a / sub, b / sub)
    return diffs


@dataclass
class BackupRun:
    """A container after three real duplicity runs, with retier having handled their events."""

    store: BlobStore
    service: RetierService
    dup: Duplicity
    source: Path
    seen: set[str] = field(default_factory=set)
    outcomes: list = field(default_factory=list)

    def deliver(self) -> None:
        self.outcomes += deliver_new_events(self.service, self.dup.container, self.seen)

    def incremental(self, step: int, **kw) -> None:
        """One more incremental of a changed tree, its events handled afterwards."""
        time.sleep(1.1)  # set names have one-second resolution
        change_sample_tree(self.source, step)
        self.dup.backup("incremental", self.source, **kw)
        self.deliver()


@pytest.fixture
def backup_run(azurite_connection_string, tmp_path):
    def run(volume_tier: str, container: str, live: bool) -> BackupRun:
        settings = load_settings(
            {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": volume_tier}
        )
        store = BlobStore.from_connection(settings.connection)
        dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
        r = BackupRun(
            store, RetierService(settings, store), dup, make_sample_tree(tmp_path / "source")
        )
        for step, kind in enumerate(["full", "incremental", "incremental"]):
            if step:
                time.sleep(1.1)  # set names have one-second resolution
                change_sample_tree(r.source, step)
            # live: events handled while duplicity uploads, as Azure sends them; otherwise all
            # at once afterwards, as after an outage (volumes' events then find the manifest)
            dup.backup(kind, r.source, while_running=r.deliver if live else None)
            r.deliver()
        return r

    return run


def _assert_retiered(store, container, volume_tier):
    tiers = _tiers(store, container)
    kinds = {name: names.parse(name).kind.value for name in tiers}
    assert set(kinds.values()) == {"volume", "manifest", "signatures"}, kinds
    assert (
        sum(k == "volume" for k in kinds.values()) >= 4
    )  # several volumes: --volsize 1 on ~3.6 MB
    assert sum(k == "manifest" for k in kinds.values()) >= 2
    wrong = {
        n: t for n, t in tiers.items() if t != (volume_tier if kinds[n] == "volume" else "Hot")
    }
    assert wrong == {}


def test_cold_volumes_keep_every_duplicity_command_working(backup_run, container, tmp_path):
    r = backup_run("Cold", container, live=True)
    assert {o.status for o in r.outcomes} <= {HANDLED, IGNORED} and not any(
        o.failures for o in r.outcomes
    )
    moved = [d.name for o in r.outcomes for d in o.moved]
    assert sorted(moved) == sorted(
        n for n in _tiers(r.store, container) if names.parse(n).kind.value == "volume"
    )
    _assert_retiered(r.store, container, "Cold")

    r.incremental(5, archive_dir=tmp_path / "lost-cache")  # a new machine: no local cache
    _assert_retiered(r.store, container, "Cold")

    status = r.dup.collection_status()
    assert "Chain start time" in status.stdout and status.stdout.count("Incremental") >= 3

    target = tmp_path / "restored"
    r.dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(r.source, target) == []


def test_archived_volumes_still_allow_incrementals_and_collection_status(
    backup_run, container, tmp_path
):
    r = backup_run("Archive", container, live=False)
    _assert_retiered(r.store, container, "Archive")

    r.incremental(5)
    r.incremental(6, archive_dir=tmp_path / "lost-cache")
    _assert_retiered(r.store, container, "Archive")
    assert r.dup.collection_status().stdout.count("Incremental") >= 4

    # What duplicity does with archived volumes on its own (retier's restore path is tested below):
    refused = r.dup.restore(tmp_path / "restored", check=False)
    assert refused.returncode != 0
    assert "BlobArchived" in refused.stdout + refused.stderr
    assert not (tmp_path / "restored" / "data-0.bin").exists()


def test_sweep_retiers_backups_made_before_deployment(
    azurite_connection_string, container, tmp_path
):
    # duplicity ran for a while with no retier deployed: no events were ever handled.
    from retier.sweep import sweep_container

    settings = load_settings({"RETIER_STORAGE": azurite_connection_string})
    store = BlobStore.from_connection(settings.connection)
    dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
    source = make_sample_tree(tmp_path / "source")
    dup.backup("full", source)
    time.sleep(1.1)
    change_sample_tree(source, 1)
    dup.backup("incremental", source)
    before = _tiers(store, container)
    assert set(before.values()) == {"Hot"}

    dry = sweep_container(store, container, settings, dry_run=True)
    assert _tiers(store, container) == before
    report = sweep_container(store, container, settings)
    volumes = [n for n in before if names.parse(n).kind.value == "volume"]
    assert dry.plan.moves.count == report.applied.done.count == len(volumes)
    _assert_retiered(store, container, "Cold")
    assert sweep_container(store, container, settings).plan.moves.count == 0

    target = tmp_path / "restored"
    dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(source, target) == []


def test_restore_runbook_out_of_archive(
    backup_run, container, tmp_path, azurite_connection_string, run_retier
):
    r = backup_run("Archive", container, live=True)
    store, dup, source = r.store, r.dup, r.source
    _assert_retiered(store, container, "Archive")
    refused = dup.restore(tmp_path / "first-try", check=False)
    assert refused.returncode != 0 and "BlobArchived" in refused.stdout + refused.stderr

    # the plan names exactly the volumes duplicity says it needs
    dry = dup.restore(tmp_path / "dry", "--dry-run")
    required = parse_required_volumes(dry.stdout)
    plan = json.loads(
        run_retier(
            "restore-plan",
            "--container",
            container,
            "--json",
            env=archive_env(azurite_connection_string),
        ).stdout
    )
    assert sorted(v["name"] for v in plan["volumes"]) == sorted(required)
    assert plan["counts"]["archived"] == len(required) and plan["bytes_to_rehydrate"] > 0

    assert (
        run_retier(
            "rehydrate",
            "--container",
            container,
            "--in-place",
            "--yes",
            env=archive_env(azurite_connection_string),
        ).returncode
        == 0
    )
    assert (
        run_retier(
            "status",
            "--container",
            container,
            "--wait",
            "--interval",
            "1",
            env=archive_env(azurite_connection_string),
        ).returncode
        == 0
    )

    target = tmp_path / "restored"
    dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(source, target) == []

    assert (
        run_retier(
            "release", "--container", container, "--now", env=archive_env(azurite_connection_string)
        ).returncode
        == 0
    )
    _assert_retiered(store, container, "Archive")
    assert store.get_hold(container) is None


def test_single_file_restore_rehydrates_only_the_volumes_that_hold_it(
    backup_run, container, tmp_path, azurite_connection_string, run_retier
):
    r = backup_run("Archive", container, live=False)
    store, dup, source = r.store, r.dup, r.source
    wanted = "docs/notes.txt"
    dry = dup.restore(tmp_path / "dry.txt", "--dry-run", "--path-to-restore", wanted)
    need = tmp_path / "need.txt"
    need.write_text(dry.stdout)
    volumes = [n for n in _tiers(store, container) if names.parse(n).kind.value == "volume"]

    done = run_retier(
        "rehydrate",
        "--container",
        container,
        "--in-place",
        "--volumes-from",
        str(need),
        "--yes",
        env=archive_env(azurite_connection_string),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    online = {n for n, t in _tiers(store, container).items() if n in volumes and t != "Archive"}
    assert online == set(parse_required_volumes(dry.stdout)) and len(online) < len(volumes)
    # The command rehydrate suggests next checks the same volumes: all online, exit 0.
    (hint,) = [line for line in done.stdout.splitlines() if line.startswith("next: retier status ")]
    status = run_retier(
        *shlex.split(hint.removeprefix("next: retier ")), env=archive_env(azurite_connection_string)
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert (
        f"{len(online)} online, 0 rehydrating, 0 archived of {len(online)} volumes needed"
        in status.stdout
    )

    restored = tmp_path / "notes.txt"
    dup.restore(restored, "--path-to-restore", wanted)
    assert restored.read_bytes() == (source / wanted).read_bytes()

    assert (
        run_retier(
            "release", "--container", container, "--now", env=archive_env(azurite_connection_string)
        ).returncode
        == 0
    )
    _assert_retiered(store, container, "Archive")
