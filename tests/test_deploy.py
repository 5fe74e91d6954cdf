"""scripts/deploy without Azure: its arguments, the az commands it runs and their order, its
preflight refusals, what it hands `retier doctor` and `retier probe`, two installs on one account,
what --remove takes back, and that it never asks for or prints a secret.

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
from az_stand_in import CONTRIBUTOR_ROLE, CUSTOM_ROLE, PRINCIPAL, account_id, function_id, outputs
from infra_support import Evaluator, load_template

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "scripts" / "deploy"
STAND_IN = ROOT / "tests" / "az_stand_in.py"
SECRET = "c3RhbmQtaW4tc2VjcmV0LWtleQ=="  # planted in the caller's environment; must never leak
ARGS = ["--resource-group", "retier-rg", "--storage-account", "mybackups", "--container", "backups"]
ACCOUNT_ID = account_id({"account": "mybackups", "backup_rg": "rg-backups"})
# Parameters and outputs the stand-in may know that the template lacks: none (kept as the place to
# name one while the template and the script change in separate steps).
INFRA_PENDING_PARAMETERS: set[str] = set()
INFRA_PENDING_OUTPUTS: set[str] = set()


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, state: dict):
        self.proc, self.state = proc, state
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    @property
    def az(self) -> list[list[str]]:
        return [c["argv"] for c in self.state["calls"] if c["tool"] == "az"]

    @property
    def retier(self) -> list[list[str]]:
        return [c["argv"] for c in self.state["calls"] if c["tool"] == "retier"]

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
        state: dict | None = None,
        **scenario,
    ) -> Run:
        # A package newer than the sources is kept (scripts/package --if-stale): copying one in
        # saves each run the build; the first deploy test builds its own.
        if prebuilt and not package.exists():
            shutil.copy(built_package, package)
        # A later run continues from an earlier run's state (what Azure would still hold).
        state = {
            "account": "mybackups",
            "backup_rg": "rg-backups",
            **(state or {}),
            **scenario,
            "calls": [],
        }
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
    canned = outputs(
        {"account": "mybackups", "backup_rg": "rg-backups"}, {"appName": "retier-app1"}
    )
    assert set(canned) - set(template["outputs"]) <= INFRA_PENDING_OUTPUTS
    evaluate = Evaluator(
        template,
        {
            "backupStorageAccountName": "mybackups",
            "backupResourceGroup": "rg-backups",
            "appName": "retier-app1",
        },
    )
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
        ([*ARGS, "--identity-role", "owner"], "--identity-role: tiering or contributor"),
        ([*ARGS, "--identity-role"], "--identity-role needs a value"),
        ([*ARGS, "--alert-email", "ops"], "--alert-email ops: not an e-mail address"),
        ([*ARGS, "--probe-timeout", "0"], "--probe-timeout: a whole number of seconds"),
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

LOOKUPS = [
    "account show",
    "resource list",  # finds the backup account's resource group
    "storage account show",
    "eventgrid system-topic list",
    "functionapp list-flexconsumption-locations",  # preflight
    "storage account management-policy show",  # preflight
]


def subscription_name(app: str = "retier-standin01") -> str:
    """The event subscription's name the template gives an app (it follows the app's name)."""
    state = {"account": "mybackups", "backup_rg": "rg-backups"}
    return outputs(state, {"appName": app})["eventSubscriptionName"]["value"]


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
        *LOOKUPS,
        "group show",
        "group create",
        "deployment group create",  # stage 1: no event subscription yet
        "eventgrid system-topic event-subscription list",  # no other install's name taken
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
    assert (first["identityRole"], first["alertEmail"]) == ("tiering", "")
    template = json.loads((ROOT / "infra" / "main.json").read_text())
    assert set(first) - set(template["parameters"]) <= INFRA_PENDING_PARAMETERS

    assert zip_deploy[zip_deploy.index("--name") + 1] == "retier-standin01"
    assert zip_deploy[zip_deploy.index("--build-remote") + 1] == "false"
    role_check = run.call("role assignment list")
    assert role_check[role_check.index("--assignee-object-id") + 1] == PRINCIPAL
    assert "--all" in role_check  # container-scoped assignments are listed only so
    assert "retier is deployed." in run.out
    assert "tiering role on container(s) backups photos of mybackups" in run.out
    assert (
        "scripts/deploy --remove --resource-group retier-rg --storage-account mybackups" in run.out
    )
    assert "retier-dead-letter" in run.out and "retier-standin01" in run.out
    assert f"subscription {subscription_name()}" in run.out
    assert_no_secret(run)


def test_identity_role_and_alert_email_reach_the_template(deploy):
    run = deploy(*ARGS, "--identity-role", "contributor", "--alert-email", "ops@example.com")
    assert run.code == 0, run.err
    assert run.state["deployments"]  # else the loop below checks nothing
    for parameters in run.state["deployments"]:
        assert parameters["identityRole"] == "contributor"
        assert parameters["alertEmail"] == "ops@example.com"
    assert "'Storage Blob Data Contributor' on mybackups (--identity-role contributor" in run.out
    assert "alerts               ops@example.com" in run.out


def test_narrowing_to_tiering_removes_the_broad_role_an_earlier_deploy_left(deploy):
    wide = deploy(*ARGS, "--identity-role", "contributor")
    assert wide.code == 0, wide.err
    assert [r for r in wide.state["role_assignments"] if r[1] == ACCOUNT_ID]
    narrow = deploy(*ARGS, state=wide.state)
    assert narrow.code == 0, narrow.err
    # Incremental deployments never delete: the script takes the broad assignment away itself.
    assert "role assignment delete" in narrow.commands
    left = {(r[1], r[2].rsplit("/", 1)[1]) for r in narrow.state["role_assignments"]}
    assert (ACCOUNT_ID, CONTRIBUTOR_ROLE) not in left
    assert (f"{ACCOUNT_ID}/blobServices/default/containers/backups", CUSTOM_ROLE) in left


def test_doctor_runs_as_the_user_against_the_backup_account(deploy):
    run = deploy(*ARGS, "--container", "photos", "--metadata-tier", "Cool")
    assert run.code == 0, run.err
    (doctor,) = [
        c
        for c in run.state["calls"]
        if c["tool"] == "retier"
        and c["argv"] == ["doctor", "--container", "backups", "--container", "photos"]
    ]
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
    assert [a[0] for a in run.retier] == ["probe"]


# -- the probe: the last step ------------------------------------------------------------------


def test_the_probe_runs_last_after_doctor_and_ends_the_run_with_its_measure(deploy):
    run = deploy(*ARGS, "--container", "photos", "--probe-timeout", "300")
    assert run.code == 0, run.err
    assert run.state["calls"][-1]["tool"] == "retier"
    assert [a[0] for a in run.retier] == ["doctor", "probe"]
    probe = run.state["calls"][-1]
    assert probe["argv"] == [
        "probe",
        "--container",
        "backups",
        "--timeout",
        "300",
        "--json",
        "--function-app",
        "retier-standin01",
        "--resource-group",
        "retier-rg",
        "--system-topic",
        "evgt-retier-standin01",
        "--event-subscription",
        subscription_name(),
        "--dead-letter-account",
        "stretierstandin01",
        "--dead-letter-container",
        "retier-dead-letter",
    ]
    assert probe["env"]["RETIER_STORAGE__blobServiceUri"] == (
        "https://mybackups.blob.core.windows.net/"
    )
    assert "RETIER_STORAGE" not in probe["env"] and "AZURE_CONNECTION_STRING" not in probe["env"]
    last = run.out.strip().splitlines()[-1]
    assert last == "tiering works in mybackups: a volume reached Cold 42 s after its manifest"
    assert "probe                ok" in run.out
    assert_no_secret(run)


FAILED_PROBE = {
    "ok": False,
    "delay_seconds": None,
    "failed_step": "invocation",
    "message": "the function ran but\nthe tier did not change: AuthorizationPermissionMismatch",
}


def test_a_failed_probe_under_the_tiering_role_prints_the_contributor_redeploy(deploy):
    run = deploy(*ARGS, "--volume-tier", "Archive", probe_exit=1, probe_result=FAILED_PROBE)
    assert run.code == 1
    assert (
        "the probe failed at step 'invocation': the function ran but the tier did not change: "
        "AuthorizationPermissionMismatch"
    ) in run.out
    assert "The Azure resources ARE deployed and stay; nothing was widened." in run.out
    assert run.out.strip().splitlines()[-1] == (
        "  scripts/deploy --resource-group retier-rg --storage-account mybackups --container"
        " backups --volume-tier Archive --identity-role contributor"
    )
    # Printed, never run: every deployment kept the narrow role.
    assert {d["identityRole"] for d in run.state["deployments"]} == {"tiering"}
    assert "probe                FAILED" in run.out


def test_the_contributor_redeploy_replaces_an_earlier_identity_role(deploy):
    run = deploy("--identity-role", "tiering", *ARGS, probe_exit=1, probe_result=FAILED_PROBE)
    assert run.code == 1
    assert run.out.strip().splitlines()[-1] == (
        "  scripts/deploy --resource-group retier-rg --storage-account mybackups --container"
        " backups --identity-role contributor"
    )


def test_a_failed_probe_under_the_contributor_role_says_what_failed_and_nothing_more(deploy):
    run = deploy(*ARGS, "--identity-role", "contributor", probe_exit=1, probe_result=FAILED_PROBE)
    assert run.code == 1
    assert "the probe failed at step 'invocation'" in run.out
    assert "--identity-role contributor" not in run.out.split("probe                FAILED")[1]


def test_a_probe_that_prints_nothing_is_a_failure(deploy):
    run = deploy(*ARGS, probe_exit=1, probe_result="")
    assert run.code == 1
    assert "the probe failed: the probe printed no result" in run.out


def test_no_probe_skips_it(deploy):
    run = deploy(*ARGS, "--no-probe")
    assert run.code == 0, run.err
    assert [a[0] for a in run.retier] == ["doctor"]
    assert "probe                skipped (--no-probe)" in run.out


# -- preflight: before anything is created -----------------------------------------------------


@pytest.mark.parametrize(
    "args, scenario, message",
    [
        (
            [],
            {"flex_locations": ["eastus", "swedencentral"]},
            "Flex Consumption is not offered in westeurope. Fix: --location",
        ),
        ([], {"kind": "Storage"}, "general-purpose v1 account (kind Storage)"),
        (
            [],
            {"kind": "BlockBlobStorage", "sku": "Premium_LRS"},
            "premium BlockBlobStorage account, which has no Hot/Cool/Cold/Archive tiers",
        ),
        ([], {"sku": "Premium_LRS"}, "is a premium account (Premium_LRS)"),
        (
            ["--volume-tier", "Archive"],
            {"sku": "Standard_RAGZRS"},
            (
                "Archive is not supported on Standard_RAGZRS (zone-redundant) accounts. Fix: "
                "--volume-tier Cold"
            ),
        ),
        (
            [],
            {"default_action": "Deny"},
            "(networkRuleSet.defaultAction = Deny), so retier's function could not list",
        ),
        (
            [],
            {"management_policy": {"policy": {"rules": []}}, "lifecycle_exit": 1},
            "a lifecycle management rule on mybackups would break a backup or undo a restore",
        ),
        (
            [],
            {"management_policy_error": "ERROR: (AuthorizationFailed) no access\n"},
            "could not read mybackups's lifecycle management policy: ERROR: (AuthorizationFailed)",
        ),
    ],
)
def test_preflight_refuses_before_anything_is_created(deploy, args, scenario, message):
    run = deploy(*ARGS, *args, **scenario)
    assert run.code == 1
    assert f"preflight: FAIL {message}" in run.err.replace("\n", " ") or message in run.err
    assert "preflight failed: nothing was created or changed" in run.err
    assert run.commands == LOOKUPS  # reads only
    assert [a[0] for a in run.retier] in ([], ["doctor"])  # at most the lifecycle check


def test_preflight_names_every_problem_at_once(deploy):
    run = deploy(*ARGS, "--volume-tier", "Archive", sku="Standard_ZRS", default_action="Deny")
    assert run.code == 1
    assert run.err.count("preflight: FAIL") == 2


def test_cold_on_a_zone_redundant_account_passes(deploy):
    run = deploy(*ARGS, sku="Standard_GZRS")
    assert run.code == 0, run.err


POLICY = {
    "policy": {
        "rules": [
            {
                "name": "old-backups",
                "enabled": True,
                "type": "Lifecycle",
                "definition": {
                    "filters": {"blobTypes": ["blockBlob"], "prefixMatch": ["backups/"]},
                    "actions": {"baseBlob": {"delete": {"daysAfterModificationGreaterThan": 30}}},
                },
            }
        ]
    }
}


def test_the_lifecycle_policy_goes_to_doctor_and_its_warnings_are_shown(deploy):
    warning = "warn  rule 'old-backups' deletes volumes before Cold's 90 days: ~0.01 USD\n"
    run = deploy(*ARGS, "--container", "photos", management_policy=POLICY, lifecycle_output=warning)
    assert run.code == 0, run.err
    (check,) = [c for c in run.state["calls"] if "--lifecycle-policy" in c["argv"]]
    argv = check["argv"]
    assert argv[:2] == ["doctor", "--lifecycle-policy"]
    assert argv[3:] == ["--only", "lifecycle", "--container", "backups", "--container", "photos"]
    assert check["policy"] == POLICY  # what `management-policy show` printed, as a file
    assert check["env"]["RETIER_CONTAINERS"] == "backups,photos"
    assert warning.strip() in run.out
    # Before anything is created.
    order = [c.get("argv", [""])[:2] for c in run.state["calls"]]
    assert order.index(argv[:2]) < order.index(["group", "show"])


def test_no_lifecycle_policy_is_not_an_error(deploy):
    run = deploy(*ARGS)  # the stand-in answers like Azure: exit 3, ManagementPolicyNotFound
    assert run.code == 0, run.err
    assert "no lifecycle management policy on mybackups" in run.err
    assert not [c for c in run.state["calls"] if "--lifecycle-policy" in c["argv"]]


# -- two installs on one account ---------------------------------------------------------------


def test_a_subscription_name_another_install_owns_is_refused_before_it_is_taken(deploy):
    other = [subscription_name(), function_id("other-rg", "other-app")]
    run = deploy(*ARGS, topic_subscriptions=[other])
    assert run.code == 1
    assert f"already has a subscription named {subscription_name()}" in run.err
    assert "delivering to other-app in resource group other-rg" in run.err
    assert "--name" in run.err
    assert run.commands.count("deployment group create") == 1  # stage 2 never ran
    assert run.state["topic_subscriptions"] == [other]


def test_another_install_on_the_account_is_left_alone_by_deploy_and_remove(deploy):
    other = ["retier-other-app", function_id("other-rg", "other-app")]
    run = deploy(*ARGS, topic_subscriptions=[other])
    assert run.code == 0, run.err
    assert "another retier install shares mybackups: app other-app (resource group other-rg)" in (
        run.err
    )
    assert sorted(s[0] for s in run.state["topic_subscriptions"]) == sorted(
        ["retier-other-app", subscription_name()]
    )
    removed = deploy("--remove", *ARGS[:4], "--yes", state=run.state)
    assert removed.code == 0, removed.err
    assert removed.state["topic_subscriptions"] == [other]
    assert not removed.state.get("topic_deleted")  # the other install still uses it
    (delete,) = [
        a
        for a in removed.az
        if a[:4] == ["eventgrid", "system-topic", "event-subscription", "delete"]
    ]
    assert delete[delete.index("--name") + 1] == subscription_name()


def test_an_earlier_subscription_of_this_install_is_replaced(deploy):
    # E.g. from before subscriptions were named after their app: same endpoint, another name.
    legacy = ["retier-earlier-name", function_id("retier-rg", "retier-standin01")]
    run = deploy(*ARGS, topic_subscriptions=[legacy])
    assert run.code == 0, run.err
    assert [s[0] for s in run.state["topic_subscriptions"]] == [subscription_name()]


# -- system topics -----------------------------------------------------------------------------


def test_an_existing_system_topic_on_the_account_is_reused_with_its_tags(deploy):
    topic_id = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-backups"
        "/providers/microsoft.storage/storageaccounts/MYBACKUPS"
    )
    run = deploy(
        *ARGS,
        topics=[
            ["other-topic", "rg-x", "/subscriptions/x/other", "SystemAssigned"],
            ["defender-topic", "rg-backups", topic_id, "SystemAssigned"],
        ],
        topic_tags={"owner": "security-team"},
    )
    assert run.code == 0, run.err
    names = {d["existingSystemTopicName"] for d in run.state["deployments"]}
    tags = [d["existingSystemTopicTags"] for d in run.state["deployments"]]
    assert names == {"defender-topic"}
    assert tags == [{"owner": "security-team"}] * 2  # it had an identity: nothing added


def test_an_identity_given_to_an_existing_topic_is_recorded_on_it(deploy):
    run = deploy(*ARGS, topics=[["t", "rg-backups", ACCOUNT_ID, ""]], topic_tags={"owner": "x"})
    assert run.code == 0, run.err
    tags = [d["existingSystemTopicTags"] for d in run.state["deployments"]]
    assert tags == [{"owner": "x", "retier-added-identity": "true"}] * 2


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
    run = deploy(*ARGS, skip_role_assignments=True)
    assert run.code == 1
    assert "has no role on container(s) backups of mybackups" in run.err
    wide = deploy(*ARGS, "--identity-role", "contributor", skip_role_assignments=True)
    assert wide.code == 1
    assert "has no 'Storage Blob Data Contributor' role on mybackups" in wide.err


def test_dry_run_looks_up_but_changes_nothing(deploy):
    run = deploy(*ARGS, "--container", "photos", "--dry-run")
    assert run.code == 0, run.err
    assert run.commands == [*LOOKUPS, "group show"]
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
        "retier probe --container backups --timeout 600 --json",
    ]
    assert len(would) == len(expected)
    for line, part in zip(would, expected):
        assert part in line, (part, line)
    assert "deployEventSubscription=false" in would[2]
    assert "deployEventSubscription=true" in would[4]
    assert_no_secret(run)
    skipping = deploy(*ARGS, "--dry-run", "--skip-doctor", "--no-probe")
    assert skipping.code == 0 and "doctor" not in skipping.out and "probe" not in skipping.out


def test_what_if_shows_the_changes_and_makes_none(deploy):
    run = deploy(*ARGS, "--what-if", group_exists=True)
    assert run.code == 0, run.err
    assert run.commands[-1] == "deployment group what-if"
    assert "deployment group create" not in run.commands
    assert "+ Create" in run.out
    assert "would run: retier probe --container backups --timeout 600 --json" in run.out
    (parameters,) = run.state["deployments"]
    assert parameters["deployEventSubscription"] == "true"
    assert parameters["identityRole"] == "tiering"


def test_running_again_updates_in_place(deploy):
    first = deploy(*ARGS)
    assert "retier-function.zip is up to date" in first.err  # --if-stale kept the copied-in one
    again = deploy(*ARGS, state=first.state)
    assert again.code == 0, again.err
    assert "group create" not in again.commands
    assert again.state["deployments"][2:] == first.state["deployments"]
    names = {
        a[a.index("--name") + 1] for a in again.az if a[:3] == ["deployment", "group", "create"]
    }
    assert names == {"retier"}  # one deployment, updated in place
    assert len(again.state["topic_subscriptions"]) == 1


# -- remove ------------------------------------------------------------------------------------


def deployed_state(deploy, *args: str, **scenario) -> dict:
    run = deploy(*ARGS, *args, **scenario)
    assert run.code == 0, run.err
    return {**run.state, "retier_rg_accounts": ["stretierstandin01"]}


def outside_retiers_group(state: dict) -> list:
    return [r for r in state["role_assignments"] if "/resourceGroups/retier-rg/" not in r[1]]


def test_remove_takes_back_everything_deploy_added(deploy):
    state = deployed_state(deploy, "--container", "photos")
    assert len(outside_retiers_group(state)) == 2 and state["custom_roles"]
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert run.commands == [
        "account show",
        "deployment group show",
        "resource list",
        "deployment operation group list",
        "role assignment list",
        "role definition list",
        "role assignment list",  # does another principal hold the custom role?
        "eventgrid system-topic show",
        "eventgrid system-topic event-subscription list",
        "eventgrid system-topic event-subscription delete",
        "eventgrid system-topic delete",  # retier created it, nobody else subscribes
        "role assignment delete",
        "role assignment delete",
        "role definition delete",
        "deployment group delete",
        "deployment group delete",
        "group delete",
    ]
    after = run.state
    assert after["topic_subscriptions"] == []
    assert after["topic_deleted"] is True
    assert outside_retiers_group(after) == []
    assert after["custom_roles"] == []
    assert after["nested_deployments"] == []  # the records beside the backup account
    assert after["group_deleted"] is True
    nested = [a for a in run.az if a[:3] == ["deployment", "group", "delete"]]
    assert {a[a.index("--resource-group") + 1] for a in nested} == {"rg-backups"}
    assert "Your backups and the account mybackups are not touched." in run.out
    assert_no_secret(run)


def test_remove_keeps_a_custom_role_another_install_holds(deploy):
    state = deployed_state(deploy)
    other = [
        "/x/roleAssignments/other",
        f"{ACCOUNT_ID}/blobServices/default/containers/photos",
        state["role_assignments"][-1][2],
        "99999999-0000-0000-0000-000000000000",
    ]
    state["role_assignments"].append(other)
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert "role definition delete" not in run.commands
    assert [r[0] for r in run.state["custom_roles"]] == [CUSTOM_ROLE]
    assert other in run.state["role_assignments"]
    assert "another install's identity holds them" in run.err


def test_remove_takes_back_the_identity_it_gave_an_existing_topic(deploy):
    state = deployed_state(deploy, topics=[["t", "rg-backups", ACCOUNT_ID, ""]], topic_tags={})
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert "eventgrid system-topic delete" not in run.commands  # not retier's topic
    assert run.state["topic_identity"] == "noidentity"
    (tag,) = run.state["tag_updates"]
    assert tag[tag.index("--operation") + 1] == "Delete"
    assert tag[tag.index("--tags") + 1] == "retier-added-identity=true"
    assert tag[tag.index("--resource-id") + 1].endswith("/systemTopics/t")


def test_remove_keeps_the_identity_another_subscription_may_use(deploy):
    state = deployed_state(deploy, topics=[["t", "rg-backups", ACCOUNT_ID, ""]], topic_tags={})
    state["topic_subscriptions"].append(["someone-else", "https://example.com/hook"])
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert "topic_identity" not in run.state and "tag_updates" not in run.state
    assert "keeping the identity retier gave it too" in run.err


def test_remove_keeps_a_system_topic_retier_did_not_create(deploy):
    state = deployed_state(deploy, topics=[["t", "rg-backups", ACCOUNT_ID, "SystemAssigned"]])
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert "eventgrid system-topic delete" not in run.commands
    assert "eventgrid system-topic update" not in run.commands  # it had its own identity
    assert "keeping system topic" in run.err


def test_remove_keeps_a_system_topic_others_subscribe_to(deploy):
    state = deployed_state(deploy)
    state["topic_subscriptions"].append(["defender", "https://example.com/hook"])
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 0, run.err
    assert "eventgrid system-topic delete" not in run.commands
    assert run.state["topic_subscriptions"] == [["defender", "https://example.com/hook"]]


def test_remove_asks_first_and_needs_yes_without_a_terminal(deploy):
    run = deploy("--remove", *ARGS[:4], stdin=None, state=deployed_state(deploy))
    assert run.code == 1
    assert "pass --yes" in run.err
    assert not [c for c in run.commands if "delete" in c]


def test_remove_refuses_a_group_holding_other_storage_accounts(deploy):
    state = {**deployed_state(deploy), "retier_rg_accounts": ["stretierstandin01", "precious"]}
    run = deploy("--remove", *ARGS[:4], "--yes", state=state)
    assert run.code == 1
    assert "holds storage accounts other than retier's" in run.err
    assert not [c for c in run.commands if "delete" in c]


def test_remove_without_a_deployment_says_so(deploy):
    run = deploy("--remove", *ARGS[:4], "--yes")
    assert run.code == 1
    assert "nothing to remove" in run.err


def test_dry_run_remove_deletes_nothing(deploy):
    run = deploy("--remove", *ARGS[:4], "--dry-run", state=deployed_state(deploy))
    assert run.code == 0, run.err
    assert not [c for c in run.commands if "delete" in c]
    assert "would run: " in run.out and "group delete" in run.out
    assert "role definition delete" in run.out and "deployment group delete" in run.out
