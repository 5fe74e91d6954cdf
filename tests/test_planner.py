"""The sweep's planner over a stream of listed blobs (pure: no storage)."""

from datetime import datetime, timedelta, timezone

import pytest

from retier.policy import Policy
from retier.storage import BlobItem
from retier.sweep import Planner

T1, T2, T3 = "20240101T020304Z", "20240102T020304Z", "20240103T020304Z"
NOW = datetime(2024, 1, 10, tzinfo=timezone.utc)


def item(name, tier="Hot", size=100, archive_status=None, age_days=1.0):
    return BlobItem(
        name, size, tier, tier == "Hot", archive_status, NOW - timedelta(days=age_days), None, None
    )


def run(planner, items):
    moves = [m for m in map(planner.feed, sorted(items, key=lambda i: i.name)) if m]
    return moves, planner


def test_default_names_are_decided_as_the_listing_streams():
    items = [item(f"duplicity-full.{T1}.vol{i}.difftar.gpg") for i in (1, 2, 3)] + [
        item(f"duplicity-full.{T1}.manifest.gpg")
    ]
    moves, planner = run(Planner("c", Policy()), items)
    assert sorted(m.name for m in moves) == sorted(i.name for i in items[:3])
    assert planner.sets_to_relist() == []
    plan = planner.finish()
    assert plan.moves.count == 3 and plan.moves.bytes == 300
    assert dict(plan.rows)[("volume", "Hot", "Cold")].count == 3
    assert plan.unfinished == []


def test_unfinished_set_is_kept_and_reported_with_its_age():
    items = [item(f"duplicity-inc.{T1}.to.{T2}.vol{i}.difftar.gpg", age_days=5 - i) for i in (1, 2)]
    moves, planner = run(Planner("c", Policy(volume_tier="Archive")), items)
    plan = planner.finish()
    assert moves == [] and plan.moves.count == 0
    (unfinished,) = plan.unfinished
    assert (unfinished.label, unfinished.volumes, unfinished.bytes) == (
        f"duplicity-inc.{T1}.to.{T2}",
        2,
        200,
    )
    assert round(unfinished.age_days(NOW), 3) == 3.0
    assert dict(plan.rows)[("volume", "Hot", "Hot")].count == 2


def test_volumes_listed_before_their_manifest_are_relisted_not_lost():
    # per-type prefixes: "a/" volumes sort before "m/" manifests
    items = [item(f"a/duplicity-full.{T1}.vol{i}.difftar.gpg") for i in (1, 2)] + [
        item(f"m/duplicity-full.{T1}.manifest.gpg")
    ]
    planner = Planner("c", Policy(), archive_prefix="a/", manifest_prefix="m/")
    moves, _ = run(planner, items)
    assert moves == []
    ((key, prefix),) = planner.sets_to_relist()
    assert prefix == f"a/duplicity-full.{T1}.vol"
    relisted = [planner.feed_relisted(key, i) for i in items[:2]]
    assert [m.name for m in relisted] == [i.name for i in items[:2]]
    assert planner.finish().unfinished == []


def test_relisted_set_ignores_other_sets_under_the_same_listing_prefix():
    planner = Planner("c", Policy())
    planner.feed(item("df.abc.m"))
    key = next(iter(planner._sets))
    assert planner.feed_relisted(key, item("df.abc.1.dt")).name == "df.abc.1.dt"
    assert planner.feed_relisted(key, item("df.abcd.1.dt")) is None
    assert planner.feed_relisted(key, item("df.abc.m")) is None


def test_rehydrating_warmer_and_already_cold_volumes_are_not_moved():
    items = [
        item(f"duplicity-full.{T1}.manifest"),
        item(
            f"duplicity-full.{T1}.vol1.difftar",
            tier="Archive",
            archive_status="rehydrate-pending-to-hot",
        ),
        item(f"duplicity-full.{T1}.vol2.difftar", tier="Archive"),
        item(f"duplicity-full.{T1}.vol3.difftar", tier="Cold"),
        item(f"duplicity-full.{T1}.vol4.difftar", tier="Hot"),
    ]
    moves, planner = run(Planner("c", Policy(volume_tier="Cold")), items)
    assert [m.name for m in moves] == [f"duplicity-full.{T1}.vol4.difftar"]
    reasons = planner.finish().kept_reasons
    assert reasons["rehydrating (rehydrate-pending-to-hot)"] == 1
    assert reasons["never moves warmer (Archive -> Cold)"] == 1
    assert reasons["already at target"] == 1


def test_unknown_names_are_counted_and_never_moved():
    items = [item("notes.txt", size=7), item(f"duplicity-full.{T1}.vol1.difftar.gpg.part", size=5)]
    moves, planner = run(Planner("c", Policy(volume_tier="Archive", metadata_tier="Cool")), items)
    plan = planner.finish()
    assert moves == [] and (plan.unknown.count, plan.unknown.bytes) == (2, 12)


def test_planner_state_grows_with_sets_not_volumes():
    planner = Planner("c", Policy())
    planner.feed(item(f"duplicity-full.{T1}.manifest"))
    for i in range(1, 5001):
        planner.feed(item(f"duplicity-full.{T1}.vol{i}.difftar"))
    for i in range(1, 5001):
        planner.feed(item(f"duplicity-inc.{T2}.to.{T3}.vol{i}.difftar"))  # unfinished
    assert len(planner._sets) == 2
    assert all(len(s.pending) <= 1 for s in planner._sets.values())


def test_abandoned_is_one_definition_more_than_two_days_without_a_volume():
    from retier.sweep import ABANDONED_AFTER, UnfinishedSet

    assert ABANDONED_AFTER == timedelta(days=2)
    newest = NOW - ABANDONED_AFTER
    assert not UnfinishedSet("s", newest=newest).abandoned(NOW)  # a backup may still be running
    assert UnfinishedSet("s", newest=newest - timedelta(seconds=1)).abandoned(NOW)
    assert not UnfinishedSet("s").abandoned(NOW)  # age unknown: not called abandoned


def test_no_module_but_the_sweep_writes_the_relisting_loop_or_its_own_abandoned_age():
    # One re-listing loop (Planner.relist) and one "abandoned" (UnfinishedSet.abandoned): sweep,
    # cost report and doctor used to carry a copy each, and disagreed on the age.
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "retier"
    for path in root.rglob("*.py"):
        text = path.read_text()
        if path.name != "sweep.py":
            assert "sets_to_relist" not in text and "feed_relisted" not in text, path
        assert not re.search(r"age (?:is not None and age )?> ?\d", text), path


@pytest.mark.azurite
def test_relist_lists_each_late_manifest_set_by_prefix_and_decides_its_volumes(
    blob_service, container, store
):
    client = blob_service.get_container_client(container)
    vols = [f"a/duplicity-full.{T1}.vol{i}.difftar.gpg" for i in (1, 2)]
    other = f"a/duplicity-inc.{T1}.to.{T2}.vol1.difftar.gpg"  # unfinished: not re-listed
    for name in [*vols, other, f"m/duplicity-full.{T1}.manifest.gpg"]:
        client.upload_blob(name, b"xx")
    planner = Planner(container, Policy(), archive_prefix="a/", manifest_prefix="m/")
    assert [m for m in map(planner.feed, store.list_blobs(container)) if m] == []
    relisted = list(planner.relist(store))
    assert [(m.name, m.target) for _key, _item, m in relisted] == [(v, "Cold") for v in vols]
    plan = planner.finish()
    assert plan.sets_finished == 1 and [u.volumes for u in plan.unfinished] == [1]
