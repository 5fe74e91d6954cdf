#!/usr/bin/env -S python3 -S
"""AzCliStandIn: a recording stand-in for the Azure CLI (and for the `retier` CLI), used only by
tests/test_deploy.py to check which commands scripts/deploy runs, in what order, with which
arguments and environment, and that no secret is asked for or printed.

It knows nothing of Azure: it answers the commands scripts/deploy sends with canned, secret-free
values from a scenario file, keeps the little state those answers depend on (event subscriptions
on the topic, role assignments, custom roles, nested deployment records), and records every call.
The names the template gives (event subscription, identity role) are read from infra/main.json
through tests/infra_support.py's evaluator, so they follow the template. Whether Azure accepts
the commands is checked by the real CLI's parser (tests/test_deploy_az_parse.py) and against
Azure's documentation, not here.

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
DEFAULT_APP = "retier-standin01"
PRINCIPAL = "66666666-7777-8888-9999-000000000000"
CONTRIBUTOR_ROLE = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
CUSTOM_ROLE = "c0ffee00-1111-2222-3333-444444444444"
NESTED = ["retier-backup-account-standin01", "retier-event-subscription-standin01"]


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def account_id(state: dict) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{state['backup_rg']}"
        f"/providers/Microsoft.Storage/storageAccounts/{state['account']}"
    )


def role_definition_id(guid: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def function_id(group: str, app: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Web/sites/{app}"
        "/functions/retier_blob_created"
    )


def load_template() -> dict:
    return json.loads((Path(__file__).resolve().parent.parent / "infra" / "main.json").read_text())


def template_output(name: str, parameters: dict, state: dict):
    """What infra/main.json's output NAME evaluates to for these parameters."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from infra_support import Evaluator  # only where needed: most calls answer without it

    template = load_template()
    known = {k: v for k, v in parameters.items() if k in template["parameters"]}
    known.setdefault("backupStorageAccountName", state["account"])
    known.setdefault("backupResourceGroup", state["backup_rg"])
    known["appName"] = parameters.get("appName") or DEFAULT_APP
    return Evaluator(template, known)(template["outputs"][name]["value"])


def outputs(state: dict, parameters: dict) -> dict:
    app = parameters.get("appName") or DEFAULT_APP
    topic = parameters.get("existingSystemTopicName") or "evgt-retier-standin01"
    role = parameters.get("identityRole", "tiering")
    if "identityRole" in load_template()["outputs"]:
        role = template_output("identityRole", parameters, state)
    values = {
        "functionAppName": app,
        "functionName": "retier_blob_created",
        "hostStorageAccountName": "stretierstandin01",
        "deadLetterContainer": "retier-dead-letter",
        "identityClientId": "11111111-2222-3333-4444-555555555555",
        "identityPrincipalId": PRINCIPAL,
        "backupBlobServiceUri": f"https://{state['account']}.blob.core.windows.net/",
        "systemTopicName": topic,
        "systemTopicResourceGroup": parameters.get("backupResourceGroup", state["backup_rg"]),
        "eventSubscriptionName": template_output("eventSubscriptionName", parameters, state),
        "identityRole": role,
    }
    return {k: {"type": "String", "value": v} for k, v in values.items()}


def assign(state: dict, scope: str, role_guid: str) -> None:
    """A role assignment of retier's identity, as an incremental deployment makes it (kept)."""
    rows = state.setdefault("role_assignments", [])
    assignment = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{len(rows):08d}-0000"
    if not any(r[1] == scope and r[2] == role_definition_id(role_guid) for r in rows):
        rows.append([assignment, scope, role_definition_id(role_guid), PRINCIPAL])


