"""The container report against Azurite: bytes per kind and tier, charges, the trap, the CLI, charts."""

from __future__ import annotations

import json
import struct
from collections import defaultdict

import pytest

from retier import costs, names
from retier.metering import CountingTransport, Meter
from retier.report import build_report
from retier.settings import Connection, load_settings
from retier.storage import BlobStore
from retier.sweep import sweep_container

MIB = 2**20
T = ["20240101T020304Z", "20240102T020304Z", "20240103T020304Z", "20240201T020304Z"]
FULL = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
FULL_META = [f"duplicity-full.{T[0]}.manifest.gpg", f"duplicity-full-signatures.{T[0]}.sigtar.gpg"]
INC = [f"duplicity-inc.{T[0]}.to.{T[1]}.vol{i}.difftar.gpg" for i in (1, 2)]
INC_META = [
    f"duplicity-inc.{T[0]}.to.{T[1]}.manifest.gpg",
    f"duplicity-new-signatures.{T[0]}.to.{T[1]}.sigtar.gpg",
    f"duplicity-inc.{T[0]}.to.{T[1]}.jsonstat.gpg",
]
OPEN = [f"duplicity-inc.{T[1]}.to.{T[2]}.vol1.difftar.gpg"]  # no manifest: unfinished
FOREIGN = ["notes.txt", f"duplicity-full.{T[0]}.vol9.difftar.gpg.part"]

# Prices round enough to compute by hand (per GB-month).
ROUND_PRICES = {
    "as_of": "2026-11-01",
    "storage_per_gb_month": {"Hot": 0.02, "Cool": 0.01, "Cold": 0.004, "Archive": 0.001},
}


def upload(blob_service, container, sizes: dict[str, int], tiers: dict[str, str] | None = None):
    client = blob_service.get_container_client(container)
    for name, size in sizes.items():
        client.upload_blob(name, b"d" * size)
    for name, tier in (tiers or {}).items():
        client.get_blob_client(name).set_standard_blob_tier(tier)
    return client


def report_for(conn, container, prices=None, **env):
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=conn), transport=CountingTransport(meter)
    )
    settings = load_settings({"RETIER_STORAGE": conn, **env})
    return build_report(store, container, settings, prices or costs.load_prices({})), meter


@pytest.fixture
def history(blob_service, container):
    sizes = {
        n: 3000 + 17 * i for i, n in enumerate(FULL + FULL_META + INC + INC_META + OPEN + FOREIGN)
    }
    client = upload(
        blob_service,
        container,
        sizes,
        {FULL[0]: "Cold", FULL[1]: "Archive", INC[0]: "Cool", OPEN[0]: "Cool", "notes.txt": "Cold"},
    )
    return client, sizes


