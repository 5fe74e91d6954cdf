"""retier's own monthly cost is never a rate extrapolated from seconds (issue 15, item 2)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from retier import costs
from retier.report import FEW, GIVEN, MEASURED, TOO_YOUNG, ContainerReport, SetInfo

T0 = datetime(2024, 1, 1, 2, 3, 4, tzinfo=timezone.utc)


def report_with_sets(*offsets: timedelta, sets_per_day=None) -> ContainerReport:
    report = ContainerReport("backups", costs.load_prices({}), T0 + timedelta(days=60), "Cold")
    for i, offset in enumerate(offsets):
        report.sets[(i,)] = SetInfo(f"set{i}", T0 + offset, finished=True, blobs=5, volumes=2)
    report.sets_per_day = sets_per_day
    return report


@pytest.mark.parametrize(
    "offsets, basis",
    [
        ((timedelta(0), timedelta(seconds=6)), TOO_YOUNG),  # the reported case: 438,300 a month
        ((timedelta(0), timedelta(hours=23, minutes=59)), TOO_YOUNG),
        ((timedelta(0),), FEW),
        ((), FEW),
    ],
)
def test_a_cadence_that_cannot_be_measured_assumes_one_set_a_day(offsets, basis):
    report = report_with_sets(*offsets)
    assert report.sets_per_month() is None
    assert report.cadence() == (pytest.approx(costs.DAYS_PER_MONTH), basis)


def test_sets_spanning_a_day_or_more_give_the_measured_cadence():
    hourly = [timedelta(hours=h) for h in range(49)]  # 48 intervals over two days
    report = report_with_sets(*hourly)
    assert report.cadence() == (pytest.approx(24 * costs.DAYS_PER_MONTH), MEASURED)


def test_the_users_schedule_wins_over_the_listing():
    report = report_with_sets(timedelta(0), timedelta(seconds=6), sets_per_day=0.5)
    assert report.cadence() == (pytest.approx(0.5 * costs.DAYS_PER_MONTH), GIVEN)


@pytest.mark.azurite
def test_cost_of_a_container_made_seconds_ago_says_it_is_too_young(
    blob_service, container, azurite_connection_string, run_retier
):
    """The defect as reported: a full and an incremental 6 seconds apart, then `retier cost`."""
    t1, t2 = "20240101T020304Z", "20240101T020310Z"
    client = blob_service.get_container_client(container)
    for name in [
        f"duplicity-full.{t1}.vol1.difftar.gpg",
        f"duplicity-full.{t1}.manifest.gpg",
        f"duplicity-full-signatures.{t1}.sigtar.gpg",
        f"duplicity-inc.{t1}.to.{t2}.vol1.difftar.gpg",
        f"duplicity-inc.{t1}.to.{t2}.manifest.gpg",
        f"duplicity-new-signatures.{t1}.to.{t2}.sigtar.gpg",
    ]:
        client.upload_blob(name, b"d" * 100)
    env = {"RETIER_STORAGE": azurite_connection_string}
    text = run_retier("cost", "--container", container, env=env)
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if "retier itself" in ln)
    assert "one set a day assumed (the finished sets span 6 s: too young" in line
    assert "438" not in line and "sets/month" not in line

    data = json.loads(run_retier("cost", "--container", container, "--json", env=env).stdout)
    cadence = data["containers"][0]["cadence"]
    assert cadence["basis"] == TOO_YOUNG and cadence["assumed"] is True
    assert cadence["sets_per_month"] is None
    assert cadence["used_sets_per_month"] == pytest.approx(costs.DAYS_PER_MONTH, abs=0.01)
    per_month = data["containers"][0]["retier_per_month"]["total_per_month"]
    assert per_month < 0.01  # a cent at most, not the 156 USD a 6 s cadence gave

    given = run_retier("cost", "--container", container, "--sets-per-day", "2", env=env)
    assert "for 2 set(s) a day (--sets-per-day)" in given.stdout, given.stdout


def test_sets_per_day_is_for_a_container_not_the_model(run_retier):
    proc = run_retier(
        "cost",
        "--model",
        "--source-gb",
        "5",
        "--daily-change",
        "1",
        "--full-every-days",
        "7",
        "--keep-days",
        "9",
        "--sets-per-day",
        "2",
    )
    assert proc.returncode == 2 and "--sets-per-day is for --container" in proc.stderr
