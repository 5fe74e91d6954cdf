"""The real Azure CLI parses every `az` command scripts/deploy runs.

The recording stand-in (tests/az_stand_in.py) cannot catch a mistyped flag; azure-cli's own
parser can. Each command the stand-in recorded across the deploy, update, what-if and remove
scenarios (with and without the probe, both identity roles, existing topics, two installs) is
handed to the real CLI (azure-cli from PyPI, in .tools/azure-cli, installed by scripts/lib.sh),
signed out, with a config directory of its own. Every command must get as far as the login check
and never stop at a usage error: an unknown or missing argument or a bad choice (exit code 2).
All commands run in one Python process (azure.cli.core's get_default_cli().invoke), which keeps
the check to seconds instead of a CLI start-up per command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from az_stand_in import function_id
from test_deploy import (  # noqa: F401  (built_package and deploy are fixtures)
    ACCOUNT_ID,
    ARGS,
    FAILED_PROBE,
    built_package,
    deploy,
)

ROOT = Path(__file__).resolve().parent.parent
AZ_PYTHON = ROOT / ".tools" / "azure-cli" / "bin" / "python"
USAGE_ERRORS = (
    "unrecognized arguments",
    "the following arguments are required",
    "invalid choice",
    "is not in the",  # a bad value for an argument with allowed values
    "expected one argument",
)

# Runs in azure-cli's own venv: each argv through one CLI object per command, output captured.
RUNNER = r"""
import contextlib, io, json, logging, sys
from azure.cli.core import get_default_cli

results = []
for argv in json.load(open(sys.argv[1])):
    for name in ("", "cli", "azure"):  # the first CLI's handlers would keep the first stream
        logging.getLogger(name).handlers.clear()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = get_default_cli().invoke(argv, out_file=out)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"argv": argv, "code": code, "err": err.getvalue()})
json.dump(results, open(sys.argv[2], "w"))
"""


def command_name(argv: list[str]) -> str:
    """'storage account show' of ['storage', 'account', 'show', '--name', ...]."""
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words)


def commands_in_the_script() -> set[str]:
    """Every az command scripts/deploy can run, read from its source (az_ ... or "${AZ[@]}" ...)."""
    source = (ROOT / "scripts" / "deploy").read_text()
    found = re.findall(r'(?:\baz_|"\$\{AZ\[@\]\}")((?:[ \t]+[a-z][a-z-]*)+)', source)
    return {" ".join(words.split()) for words in found}


def recorded_commands(deploy) -> list[dict]:  # noqa: F811
    """Every az call scripts/deploy made across the scenarios, with its @FILE contents."""
    runs = []
    first = deploy(*ARGS, "--container", "photos", "--volume-tier", "Archive")
    runs.append(first)
    runs.append(deploy(*ARGS, state=first.state))  # update in place
    runs.append(
        deploy(
            *ARGS,
            "--identity-role",
            "contributor",
            "--alert-email",
            "ops@example.com",
            "--no-probe",
            "--skip-doctor",
            topics=[["t", "rg-backups", ACCOUNT_ID, ""]],
            topic_tags={},
            topic_subscriptions=[["earlier", function_id("retier-rg", "retier-standin01")]],
        )
    )
    contributor = runs[-1]
    runs.append(deploy(*ARGS, state=contributor.state))  # narrowing deletes the broad role
    runs.append(deploy(*ARGS, probe_exit=1, probe_result=FAILED_PROBE))
    failed_probe = runs[-1]
    runs.append(deploy(*ARGS, "--what-if", group_exists=True))
    runs.append(deploy(*ARGS, "--dry-run", management_policy={"policy": {"rules": []}}))
    for state in (first.state, runs[3].state):  # a topic retier created; one it gave an identity
        runs.append(
            deploy(
                "--remove",
                *ARGS[:4],
                "--yes",
                state={**state, "retier_rg_accounts": ["stretierstandin01"]},
            )
        )
    for run in runs:  # only the failed probe fails the run; every other scenario succeeds
        assert run.code == (1 if run is failed_probe else 0), run.err
    calls = [c for run in runs for c in run.state["calls"] if c["tool"] == "az"]
    covered = {command_name(c["argv"]) for c in calls}
    assert covered == commands_in_the_script(), "a command of scripts/deploy no scenario runs"
    return calls


def test_every_az_command_the_deploy_script_runs_parses_with_the_real_cli(deploy, tmp_path):  # noqa: F811
    assert AZ_PYTHON.exists(), (
        f"azure-cli is not installed at {AZ_PYTHON}: scripts/test installs it (scripts/lib.sh "
        "install_azure_cli)"
    )
    unique: dict[str, list[str]] = {}
    for call in recorded_commands(deploy):
        argv = []
        for arg in call["argv"]:
            if arg.startswith("@"):  # put the file back where the real CLI can read it
                copy = tmp_path / f"file{len(unique)}.json"
                copy.write_text(call["files"][arg[1:]])
                arg = f"@{copy}"
            argv.append(arg)
        key = json.dumps([a for a in call["argv"] if not a.startswith("@")])
        unique.setdefault(key, argv)
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(list(unique.values())))
    results = tmp_path / "results.json"
    config = tmp_path / "azure-config"  # signed out; nothing of this machine's CLI login
    config.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AZURE_CONFIG_DIR": str(config),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
    }
    started = time.monotonic()
    subprocess.run(
        [str(AZ_PYTHON), "-c", RUNNER, str(cases), str(results)],
        env=env,
        check=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    print(f"{len(unique)} az commands parsed by the real CLI in {elapsed:.1f} s")
    checked = json.loads(results.read_text())
    assert len(checked) == len(unique)
    failures = []
    for result in checked:
        err = result["err"]
        usage = result["code"] == 2 or any(e in err for e in USAGE_ERRORS)
        if usage or "az login" not in err:
            failures.append(f"{' '.join(result['argv'])}\n  exit {result['code']}: {err[-600:]}")
    assert not failures, "\n".join(failures)