def deployed(state: dict, group: str, parameters: dict) -> None:
    """The state a template deployment leaves: outputs, role assignments, subscription, records."""
    state["deployed"] = outputs(state, parameters)
    state["nested_deployments"] = NESTED[:1]
    tags = parameters.get("existingSystemTopicTags") or {}
    if not parameters.get("existingSystemTopicName"):  # the template tags a topic it creates
        tags = {"retier-app": state["deployed"]["functionAppName"]["value"]}
    state["topic_owner"] = tags.get("retier-app", "")
    state["topic_identity_added"] = tags.get("retier-added-identity", "")
    if not state.get("skip_role_assignments"):
        host = (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}"
            "/providers/Microsoft.Storage/storageAccounts/stretierstandin01"
        )
        assign(state, host, "b7e6dc6d-f1e8-4753-8033-0f276bb0955b")  # inside retier's group
        if parameters.get("identityRole", "tiering") == "contributor":
            assign(state, account_id(state), CONTRIBUTOR_ROLE)
        else:
            roles = state.setdefault("custom_roles", [])
            if not any(r[0] == CUSTOM_ROLE for r in roles):
                roles.append([CUSTOM_ROLE, f"retier tiering ({state['backup_rg']})"])
            for c in parameters["RETIER_CONTAINERS"].split(","):
                assign(
                    state, f"{account_id(state)}/blobServices/default/containers/{c}", CUSTOM_ROLE
                )
    if parameters.get("deployEventSubscription") == "true":
        state["nested_deployments"] = NESTED
        name = state["deployed"]["eventSubscriptionName"]["value"]
        app = state["deployed"]["functionAppName"]["value"]
        subs = [s for s in state.get("topic_subscriptions", []) if s[0] != name]
        state["topic_subscriptions"] = [*subs, [name, function_id(group, app)]]


