"""duplicity's par2+ wrapper with volumes in Archive: restore, single-file restore and a par2
repair of a corrupted volume, with the real duplicity and the real `par2` program on Azurite.

What duplicity reads (duplicity/backends/par2backend.py, get()): each volume, then right after it
the small "<volume>.par2" index, to verify the volume; the ".volNN+MM.par2" recovery blocks only
when that check fails. So retier keeps every index online, archives the recovery blocks with
their volume, and `rehydrate` brings them back on request (--with-par2), for a repair. (duplicity
3.2.1 never gets to its repair: see the test. The repair is done with `par2 repair` by hand.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

from retier import names
from retier.demo import Duplicity, change_sample_tree, deliver_new_events, make_sample_tree
from retier.restore import parse_required_volumes
from retier.service import HANDLED, IGNORED, RetierService
from retier.settings import load_settings
from retier.storage import BlobStore, connect

pytestmark = [pytest.mark.azurite, pytest.mark.duplicity]


@dataclass
class Par2Duplicity(Duplicity):
    """The same runs, through duplicity's par2+ wrapper (recovery files next to every object)."""

    @property
    def url(self) -> str:
        return f"par2+azure://{self.container}"


def _need_par2() -> None:
    if not shutil.which("par2"):
        pytest.fail(
            "the par2 program is missing (duplicity's par2+ backend runs it): "
            "apt-get update && apt-get install -y par2  (scripts/test does this when run as root)",
            pytrace=False,
        )


def _role(name: str) -> str:
    n = names.parse(name)
    if n.kind.value != "volume":
        return "metadata"
    return "recovery" if n.par2_recovery else "index" if n.par2 else "volume"


def _tiers(store, container) -> dict[str, str]:
    return {i.name: i.tier for i in store.list_blobs(container)}


def _same_tree(a, b) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


def test_par2_backups_restore_from_archive_and_repair_a_corrupted_volume(
    azurite_connection_string, container, tmp_path, run_retier
):
    _need_par2()
    env = {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    settings = load_settings(env)
    store = BlobStore.from_connection(settings.connection)
    service = RetierService(settings, store)
    dup = Par2Duplicity(azurite_connection_string, container, tmp_path / "cache", volsize_mb=2)
    source = make_sample_tree(tmp_path / "source")
    seen: set[str] = set()
    outcomes = []

    # A full and an incremental, as a new user would run them; the handler gets every event.
    dup.backup("full", source)
    outcomes += deliver_new_events(service, container, seen)
    time.sleep(1.1)
    change_sample_tree(source, 1)
    dup.backup("incremental", source)
    outcomes += deliver_new_events(service, container, seen)
    assert {o.status for o in outcomes} <= {HANDLED, IGNORED} and not any(
        o.failures for o in outcomes
    )

    tiers = _tiers(store, container)
    by_role: dict[str, dict[str, str]] = {}
    for name, tier in tiers.items():
        by_role.setdefault(_role(name), {})[name] = tier
    assert len(by_role["volume"]) >= 3 and len(by_role["recovery"]) == len(by_role["volume"])
    assert set(by_role["volume"].values()) == {"Archive"}
    assert set(by_role["recovery"].values()) == {"Archive"}
    assert set(by_role["index"].values()) == {"Hot"}  # read with every volume: stays online
    assert set(by_role["metadata"].values()) == {"Hot"}  # manifests, signatures, their par2
    assert {i.name for i in store.list_blobs(container) if _role(i.name) == "index"} == {
        v + ".par2" for v in by_role["volume"]
    }

    # One file: duplicity names the volumes that hold it; only those come back.
    wanted = "docs/notes.txt"
    dry = dup.restore(tmp_path / "dry", "--dry-run", "--path-to-restore", wanted)
    need = tmp_path / "need.txt"
    need.write_text(dry.stdout)
    required = parse_required_volumes(dry.stdout)
    done = run_retier(
        "rehydrate",
        "--container",
        container,
        "--in-place",
        "--volumes-from",
        str(need),
        "--yes",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    online = {
        n for n, t in _tiers(store, container).items() if _role(n) == "volume" and t != "Archive"
    }
    assert online == set(required) and len(online) < len(by_role["volume"])
    dup.restore(tmp_path / "notes.txt", "--path-to-restore", wanted)
    assert (tmp_path / "notes.txt").read_bytes() == (source / wanted).read_bytes()

    # The whole backup: the plan includes each volume's index (online) and says what the
    # recovery blocks it leaves archived would cost; rehydrate brings the volumes back.
    plan = json.loads(
        run_retier("restore-plan", "--container", container, "--json", env=env).stdout
    )
    planned = {v["name"]: v["par2"] for v in plan["volumes"]}
    assert {n for n, p in planned.items() if p is None} == set(by_role["volume"])
    assert {n for n, p in planned.items() if p == "index"} == set(by_role["index"])
    assert "recovery" not in planned.values()
    left_out = plan["par2_recovery_left_out"]
    assert left_out["blobs"] == left_out["archived"] == len(by_role["recovery"])
    assert (
        run_retier("rehydrate", "--container", container, "--in-place", "--yes", env=env).returncode
        == 0
    )
    target = tmp_path / "restored"
    dup.restore(target, archive_dir=tmp_path / "restore-cache")
    assert _same_tree(source, target)

    # A volume goes bad in storage. duplicity 3.2.1's par2 wrapper does not repair it: its failed
    # `par2 verify` raises BackendException, which the wrapper takes for "no par2 file"
    # (par2backend.py get()), so the volume fails duplicity's own hash check.
    victim = min(by_role["volume"])
    client = connect(settings.connection).get_container_client(container)
    data = bytearray(client.download_blob(victim).readall())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    client.upload_blob(victim, bytes(data), overwrite=True)
    broken = dup.restore(
        tmp_path / "broken", "-v", "info", archive_dir=tmp_path / "c2", check=False
    )
    said = broken.stdout + broken.stderr
    assert broken.returncode != 0 and "hash mismatch" in said and "Try to repair" not in said

    # The runbook's repair step: bring the recovery blocks back too (--with-par2), repair the
    # volume with par2 next to its index, put it back, and restore.
    shown = run_retier("restore-plan", "--container", container, env=env)
    assert "par2 recovery blocks left archived" in shown.stdout and "--with-par2" in shown.stdout
    again = run_retier(
        "rehydrate", "--container", container, "--in-place", "--with-par2", "--yes", env=env
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert {t for n, t in _tiers(store, container).items() if _role(n) == "recovery"} == {"Hot"}
    work = tmp_path / "repair"
    work.mkdir()
    for item in client.list_blobs(name_starts_with=victim):
        (work / item.name).write_bytes(client.download_blob(item.name).readall())
    assert len(list(work.iterdir())) == 3  # the volume, its index, its recovery blocks
    fixed = subprocess.run(
        ["par2", "repair", "-q", f"{victim}.par2"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    client.upload_blob(victim, (work / victim).read_bytes(), overwrite=True)
    repaired = dup.restore(tmp_path / "repaired", archive_dir=tmp_path / "c3")
    assert repaired.returncode == 0
    assert _same_tree(source, tmp_path / "repaired")

    # Released: volumes and recovery blocks go back to Archive, indexes stay online.
    assert run_retier("release", "--container", container, "--now", env=env).returncode == 0
    final = _tiers(store, container)
    assert {final[n] for n in final if _role(n) in ("volume", "recovery")} == {"Archive"}
    assert {final[n] for n in final if _role(n) in ("index", "metadata")} == {"Hot"}
