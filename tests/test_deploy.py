"""scripts/deploy without Azure: its arguments, the az commands it runs and their order, what it
hands `retier doctor`, and that it never asks for or prints a secret.

The Azure CLI is replaced by tests/az_stand_in.py (AzCliStandIn), a recording stand-in with canned
answers: these tests check the script's own logic, not Azure's behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from az_stand_in import account_id, outputs
from infra_support import Evaluator, load_template

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "scripts" / "deploy"
STAND_IN = ROOT / "tests" / "az_stand_in.py"
SECRET = "c3RhbmQtaW4tc2VjcmV0LWtleQ=="  # planted in the caller's environment; must never leak
ARGS = ["--resource-group", "retier-rg", "--storage-account", "mybackups", "--container", "backups"]
ACCOUNT_ID = account_id({"account": "mybackups", "backup_rg": "rg-backups"})


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, state: dict):
        self.proc, self.state = proc, state
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    @property
    def az(self) -> list[list[str]]:
        return [c["argv"] for c in self.state["calls"] if c["tool"] == "az"]

    @property
    def commands(self) -> list[str]:
        """Each az call as its leading words ('group create', ...)."""
        out = []
        for argv in self.az:
            words = []
            for a in argv:
                if a.startswith("-"):
                    break
                words.append(a)
            out.append(" ".join(words))
        return out

    def call(self, command: str) -> list[str]:
        (argv,) = [a for a, c in zip(self.az, self.commands) if c == command]
        return argv


@pytest.fixture(scope="session")
def built_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("package") / "retier-function.zip"
    subprocess.run([str(ROOT / "scripts" / "package"), "--out", str(out)], check=True)
    return out


@pytest.fixture
def deploy(tmp_path, built_package):
    package = tmp_path / "retier-function.zip"

    def run(
        *args: str,
        stdin: str | None = "",
        az: str | None = None,
        prebuilt=True,
        wait_seconds=20,
        **scenario,
    ) -> Run:
        # A package newer than the sources is kept (scripts/package --if-stale): copying one in
        # saves each run the build; the first deploy test builds its own.
        if prebuilt and not package.exists():
            shutil.copy(built_package, package)
        state = {"account": "mybackups", "backup_rg": "rg-backups", "calls": [], **scenario}
        state_file = tmp_path / "state.json"
        state_file.write_text(json.dumps(state))
        env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}/usr/bin:/bin",
            "HOME": str(tmp_path),
            "RETIER_AZ": az or str(STAND_IN),
            "RETIER_CLI": f"{STAND_IN} retier",
            "RETIER_DEPLOY_PACKAGE": str(package),
            "RETIER_DEPLOY_POLL_SECONDS": "0",
            "RETIER_DEPLOY_WAIT_SECONDS": str(wait_seconds),
            "AZ_STAND_IN_STATE": str(state_file),
            # What a user may have exported for the CLI: deploy must not pass it on or print it.
            "RETIER_STORAGE": f"DefaultEndpointsProtocol=https;AccountName=mybackups;AccountKey={SECRET}",
            "AZURE_CONNECTION_STRING": f"AccountName=mybackups;AccountKey={SECRET}",
        }
        proc = subprocess.run(
            [str(DEPLOY), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Run(proc, json.loads(state_file.read_text()))

    return run


def assert_no_secret(run: Run) -> None:
    text = run.out + run.err + json.dumps(run.state["calls"])
    assert SECRET not in text
    for word in ("AccountKey", "SharedAccessSignature", "sig="):
        assert word not in run.out + run.err
    for argv in run.az:
        joined = " ".join(argv)
        for asks_for_a_secret in (
            "keys",
            "connection-string",
            "generate-sas",
            "account-key",
            "--sas",
        ):
            assert asks_for_a_secret not in joined, joined


def test_the_stand_in_answers_with_the_templates_outputs():
    # scripts/deploy takes every name it uses after the deployment from these outputs: one the
    # template does not have would fail only in Azure.
    template = load_template()
    canned = outputs({"account": "mybackups", "backup_rg": "rg-backups"}, {})
    assert set(canned) <= set(template["outputs"])
    evaluate = Evaluator(template, {"backupStorageAccountName": "mybackups"})
    for name in ("functionName", "eventSubscriptionName", "deadLetterContainer"):
        assert canned[name]["value"] == evaluate(template["outputs"][name]["value"]), name


# -- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--storage-account", "mybackups", "--container", "backups"],
            "--resource-group is required",
        ),
        (["--resource-group", "r", "--container", "backups"], "--storage-account is required"),
        (["--resource-group", "r", "--storage-account", "mybackups"], "--container is required"),
        ([*ARGS, "--volume-tier", "Hot"], "--volume-tier: Cool, Cold or Archive"),
        ([*ARGS, "--metadata-tier", "Archive"], "refused"),
        ([*ARGS, "--sweep-schedule", "daily"], "six fields"),
        ([*ARGS, "--container", "Bad_Name"], "not a valid container name"),
        ([*ARGS, "--storage-account", "My-Backups"], "lower-case"),
        ([*ARGS, "--what-if", "--dry-run"], "choose one"),
        ([*ARGS, "--frobnicate"], "unknown argument"),
    ],
)
def test_bad_usage_exits_2_and_calls_nothing(deploy, args, message):
    run = deploy(*args)
    assert run.code == 2, run.err
    assert message in run.err and "usage:" in run.err
    assert run.state["calls"] == []


def test_help_has_an_example_and_exits_0(deploy):
    run = deploy("--help")
    assert run.code == 0
    assert "Examples:" in run.out and "scripts/deploy --resource-group" in run.out


def test_missing_azure_cli_is_a_clear_error(deploy, tmp_path):
    run = deploy(*ARGS, az=str(tmp_path / "no-az-here"))
    assert run.code == 1
    assert "Azure CLI ('az') is not installed" in run.err
    assert run.state["calls"] == []


def test_signed_out_cli_stops_before_anything_changes(deploy):
    run = deploy(*ARGS, logged_in=False)
    assert run.code == 1
    assert "not signed in (az login)" in run.err
    assert run.commands == ["account show"]


def test_account_not_found_is_a_clear_error(deploy):
    run = deploy(*ARGS, account_exists=False)
    assert run.code == 1 and "mybackups not found in this subscription" in run.err
    assert "group create" not in run.commands


def test_the_backup_accounts_own_group_is_refused(deploy):
    run = deploy("--resource-group", "RG-Backups", *ARGS[2:])
    assert run.code == 2
    assert "holds the backup account" in run.err
    assert not [c for c in run.commands if c.startswith(("group create", "deployment"))]


# -- deploy ------------------------------------------------------------------------------------


def test_deploy_runs_the_two_stages_in_order_and_checks_the_result(deploy):
    run = deploy(
        *ARGS, "--container", "photos", "--volume-tier", "Archive", indexed_after=3, prebuilt=False
    )
    assert run.code == 0, run.err
    assert "retier-function.zip (" in run.err  # scripts/package built it
    zip_deploy = run.call("functionapp deployment source config-zip")
    with zipfile.ZipFile(zip_deploy[zip_deploy.index("--src") + 1]) as zf:
        assert "function_app.py" in zf.namelist()
    assert run.commands == [
        "account show",
        "resource list",  # finds the backup account's resource group
        "storage account show",
        "eventgrid system-topic list",
        "group show",
        "group create",
        "deployment group create",  # stage 1: no event subscription yet
        "functionapp deployment source config-zip",
        "functionapp function list",
        "functionapp function list",
        "functionapp function list",  # indexed on the third look
        "deployment group create",  # stage 2: the subscription, now that its endpoint exists
        "eventgrid system-topic event-subscription show",
        "role assignment list",
    ]
    first, second = run.state["deployments"]
    assert (first["deployEventSubscription"], second["deployEventSubscription"]) == (
        "false",
        "true",
    )
    assert first == {**second, "deployEventSubscription": "false"}
    assert first["backupStorageAccountName"] == "mybackups"
    assert first["backupResourceGroup"] == "rg-backups"
    assert first["location"] == "westeurope"  # the backup account's region by default
    assert first["RETIER_CONTAINERS"] == "backups,photos"
    assert first["RETIER_VOLUME_TIER"] == "Archive"
    assert first["RETIER_METADATA_TIER"] == ""
    assert first["RETIER_SWEEP_SCHEDULE"] == "0 30 3 * * *"
    assert first["existingSystemTopicName"] == ""
    template = json.loads((ROOT / "infra" / "main.json").read_text())
    assert set(first) <= set(template["parameters"])

    assert zip_deploy[zip_deploy.index("--name") + 1] == "retier-standin01"
    assert zip_deploy[zip_deploy.index("--build-remote") + 1] == "false"
    role_check = run.call("role assignment list")
    assert role_check[role_check.index("--assignee") + 1] == "66666666-7777-8888-9999-000000000000"
    assert role_check[role_check.index("--scope") + 1].endswith("/storageAccounts/mybackups")
    assert "retier is deployed." in run.out
    assert (
        "scripts/deploy --remove --resource-group retier-rg --storage-account mybackups" in run.out
    )
    assert "retier-dead-letter" in run.out and "retier-standin01" in run.out
    assert_no_secret(run)


def test_doctor_runs_as_the_user_against_the_backup_account(deploy):
    run = deploy(*ARGS, "--container", "photos", "--metadata-tier", "Cool")
    assert run.code == 0, run.err
    (doctor,) = [c for c in run.state["calls"] if c["tool"] == "retier"]
    assert doctor["argv"] == ["doctor", "--container", "backups", "--container", "photos"]
    env = doctor["env"]
    assert env["RETIER_STORAGE__blobServiceUri"] == "https://mybackups.blob.core.windows.net/"
    # Not the function's identity settings (they only work inside Azure), not the caller's
    # connection string: DefaultAzureCredential picks up the Azure CLI login.
    for absent in ("RETIER_STORAGE", "RETIER_STORAGE__credential", "RETIER_STORAGE__clientId"):
        assert absent not in env
    assert "AZURE_CONNECTION_STRING" not in env
    assert env["RETIER_METADATA_TIER"] == "Cool" and env["RETIER_CONTAINERS"] == "backups,photos"
    assert "doctor               ok" in run.out
    assert_no_secret(run)


def test_a_doctor_failure_fails_the_run_but_says_the_deployment_stays(deploy):
    run = deploy(*ARGS, doctor_exit=1)
    assert run.code == 1
    assert "The Azure resources ARE deployed" in run.err
    assert "Storage Blob Data Reader" in run.err  # how to let doctor read as the user
    assert "doctor               FAILED" in run.out


def test_skip_doctor(deploy):
    run = deploy(*ARGS, "--skip-doctor")
    assert run.code == 0
    assert not [c for c in run.state["calls"] if c["tool"] == "retier"]


def test_running_again_updates_in_place(deploy):
    first = deploy(*ARGS)
    assert "retier-function.zip is up to date" in first.err  # --if-stale kept the copied-in one
    again = deploy(*ARGS, group_exists=True)
    assert again.code == 0, again.err
    assert "group create" not in again.commands
    assert again.state["deployments"] == first.state["deployments"]
    names = {
        a[a.index("--name") + 1] for a in again.az if a[:3] == ["deployment", "group", "create"]
    }
    assert names == {"retier"}  # one deployment, updated in place


def test_an_existing_system_topic_on_the_account_is_reused_with_its_tags(deploy):
    topic_id = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-backups"
        "/providers/microsoft.storage/storageaccounts/MYBACKUPS"
    )
    run = deploy(
        *ARGS,
        topics=[
            ["other-topic", "rg-x", "/subscriptions/x/other", "SystemAssigned"],
            ["defender-topic", "rg-backups", topic_id, ""],
        ],
        topic_tags={"owner": "security-team"},
    )
    assert run.code == 0, run.err
    names = {d["existingSystemTopicName"] for d in run.state["deployments"]}
    tags = [d["existingSystemTopicTags"] for d in run.state["deployments"]]
    assert names == {"defender-topic"}
    assert tags == [{"owner": "security-team"}] * 2


def test_a_system_topic_with_a_user_assigned_identity_is_left_alone(deploy):
    run = deploy(*ARGS, topics=[["t", "rg-backups", ACCOUNT_ID, "SystemAssigned, UserAssigned"]])
    assert run.code == 1
    assert "has a user-assigned identity" in run.err
    assert "deployment group create" not in run.commands


def test_a_system_topic_in_another_group_is_explained(deploy):
    run = deploy(*ARGS, topics=[["t", "rg-elsewhere", ACCOUNT_ID, ""]])
    assert run.code == 1
    assert "--backup-resource-group rg-elsewhere" in run.err


def test_it_gives_up_waiting_for_indexing_with_the_command_to_look(deploy):
    run = deploy(*ARGS, indexed_after=10_000, wait_seconds=3)
    assert run.code == 1
    assert "gave up waiting for the function to be indexed" in run.err
    assert "az functionapp function list -g retier-rg -n retier-standin01" in run.err
    assert run.commands.count("deployment group create") == 1  # no subscription without code


def test_a_missing_role_is_reported(deploy):
    run = deploy(*ARGS, roles=["Reader"])
    assert run.code == 1
    assert "has no 'Storage Blob Data Contributor' role on mybackups" in run.err


def test_dry_run_looks_up_but_changes_nothing(deploy):
    run = deploy(*ARGS, "--container", "photos", "--dry-run")
    assert run.code == 0, run.err
    assert run.commands == [
        "account show",
        "resource list",
        "storage account show",
        "eventgrid system-topic list",
        "group show",
    ]
    would = [
        ln[len("would run: ") :] for ln in run.out.splitlines() if ln.startswith("would run: ")
    ]
    expected = [
        "group create --name retier-rg --location westeurope",
        "scripts/package --out",
        "deployment group create",
        "functionapp deployment source config-zip",
        "deployment group create",
        "retier doctor --container backups --container photos",
    ]
    assert len(would) == len(expected)
    for line, part in zip(would, expected):
        assert part in line, (part, line)
    assert "deployEventSubscription=false" in would[2]
    assert "deployEventSubscription=true" in would[4]
    assert_no_secret(run)
    skipping = deploy(*ARGS, "--dry-run", "--skip-doctor")
    assert skipping.code == 0 and "doctor" not in skipping.out


def test_what_if_shows_the_changes_and_makes_none(deploy):
    run = deploy(*ARGS, "--what-if", group_exists=True)
    assert run.code == 0, run.err
    assert run.commands[-1] == "deployment group what-if"
    assert "deployment group create" not in run.commands
    assert "+ Create" in run.out
    (parameters,) = run.state["deployments"]
    assert parameters["deployEventSubscription"] == "true"


# -- remove ------------------------------------------------------------------------------------


def deployed_state(**extra) -> dict:
    state = {"account": "mybackups", "backup_rg": "rg-backups"}
    return {
        "deployed": outputs(state, {"backupResourceGroup": "rg-backups"}),
        "retier_rg_accounts": ["stretierstandin01"],
        "topic_owner": "retier-standin01",
        **extra,
    }


def test_remove_deletes_what_deploy_placed_beside_the_account_then_retiers_group(deploy):
    run = deploy("--remove", *ARGS[:4], "--yes", **deployed_state())
    assert run.code == 0, run.err
    assert run.commands == [
        "account show",
        "deployment group show",
        "resource list",
        "eventgrid system-topic event-subscription delete",
        "eventgrid system-topic show",
        "eventgrid system-topic event-subscription list",
        "eventgrid system-topic delete",
        "role assignment delete",
        "group delete",
    ]
    role = run.call("role assignment delete")
    assert role[role.index("--ids") + 1].endswith(
        "/storageAccounts/mybackups/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    )
    group = run.call("group delete")
    assert group[group.index("--name") + 1] == "retier-rg"
    assert "Your backups and the account mybackups are not touched." in run.out
    assert_no_secret(run)


def test_remove_keeps_a_system_topic_retier_did_not_create(deploy):
    run = deploy("--remove", *ARGS[:4], "--yes", **deployed_state(topic_owner=""))
    assert run.code == 0, run.err
    assert "eventgrid system-topic delete" not in run.commands
    assert "keeping system topic" in run.err


def test_remove_keeps_a_system_topic_others_subscribe_to(deploy):
    run = deploy("--remove", *ARGS[:4], "--yes", **deployed_state(other_subscriptions=1))
    assert run.code == 0, run.err
    assert "eventgrid system-topic delete" not in run.commands


def test_remove_asks_first_and_needs_yes_without_a_terminal(deploy):
    run = deploy("--remove", *ARGS[:4], stdin=None, **deployed_state())
    assert run.code == 1
    assert "pass --yes" in run.err
    assert not [c for c in run.commands if "delete" in c]


def test_remove_refuses_a_group_holding_other_storage_accounts(deploy):
    state = deployed_state(retier_rg_accounts=["stretierstandin01", "precious"])
    run = deploy("--remove", *ARGS[:4], "--yes", **state)
    assert run.code == 1
    assert "holds storage accounts other than retier's" in run.err
    assert not [c for c in run.commands if "delete" in c]


def test_remove_without_a_deployment_says_so(deploy):
    run = deploy("--remove", *ARGS[:4], "--yes")
    assert run.code == 1
    assert "nothing to remove" in run.err


def test_dry_run_remove_deletes_nothing(deploy):
    run = deploy("--remove", *ARGS[:4], "--dry-run", **deployed_state())
    assert run.code == 0, run.err
    assert not [c for c in run.commands if "delete" in c]
    assert "would run: " in run.out and "group delete" in run.out