def retier(argv: list[str], state: dict) -> tuple[int, str, str]:
    """`retier doctor`, `retier doctor --lifecycle-policy FILE --only lifecycle`, `retier probe`."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("RETIER_", "AZURE_"))}
    call = {"tool": "retier", "argv": argv, "env": env}
    if "--lifecycle-policy" in argv:  # the file lives only as long as the deploy run
        call["policy"] = json.loads(Path(option(argv, "--lifecycle-policy")).read_text())
    state["calls"].append(call)
    if argv[:1] == ["probe"]:
        result = state.get(
            "probe_result",
            {"ok": True, "delay_seconds": 41.6, "failed_step": None, "message": "ok"},
        )
        out = result if isinstance(result, str) else json.dumps(result) + "\n"  # str: verbatim
        return state.get("probe_exit", 0), out, ""
    if "--lifecycle-policy" in argv:
        out = state.get("lifecycle_output", "ok   lifecycle: no rule touches retier's blobs\n")
        return state.get("lifecycle_exit", 0), out, ""
    return state.get("doctor_exit", 0), "ok   storage reachable\n", ""


def answer(argv: list[str], state: dict) -> tuple[int, str, str]:
    words = [a for a in argv if not a.startswith("-")][:5]
    head = " ".join(words)
    query = option(argv, "--query", "")

    def starts(*prefix: str) -> bool:
        return head.startswith(" ".join(prefix))

    def rows(items) -> str:
        return "".join("\t".join(str(v) for v in item) + "\n" for item in items)

    if starts("account", "show"):
        if not state.get("logged_in", True):
            return 1, "", "ERROR: Please run 'az login' to setup account.\n"
        return 0, f"me@example.com\nBackups subscription\n{SUBSCRIPTION}\n", ""
    if starts("resource", "list") and "--name" in argv:
        return 0, (state["backup_rg"] + "\n") if state.get("account_exists", True) else "", ""
    if starts("resource", "list"):
        return 0, "".join(f"{n}\n" for n in state.get("retier_rg_accounts", [])), ""
    if starts("storage", "account", "management-policy", "show"):
        if state.get("management_policy_error"):
            return 1, "", state["management_policy_error"]
        if state.get("management_policy") is None:
            return (
                3,
                "",
                (
                    f"ERROR: (ManagementPolicyNotFound) No ManagementPolicy found for account "
                    f"{state['account']}\nCode: ManagementPolicyNotFound\n"
                ),
            )
        return 0, json.dumps(state["management_policy"]) + "\n", ""
    if starts("storage", "account", "show"):
        # As a tab-separated row (`account show` answers one value a line): the script reads both.
        row = [
            account_id(state),
            "westeurope",
            f"https://{state['account']}.blob.core.windows.net/",
            state.get("kind", "StorageV2"),
            state.get("sku", "Standard_LRS"),
            state.get("default_action", "Allow"),
        ]
        return 0, "\t".join(row) + "\n", ""
    if starts("functionapp", "list-flexconsumption-locations"):
        return 0, rows([r] for r in state.get("flex_locations", ["northeurope", "westeurope"])), ""
    if starts("eventgrid", "system-topic", "list"):
        return 0, rows(state.get("topics", [])), ""
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
        deployed(state, option(argv, "--resource-group"), parameters)
        return 0, json.dumps(state["deployed"]), ""
    if starts("deployment", "group", "show"):
        if "deployed" not in state:
            return 3, "", "DeploymentNotFound\n"
        return 0, json.dumps(state["deployed"]), ""
    if starts("deployment", "operation", "group", "list"):
        return 0, rows([n] for n in state.get("nested_deployments", [])), ""
    if starts("deployment", "group", "delete"):
        state["nested_deployments"].remove(option(argv, "--name"))
        return 0, "", ""
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
    subscriptions = state.setdefault("topic_subscriptions", [])
    if starts("eventgrid", "system-topic", "event-subscription", "show"):
        found = any(s[0] == option(argv, "--name") for s in subscriptions)
        return 0, ("Succeeded\n" if found else ""), ""
    if starts("eventgrid", "system-topic", "event-subscription", "list"):
        return 0, rows(subscriptions), ""
    if starts("eventgrid", "system-topic", "event-subscription", "delete"):
        state["topic_subscriptions"] = [s for s in subscriptions if s[0] != option(argv, "--name")]
        return 0, "", ""
    if starts("eventgrid", "system-topic", "show"):
        if query == "tags":  # the existing topic's tags, as JSON
            return 0, json.dumps(state.get("topic_tags")) + "\n", ""
        topic = (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{option(argv, '--resource-group')}"
            f"/providers/Microsoft.EventGrid/systemTopics/{option(argv, '--name')}"
        )
        row = [topic, state.get("topic_owner", ""), state.get("topic_identity_added", "")]
        return 0, "\t".join(row) + "\n", ""
    if starts("eventgrid", "system-topic", "update"):
        state["topic_identity"] = option(argv, "--identity")
        return 0, "", ""
    if starts("tag", "update"):
        state.setdefault("tag_updates", []).append(argv)
        return 0, "", ""
    if starts("eventgrid", "system-topic", "delete"):
        state["topic_deleted"] = True
        return 0, "", ""
    assignments = state.setdefault("role_assignments", [])
    if starts("role", "assignment", "list"):
        principal = option(argv, "--assignee-object-id")
        mine = [r for r in assignments if principal in (None, r[3])]
        if query.startswith("[].[principalId"):
            return 0, rows([r[3], r[2]] for r in mine), ""
        return 0, rows(r[:3] for r in mine), ""
    if starts("role", "assignment", "delete"):
        state["role_assignments"] = [r for r in assignments if r[0] != option(argv, "--ids")]
        return 0, "", ""
    if starts("role", "definition", "list"):
        return 0, rows(state.get("custom_roles", [])), ""
    if starts("role", "definition", "delete"):
        roles = state.get("custom_roles", [])
        state["custom_roles"] = [r for r in roles if r[0] != option(argv, "--name")]
        return 0, "", ""
    if starts("group", "delete"):
        state["group_deleted"] = True
        return 0, "", ""
    return 2, "", f"az stand-in: no canned answer for: {' '.join(argv)}\n"


def main() -> int:
    state_file = Path(os.environ["AZ_STAND_IN_STATE"])
    state = json.loads(state_file.read_text())
    argv = sys.argv[1:]
    if argv[:1] == ["retier"]:  # `retier ...`, run by scripts/deploy through RETIER_CLI
        code, out, err = retier(argv[1:], state)
    else:
        # @FILE arguments with their content: the files go with the deploy run's temp dir.
        files = {a[1:]: Path(a[1:]).read_text() for a in argv if a.startswith("@")}
        state["calls"].append({"tool": "az", "argv": argv, "files": files})
        code, out, err = answer(argv, state)
    state_file.write_text(json.dumps(state))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
