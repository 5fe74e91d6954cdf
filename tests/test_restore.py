"""Rehydrate, status, release against Azurite; Azure's hours-long pending state through a stand-in."""

from __future__ import annotations

import json

import pytest

from retier.emulate import blob_created_event
from retier.metering import CountingTransport, Meter
from retier.restore import (
    RestoreError,
    plan_restore,
    refresh,
    rehydrate,
    wait_until_online,
)
from retier.service import IGNORED, RetierService
from retier.settings import Connection, load_settings
from retier.storage import BlobItem, BlobStore
from retier.sweep import sweep_container

pytestmark = pytest.mark.azurite

T = ["20240101T000000Z", "20240102T000000Z", "20240103T000000Z"]
FULL = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
INC1 = [f"duplicity-inc.{T[0]}.to.{T[1]}.vol1.difftar.gpg"]
INC2 = [
    f"duplicity-inc.{T[1]}.to.{T[2]}.vol1.difftar.gpg",
    f"duplicity-inc.{T[1]}.to.{T[2]}.vol2.difftar.gpg",
]
META = [
    f"duplicity-full.{T[0]}.manifest.gpg",
    f"duplicity-full-signatures.{T[0]}.sigtar.gpg",
    f"duplicity-inc.{T[0]}.to.{T[1]}.manifest.gpg",
    f"duplicity-inc.{T[1]}.to.{T[2]}.manifest.gpg",
]
VOLUMES = FULL + INC1 + INC2