def direct_tally(client) -> dict[tuple[str, str], list[int]]:
    """Blobs and bytes per (kind, tier) from a plain listing, without retier's code path."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for b in client.list_blobs():
        row = out[(names.parse(b.name).kind.value, b.blob_tier)]
        row[0] += 1
        row[1] += b.size
    return dict(out)


def test_report_lists_exactly_the_bytes_a_direct_listing_finds(
    history, container, azurite_connection_string
):
    client, sizes = history
    report, meter = report_for(azurite_connection_string, container)
    got = {k: [t.count, t.bytes] for k, t in report.by_kind_tier().items()}
    assert got == direct_tally(client)
    assert report.total.bytes == sum(sizes.values()) and report.plan.listed == len(sizes)
    # one listing and the restore-hold read: nothing else
    assert meter.by_operation == {"container-properties": 1, "list": 1}


def test_per_type_prefixes_are_relisted_like_the_sweep_and_counted_once(
    blob_service, container, azurite_connection_string
):
    vols = [f"a/duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2)]
    sizes = {n: 1000 + i for i, n in enumerate(vols)}
    sizes[f"m/duplicity-full.{T[0]}.manifest.gpg"] = 500
    client = upload(blob_service, container, sizes)
    env = {"RETIER_FILE_PREFIX_ARCHIVE": "a/", "RETIER_FILE_PREFIX_MANIFEST": "m/"}
    report, meter = report_for(azurite_connection_string, container, **env)
    assert {k: [t.count, t.bytes] for k, t in report.by_kind_tier().items()} == direct_tally(client)
    assert report.plan.moves.count == 2 and meter.by_operation["list"] == 2
    (info,) = report.sets.values()
    assert info.finished and info.volumes == 2


def test_still_to_move_is_exactly_the_sweeps_dry_run(history, container, azurite_connection_string):
    for tier in ("Cold", "Archive"):
        report, _ = report_for(azurite_connection_string, container, RETIER_VOLUME_TIER=tier)
        store = BlobStore.from_connection(Connection(connection_string=azurite_connection_string))
        settings = load_settings(
            {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": tier}
        )
        dry = sweep_container(store, container, settings, dry_run=True).plan
        assert dict(report.plan.rows) == dict(dry.rows)
        assert report.plan.moves == dry.moves
        assert [u.label for u in report.plan.unfinished] == [u.label for u in dry.unfinished]
        assert report.plan.early_deletion_charge == pytest.approx(
            dry.early_deletion_charge, rel=1e-3
        )


def test_known_bytes_per_tier_give_exactly_those_charges(
    blob_service, container, azurite_connection_string, tmp_path
):
    vols = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
    sizes = {vols[0]: 2 * MIB, vols[1]: MIB, vols[2]: MIB, FULL_META[0]: MIB, FULL_META[1]: MIB}
    sizes["notes.txt"] = MIB
    upload(blob_service, container, sizes, {vols[1]: "Cool", vols[2]: "Archive"})
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(ROUND_PRICES))
    prices = costs.load_prices({"RETIER_PRICES": str(path)})
    report, _ = report_for(azurite_connection_string, container, prices)
    gb = 1 / 1024  # one MiB in GB of 2^30 bytes
    by_tier = {t: (x.count, x.bytes) for t, x in report.by_tier().items()}
    assert by_tier == {"Hot": (4, 5 * MIB), "Cool": (1, MIB), "Archive": (1, MIB)}
    assert report.storage_per_month == pytest.approx((5 * 0.02 + 0.01 + 0.001) * gb, rel=1e-12)
    assert report.all_hot_per_month == pytest.approx(7 * 0.02 * gb, rel=1e-12)
    assert report.all_cool_per_month == pytest.approx(7 * 0.01 * gb, rel=1e-12)
    # to Cold (the default): vol1 from Hot, vol2 from Cool; vol3 stays in Archive (never warmer)
    assert (report.plan.moves.count, report.plan.moves.bytes) == (2, 3 * MIB)
    assert report.after_moves_per_month == pytest.approx(
        (3 * 0.02 + 3 * 0.004 + 0.001) * gb, rel=1e-12
    )
    # vol2 was set Cool seconds ago: moving it pays (nearly) all 30 days of Cool
    assert report.plan.early_deletion_charge == pytest.approx(0.01 * gb, rel=1e-4)
    assert [t.label for t in report.trap_sets_named()] == [f"duplicity-full.{T[0]}"]
    # inside the minimum: the Cool and the Archive volume, deleting them today pays 30 and 180 days
    assert {t: (x.count, x.bytes) for t, x in report.exposure.items()} == {
        "Cool": (1, MIB),
        "Archive": (1, MIB),
    }
    assert report.exposure_charge["Cool"] == pytest.approx(0.01 * gb, rel=1e-4)
    assert report.exposure_charge["Archive"] == pytest.approx(6 * 0.001 * gb, rel=1e-4)
    d = report.to_dict()
    assert d["by_tier"]["Hot"] == {
        "blobs": 4,
        "bytes": 5 * MIB,
        "per_month": pytest.approx(5 * 0.02 * gb),
    }
    assert d["saving_vs_all_hot"] == pytest.approx((7 * 0.02 - 0.111) * gb)


def test_cadence_and_retier_cost_come_from_the_manifests(
    history, container, azurite_connection_string
):
    report, _ = report_for(azurite_connection_string, container)
    # two finished sets a day apart: about 30 a month; the full has 3 volumes, the incremental 2
    assert report.sets_per_month() == pytest.approx(costs.DAYS_PER_MONTH)
    rc = report.running_cost()
    assert rc.volumes_per_set == 2.5
    # events per finished set: the full's 5 blobs, the incremental's 5
    assert rc.events_per_month == pytest.approx(5 * costs.DAYS_PER_MONTH)
    assert [u.label for u in report.plan.unfinished] == [f"duplicity-inc.{T[1]}.to.{T[2]}"]


@pytest.mark.parametrize("volumes", [1, 3])
def test_retiers_own_cost_counts_what_the_handler_and_the_sweep_send(
    blob_service, container, azurite_connection_string, volumes
):
    from retier import storage
    from retier.emulate import events_for
    from retier.service import RetierService

    vols = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in range(1, volumes + 1)]
    upload(blob_service, container, dict.fromkeys(vols + FULL_META, 100))
    meter = Meter()
    store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string), transport=CountingTransport(meter)
    )
    settings = load_settings({"RETIER_STORAGE": azurite_connection_string})
    events = events_for(store, container, store.list_blobs(container))
    service = RetierService(settings, store)

    def sent() -> costs.Requests:
        ops, billable = dict(meter.by_operation), meter.billable
        meter.reset()
        lists, others = ops.pop("list", 0), ops.pop("container-properties", 0) + ops.get("batch", 0)
        assert set(ops) <= {"batch", "set-tier"}, ops
        return costs.Requests(lists=lists, others=others, writes=billable - lists - others)

    meter.reset()
    for event in events:  # every object of the set, its manifest last
        service.handle_event(event)
    assert sent() == costs.manifest_event_requests(volumes)
    tiers = {b.name: b.blob_tier for b in blob_service.get_container_client(container).list_blobs()}
    assert [tiers[v] for v in vols] == ["Cold"] * volumes
    sweep_container(store, container, settings)  # nothing left to move
    assert sent() == costs.sweep_requests(len(events))
    assert costs.BATCH_LIMIT == storage.BATCH_LIMIT  # the handler's batch size, priced


# -- the CLI ------------------------------------------------------------------------------------


def test_cost_json_keeps_the_documented_keys(
    history, container, azurite_connection_string, run_retier
):
    proc = run_retier(
        "cost",
        "--container",
        container,
        "--json",
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {
        "currency",
        "prices_as_of",
        "storage_per_month",
        "all_hot_per_month",
        "all_cool_per_month",
        "by_tier",
    } <= set(d)
    (c,) = d["containers"]
    for tier, row in d["by_tier"].items():
        assert (
            set(row) == {"blobs", "bytes", "per_month"}
            and c["by_tier"][tier]["bytes"] == row["bytes"]
        )
    assert sum(r["bytes"] for r in d["by_tier"].values()) == c["bytes"]


def test_cost_text_names_the_saving_the_moves_and_retiers_own_cost(
    history, container, azurite_connection_string, run_retier
):
    proc = run_retier(
        "cost", "--container", container, env={"RETIER_STORAGE": azurite_connection_string}
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("all-Hot", "all-Cool", "still to move to Cold", "retier itself", "unfinished set"):
        assert text in out, text
    assert "early deletion of those moves" in out  # INC[0] was set Cool seconds ago


def test_sweep_dry_run_shows_the_cool_then_archive_trap(
    blob_service, container, azurite_connection_string, run_retier
):
    vols = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
    sizes = {v: MIB for v in vols} | {FULL_META[0]: 1000}
    upload(blob_service, container, sizes, {vols[0]: "Cool", vols[1]: "Cold"})  # vol3 stays Hot
    env = {"RETIER_STORAGE": azurite_connection_string, "RETIER_VOLUME_TIER": "Archive"}
    proc = run_retier("sweep", "--container", container, "--dry-run", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    ed = json.loads(proc.stdout)["containers"][0]["plan"]["early_deletion"]
    p = costs.DEFAULT_PRICES["storage_per_gb_month"]
    # set just now: the whole 30 days of Cool and 90 of Cold; the inferred Hot volume pays nothing
    expected = (p["Cool"] + 3 * p["Cold"]) / 1024
    assert ed["blobs"] == 2 and ed["bytes"] == 2 * MIB
    assert ed["charge"] == pytest.approx(expected, rel=1e-3)
    assert sorted(m["name"] for m in ed["moves"]) == vols[:2]
    text = run_retier("sweep", "--container", container, "--dry-run", env=env).stdout
    assert "early deletion: 2 of these moves" in text and vols[0] in text
    assert all(
        b.blob_tier != "Archive" for b in blob_service.get_container_client(container).list_blobs()
    )


def test_cost_model_json_and_text(run_retier):
    args = [
        "cost",
        "--model",
        "--source-gb",
        "500",
        "--daily-change",
        "1",
        "--full-every-days",
        "30",
        "--keep-days",
        "180",
    ]
    proc = run_retier(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["recommended"] == "volumes-Archive" and len(d["strategies"]) == 6
    text = run_retier(*args).stdout
    assert "volumes-Archive" in text and "<- cheapest" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--model", "--source-gb", "5"], "--daily-change"),
        (
            [
                "cost",
                "--model",
                "--source-gb",
                "0",
                "--daily-change",
                "1",
                "--full-every-days",
                "7",
                "--keep-days",
                "9",
            ],
            "source-gb",
        ),
        (["cost", "--model", "--container", "backups", "--source-gb", "5"], "separate"),
    ],
)
def test_cost_bad_usage_exits_2(args, message, run_retier):
    proc = run_retier(*args)
    assert proc.returncode == 2 and message in proc.stderr


def test_prices_shows_the_table_and_warns_when_stale(run_retier, tmp_path):
    proc = run_retier("prices", "--json")
    assert proc.returncode == 0
    d = json.loads(proc.stdout)
    assert d["overridden"] == [] and d["gb_bytes"] == 2**30 and d["prices"]["region"] == "East US 2"
    # the built-in table turns stale a year after its date, and then says so
    assert d["stale"] is (d["age_days"] > 365) and ("warning" in proc.stderr) is d["stale"]
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {"as_of": "2020-01-01", "region": "West Europe", "retrieval_per_gb": {"Cold": 0.02}}
        )
    )
    proc = run_retier("prices", "--json", env={"RETIER_PRICES": str(path)})
    d = json.loads(proc.stdout)
    assert d["stale"] is True and "days old" in proc.stderr
    assert d["overridden"] == ["as_of", "region", "retrieval_per_gb.Cold"]
    text = run_retier("prices", env={"RETIER_PRICES": str(path)})
    assert (
        "West Europe" in text.stdout
        and "retrieval_per_gb.Cold" in text.stdout
        and "warning" in text.stderr
    )


def test_cost_and_prices_help_have_examples(run_retier):
    for command in ("cost", "prices"):
        proc = run_retier(command, "--help")
        assert proc.returncode == 0 and "example" in proc.stdout
    assert "last set is older" not in run_retier("prices", "--help").stdout
    assert "LAST set is older than K days" in run_retier("cost", "--help").stdout


# -- charts -------------------------------------------------------------------------------------


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def colours_in(path) -> set[tuple[int, int, int]]:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    return {tuple(round(c * 255) for c in px[:3]) for row in pixels for px in row}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def test_model_chart_is_a_png_with_the_strategies_drawn(run_retier, tmp_path):
    from retier.chart import PART_COLOURS

    path = tmp_path / "model.png"
    proc = run_retier(
        "cost", "--model", "--source-gb", "500", "--daily-change", "1", "--full-every-days", "7",
        "--keep-days", "60", "--restores-per-year", "12", "--chart", str(path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert png_size(path) == (1100, 572)
    seen = colours_in(path)
    for part in ("storage", "operations", "early deletion", "restores"):
        assert rgb(PART_COLOURS[part]) in seen, part


def test_container_chart_draws_the_sets_by_tier(
    history, container, azurite_connection_string, run_retier, tmp_path
):
    from retier.chart import TIER_COLOURS

    path = tmp_path / "c.png"
    proc = run_retier(
        "cost",
        "--container",
        container,
        "--chart",
        str(path),
        env={"RETIER_STORAGE": azurite_connection_string},
    )
    assert proc.returncode == 0, proc.stderr
    width, height = png_size(path)
    assert (width, height) == (1210, 484)
    seen = colours_in(path)
    for tier in ("Hot", "Cool", "Cold", "Archive"):
        assert rgb(TIER_COLOURS[tier]) in seen, tier


def test_chart_without_matplotlib_exits_2_and_says_what_to_install(run_retier, tmp_path):
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    proc = run_retier(
        "cost", "--model", "--source-gb", "5", "--daily-change", "1", "--full-every-days", "7",
        "--keep-days", "30", "--chart", str(tmp_path / "x.png"),
        env={"PYTHONPATH": str(blocker.parent)},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "pip install 'retier[report]'" in proc.stderr
    assert not (tmp_path / "x.png").exists()


# -- the demo's ending ----------------------------------------------------------------------------


def test_the_demo_ends_with_the_bill_before_and_after_and_on_a_real_schedule(
    blob_service, container, azurite_connection_string
):
    from retier.demo import HOME_SCHEDULE, the_bill
    from retier.model import Schedule, run_model

    vols = [f"duplicity-full.{T[0]}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
    sizes = {v: MIB for v in vols} | {FULL_META[0]: MIB, FULL_META[1]: MIB}
    upload(blob_service, container, sizes, dict.fromkeys(vols, "Cold"))
    store = BlobStore.from_connection(Connection(connection_string=azurite_connection_string))
    listed = list(store.list_blobs(container))
    lines = the_bill(listed, "Cold", dict.fromkeys(sizes, "Hot"))
    p = costs.DEFAULT_PRICES["storage_per_gb_month"]
    was, now = 5 * p["Hot"] / 1024, (3 * p["Cold"] + 2 * p["Hot"]) / 1024
    assert f"{costs.format_money(was, 'USD')}/month as uploaded" in lines[1]
    assert f"{costs.format_money(now, 'USD')}/month now: {now / was:.0%} of before" in lines[1]
    assert "(volumes are 60% of its bytes)" in lines[1]
    result = run_model(Schedule(**HOME_SCHEDULE), costs.DEFAULT_PRICES)
    hot, cold = result.by_name("all-Hot"), result.by_name("volumes-Cold")
    assert f"{cold.storage / hot.storage:.0%} of before" in lines[2]
    assert costs.format_money(cold.total, "USD") in lines[2]


def test_schedule_options_without_model_are_bad_usage(run_retier):
    proc = run_retier("cost", "--container", "backups", "--keep-days", "30")
    assert proc.returncode == 2 and "--keep-days describes a schedule: add --model" in proc.stderr


def test_a_held_container_is_reported_and_says_the_moves_wait_for_release(
    history, container, azurite_connection_string, run_retier
):
    store = BlobStore.from_connection(Connection(connection_string=azurite_connection_string))
    store.set_hold(container, "restore in progress")
    env = {"RETIER_STORAGE": azurite_connection_string}
    d = json.loads(run_retier("cost", "--container", container, "--json", env=env).stdout)
    assert d["containers"][0]["held"] == "restore in progress"
    assert d["containers"][0]["to_move"]["blobs"] > 0  # what the sweep does after `retier release`
    assert (
        "on restore hold (restore in progress)"
        in run_retier("cost", "--container", container, env=env).stdout
    )
