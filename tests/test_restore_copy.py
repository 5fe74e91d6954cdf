"""Rehydration by copy into a restore container, escalation and ETA: Azurite, the real duplicity,
and a stand-in (faultbed.pending) for Azure's hours-long pending states, which Azurite skips."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from faultbed.pending import RehydrationDelayStandIn
from retier import names
from retier.demo import Duplicity, change_sample_tree, deliver_new_events, make_sample_tree
from retier.restore import (
    RestoreError,
    copy_out,
    copy_view,
    due_for_escalation,
    escalate,
    pending_volumes,
    plan_restore,
    rehydrate,
)
from retier.service import RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobStore
from retier.sweep import sweep_container

pytestmark = pytest.mark.azurite

T = ["20240101T000000Z", "20240102T000000Z"]
FULL = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2)]
INC = [f"duplicity-inc.{T[0]}.to.{T[1]}.vol1.difftar.gpg"]
META = [
    f"duplicity-full.{T[0]}.manifest.gpg",
    f"duplicity-full-signatures.{T[0]}.sigtar.gpg",
    f"duplicity-inc.{T[0]}.to.{T[1]}.manifest.gpg",
    f"duplicity-new-signatures.{T[0]}.to.{T[1]}.sigtar.gpg",
]
VOLUMES = FULL + INC
VOLUME_BYTES = 400_000


def env_for(conn: str) -> dict[str, str]:
    return {"RETIER_STORAGE": conn, "RETIER_VOLUME_TIER": "Archive"}


def snapshot(store: BlobStore, container: str) -> dict[str, tuple]:
    """What must not change in the source: tier, ETag and tier-change time of every blob."""
    return {i.name: (i.tier, i.etag, i.tier_change_time) for i in store.list_blobs(container)}


@pytest.fixture
def restore_container(blob_service):
    name = f"r{uuid.uuid4().hex[:20]}"
    yield name
    if any(c.name == name for c in blob_service.list_containers(name_starts_with=name)):
        blob_service.delete_container(name)


@pytest.fixture
def archived(blob_service, container, azurite_connection_string):
    client = blob_service.get_container_client(container)
    # Volumes big enough that Archive's early deletion outweighs a copy's few extra writes.
    for i, name in enumerate(VOLUMES + META):
        client.upload_blob(name, bytes([i]) * (VOLUME_BYTES if name in VOLUMES else 3000))
    settings = load_settings(env_for(azurite_connection_string))
    store = BlobStore.from_connection(settings.connection)
    sweep_container(store, container, settings)
    assert {i.name: i.tier for i in store.list_blobs(container)} == {
        **{v: "Archive" for v in VOLUMES},
        **{m: "Hot" for m in META},
    }
    return store, settings


# -- on Azurite, with the real duplicity ------------------------------------------------------------
@pytest.fixture
def duplicity_backup(azurite_connection_string, container, tmp_path):
    """A full and an incremental by the real duplicity, volumes archived by retier's handler."""
    settings = load_settings(env_for(azurite_connection_string))
    store = BlobStore.from_connection(settings.connection)
    service = RetierService(settings, store)
    dup = Duplicity(azurite_connection_string, container, tmp_path / "cache")
    source = make_sample_tree(tmp_path / "source")
    seen: set[str] = set()
    dup.backup("full", source)
    deliver_new_events(service, container, seen)
    time.sleep(1.1)  # set names have one-second resolution
    change_sample_tree(source, 1)
    dup.backup("incremental", source)
    deliver_new_events(service, container, seen)
    kinds = {i.name: names.parse(i.name).kind.value for i in store.list_blobs(container)}
    tiers = {i.name: i.tier for i in store.list_blobs(container)}
    assert {n: t for n, t in tiers.items() if kinds[n] == "volume"} == {
        n: "Archive" for n, k in kinds.items() if k == "volume"
    }
    return store, dup, source, kinds


def _same_bytes(a, b) -> list[str]:
    differ = []
    for path in a.rglob("*"):
        other = b / path.relative_to(a)
        if path.is_file() and (not other.is_file() or other.read_bytes() != path.read_bytes()):
            differ.append(str(path))
    return differ + [str(p) for p in b.rglob("*") if not (a / p.relative_to(b)).exists()]