@pytest.fixture
def archived(blob_service, container, azurite_connection_string):
    client = blob_service.get_container_client(container)
    for name in VOLUMES + META:
        client.upload_blob(name, b"v" * 2000)
    settings = load_settings(
        {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    )
    store = BlobStore.from_connection(settings.connection)
    sweep_container(store, container, settings)
    assert {b.name: b.blob_tier for b in client.list_blobs()} == {
        **{v: "Archive" for v in VOLUMES},
        **{m: "Hot" for m in META},
    }
    return client, store, settings


def tiers(client):
    return {b.name: b.blob_tier for b in client.list_blobs()}


def test_plan_lists_every_volume_of_the_chain_with_tier_and_bytes(archived, container):
    _, store, settings = archived
    plan = plan_restore(store, container, settings)
    assert [v.name for v in plan.volumes] == VOLUMES
    assert {v.state for v in plan.volumes} == {"archived"}
    assert plan.to_dict()["bytes_to_rehydrate"] == 2000 * len(VOLUMES)
    from datetime import datetime, timezone

    earlier = plan_restore(
        store, container, settings, at=datetime(2024, 1, 2, 12, tzinfo=timezone.utc)
    )
    assert [v.name for v in earlier.volumes] == FULL + INC1


def test_plan_refuses_volumes_not_in_the_chosen_chain(archived, container):
    _, store, settings = archived
    with pytest.raises(RestoreError, match="not in that chain"):
        plan_restore(
            store,
            container,
            settings,
            volume_names=["duplicity-full.20230101T000000Z.vol1.difftar.gpg"],
        )


def test_plan_asks_for_a_prefix_when_a_container_holds_several_backups(archived, container):
    client, store, settings = archived
    client.upload_blob(f"host2-duplicity-full.{T[0]}.manifest.gpg", b"m")
    with pytest.raises(RestoreError, match="--prefix"):
        plan_restore(store, container, settings)
    assert len(plan_restore(store, container, settings, prefix="").volumes) == len(VOLUMES)


class RecordingStore(BlobStore):
    """Real Azurite; remembers, for every tier change, the hold at that moment and the priority asked."""

    def set_tier(self, container, names, tier, **kwargs):
        self.calls = [
            *getattr(self, "calls", []),
            (self.get_hold(container), kwargs.get("rehydrate_priority"), list(names)),
        ]
        return super().set_tier(container, names, tier, **kwargs)


def test_rehydrate_holds_first_then_brings_only_planned_volumes_online_in_place(
    archived, container, azurite_connection_string
):
    client, _, settings = archived
    store = RecordingStore.from_connection(Connection(connection_string=azurite_connection_string))
    plan = plan_restore(store, container, settings, volume_names=[FULL[1], INC2[0]])
    result = rehydrate(store, plan, to="Hot", priority="High")
    assert result.requested == 2 and result.failures == []
    ((hold, priority, sent),) = store.calls
    assert (
        hold
        and hold.startswith("restore since")
        and priority == "High"
        and sorted(sent) == sorted([FULL[1], INC2[0]])
    )
    assert store.get_hold(container).startswith("restore since")
    want = {
        **{v: "Archive" for v in VOLUMES},
        **{m: "Hot" for m in META},
        FULL[1]: "Hot",
        INC2[0]: "Hot",
    }
    assert tiers(client) == want
    assert {v.state for v in refresh(store, plan).volumes} == {"online"}


def test_hold_keeps_event_handler_and_sweep_from_re_archiving(archived, container):
    client, store, settings = archived
    rehydrate(store, plan_restore(store, container, settings), to="Hot")
    service = RetierService(settings, store)
    for name in (META[0], META[3], FULL[0]):
        (item,) = [i for i in store.list_blobs(container, name) if i.name == name]
        outcome = service.handle_event(
            blob_created_event(
                account=store.account_name,
                container=container,
                item=item,
                url=store.blob_url(container, name),
            )
        )
        assert outcome.status == IGNORED and outcome.moved == []
    assert sweep_container(store, container, settings).held
    assert set(tiers(client).values()) == {"Hot"}
    store.clear_hold(container)
    sweep_container(store, container, settings)
    assert {v: t for v, t in tiers(client).items() if v in VOLUMES} == {
        v: "Archive" for v in VOLUMES
    }


class AzureRehydrationDelayStandIn(BlobStore):
    """Stands in for Azure's hours-long rehydration, which Azurite does instantly: after a tier
    change out of Archive, listings keep showing the blob archived with `rehydrate-pending-to-<tier>`
    for `pending_polls` listings of its set."""

    pending_polls = 3  # a second rehydrate re-reads the plan under the hold: one listing more

    def __init__(self, client):
        super().__init__(client)
        self.pending: dict[str, list] = {}

    def set_tier(self, container, names, tier, *, rehydrate_priority=None):
        before = {
            i.name: i.tier
            for n in names
            for i in BlobStore.list_blobs(self, container, n)
            if i.name == n
        }
        results = super().set_tier(container, names, tier, rehydrate_priority=rehydrate_priority)
        for r in results:
            if before.get(r.name) == "Archive":
                self.pending[r.name] = [self.pending_polls, tier]
        return results

    def list_blobs(self, container, prefix=None):
        for item in super().list_blobs(container, prefix):
            left = self.pending.get(item.name)
            if left and left[0] > 0:
                left[0] -= 1
                item = BlobItem(
                    item.name,
                    item.size,
                    "Archive",
                    False,
                    f"rehydrate-pending-to-{left[1].lower()}",
                    item.last_modified,
                    item.tier_change_time,
                    item.creation_time,
                    item.etag,
                )
            yield item


def test_status_wait_polls_through_the_pending_state_until_all_online(
    archived, container, azurite_connection_string
):
    _, _, settings = archived
    store = AzureRehydrationDelayStandIn.from_connection(
        Connection(connection_string=azurite_connection_string)
    )
    plan = plan_restore(store, container, settings)
    rehydrate(store, plan, to="Cool", priority="Standard")
    pending = refresh(store, plan)
    assert {v.state for v in pending.volumes} == {"rehydrating"}
    assert {v.archive_status for v in pending.volumes} == {"rehydrate-pending-to-cool"}
    # a second rehydrate while pending sends nothing for those volumes
    again = rehydrate(store, pending, to="Cool")
    assert (again.requested, again.already_rehydrating) == (0, len(VOLUMES))
    seen, sleeps = [], []
    final = wait_until_online(
        store,
        pending,
        interval=60,
        on_poll=lambda p: seen.append(len(p.by_state()["online"])),
        sleep=sleeps.append,
    )
    assert {v.state for v in final.volumes} == {"online"} and {v.tier for v in final.volumes} == {
        "Cool"
    }
    # `pending` as given, then one re-read per wait: the stand-in's last pending listing, then online
    assert seen == [0, 0, len(VOLUMES)] and sleeps == [60, 60]


def test_wait_stops_when_archived_volumes_are_not_on_their_way_without_listing_again(
    archived, container, azurite_connection_string
):
    _, _, settings = archived
    meter = Meter()
    store = BlobStore.from_connection(settings.connection, transport=CountingTransport(meter))
    plan = plan_restore(store, container, settings)
    meter.reset()
    sleeps = []
    final = wait_until_online(store, plan, interval=1, sleep=sleeps.append)
    assert sleeps == [] and len(final.by_state()["archived"]) == len(VOLUMES)
    assert meter.round_trips == 0  # the plan was just listed: nothing to re-read before a wait


def test_cli_restore_commands_from_plan_to_release(
    archived, container, azurite_connection_string, run_retier
):
    client, store, _ = archived
    env = {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    plan = json.loads(
        run_retier("restore-plan", "--container", container, "--json", env=env).stdout
    )
    assert [v["name"] for v in plan["volumes"]] == VOLUMES and plan["counts"]["archived"] == len(
        VOLUMES
    )
    assert plan["estimates"]["High"]["total"] > plan["estimates"]["Standard"]["total"] > 0

    status = run_retier("status", "--container", container, env=env)
    assert status.returncode == 1 and "run `retier rehydrate` first" in status.stdout

    dry = run_retier("rehydrate", "--container", container, "--in-place", "--dry-run", env=env)
    assert dry.returncode == 0 and "would hold" in dry.stdout
    assert store.get_hold(container) is None and {tiers(client)[v] for v in VOLUMES} == {"Archive"}

    unconfirmed = run_retier("rehydrate", "--container", container, "--in-place", env=env, stdin="")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr

    done = run_retier(
        "rehydrate",
        "--container",
        container,
        "--in-place",
        "--yes",
        "--priority",
        "High",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["way"], result["requested"], result["failures"]) == (
        "in-place",
        len(VOLUMES),
        [],
    )
    assert {tiers(client)[v] for v in VOLUMES} == {"Hot"} and store.get_hold(container)

    ok = run_retier(
        "status", "--container", container, "--wait", "--interval", "0", "--json", env=env
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["counts"] == {
        "online": len(VOLUMES),
        "rehydrating": 0,
        "archived": 0,
    }

    released = run_retier("release", "--container", container, "--now", "--json", env=env)
    assert released.returncode == 0, released.stderr
    out = json.loads(released.stdout)
    assert out["hold_lifted"].startswith("restore since ") and out["moved"] == len(VOLUMES)
    assert out["early_deletion"]["volumes"] == 0  # out of Hot: no minimum days to pay
    assert store.get_hold(container) is None
    assert {tiers(client)[v] for v in VOLUMES} == {"Archive"}


def test_release_now_warns_about_early_deletion_out_of_cold(
    archived, container, azurite_connection_string, run_retier
):
    client, store, settings = archived
    rehydrate(store, plan_restore(store, container, settings), to="Cold")
    out = run_retier(
        "release",
        "--container",
        container,
        "--now",
        env={"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (note,) = [line for line in out.stdout.splitlines() if "early-deletion charge" in line]
    assert note.startswith(
        f"note: {len(VOLUMES)} of these volumes left their tier before its minimum days"
    )
    # the charge itself is printed once, by the sweep's report (it used to be repeated here)
    (charged,) = [line for line in out.stdout.splitlines() if "is charged ~" in line]
    total = charged.rsplit("~", 1)[1]
    assert out.stdout.count(total) == 1 and "USD" not in note
    assert {tiers(client)[v] for v in VOLUMES} == {"Archive"}
