"""The demo adds up (issue 15 item 7): its table, its summary and its bill agree, money reads as
money, the banner names duplicity once, and the commands it suggests can be run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.azurite, pytest.mark.duplicity]


@pytest.fixture(scope="module")
def demo_output(azurite_connection_string):
    """One real demo run, volumes to Archive, with the venv's bin off PATH (as after scripts/demo)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETIER_", "AZURE_CONN"))}
    env.update(RETIER_STORAGE=azurite_connection_string, PATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "retier.demo", "--volume-tier", "Archive"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_banner_names_duplicity_once(demo_output):
    banner = demo_output.splitlines()[0]
    assert re.match(r"retier demo: duplicity \d+\.\d+\.\d+ -> container ", banner), banner


def test_the_table_and_the_summary_count_the_same_blobs(demo_output):
    rows = [line.split() for line in demo_output.splitlines() if re.search(r"  \w+ -> \w+$", line)]
    kinds = [row[1] for row in rows]
    summary = re.search(r"all (\d+) volumes are Archive; the other (\d+) blobs", demo_output)
    assert summary, demo_output
    assert kinds.count("volume") == int(summary.group(1))
    assert len(kinds) - kinds.count("volume") == int(summary.group(2))
    # the empty-cache incremental's set is in the table: four manifests for four backups
    assert kinds.count("manifest") == 4
    assert kinds.count("volume") >= 4  # at least one a backup: the checks below are not vacuous
    assert all(row[-1] == "Archive" for row in rows if row[1] == "volume")
    assert all(row[-3] == row[-1] for row in rows if row[1] != "volume")


def test_money_reads_as_money(demo_output):
    amounts = re.findall(r"(\S+) USD", demo_output)
    assert amounts, demo_output
    for amount in amounts:
        assert re.fullmatch(r"[\d,]+\.\d+", amount), amount  # never 7.92e-05


def test_the_suggested_commands_run_as_printed(demo_output):
    see = next(line for line in demo_output.splitlines() if line.strip().startswith("see: "))
    command = see.strip()[len("see: ") :].split()
    assert command[0] == os.path.join(".venv", "bin", "retier") or command[0] == "retier"
    runnable = [str(ROOT / command[0])] if command[0] != "retier" else ["retier"]
    proc = subprocess.run(
        [*runnable, *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "recommended:" in proc.stdout


def test_with_volumes_in_archive_it_says_restore_needs_rehydrate_first(demo_output):
    line = next(ln for ln in demo_output.splitlines() if "duplicity restore" in ln)
    assert re.search(r"`\S*retier rehydrate --container retier-demo-\d+`", line), line


def test_the_demo_installs_only_what_it_runs():
    """scripts/demo bootstraps the `demo` extra: retier and duplicity, no test tools."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    demo = project["optional-dependencies"]["demo"]
    assert [re.split(r"[<>=\[]", d)[0] for d in demo] == ["duplicity"]
    assert "bootstrap demo" in (ROOT / "scripts" / "demo").read_text()
    lib = (ROOT / "scripts" / "lib.sh").read_text()
    assert '-e "$ROOT[demo]"' in lib
    # and the demo imports nothing from the test tools
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, retier.demo; print(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {m.split(".")[0] for m in proc.stdout.split()}
    assert not loaded & {"pytest", "hypothesis", "ruff", "matplotlib"}
