"""Money is spent only when the user said so: a sweep's move charged an early deletion is asked
for, refused without --yes when no one is at a terminal; the timer logs each charge (issue 15 #6)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

T = "20240101T020304Z"
VOLS = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2)]
META = [f"duplicity-full.{T}.manifest.gpg", f"duplicity-full-signatures.{T}.sigtar.gpg"]

pytestmark = pytest.mark.azurite


@pytest.fixture
def cool_trap(blob_service, container):
    """A finished set whose first volume was set Cool just now: moving it to Cold is charged
    Cool's early deletion (30 days); the second volume only inherits Hot and moves for free."""
    client = blob_service.get_container_client(container)
    for name in VOLS + META:
        client.upload_blob(name, b"v" * 4096)
    client.get_blob_client(VOLS[0]).set_standard_blob_tier("Cool")
    return client


def tiers(client) -> dict[str, str]:
    return {b.name: b.blob_tier for b in client.list_blobs()}


def test_a_charged_move_without_a_terminal_is_refused_without_yes(
    cool_trap, container, azurite_connection_string, run_retier
):
    env = {"RETIER_STORAGE": azurite_connection_string}
    proc = run_retier("sweep", "--container", container, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "charged an early deletion of ~0.0000" in proc.stderr
    assert "confirm with --yes when not at a terminal" in proc.stderr
    assert tiers(cool_trap) == {VOLS[0]: "Cool", VOLS[1]: "Hot", META[0]: "Hot", META[1]: "Hot"}

    done = run_retier("sweep", "--container", container, "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tiers(cool_trap) == {VOLS[0]: "Cold", VOLS[1]: "Cold", META[0]: "Hot", META[1]: "Hot"}


def test_a_sweep_with_no_charged_move_needs_no_yes(
    blob_service, container, azurite_connection_string, run_retier
):
    client = blob_service.get_container_client(container)
    for name in VOLS + META:
        client.upload_blob(name, b"v")
    proc = run_retier(
        "sweep", "--container", container, env={"RETIER_STORAGE": azurite_connection_string}
    )
    assert proc.returncode == 0, proc.stderr
    assert tiers(client)[VOLS[0]] == "Cold"


def _at_a_terminal(args, env, answer: str) -> tuple[int, str]:
    """Run `python -m retier ARGS` with a pseudo-terminal for stdin, typing `answer`."""
    import pty

    leader, follower = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONN"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retier", *args],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**clean, **env},
        text=True,
    )
    os.close(follower)
    os.write(leader, answer.encode())
    out, err = proc.communicate(timeout=120)
    os.close(leader)
    return proc.returncode, out + err


@pytest.mark.parametrize("answer, moved", [("n\n", False), ("y\n", True)])
def test_at_a_terminal_the_charge_is_asked_for(
    answer, moved, cool_trap, container, azurite_connection_string, run_retier
):
    code, out = _at_a_terminal(
        ["sweep", "--container", container], {"RETIER_STORAGE": azurite_connection_string}, answer
    )
    assert code == 0, out
    assert "Move them now? [y/N]" in out
    assert f"{VOLS[0]}: Cool for 0.0 days -> Cold" in out
    if moved:
        assert tiers(cool_trap)[VOLS[0]] == "Cold"
    else:
        assert "nothing done" in out
        assert tiers(cool_trap) == {VOLS[0]: "Cool", VOLS[1]: "Hot", META[0]: "Hot", META[1]: "Hot"}


def test_the_timer_follows_the_settings_and_logs_each_charge(
    cool_trap, container, azurite_connection_string, monkeypatch, caplog
):
    from retier.functions import run_scheduled_sweep, service_from_environment

    monkeypatch.setenv("RETIER_STORAGE", azurite_connection_string)
    monkeypatch.setenv("RETIER_CONTAINERS", container)
    for name in ("RETIER_VOLUME_TIER", "RETIER_METADATA_TIER", "RETIER_PRICES"):
        monkeypatch.delenv(name, raising=False)
    service_from_environment.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="retier.functions"):
            run_scheduled_sweep()
    finally:
        service_from_environment.cache_clear()
    assert tiers(cool_trap)[VOLS[0]] == "Cold"  # no one to ask: the settings decide
    charged = [r.getMessage() for r in caplog.records if "early deletion" in r.getMessage()]
    assert any(
        f"{VOLS[0]} Cool -> Cold is charged an early deletion of ~0.0000" in m for m in charged
    )
    assert any("1 move(s) charged an early deletion" in m for m in charged), charged
