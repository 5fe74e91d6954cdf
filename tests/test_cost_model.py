"""The schedule model (retier.model): hand-computed bills to the cent, and properties of the choice."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from retier import costs, model
from retier.model import ModelError, Schedule, run_model

PRICES = costs.load_prices({})
P = PRICES
MONTH = 365.25 / 12  # days
GB = 2**30

# One chain of a full and one incremental, kept 10 days: small enough to do by hand.
# 1 GB full (one 1,024 MiB volume), 10 % a day -> a 0.1 GB incremental (one volume of 102.4 MiB).
# The chain's last set is older than 10 days on day 12: the full lives 12 days, the incremental 11.
HAND = Schedule(
    source_gb=1, daily_change_pct=10, full_every_days=2, keep_days=10, volsize_mb=1024,
    restores_per_year=12,
)  # fmt: skip
CHAINS_PER_MONTH = MONTH / 2
VOLUME_GB = (1 * 12 + 0.1 * 11) / 2  # 6.55 GB held on average
SIGNATURE_GB = VOLUME_GB * 0.01
# Uploads per chain: the 1 GiB volume in 4 MiB blocks + a block list (257), the 0.1 GiB one
# (102.4 MiB: 26 blocks + 1 = 27), each set's signatures (under 64 MiB: 1) and manifest (1).
UPLOADS = (257 + 1 + 1) + (27 + 1 + 1)
UPLOAD_COST = UPLOADS / 10_000 * P["write_per_10k"]["Hot"] * CHAINS_PER_MONTH
# Get Blob requests: 32 MiB, then 4 MiB ranges: 1 + 248 for the full volume, 1 + 18 for the other.
FULL_GETS, INC_GETS = 249, 19


def cents(x: float) -> int:
    return round(x * 100)


def test_hand_computed_all_hot():
    r = run_model(HAND, PRICES).by_name("all-Hot")
    storage = (VOLUME_GB + SIGNATURE_GB) * 0.0184
    # a restore reads the full (day 0 of the chain) or the full and the incremental (day 1)
    restore = (FULL_GETS + (FULL_GETS + INC_GETS)) / 2 / 10_000 * 0.004
    assert r.storage == pytest.approx(storage, rel=1e-12)
    assert r.operations == pytest.approx(UPLOAD_COST, rel=1e-12)
    assert r.early_deletion == 0
    assert r.restores == pytest.approx(restore * 12 / 12, rel=1e-12)
    assert cents(r.total) == cents(storage + UPLOAD_COST + restore) == 14


def test_hand_computed_volumes_cold():
    r = run_model(HAND, PRICES).by_name("volumes-Cold")
    storage = VOLUME_GB * 0.0036 + SIGNATURE_GB * 0.0184
    # Both sets leave Cold long before 90 days: the full after 12, the incremental after 11.
    early = ((90 - 12) / 30 * 0.0036 * 1 + (90 - 11) / 30 * 0.0036 * 0.1) * CHAINS_PER_MONTH
    # retier per set (one a day): the volume's event makes no request; the manifest's event
    # lists the set and sets one tier (a new volume: no restore-hold read); a daily sweep of the
    # 35 blobs (one page) lists once and reads the hold. Event Grid (183 operations) and
    # Functions are free grants.
    lists = 1 * MONTH + 1 * MONTH
    others = 1 * MONTH
    writes = 1 * MONTH
    retier = lists / 1e4 * 0.05 + others / 1e4 * 0.004 + writes / 1e4 * 0.18
    restore = ((FULL_GETS / 1e4 * 0.10 + 1 * 0.03) * 2 + (INC_GETS / 1e4 * 0.10 + 0.1 * 0.03)) / 2
    assert r.storage == pytest.approx(storage, rel=1e-12)
    assert r.early_deletion == pytest.approx(early, rel=1e-12)
    assert r.operations == pytest.approx(UPLOAD_COST + retier, rel=1e-9)
    assert r.restores == pytest.approx(restore, rel=1e-12)
    assert cents(r.storage) == 2 and cents(r.early_deletion) == 16
    assert cents(r.total) == cents(storage + early + UPLOAD_COST + retier + restore) == 24


def test_hand_computed_volumes_archive_restore():
    r = run_model(HAND, PRICES).by_name("volumes-Archive")
    # Per restored set: one rehydration request (Archive read) and retrieval per GB, a day in
    # Hot, the Get Blobs in Hot, one write back to Archive.
    full = 5.00 / 1e4 + 0.02 * 1 + 0.0184 * 1 / MONTH + FULL_GETS / 1e4 * 0.004 + 0.10 / 1e4
    inc = 5.00 / 1e4 + 0.02 * 0.1 + 0.0184 * 0.1 / MONTH + INC_GETS / 1e4 * 0.004 + 0.10 / 1e4
    # Early deletion when it leaves Archive: on day 0 the full has 180 days to go; on day 1 it
    # has 179, and the copy archived again is deleted one day later (at 11 days in Archive
    # instead of 12): (179 + 1) days in all. The day-1 incremental: 180 days.
    ed_full = 180 / 30 * 0.002 * 1
    ed_inc = 180 / 30 * 0.002 * 0.1
    restore = ((full + ed_full) + (full + ed_full + inc + ed_inc)) / 2
    early = ((180 - 12) / 30 * 0.002 * 1 + (180 - 11) / 30 * 0.002 * 0.1) * CHAINS_PER_MONTH
    assert r.restores == pytest.approx(restore, rel=1e-12)
    assert r.early_deletion == pytest.approx(early, rel=1e-12)
    assert cents(r.restores) == 4 and cents(r.early_deletion) == 19


def test_a_chain_lives_until_its_last_set_is_older_than_keep_days():
    s = Schedule(source_gb=10, daily_change_pct=1, full_every_days=7, keep_days=30)
    assert [s.lifetime_days(j) for j in range(7)] == [37, 36, 35, 34, 33, 32, 31]


def test_upload_and_download_requests_follow_the_sdk_defaults():
    mib = 2**20
    assert model.upload_requests(64 * mib) == 1  # a single Put Blob up to 64 MiB
    assert model.upload_requests(64 * mib + 1) == 17 + 1  # then 4 MiB blocks and a block list
    assert model.upload_requests(200 * mib) == 51
    assert model.download_requests(32 * mib) == 1
    assert model.download_requests(200 * mib) == 1 + 42
    assert model.volumes_of(450 * mib, 200 * mib) == (3, 50 * mib)
    assert model.volumes_of(0, 200 * mib) == (1, 0)


def test_json_has_the_documented_keys_and_recommends_the_cheapest():
    result = run_model(Schedule(500, 1, 30, 180), PRICES)
    d = result.to_dict()
    assert [s["name"] for s in d["strategies"]] == list(model.STRATEGY_NAMES)
    for s in d["strategies"]:
        assert {
            "name",
            "storage_per_month",
            "operations_per_month",
            "early_deletion_per_month",
            "restores_per_month",
            "total_per_month",
        } <= set(s)
    cheapest = min(d["strategies"], key=lambda s: s["total_per_month"])
    assert d["recommended"] == cheapest["name"] == "volumes-Archive"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source_gb": 0},
        {"daily_change_pct": 101},
        {"full_every_days": 0},
        {"keep_days": -1},
        {"volsize_mb": 0},
        {"restores_per_year": -1},
    ],
)
def test_impossible_schedules_are_refused(kwargs):
    base = {"source_gb": 1, "daily_change_pct": 1, "full_every_days": 7, "keep_days": 30}
    with pytest.raises(ModelError):
        Schedule(**{**base, **kwargs})


# -- properties ---------------------------------------------------------------------------------

sources = st.floats(10, 5000)
changes = st.floats(0, 5)


@hsettings(max_examples=60, deadline=None)
@given(
    source=sources,
    factor=st.floats(1.01, 20),
    change=changes,
    full=st.integers(1, 60),
    keep=st.integers(0, 730),
    restores=st.floats(0, 50),
)
def test_every_total_grows_with_the_source(source, factor, change, full, keep, restores):
    small = run_model(Schedule(source, change, full, keep, restores_per_year=restores), PRICES)
    large = run_model(
        Schedule(source * factor, change, full, keep, restores_per_year=restores), PRICES
    )
    for a, b in zip(small.strategies, large.strategies):
        assert b.total > a.total, a.name


@hsettings(max_examples=60, deadline=None)
@given(
    source=sources,
    change=changes,
    full=st.integers(1, 60),
    keep=st.integers(200, 730),
    restores=st.floats(0, 1),
)
def test_long_retention_and_rare_restores_make_archive_cheapest(
    source, change, full, keep, restores
):
    result = run_model(Schedule(source, change, full, keep, restores_per_year=restores), PRICES)
    assert result.recommended.name == "volumes-Archive"
    assert result.by_name("volumes-Archive").early_deletion == 0


@hsettings(max_examples=60, deadline=None)
@given(source=sources, change=st.floats(0.01, 5), full=st.integers(1, 60), keep=st.integers(0, 178))
def test_keeping_under_180_days_makes_archive_pay_early_deletion(source, change, full, keep):
    # The chain's last incremental (or a daily full) lives keep + 1 days: under Archive's 180.
    # (An incremental that changes nothing weighs nothing: at least 0.01 % a day here.)
    archive = run_model(Schedule(source, change, full, keep), PRICES).by_name("volumes-Archive")
    assert archive.early_deletion > 0


@hsettings(max_examples=60, deadline=None)
@given(
    source=sources,
    change=changes,
    life=st.integers(1, 90),
    data=st.data(),
    restores=st.floats(0, 50),
)
def test_short_lived_chains_never_get_archive_recommended(source, change, life, data, restores):
    full = data.draw(st.integers(1, life))
    result = run_model(
        Schedule(source, change, full, life - full, restores_per_year=restores), PRICES
    )
    assert result.by_name("volumes-Archive").early_deletion > 0
    assert result.recommended.name != "volumes-Archive"


def test_between_100_and_180_days_archive_can_pay_early_deletion_and_still_be_cheapest():
    # The documented limit of "under 180 days, not Archive": at these prices a chain living 150 to
    # 180 days pays Archive's remaining days and still costs less there than anywhere else.
    result = run_model(Schedule(500, 1, 30, 150), PRICES)
    archive = result.by_name("volumes-Archive")
    assert archive.early_deletion > 0 and result.recommended is archive


@hsettings(max_examples=60, deadline=None)
@given(
    source=st.floats(1, 5000),
    change=st.floats(0, 10),
    full=st.integers(1, 30),
    keep=st.integers(0, 730),
    volsize=st.sampled_from([1, 25, 50, 100, 200]),
)
def test_many_restores_make_archive_lose_to_cold(source, change, full, keep, volsize):
    # With fulls at least monthly, a restore out of Archive costs more than one out of Cold
    # (the young latest chain pays Archive's early deletion), so past a break-even number of
    # restores a year Cold is cheaper; twice that many, and Archive must have lost.
    def at(restores):
        r = run_model(Schedule(source, change, full, keep, volsize, restores), PRICES)
        return r.by_name("volumes-Archive"), r.by_name("volumes-Cold")

    archive, cold = at(0)
    per_restore = archive.details["restore_each"] - cold.details["restore_each"]
    assert per_restore > 0
    gap = cold.total - archive.total  # what Archive saves a month without restores
    assume(gap > 0)
    many = max(1.0, 2 * 12 * gap / per_restore)
    archive, cold = at(many)
    assert archive.total > cold.total


def test_the_home_schedule_turns_from_archive_to_cold_between_50_and_100_restores_a_year():
    def cheaper(restores):
        r = run_model(Schedule(500, 1, 30, 180, restores_per_year=restores), PRICES)
        return r.by_name("volumes-Archive").total < r.by_name("volumes-Cold").total

    assert cheaper(1) and cheaper(50) and not cheaper(100)


def test_volumes_per_full_and_stored_bytes_are_reported():
    d = run_model(Schedule(500, 1, 30, 180), PRICES).by_name("volumes-Cold").details
    assert d["volumes_per_full"] == math.ceil(500 * 1024 / 200)
    assert d["retier_per_month"]["functions"] == 0  # inside the free grant
    assert d["retier_per_month"]["functions_before_free_grant"] > 0


def test_the_documented_table_is_what_the_model_says():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "docs" / "costs.md").read_text()  # the table moved there from the README
    result = run_model(Schedule(500, 1, 30, 180), PRICES)
    for s in result.strategies:
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| {s.name} |")]
        cells = [c.strip().strip("*").removesuffix(" USD") for c in row.strip("|").split("|")]
        assert [float(c) for c in cells[2:]] == [
            round(x, 2) for x in (s.storage, s.operations, s.early_deletion, s.restores, s.total)
        ], s.name
    hot = result.by_name("all-Hot").total
    archive, cold = result.by_name("volumes-Archive").total, result.by_name("volumes-Cold").total
    text = " ".join(readme.split())
    assert (
        f"Archive costs {archive / hot:.0%} of all-Hot and Cold {cold / hot:.0%}".replace("%", " %")
        in text
    )
    short = run_model(Schedule(500, 1, 30, 90), PRICES)
    archive, cold = short.by_name("volumes-Archive"), short.by_name("volumes-Cold")
    assert (
        f"monthly fulls kept 90 days: {archive.total:.2f} USD with {archive.early_deletion:.2f} of "
        f"early deletion, against {cold.total:.2f} for Cold"
    ) in text


def test_the_readme_bill_paragraph_is_what_the_model_says():
    from pathlib import Path

    from retier.costs import DEFAULT_PRICES

    text = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    result = run_model(Schedule(500, 1, 30, 180), PRICES)
    hot = result.by_name("all-Hot").total
    cold, archive = result.by_name("volumes-Cold").total, result.by_name("volumes-Archive").total
    assert f"as of {DEFAULT_PRICES['as_of']}" in text
    assert f"**{hot:.2f} USD** for duplicity's all-Hot default" in text
    pct = lambda x: f"{x / hot:.0%}".replace("%", " %")
    assert f"**{cold:.2f} USD** with retier's default (volumes to Cold, {pct(cold)})" in text
    assert f"**{archive:.2f} USD** with volumes to Archive ({pct(archive)})" in text