@pytest.mark.duplicity
def test_copy_restore_from_archive_leaves_the_source_untouched(
    duplicity_backup, container, restore_container, tmp_path, azurite_connection_string, run_retier
):
    store, _, source, kinds = duplicity_backup
    env = env_for(azurite_connection_string)
    before = snapshot(store, container)

    done = run_retier(
        "rehydrate", "--container", container, "--copy-to", restore_container, "--yes", env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    status = run_retier("status", "--container", container, "--copy-to", restore_container, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    copies = {i.name: i for i in store.list_blobs(restore_container, with_copy=True)}
    # every volume and every manifest and signature file of the chain: one container to restore from
    assert set(copies) == {n for n, k in kinds.items() if k in ("volume", "manifest", "signatures")}
    assert {i.tier for i in copies.values()} == {"Hot"}
    assert {i.copy_of for i in copies.values()} == {container}

    target = tmp_path / "restored"
    restored = Duplicity(azurite_connection_string, restore_container, tmp_path / "fresh-cache")
    restored.restore(target)
    assert _same_bytes(source, target) == []

    released = run_retier(
        "release", "--container", container, "--copy-to", restore_container, "--yes", env=env
    )
    assert released.returncode == 0, released.stdout + released.stderr
    assert list(store.list_blobs(restore_container)) == []
    assert snapshot(store, container) == before  # same tiers, ETags, tier-change times
    assert store.get_hold(container) is None


@pytest.mark.duplicity
def test_single_file_restore_by_copy_copies_only_the_volumes_it_needs(
    duplicity_backup, container, restore_container, tmp_path, azurite_connection_string, run_retier
):
    store, dup, source, kinds = duplicity_backup
    wanted = "docs/notes.txt"
    dry = dup.restore(tmp_path / "dry.txt", "--dry-run", "--path-to-restore", wanted)
    need = tmp_path / "need.txt"
    need.write_text(dry.stdout)
    done = run_retier(
        "rehydrate",
        "--container",
        container,
        "--volumes-from",
        str(need),
        "--copy-to",
        restore_container,
        "--yes",
        "--json",
        env=env_for(azurite_connection_string),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    copied = {i.name for i in store.list_blobs(restore_container)}
    volumes = {n for n in copied if kinds[n] == "volume"}
    required = set(_required(dry.stdout))
    all_volumes = {n for n, k in kinds.items() if k == "volume"}
    assert volumes == required and len(volumes) < len(all_volumes)
    assert report["way"] == "copy" and report["rehydrating"] == len(required)

    restored = tmp_path / "notes.txt"
    Duplicity(azurite_connection_string, restore_container, tmp_path / "fresh").restore(
        restored, "--path-to-restore", wanted
    )
    assert restored.read_bytes() == (source / wanted).read_bytes()


def _required(dry_run_output: str) -> list[str]:
    from retier.restore import parse_required_volumes

    return parse_required_volumes(dry_run_output)


# -- on Azurite: the restore container's rules -----------------------------------------------------
def test_default_way_is_a_copy_into_container_restore_when_cheaper(
    archived, container, azurite_connection_string, run_retier, blob_service
):
    store, _ = archived
    env = env_for(azurite_connection_string)
    dest = f"{container}-restore"
    try:
        plan = json.loads(
            run_retier("restore-plan", "--container", container, "--json", env=env).stdout
        )
        assert plan["recommended"] == "copy"
        assert plan["metadata"] == {"blobs": len(META), "bytes": 3000 * len(META)}
        assert plan["ways"]["Standard"]["copy"]["early_deletion"] == 0
        assert plan["ways"]["Standard"]["in-place"]["early_deletion"] > 0
        assert (
            plan["ways"]["High"]["copy"]["retrieval"]
            > plan["ways"]["Standard"]["copy"]["retrieval"]
        )
        dry = run_retier("rehydrate", "--container", container, "--dry-run", "--json", env=env)
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["way"] == "copy"  # archived today: in place pays 180 days
        assert json.loads(dry.stdout)["copy_to"] == dest
        done = run_retier("rehydrate", "--container", container, "--yes", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"--copy-to {dest}" in done.stdout
        assert {i.name for i in store.list_blobs(dest)} == set(VOLUMES + META)
        assert {i.tier for i in store.list_blobs(container) if i.name in VOLUMES} == {"Archive"}
        assert store.get_hold(container) is None  # the source needs no hold: nothing changes there
    finally:
        if any(c.name == dest for c in blob_service.list_containers(name_starts_with=dest)):
            blob_service.delete_container(dest)


def test_restore_container_must_be_new_or_hold_only_retiers_copies(
    archived, container, restore_container, blob_service, azurite_connection_string, run_retier
):
    store, settings = archived
    plan = plan_restore(store, container, settings)
    with pytest.raises(RestoreError, match="must not be the source"):
        copy_out(store, plan, container)
    with pytest.raises(RestoreError, match="RETIER_CONTAINERS"):
        copy_out(store, plan, restore_container, configured={restore_container})
    blob_service.create_container(restore_container).upload_blob("mine.txt", b"keep me")
    with pytest.raises(RestoreError, match="did not copy there"):
        copy_out(store, plan, restore_container)
    refused = run_retier(
        "rehydrate",
        "--container",
        container,
        "--copy-to",
        restore_container,
        "--yes",
        env=env_for(azurite_connection_string),
    )
    assert refused.returncode == 2 and "new or empty container" in refused.stderr
    assert {i.name for i in store.list_blobs(restore_container)} == {"mine.txt"}


def test_release_deletes_only_retiers_copies_after_confirmation(
    archived, container, restore_container, azurite_connection_string, run_retier, blob_service
):
    store, settings = archived
    result = copy_out(store, plan_restore(store, container, settings), restore_container)
    assert (result.rehydrating, result.copied, result.failures) == (len(VOLUMES), len(META), [])
    assert store.get_hold(restore_container).startswith(f"restore copy of {container} since")
    again = copy_out(store, plan_restore(store, container, settings), restore_container)
    assert (again.rehydrating, again.copied, again.already) == (0, 0, len(VOLUMES + META))
    # a blob someone put there later is not retier's copy: it stays
    blob_service.get_container_client(restore_container).upload_blob("notes.txt", b"mine")
    env = env_for(azurite_connection_string)
    args = ("release", "--container", container, "--copy-to", restore_container)
    unconfirmed = run_retier(*args, env=env, stdin="")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert len(list(store.list_blobs(restore_container))) == len(VOLUMES + META) + 1
    done = run_retier(*args, "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["deleted"] == len(VOLUMES + META) and out["kept"] == ["notes.txt"]
    assert [i.name for i in store.list_blobs(restore_container)] == ["notes.txt"]
    assert store.get_hold(restore_container) is None


def test_status_waits_for_the_copied_metadata_too(
    archived, container, restore_container, azurite_connection_string, run_retier
):
    store, settings = archived
    copy_out(store, plan_restore(store, container, settings), restore_container)
    store.delete_blob(restore_container, META[2])  # e.g. a copy that failed or was deleted
    env = env_for(azurite_connection_string)
    args = ("--container", container, "--copy-to", restore_container)
    status = run_retier("status", *args, "--json", env=env)
    assert status.returncode == 1
    shown = json.loads(status.stdout)
    assert shown["counts"]["online"] == len(VOLUMES) and shown["metadata_not_copied"] == [META[2]]
    again = run_retier("rehydrate", *args, "--yes", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["copied"], json.loads(again.stdout)["already"]) == (
        1,
        len(VOLUMES + META) - 1,
    )
    assert run_retier("status", *args, env=env).returncode == 0


def test_the_handler_leaves_copies_alone_in_a_restore_container(
    archived, container, restore_container
):
    """The manifest's copy raises BlobCreated in the restore container: its hold keeps the
    handler from archiving the copied volumes when RETIER_CONTAINERS does not exclude it."""
    from retier.emulate import events_for

    store, settings = archived
    copy_out(store, plan_restore(store, container, settings), restore_container)
    service = RetierService(settings, store)
    items = list(store.list_blobs(restore_container))
    outcomes = [service.handle_event(e) for e in events_for(store, restore_container, items)]
    assert len(outcomes) == len(items) > 0
    assert [o.moved for o in outcomes if o.moved] == []
    assert {i.tier for i in store.list_blobs(restore_container)} == {"Hot"}
    # The control: without the hold the same events archive the copied volumes, so the hold is
    # what kept them online above.
    store.clear_hold(restore_container)
    for e in events_for(store, restore_container, items):
        service.handle_event(e)
    tiers = {i.name: i.tier for i in store.list_blobs(restore_container)}
    assert {tiers[v] for v in VOLUMES if v in tiers} == {"Archive"}


# -- the pending states, through the stand-in -----------------------------------------------------
@pytest.fixture
def delayed(azurite_connection_string):
    with RehydrationDelayStandIn.in_front_of(azurite_connection_string) as proxy:
        conn = proxy.connection_string(azurite_connection_string)
        yield proxy, BlobStore.from_connection(Connection(connection_string=conn)), conn


def test_pending_copy_shows_priority_age_and_eta_and_escalation_raises_only_standard_ones(
    archived, container, restore_container, delayed
):
    _, settings = archived
    proxy, store, _ = delayed
    plan = plan_restore(store, container, settings)
    copy_out(store, plan, restore_container, priority="Standard")
    view = copy_view(store, plan, restore_container)
    assert {v.state for v in view.volumes} == {"rehydrating"}
    assert {v.archive_status for v in view.volumes} == {"rehydrate-pending-to-hot"}
    assert {v.state for v in view.metadata} == {"online"}  # online sources copy at once
    # one volume comes online, one is raised to High by hand: neither may be sent High again
    proxy.complete(restore_container, {FULL[0]})
    store.set_tier(restore_container, [FULL[1]], "Hot", rehydrate_priority="High")
    view = copy_view(store, plan, restore_container)
    now = datetime.now(timezone.utc) + timedelta(hours=7)
    pending = {p.name: p for p in pending_volumes(view, by_copy=True, now=now)}
    assert set(pending) == {FULL[1], INC[0]}
    assert (pending[FULL[1]].priority, pending[INC[0]].priority) == ("High", "Standard")
    assert 6.9 < pending[INC[0]].hours < 7.2  # from the copy's creation time, as Azure gives it
    assert pending[INC[0]].eta.startswith("0-8.") and "target 15 h" in pending[INC[0]].eta
    assert "past the 1 h target" in pending[FULL[1]].eta
    assert due_for_escalation(list(pending.values()), 8) == []  # not yet
    due = due_for_escalation(list(pending.values()), 6)
    assert [p.name for p in due] == [INC[0]]
    proxy.priority_requests.clear()
    assert escalate(store, view, due) == []
    assert [(r.container, r.blob, r.tier, r.priority) for r in proxy.priority_requests] == [
        (restore_container, INC[0], "Hot", "High")
    ]
    assert proxy.pending(restore_container) == {FULL[1]: "High", INC[0]: "High"}


def test_rehydrate_by_copy_escalates_after_hours_then_waits_until_online(
    archived, container, restore_container, delayed, run_retier
):
    _, _ = archived
    proxy, store, conn = delayed
    proxy.finish_after(3)  # each copy pending for three listings
    done = run_retier(
        "rehydrate",
        "--container",
        container,
        "--copy-to",
        restore_container,
        "--yes",
        "--json",
        "--escalate-after",
        "0",
        "--interval",
        "0",
        env=env_for(conn),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["online"] is True and report["rehydrating"] == len(VOLUMES)
    asked = [(r.blob, r.priority, r.operation) for r in proxy.priority_requests]
    # copies started at Standard, then each raised once on the copy (never on the source)
    assert sorted(asked) == sorted(
        [(v, "Standard", "copy") for v in VOLUMES] + [(v, "High", "set-tier") for v in VOLUMES]
    )
    assert {r.container for r in proxy.priority_requests} == {restore_container}
    assert "escalating 3 volumes" in done.stderr
    assert {i.tier for i in store.list_blobs(container) if i.name in VOLUMES} == {"Archive"}


def test_status_wait_escalates_in_place_rehydration_and_reports_progress(
    archived, container, delayed, azurite_connection_string, run_retier
):
    _, settings = archived
    proxy, store, conn = delayed
    plan = plan_restore(store, container, settings)
    rehydrate(store, plan, to="Hot", priority="Standard")
    store.set_tier(container, [FULL[0]], "Hot", rehydrate_priority="High")  # one already High
    proxy.complete(container, {FULL[1]})  # one already online
    assert proxy.pending(container) == {FULL[0]: "High", INC[0]: "Standard"}
    env = env_for(conn)
    status = run_retier("status", "--container", container, "--json", env=env)
    assert status.returncode == 1
    shown = json.loads(status.stdout)
    assert {p["name"]: p["priority"] for p in shown["pending"]} == {
        FULL[0]: "High",
        INC[0]: "Standard",
    }
    assert all(0 <= p["pending_hours"] < 0.1 for p in shown["pending"])
    assert shown["high_priority_gib_per_hour"] == 10

    proxy.priority_requests.clear()
    proxy.finish_after(2)  # Azure's hours, as two listings each
    waited = run_retier(
        "status",
        "--container",
        container,
        "--wait",
        "--interval",
        "0",
        "--escalate-after",
        "0",
        env=env,
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr
    # the cost is said before the one Standard volume is raised; nothing else was sent
    (said,) = [line for line in waited.stderr.splitlines() if line.startswith("escalating")]
    assert said.startswith("escalating 1 volumes") and "USD" in said and "10 GiB/h" in said
    assert [(r.blob, r.priority) for r in proxy.priority_requests] == [(INC[0], "High")]
    progress = [line for line in waited.stderr.splitlines() if "volumes online" in line]
    assert progress[0].startswith("1/3 volumes online") and progress[-1].startswith("3/3")
    assert "all online" in waited.stdout


# -- event-driven completion: a log line an alert can match ----------------------------------------
def test_completion_events_log_one_restore_ready_line(
    archived, container, restore_container, caplog
):
    from retier.emulate import blob_created_event
    from retier.service import IGNORED

    store, settings = archived
    copy_out(store, plan_restore(store, container, settings), restore_container)
    service = RetierService(settings, store)
    (item,) = [i for i in store.list_blobs(restore_container) if i.name == INC[0]]
    url = store.blob_url(restore_container, INC[0])
    created = blob_created_event(
        account=store.account_name, container=restore_container, item=item, url=url
    )
    copied = {**created, "data": {**created["data"], "api": "CopyBlob"}}
    tier_changed = {
        **created,
        "eventType": "Microsoft.Storage.BlobTierChanged",
        "data": {
            **created["data"],
            "api": "SetBlobTier",
            "previousTier": "Archive",
            "accessTier": "Hot",
        },
    }
    to_archive = {
        **tier_changed,
        "data": {**tier_changed["data"], "previousTier": "Hot", "accessTier": "Archive"},
    }
    caplog.set_level("INFO", logger="retier.service")
    outcomes = [service.handle_event(e) for e in (created, copied, tier_changed, to_archive)]
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restore ready")]
    assert ready == [
        f"restore ready: {restore_container}/{INC[0]} copied online",
        f"restore ready: {restore_container}/{INC[0]} rehydrated in place to Hot",
    ]
    assert outcomes[2].status == IGNORED  # a hint only: nothing else is done for it
    assert {i.tier for i in store.list_blobs(restore_container)} == {"Hot"}


def test_rehydrate_warns_when_a_lifecycle_rule_would_archive_the_volumes_again(
    archived, container, azurite_connection_string, run_retier, tmp_path
):
    store, _ = archived
    env = env_for(azurite_connection_string)
    loop = {
        "name": "archive-old",
        "enabled": True,
        "type": "Lifecycle",
        "definition": {
            "filters": {"blobTypes": ["blockBlob"], "prefixMatch": [f"{container}/duplicity-"]},
            "actions": {"baseBlob": {"tierToArchive": {"daysAfterModificationGreaterThan": 1}}},
        },
    }
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"policy": {"rules": [loop]}}))
    dry = run_retier(
        "rehydrate", "--container", container, "--in-place", "--dry-run",
        "--lifecycle-policy", str(policy), env=env,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "lifecycle rule 'archive-old'" in dry.stderr
    assert f"--copy-to {container}-restore" in dry.stderr  # the way the rule cannot undo
    assert {i.tier for i in store.list_blobs(container) if i.name in VOLUMES} == {"Archive"}
    harmless = tmp_path / "none.json"
    harmless.write_text(json.dumps({"rules": []}))
    quiet = run_retier(
        "rehydrate", "--container", container, "--dry-run", "--lifecycle-policy", str(harmless),
        env=env,
    )  # fmt: skip
    assert quiet.returncode == 0 and "lifecycle rule" not in quiet.stderr
    bad = run_retier(
        "rehydrate", "--container", container, "--dry-run", "--lifecycle-policy",
        str(tmp_path / "missing.json"), env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "--lifecycle-policy" in bad.stderr
