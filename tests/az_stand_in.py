#!/usr/bin/env -S python3 -S
"""AzCliStandIn: a recording stand-in for the Azure CLI (and for `retier doctor`), used only by
tests/test_deploy.py to check which commands scripts/deploy runs, in what order, with which
arguments and environment, and that no secret is asked for or printed.

It knows nothing of Azure: it answers the handful of commands scripts/deploy sends with canned,
secret-free values from a scenario file, and records every call. Whether Azure accepts those
commands is checked against Azure's documentation, not here.

Environment: AZ_STAND_IN_STATE, a JSON file holding the scenario and what has happened so far;
every call is appended to its "calls" list.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def account_id(state: dict) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{state['backup_rg']}"
        f"/providers/Microsoft.Storage/storageAccounts/{state['account']}"
    )


def outputs(state: dict, parameters: dict) -> dict:
    app = parameters.get("appName") or "retier-standin01"
    topic = parameters.get("existingSystemTopicName") or "evgt-retier-standin01"
    values = {
        "functionAppName": app,
        "functionName": "retier_blob_created",
        "hostStorageAccountName": "stretierstandin01",
        "deadLetterContainer": "retier-dead-letter",
        "identityClientId": "11111111-2222-3333-4444-555555555555",
        "identityPrincipalId": "66666666-7777-8888-9999-000000000000",
        "backupBlobServiceUri": f"https://{state['account']}.blob.core.windows.net/",
        "backupRoleAssignmentId": account_id(state)
        + "/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "systemTopicName": topic,
        "systemTopicResourceGroup": parameters.get("backupResourceGroup", state["backup_rg"]),
        "eventSubscriptionName": "retier-blob-created",
    }
    return {k: {"type": "String", "value": v} for k, v in values.items()}


def answer(argv: list[str], state: dict) -> tuple[int, str, str]:
    words = [a for a in argv if not a.startswith("-")][:5]
    head = " ".join(words)

    def starts(*prefix: str) -> bool:
        return head.startswith(" ".join(prefix))

    if starts("account", "show"):
        if not state.get("logged_in", True):
            return 1, "", "ERROR: Please run 'az login' to setup account.\n"
        return 0, "me@example.com\nBackups subscription\n", ""
    if starts("resource", "list") and "--name" in argv:
        return 0, (state["backup_rg"] + "\n") if state.get("account_exists", True) else "", ""
    if starts("resource", "list"):
        return 0, "".join(f"{n}\n" for n in state.get("retier_rg_accounts", [])), ""
    if starts("storage", "account", "show"):
        # As a tab-separated row (`account show` answers one value a line): the script reads both.
        row = [
            account_id(state),
            "westeurope",
            f"https://{state['account']}.blob.core.windows.net/",
        ]
        return 0, "\t".join(row) + "\n", ""
    if starts("eventgrid", "system-topic", "list"):
        return 0, "".join("\t".join(t) + "\n" for t in state.get("topics", [])), ""
    if starts("group", "show"):
        return (0, "", "") if state.get("group_exists") else (3, "", "ResourceGroupNotFound\n")
    if starts("group", "create"):
        state["group_exists"] = True
        return 0, "", ""
    if starts("deployment", "group", "create") or starts("deployment", "group", "what-if"):
        files = [a[1:] for a in argv if a.startswith("@")]
        parameters = {
            k: v["value"]
            for f in files
            for k, v in json.loads(Path(f).read_text())["parameters"].items()
        }
        for a in argv[argv.index("--parameters") :]:
            if "=" in a and not a.startswith("@"):
                key, _, value = a.partition("=")
                parameters[key] = value
        state.setdefault("deployments", []).append(parameters)
        if "what-if" in head:
            return (
                0,
                "Resource and property changes are indicated with these symbols:\n  + Create\n",
                "",
            )
        state["deployed"] = outputs(state, parameters)
        if parameters.get("deployEventSubscription") == "true":
            state["subscription"] = True
        return 0, json.dumps(state["deployed"]), ""
    if starts("deployment", "group", "show"):
        if "deployed" not in state:
            return 3, "", "DeploymentNotFound\n"
        return 0, json.dumps(state["deployed"]), ""
    if starts("functionapp", "deployment", "source", "config-zip"):
        with zipfile.ZipFile(option(argv, "--src")) as zf:
            if "function_app.py" not in zf.namelist():
                return 1, "", "not a function app package\n"
        state["code_deployed"] = True
        return 0, "", ""
    if starts("functionapp", "function", "list"):
        state["function_list_calls"] = state.get("function_list_calls", 0) + 1
        if state.get("code_deployed") and state["function_list_calls"] >= state.get(
            "indexed_after", 1
        ):
            app = option(argv, "--name")
            return 0, f"{app}/retier_blob_created\n{app}/retier_sweep\n", ""
        return 0, "", ""
    if starts("eventgrid", "system-topic", "event-subscription", "show"):
        return 0, ("Succeeded\n" if state.get("subscription") else ""), ""
    if starts("eventgrid", "system-topic", "event-subscription", "list"):
        return 0, f"{state.get('other_subscriptions', 0)}\n", ""
    if starts("eventgrid", "system-topic", "event-subscription", "delete"):
        state["subscription"] = False
        return 0, "", ""
    if starts("eventgrid", "system-topic", "show"):
        if "tags" in argv:  # the existing topic's tags, as JSON
            return 0, json.dumps(state.get("topic_tags")) + "\n", ""
        return 0, f"{state.get('topic_owner', '')}\n", ""
    if starts("eventgrid", "system-topic", "delete"):
        return 0, "", ""
    if starts("role", "assignment", "list"):
        return (
            0,
            "".join(f"{r}\n" for r in state.get("roles", ["Storage Blob Data Contributor"])),
            "",
        )
    if starts("role", "assignment", "delete") or starts("group", "delete"):
        return 0, "", ""
    return 2, "", f"az stand-in: no canned answer for: {' '.join(argv)}\n"


def main() -> int:
    state_file = Path(os.environ["AZ_STAND_IN_STATE"])
    state = json.loads(state_file.read_text())
    argv = sys.argv[1:]
    if argv[:1] == ["retier"]:  # `retier doctor ...`, run by scripts/deploy through RETIER_CLI
        env = {k: v for k, v in os.environ.items() if k.startswith(("RETIER_", "AZURE_"))}
        state["calls"].append({"tool": "retier", "argv": argv[1:], "env": env})
        code, out, err = state.get("doctor_exit", 0), "ok   storage reachable\n", ""
    else:
        code, out, err = answer(argv, state)
        state["calls"].append({"tool": "az", "argv": argv})
    state_file.write_text(json.dumps(state))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
