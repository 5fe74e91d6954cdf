"""The price table and the pure charges built on it (retier.costs), and the sweep planner's trap charge."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from retier import costs
from retier.policy import Policy
from retier.storage import BlobItem
from retier.sweep import Planner

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
T = "20260101T020304Z"
MANIFEST = f"duplicity-full.{T}.manifest.gpg"


def test_one_gigabyte_everywhere_is_two_to_the_thirtieth():
    assert costs.GB == 2**30
    prices = costs.load_prices({})
    assert costs.storage_per_month(3 * 2**30, "Cold", prices) == pytest.approx(
        3 * prices["storage_per_gb_month"]["Cold"], rel=1e-15
    )
    # early deletion and rehydration use the same gigabyte
    assert costs.early_deletion_for_days(2**30, "Archive", 0, prices) == pytest.approx(
        6 * prices["storage_per_gb_month"]["Archive"]
    )
    e = costs.rehydration_estimate([(2**30, None)], "Standard", NOW, prices)
    assert e.retrieval == pytest.approx(prices["retrieval_per_gb"]["Archive"])


def test_every_tier_has_every_price_and_the_table_names_its_sources():
    p = costs.DEFAULT_PRICES
    for key in ("storage_per_gb_month", "write_per_10k", "read_per_10k", "retrieval_per_gb"):
        assert set(p[key]) >= {"Hot", "Cool", "Cold", "Archive"}, key
    assert p["minimum_days"] == {"Hot": 0, "Cool": 30, "Cold": 90, "Archive": 180}
    for key in ("region", "redundancy", "currency", "as_of", "source"):
        assert p[key]
    assert {"storage_per_gb_month", "list_per_10k", "event_grid_per_million"} <= set(p["sources"])


def test_overrides_are_listed_key_by_key(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"region": "West Europe", "storage_per_gb_month": {"Cold": 0.004}}))
    prices, replaced = costs.load_prices_and_overrides({"RETIER_PRICES": str(path)})
    assert replaced == ["region", "storage_per_gb_month.Cold"]
    assert prices["storage_per_gb_month"] == {
        **costs.DEFAULT_PRICES["storage_per_gb_month"],
        "Cold": 0.004,
    }
    assert costs.load_prices_and_overrides({})[1] == []
    path.write_text("[1, 2]")
    with pytest.raises(costs.PriceError, match="JSON object"):
        costs.load_prices({"RETIER_PRICES": str(path)})


def test_a_table_older_than_a_year_is_stale():
    prices = {"as_of": "2025-01-01"}
    assert costs.prices_age_days(prices, date(2026, 1, 1)) == 365
    assert not costs.is_stale(prices, date(2026, 1, 1))
    assert costs.is_stale(prices, date(2026, 1, 2))
    assert costs.is_stale({"as_of": "last spring"}, date(2026, 1, 2))


def test_early_deletion_is_the_remaining_days_prorated():
    prices = costs.load_prices({})
    size = 10 * costs.GB
    cool = prices["storage_per_gb_month"]["Cool"]
    assert costs.early_deletion(size, "Cool", NOW - timedelta(days=12), NOW, prices) == (
        pytest.approx(18 / 30 * cool * 10)
    )
    assert costs.early_deletion(size, "Cool", NOW - timedelta(days=30), NOW, prices) == 0
    assert costs.early_deletion(size, "Hot", NOW, NOW, prices) == 0
    assert costs.early_deletion(size, "Cold", None, NOW, prices) == 0
    assert costs.early_deletion(size, "P10", NOW, NOW, prices) == 0  # a tier with no price
    # a tier change time ahead of our clock counts as just now: the whole minimum
    assert costs.early_deletion(size, "Cool", NOW + timedelta(hours=1), NOW, prices) == (
        pytest.approx(cool * 10)
    )


def test_the_event_handler_request_counts_are_one_function_of_the_volumes():
    one = costs.manifest_event_requests(1)
    # a new set: one listing and one Set Blob Tier (never tiered before: no restore-hold read)
    assert (one.lists, one.others, one.writes, one.transactions) == (1, 0, 1, 2)
    many = costs.manifest_event_requests(600)  # three batches of at most 256
    assert (many.lists, many.others, many.writes) == (1, 3, 600)
    assert costs.manifest_event_requests(0).transactions == 1
    assert costs.sweep_requests(12_000) == costs.Requests(lists=3, others=1)


def test_running_cost_counts_requests_events_and_free_grants():
    prices = costs.load_prices({})
    rc = costs.running_cost(
        sets_per_month=30,
        volumes_per_set=10,
        events_per_set=12,
        volume_tier="Archive",
        container_blobs=5000,
        prices=prices,
        sweeps_per_month=30,
    )
    # per set: the manifest's listing, one batch, 10 writes (volume events make no request);
    # per sweep: one listing page and the hold read
    assert rc.requests == costs.Requests(lists=30 + 30, others=30 + 30, writes=300)
    assert rc.storage_operations == pytest.approx(
        (60 * 0.05 + 60 * 0.004 + 300 * prices["write_per_10k"]["Archive"]) / 10_000
    )
    assert rc.event_grid_operations == 720 and rc.event_grid == 0  # under 100,000 a month
    assert rc.executions == 360 + 30 and rc.functions == 0 and rc.functions_before_grant > 0
    busy = costs.running_cost(
        sets_per_month=30,
        volumes_per_set=10,
        events_per_set=4000,
        volume_tier="Cold",
        container_blobs=0,
        prices=prices,
    )
    assert busy.event_grid == pytest.approx((240_000 - 100_000) / 1e6 * 0.60)


def test_format_money_keeps_small_amounts_readable():
    assert costs.format_money(12.345, "USD") == "12.35 USD"
    assert costs.format_money(0.000123456, "USD") == "0.000123 USD"
    assert costs.format_money(0, "EUR") == "0.00 EUR"
    # money, never scientific notation (issue 15 item 7, issue 18's debt)
    assert costs.format_money(7.92e-05, "USD") == "0.0000792 USD"
    assert costs.format_money(-6.2e-05, "USD") == "-0.0000620 USD"
    assert costs.format_money(0.00999, "USD") == "0.00999 USD"
    assert "e" not in costs.format_money(3.1e-11, "USD").split()[0]


# -- the Cool-then-Archive trap in the sweep's planner (pure) --------------------------------------


def item(name, tier, *, days_ago, inferred=False, size=costs.GB):
    since = NOW - timedelta(days=days_ago)
    return BlobItem(name, size, tier, inferred, None, since, None if inferred else since, since)


def plan_of(items, volume_tier="Archive"):
    planner = Planner("c", Policy(volume_tier=volume_tier), now=NOW)
    moves = [m for m in map(planner.feed, items) if m]
    return moves, planner.finish()


def test_planned_moves_out_of_an_explicit_cool_or_cold_tier_carry_their_early_deletion():
    prices = costs.DEFAULT_PRICES
    vols = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in (1, 2, 3, 4)]
    moves, plan = plan_of(
        [
            item(MANIFEST, "Hot", days_ago=10, inferred=True),
            item(vols[0], "Cool", days_ago=10),  # 20 days of Cool left
            item(vols[1], "Cold", days_ago=30),  # 60 days of Cold left
            item(vols[2], "Cool", days_ago=45),  # past its minimum: free
            item(vols[3], "Hot", days_ago=1, inferred=True),  # the account default: free
        ]
    )
    assert [m.name for m in moves] == vols
    cool = 20 / 30 * prices["storage_per_gb_month"]["Cool"]
    cold = 60 / 30 * prices["storage_per_gb_month"]["Cold"]
    assert [m.early_deletion for m in moves] == pytest.approx([cool, cold, 0, 0])
    assert (plan.early_deletion.count, plan.early_deletion.bytes) == (2, 2 * costs.GB)
    assert plan.early_deletion_charge == pytest.approx(cool + cold)
    assert [m.name for m in plan.early_deletion_moves] == vols[:2]
    d = plan.to_dict(NOW)["early_deletion"]
    assert d["blobs"] == 2 and d["charge"] == pytest.approx(cool + cold, abs=1e-6)
    assert [m["name"] for m in d["moves"]] == vols[:2]


def test_a_tier_inherited_from_the_account_default_pays_nothing_when_it_moves():
    vol = f"duplicity-full.{T}.vol1.difftar.gpg"
    moves, plan = plan_of(
        [
            item(MANIFEST, "Cool", days_ago=3, inferred=True),
            item(vol, "Cool", days_ago=3, inferred=True),
        ]
    )
    assert [m.name for m in moves] == [vol] and moves[0].early_deletion == 0
    assert plan.early_deletion.count == 0 and plan.early_deletion_charge == 0


def test_the_named_trap_moves_are_bounded():
    from retier.sweep import MAX_EARLY_DELETION_DETAILS

    vols = [f"duplicity-full.{T}.vol{i}.difftar.gpg" for i in range(1, 51)]
    _, plan = plan_of(
        [item(MANIFEST, "Hot", days_ago=1)] + [item(v, "Cool", days_ago=1) for v in vols]
    )
    assert plan.early_deletion.count == 50
    assert len(plan.early_deletion_moves) == MAX_EARLY_DELETION_DETAILS


def test_a_blob_with_no_standard_tier_is_priced_as_hot():
    from retier.report import priced_tier

    assert [priced_tier(t) for t in ("Cold", "unknown", "P10")] == ["Cold", "Hot", "Hot"]


# -- the report's read-ahead of the listing ------------------------------------------------------


def test_read_ahead_keeps_the_order_and_raises_the_listings_error_in_place():
    from retier.report import read_ahead
    from retier.storage import StorageError

    assert list(read_ahead(range(1234), chunk=100, depth=2)) == list(range(1234))
    assert list(read_ahead([], chunk=10)) == []

    def failing():
        yield from range(25)
        raise StorageError("list c: HTTP 503 ServerBusy", transient=True, status=503)

    seen = []
    with pytest.raises(StorageError, match="ServerBusy") as caught:
        seen.extend(read_ahead(failing(), chunk=10, depth=2))  # keeps what came before the error
    assert seen == list(range(25)) and caught.value.transient


def test_read_ahead_stays_bounded_and_stops_when_the_caller_does():
    import threading
    import time

    from retier.report import read_ahead

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    reader = read_ahead(endless(), chunk=10, depth=3)
    assert next(reader) == 0
    time.sleep(0.3)  # the helper fills its queue, then waits
    assert len(produced) <= 10 * (3 + 2)  # the queue, the batch handed over and one being built
    reader.close()
    assert not any(t.name == "retier-read-ahead" for t in threading.enumerate())
