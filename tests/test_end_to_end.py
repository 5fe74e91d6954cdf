"""The real duplicity program on Azurite, with retier handling the events Azure would send."""

from __future__ import annotations

import filecmp
import time
from pathlib import Path

import pytest

from retier import names
from retier.demo import Duplicity, change_sample_tree, deliver_new_events, make_sample_tree
from retier.service import HANDLED, IGNORED, RetierService
from retier.settings import load_settings
from retier.storage import BlobStore

pytestmark = [pytest.mark.azurite, pytest.mark.duplicity]


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


@pytest.fixture
def backup_run(azurite_connection_string, tmp_path):
    def run(volume_tier: str, container: str, live: bool):
        settings = load_settings({"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": volume_tier})
        store = BlobStore.from_connection(settings.connection)
        service = RetierService(settings, store)
        dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
        source = make_sample_tree(tmp_path / "source")
        seen: set[str] = set()
        outcomes = []
        for step, kind in enumerate(["full", "incremental", "incremental"]):
            if step:
                time.sleep(1.1)  # set names have one-second resolution
                change_sample_tree(source, step)
            # live: events handled while duplicity uploads, as Azure sends them; otherwise all
            # at once afterwards, as after an outage (volumes' events then find the manifest)
            deliver = lambda: outcomes.extend(deliver_new_events(service, container, seen))  # noqa: E731
            dup.backup(kind, source, while_running=deliver if live else None)
            deliver()
        return store, service, dup, source, seen, outcomes

    return run


def _assert_retiered(store, container, volume_tier):
    tiers = _tiers(store, container)
    kinds = {name: names.parse(name).kind.value for name in tiers}
    assert set(kinds.values()) == {"volume", "manifest", "signatures"}, kinds
    assert sum(k == "volume" for k in kinds.values()) >= 4  # several volumes: --volsize 1 on ~3.6 MB
    assert sum(k == "manifest" for k in kinds.values()) >= 2
    wrong = {n: t for n, t in tiers.items() if t != (volume_tier if kinds[n] == "volume" else "Hot")}
    assert wrong == {}


def test_cold_volumes_keep_every_duplicity_command_working(backup_run, container, tmp_path):
    store, service, dup, source, seen, outcomes = backup_run("Cold", container, live=True)
    assert {o.status for o in outcomes} <= {HANDLED, IGNORED} and not any(o.failures for o in outcomes)
    moved = [d.name for o in outcomes for d in o.moved]
    assert sorted(moved) == sorted(n for n in _tiers(store, container) if names.parse(n).kind.value == "volume")
    _assert_retiered(store, container, "Cold")

    time.sleep(1.1)
    change_sample_tree(source, 5)
    dup.backup("incremental", source, archive_dir=tmp_path / "lost-cache")  # a new machine: no local cache
    deliver_new_events(service, container, seen)
    _assert_retiered(store, container, "Cold")

    status = dup.collection_status()
    assert "Chain start time" in status.stdout and status.stdout.count("Incremental") >= 3

    target = tmp_path / "restored"
    dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(source, target) == []


def test_archived_volumes_still_allow_incrementals_and_collection_status(backup_run, container, tmp_path):
    store, service, dup, source, seen, outcomes = backup_run("Archive", container, live=False)
    _assert_retiered(store, container, "Archive")

    time.sleep(1.1)
    change_sample_tree(source, 5)
    dup.backup("incremental", source)
    time.sleep(1.1)
    change_sample_tree(source, 6)
    dup.backup("incremental", source, archive_dir=tmp_path / "lost-cache")
    deliver_new_events(service, container, seen)
    _assert_retiered(store, container, "Archive")
    assert dup.collection_status().returncode == 0

    # What duplicity does today with archived volumes (retier's restore path is separate work):
    refused = dup.restore(tmp_path / "restored", check=False)
    assert refused.returncode != 0
    assert "BlobArchived" in refused.stdout + refused.stderr
    assert not (tmp_path / "restored" / "data-0.bin").exists()


def test_sweep_retiers_backups_made_before_deployment(azurite_connection_string, container, tmp_path):
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


def _retier(*args, conn, stdin=None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONNECTION"))}
    env.update({"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": "Archive"})
    return subprocess.run([sys.executable, "-m", "retier", *args], capture_output=True, text=True, env=env, timeout=300, input=stdin)


def test_restore_runbook_out_of_archive(backup_run, container, tmp_path, azurite_connection_string):
    import json

    from retier.restore import parse_required_volumes

    store, service, dup, source, seen, outcomes = backup_run("Archive", container, live=True)
    _assert_retiered(store, container, "Archive")
    refused = dup.restore(tmp_path / "first-try", check=False)
    assert refused.returncode != 0 and "BlobArchived" in refused.stdout + refused.stderr

    # the plan names exactly the volumes duplicity says it needs
    dry = dup.restore(tmp_path / "dry", "--dry-run")
    required = parse_required_volumes(dry.stdout)
    plan = json.loads(_retier("restore-plan", "--container", container, "--json", conn=azurite_connection_string).stdout)
    assert sorted(v["name"] for v in plan["volumes"]) == sorted(required)
    assert plan["counts"]["archived"] == len(required) and plan["bytes_to_rehydrate"] > 0

    assert _retier("rehydrate", "--container", container, "--yes", conn=azurite_connection_string).returncode == 0
    assert _retier("status", "--container", container, "--wait", "--interval", "1", conn=azurite_connection_string).returncode == 0

    target = tmp_path / "restored"
    dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(source, target) == []

    assert _retier("release", "--container", container, "--now", conn=azurite_connection_string).returncode == 0
    _assert_retiered(store, container, "Archive")
    assert store.get_hold(container) is None


def test_single_file_restore_rehydrates_only_the_volumes_that_hold_it(backup_run, container, tmp_path, azurite_connection_string):
    store, service, dup, source, seen, outcomes = backup_run("Archive", container, live=False)
    wanted = "docs/notes.txt"
    dry = dup.restore(tmp_path / "dry.txt", "--dry-run", "--path-to-restore", wanted)
    need = tmp_path / "need.txt"
    need.write_text(dry.stdout)
    volumes = [n for n in _tiers(store, container) if names.parse(n).kind.value == "volume"]

    done = _retier("rehydrate", "--container", container, "--volumes-from", str(need), "--yes", conn=azurite_connection_string)
    assert done.returncode == 0, done.stdout + done.stderr
    online = {n for n, t in _tiers(store, container).items() if n in volumes and t != "Archive"}
    from retier.restore import parse_required_volumes

    assert online == set(parse_required_volumes(dry.stdout)) and len(online) < len(volumes)

    restored = tmp_path / "notes.txt"
    dup.restore(restored, "--path-to-restore", wanted)
    assert restored.read_bytes() == (source / wanted).read_bytes()

    assert _retier("release", "--container", container, "--now", conn=azurite_connection_string).returncode == 0
    _assert_retiered(store, container, "Archive")
