"""infra/main.json, the deployment template: what it creates, who may do what, what Event Grid
delivers (derived from the name grammar), one settings vocabulary, no secrets; and checkov.

Nothing here reaches Azure: these tests read the template and evaluate its filter and naming
expressions (tests/infra_support.py); the shapes and API versions come from Azure's documentation
(README 'Deploying to Azure' says which parts are verified where).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.pipeline.transport import RequestsTransport
from duplicity_writer import Prefixes, write_name
from infra_support import (
    ROOT,
    Evaluator,
    Literal,
    all_resources,
    calls,
    is_expression,
    load_template,
    own_strings,
    render,
    resources_of,
    scopes,
)
from infra_support import (
    parse as parse_expression,
)

from retier import eventgrid, names, policy
from retier import settings as s
from retier.emulate import blob_created_event
from retier.names import Kind, parse
from retier.service import HANDLED, RetierService
from retier.settings import Connection
from retier.storage import BlobStore
from retier.sweep import sweep_container

TEMPLATE = load_template()
TEXT = (ROOT / "infra" / "main.json").read_text()
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
BACKUP = {"backupStorageAccountName": "mybackups", "backupResourceGroup": "rg-backups"}


def one(type_: str) -> dict:
    (found,) = [r for r, _ in resources_of(TEMPLATE, type_)]
    return found


def evaluate(expression: str, **parameters) -> object:
    return Evaluator(TEMPLATE, {**BACKUP, **parameters})(expression)


def app_settings() -> dict[str, str]:
    site = one("Microsoft.Web/sites")
    return {item["name"]: item["value"] for item in site["properties"]["siteConfig"]["appSettings"]}


def role_assignments() -> list[tuple[dict, object]]:
    return resources_of(TEMPLATE, "Microsoft.Authorization/roleAssignments")


def nested(name_variable: str) -> dict:
    (deployment,) = [
        r
        for r in TEMPLATE["resources"]
        if r["type"] == "Microsoft.Resources/deployments"
        and r["name"] == f"[variables('{name_variable}')]"
    ]
    return deployment


def inner_value(deployment: dict, parameter: str) -> str:
    return deployment["properties"]["parameters"][parameter]["value"]


# -- hosting --------------------------------------------------------------------------------


def test_plan_is_flex_consumption_fc1_on_linux():
    plan = one("Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux
    site = one("Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["serverFarmId"] == (
        "[resourceId('Microsoft.Web/serverfarms', variables('planName'))]"
    )


def test_function_app_runs_the_python_version_the_package_is_built_for():
    runtime = one("Microsoft.Web/sites")["properties"]["functionAppConfig"]["runtime"]
    package_script = (ROOT / "scripts" / "package.py").read_text()
    assert runtime == {"name": "python", "version": "3.11"}
    assert 'PYTHON_VERSION = "3.11"' in package_script


def test_function_app_is_https_only_tls_1_2_no_ftp():
    props = one("Microsoft.Web/sites")["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"


def test_function_app_has_only_the_user_assigned_identity():
    identity = one("Microsoft.Web/sites")["identity"]
    assert identity == {
        "type": "UserAssigned",
        "userAssignedIdentities": {"[variables('identityId')]": {}},
    }
    assert TEMPLATE["variables"]["identityId"] == (
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', variables('identityName'))]"
    )


def test_flex_consumption_settings_are_not_app_settings():
    # Flex Consumption takes the runtime from functionAppConfig and runs from its own package
    # container; these settings belong to the other plans.
    forbidden = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "AzureWebJobsStorage",  # a connection string: the host uses the identity settings below
    }
    assert not forbidden & set(app_settings())


def test_deployment_package_is_read_with_the_identity_from_the_host_account():
    storage = one("Microsoft.Web/sites")["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "[variables('identityId')]",
    }
    assert "variables('hostStorageId')" in storage["value"]
    assert "variables('deploymentContainerName')" in storage["value"]


def test_package_is_deployed_by_the_template_only_when_a_package_url_is_given():
    onedeploy = one("Microsoft.Web/sites/extensions")
    assert onedeploy["name"] == "[format('{0}/{1}', variables('appName'), 'onedeploy')]"
    assert onedeploy["properties"] == {
        "packageUri": "[parameters('packageUri')]",
        "remoteBuild": False,  # the package carries its dependencies
    }
    condition = onedeploy["condition"]
    assert evaluate(condition) is False
    assert evaluate(condition, packageUri="https://example.invalid/released-package.zip") is True


# -- host storage and monitoring ------------------------------------------------------------------


def test_host_storage_is_reached_only_with_identities():
    props = one("Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    settings = app_settings()
    assert settings["AzureWebJobsStorage__accountName"] == "[variables('hostStorageName')]"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == (
        "[reference(variables('identityId'), '2023-01-31').clientId]"
    )


def test_host_storage_name_is_a_valid_account_name_and_stable():
    name = evaluate("[variables('hostStorageName')]")
    assert re.fullmatch(r"[a-z0-9]{3,24}", name)
    # Re-running with other settings or another region updates the same resources in place.
    other = {"location": "northeurope", "RETIER_VOLUME_TIER": "Archive", "RETIER_CONTAINERS": "x"}
    assert name == evaluate("[variables('hostStorageName')]", **other)
    assert name != evaluate("[variables('hostStorageName')]", backupStorageAccountName="other")


def test_host_storage_has_private_package_and_dead_letter_containers():
    containers = {
        Evaluator(TEMPLATE, BACKUP)(r["name"]).split("/")[-1]: r["properties"]
        for r, _ in resources_of(
            TEMPLATE, "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
    }
    assert containers == {
        "app-package": {"publicAccess": "None"},
        "retier-dead-letter": {"publicAccess": "None"},
    }
    assert TEMPLATE["variables"]["deadLetterContainerName"] == eventgrid.DEAD_LETTER_CONTAINER


def test_application_insights_is_reached_with_the_identity_not_a_key():
    appi = one("Microsoft.Insights/components")
    assert appi["properties"]["DisableLocalAuth"] is True
    assert "WorkspaceResourceId" in appi["properties"]
    assert app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "[format('ClientId={0};Authorization=AAD', reference(variables('identityId'), '2023-01-31').clientId)]"
    )


# -- roles ---------------------------------------------------------------------------------------

PRINCIPAL = "11111111-1111-1111-1111-111111111111"
OTHER_PRINCIPAL = "22222222-2222-2222-2222-222222222222"
TOPIC_PRINCIPAL = "33333333-3333-3333-3333-333333333333"
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
CONTAINER_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"
CONTAINER_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/write"


def _role(assignment: dict) -> str:
    return assignment["properties"]["roleDefinitionId"]


def inner_evaluator(deployment: dict, runtime: dict, resource_group: str, **parameters):
    """An Evaluator for a nested (inner-scope) template: its parameters evaluated in the outer
    scope, except those that need a deployed resource (reference()), which `runtime` supplies."""
    outer = Evaluator(TEMPLATE, {**BACKUP, **parameters})
    values = {}
    for name, spec in deployment["properties"]["parameters"].items():
        values[name] = runtime[name] if name in runtime else outer(spec["value"])
    return Evaluator(deployment["properties"]["template"], values, resource_group=resource_group)


def backup_side(principal=PRINCIPAL, **parameters):
    """(evaluator, resources as deployed) of the backup-side deployment, in the backup's group."""
    deployment = nested("backupSideDeploymentName")
    runtime = {"principalId": principal, "accountLocation": "westeurope"}
    ev = inner_evaluator(deployment, runtime, BACKUP["backupResourceGroup"], **parameters)
    deployed = [x for r in deployment["properties"]["template"]["resources"] for x in ev.expand(r)]
    return ev, deployed


def deployed_of(resources: list[dict], type_: str) -> list[dict]:
    return [r for r in resources if r["type"].lower() == type_.lower()]


def custom_role() -> dict:
    (role,) = [r for r, _ in resources_of(TEMPLATE, "Microsoft.Authorization/roleDefinitions")]
    return role


def granted(role: dict) -> tuple[set[str], set[str]]:
    (permission,) = role["properties"]["permissions"]
    assert permission["notActions"] == [] and permission["notDataActions"] == []
    return set(permission["actions"]), set(permission["dataActions"])


def test_role_guids_sit_in_variables_named_after_the_role():
    variables = TEMPLATE["variables"]
    assert variables["storageBlobDataContributorRoleId"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert variables["storageBlobDataOwnerRoleId"] == STORAGE_BLOB_DATA_OWNER
    assert variables["monitoringMetricsPublisherRoleId"] == MONITORING_METRICS_PUBLISHER


def test_the_narrow_tiering_role_is_the_default_and_contributor_the_only_alternative():
    spec = TEMPLATE["parameters"]["identityRole"]
    assert spec["defaultValue"] == "tiering"
    assert spec["allowedValues"] == ["tiering", "contributor"]
    assert TEMPLATE["outputs"]["identityRole"]["value"] == "[parameters('identityRole')]"
    _, deployed = backup_side()
    (role,) = deployed_of(deployed, "Microsoft.Authorization/roleDefinitions")
    assert deployed_of(deployed, "Microsoft.Authorization/roleAssignments")
    for assignment in deployed_of(deployed, "Microsoft.Authorization/roleAssignments"):
        assert assignment["properties"]["roleDefinitionId"].endswith("/" + role["name"])


def test_custom_role_can_delete_nothing_and_grants_no_wildcard():
    actions, data_actions = granted(custom_role())
    for permission in actions | data_actions:
        assert "*" not in permission, permission
        for word in ("delete", "deleteblobversion", "permanentdelete", "immutablestorage"):
            assert word not in permission.lower(), permission
        assert not permission.lower().endswith(("/action", "move/action")), permission
    assert actions == {CONTAINER_READ, CONTAINER_WRITE}
    assert data_actions == {BLOB_READ, BLOB_WRITE}


def test_every_permission_of_the_role_names_its_source_and_the_code_that_needs_it():
    role = custom_role()
    actions, data_actions = granted(role)
    sources = role["metadata"]["permissionSources"]
    assert set(sources) == actions | data_actions
    for permission, source in sources.items():
        assert "https://learn.microsoft.com/" in source, permission
        assert re.search(r"BlobStore\.(get_hold|list_blobs|set_tier)", source), permission


def test_custom_role_is_created_in_and_assignable_only_in_the_backup_resource_group():
    backup = nested("backupSideDeploymentName")
    assert backup["resourceGroup"] == "[parameters('backupResourceGroup')]"
    _, deployed = backup_side()
    (role,) = deployed_of(deployed, "Microsoft.Authorization/roleDefinitions")
    assert role["properties"]["type"] == "CustomRole"
    assert role["properties"]["assignableScopes"] == [
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-backups"
    ]
    # One role per install: two apps in one group get two roles (role names are unique per tenant).
    _, other = backup_side(appName="retier-other")
    (other_role,) = deployed_of(other, "Microsoft.Authorization/roleDefinitions")
    assert other_role["name"] != role["name"]
    assert other_role["properties"]["roleName"] != role["properties"]["roleName"]
    assert backup_side()[1] == deployed  # and the same install gets the same role again


def test_tiering_role_is_assigned_on_each_configured_container_with_the_condition():
    _, deployed = backup_side(RETIER_CONTAINERS="Backups, photos ,,")
    assignments = deployed_of(deployed, "Microsoft.Authorization/roleAssignments")
    assert [a["scope"] for a in assignments] == [
        "Microsoft.Storage/storageAccounts/mybackups/blobServices/default/containers/backups",
        "Microsoft.Storage/storageAccounts/mybackups/blobServices/default/containers/photos",
    ]
    (role,) = deployed_of(deployed, "Microsoft.Authorization/roleDefinitions")
    for assignment in assignments:
        props = assignment["properties"]
        assert props["roleDefinitionId"] == (
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
            f"Microsoft.Authorization/roleDefinitions/{role['name']}"
        )
        assert props["principalId"] == PRINCIPAL
        assert props["principalType"] == "ServicePrincipal"
        assert props["conditionVersion"] == "2.0"
        assert props["condition"] == TIERING_CONDITION
    assert len({a["name"] for a in assignments}) == 2


def test_without_configured_containers_the_tiering_role_goes_on_the_account_still_narrowed():
    _, deployed = backup_side(RETIER_CONTAINERS="")
    (assignment,) = deployed_of(deployed, "Microsoft.Authorization/roleAssignments")
    assert assignment["scope"] == "Microsoft.Storage/storageAccounts/mybackups"
    assert assignment["properties"]["condition"] == TIERING_CONDITION
    assert deployed_of(deployed, "Microsoft.Authorization/roleDefinitions")


TIERING_CONDITION = (
    "( ( !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'}"
    " AND NOT SubOperationMatches{'Blob.List'}) ) )"
    " AND "
    "( ( !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'}"
    " AND NOT SubOperationMatches{'Blob.Write.Tier'}) ) )"
)
_CLAUSE = re.compile(r"!\(ActionMatches\{'([^']+)'\} AND NOT SubOperationMatches\{'([^']+)'\}\)")


def condition_allows(condition: str, data_action: str, suboperation: str | None) -> bool:
    """A model of how Azure evaluates this condition's shape (conditions-format: an action the
    clause does not target passes; a targeted one passes only with the named suboperation). It
    reads only the `!(ActionMatches{A} AND NOT SubOperationMatches{S})` clauses joined by AND."""
    clauses = _CLAUSE.findall(condition)
    assert clauses and condition.count("ActionMatches") == len(clauses), condition
    assert " OR " not in condition
    return all(not (data_action == a and suboperation != s) for a, s in clauses)


def test_the_condition_narrows_blob_read_to_listing_and_blob_write_to_tier_changes():
    # Suboperations as Azure names them:
    # https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-attributes
    (condition,) = {
        r["properties"]["condition"]
        for r in deployed_of(backup_side()[1], "Microsoft.Authorization/roleAssignments")
    }
    assert condition_allows(condition, BLOB_READ, "Blob.List")  # List Blobs
    assert not condition_allows(condition, BLOB_READ, None)  # Get Blob: backup content
    assert not condition_allows(condition, BLOB_READ, "Blob.Read.WithTagConditions")
    assert condition_allows(condition, BLOB_WRITE, "Blob.Write.Tier")  # Set Blob Tier
    assert not condition_allows(condition, BLOB_WRITE, None)  # Put Blob: overwrite a volume
    assert not condition_allows(condition, BLOB_WRITE, "Blob.Write.WithTagHeaders")
    assert {s for _, s in _CLAUSE.findall(condition)} == {"Blob.List", "Blob.Write.Tier"}


PREVIOUS_CONTRIBUTOR_ASSIGNMENT = {  # the template's backup-account assignment before identityRole
    "type": "Microsoft.Authorization/roleAssignments",
    "apiVersion": "2022-04-01",
    "scope": "Microsoft.Storage/storageAccounts/mybackups",
    "properties": {
        "roleDefinitionId": "/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
        f"Microsoft.Authorization/roleDefinitions/{STORAGE_BLOB_DATA_CONTRIBUTOR}",
        "principalId": PRINCIPAL,
        "principalType": "ServicePrincipal",
        "description": "retier: list duplicity's blobs and set their access tier",
    },
}


def test_contributor_mode_is_the_previous_templates_assignment_and_nothing_else():
    _, deployed = backup_side(identityRole="contributor", RETIER_CONTAINERS="backups,photos")
    assert deployed_of(deployed, "Microsoft.Authorization/roleDefinitions") == []
    (assignment,) = deployed_of(deployed, "Microsoft.Authorization/roleAssignments")
    assert {k: v for k, v in assignment.items() if k not in ("name", "comments")} == (
        PREVIOUS_CONTRIBUTOR_ASSIGNMENT
    )
    assert "condition" not in assignment["properties"]


def test_backup_side_outputs_name_the_assignments_and_the_role_it_made():
    # scripts/deploy reads these to check and to remove what the template assigned.
    for mode, containers in (("tiering", "backups,photos"), ("tiering", ""), ("contributor", "b")):
        ev, deployed = backup_side(identityRole=mode, RETIER_CONTAINERS=containers)
        outputs = nested("backupSideDeploymentName")["properties"]["template"]["outputs"]
        assignments = deployed_of(deployed, "Microsoft.Authorization/roleAssignments")
        group = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-backups"
        assert ev(outputs["roleAssignmentIds"]["value"]) == [
            f"{group}/providers/{a['scope']}/providers/Microsoft.Authorization/roleAssignments/"
            + a["name"]
            for a in assignments
        ]
        role_id = ev(outputs["tieringRoleDefinitionId"]["value"])
        if mode == "tiering":
            assert {_role(a) for a in assignments} == {role_id}
        else:
            assert role_id == ""


def test_a_new_principal_gets_new_assignment_names_and_the_same_one_keeps_its_own():
    # A recreated identity (resource group deleted by hand) or system topic keeps its resource id
    # and gets a new principal: names seeded with the principal id do not collide with the old
    # assignments (RoleAssignmentUpdateNotPermitted), and a plain redeploy updates in place.
    def backup_names(principal, **parameters):
        deployed = backup_side(principal, RETIER_CONTAINERS="backups,photos", **parameters)[1]
        return {a["name"] for a in deployed_of(deployed, "Microsoft.Authorization/roleAssignments")}

    def nested_names(variable, principal):
        deployment = nested(variable)
        ev = inner_evaluator(deployment, {"principalId": principal}, "rg-retier")
        return {
            x["name"]
            for r in deployment["properties"]["template"]["resources"]
            for x in ev.expand(r)
        }

    for mode in ("tiering", "contributor"):
        first = backup_names(PRINCIPAL, identityRole=mode)
        assert first == backup_names(PRINCIPAL, identityRole=mode)
        assert first.isdisjoint(backup_names(OTHER_PRINCIPAL, identityRole=mode))
    for variable in ("hostRolesDeploymentName", "deadLetterRoleDeploymentName"):
        first = nested_names(variable, PRINCIPAL)
        assert len(first) == len(nested(variable)["properties"]["template"]["resources"])
        assert first == nested_names(variable, PRINCIPAL)
        assert first.isdisjoint(nested_names(variable, OTHER_PRINCIPAL))


def test_every_role_assignment_is_scoped_to_one_resource():
    assignments = role_assignments()
    # host owner, metrics publisher, dead-letter writer, and on the backup side: per container,
    # account (no containers configured), contributor fallback
    assert len(assignments) == 6
    for assignment, _ in assignments:
        scope = assignment["scope"]
        resources = ("[format('Microsoft.Storage/", "[format('Microsoft.Insights/components/")
        assert scope.startswith(resources), scope
        assert "resourceGroup()" not in scope and "subscription()" not in scope


def test_functions_host_roles_on_its_own_storage_and_app_insights():
    deployment = nested("hostRolesDeploymentName")
    assert "resourceGroup" not in deployment  # retier's own group
    assert inner_value(deployment, "principalId") == (
        "[reference(variables('identityId'), '2023-01-31').principalId]"
    )
    ev = inner_evaluator(deployment, {"principalId": PRINCIPAL}, "rg-retier")
    deployed = [x for r in deployment["properties"]["template"]["resources"] for x in ev.expand(r)]
    host = evaluate("[variables('hostStorageName')]")
    appi = evaluate("[variables('appInsightsName')]")
    roles = "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization"
    assert {(a["scope"], _role(a), a["properties"]["principalId"]) for a in deployed} == {
        (
            f"Microsoft.Storage/storageAccounts/{host}",
            f"{roles}/roleDefinitions/{STORAGE_BLOB_DATA_OWNER}",
            PRINCIPAL,
        ),
        (
            f"Microsoft.Insights/components/{appi}",
            f"{roles}/roleDefinitions/{MONITORING_METRICS_PUBLISHER}",
            PRINCIPAL,
        ),
    }
    depends = " ".join(one("Microsoft.Web/sites")["dependsOn"])
    assert "variables('hostRolesDeploymentName')" in depends


def test_system_topic_writes_dead_letters_to_that_container_only():
    deployment = nested("deadLetterRoleDeploymentName")
    assert "topicPrincipalId" in inner_value(deployment, "principalId")
    ev = inner_evaluator(deployment, {"principalId": TOPIC_PRINCIPAL}, "rg-retier")
    ((assignment,),) = [ev.expand(r) for r in deployment["properties"]["template"]["resources"]]
    host = evaluate("[variables('hostStorageName')]")
    assert assignment["scope"] == (
        f"Microsoft.Storage/storageAccounts/{host}/blobServices/default/containers/retier-dead-letter"
    )
    assert _role(assignment).endswith(f"/roleDefinitions/{STORAGE_BLOB_DATA_CONTRIBUTOR}")
    assert assignment["properties"]["principalId"] == TOPIC_PRINCIPAL


def test_backup_resource_group_must_be_given_never_defaulting_to_retiers_own():
    # The "Deploy to Azure" button must not quietly deploy retier into the backup account's group
    # (scripts/deploy --remove deletes retier's group).
    spec = TEMPLATE["parameters"]["backupResourceGroup"]
    assert "defaultValue" not in spec and spec["minLength"] == 1
    with pytest.raises(KeyError, match="backupResourceGroup has no value"):
        Evaluator(TEMPLATE, {"backupStorageAccountName": "mybackups"})("[variables('suffix')]")


# -- Event Grid ------------------------------------------------------------------------------


def test_system_topic_is_on_the_backup_account_in_its_region_with_its_own_identity():
    topic = one("Microsoft.EventGrid/systemTopics")
    assert topic["properties"] == {
        "source": "[variables('accountId')]",
        "topicType": "Microsoft.Storage.StorageAccounts",
    }
    assert topic["identity"] == {"type": "SystemAssigned"}
    assert topic["location"] == "[parameters('accountLocation')]"
    backup_side = nested("backupSideDeploymentName")
    assert inner_value(backup_side, "accountLocation") == (
        "[reference(variables('backupAccountId'), '2024-01-01', 'Full').location]"
    )


def test_a_topic_retier_creates_is_tagged_and_an_existing_ones_tags_are_kept():
    backup_side = nested("backupSideDeploymentName")
    tags = inner_value(backup_side, "systemTopicTags")
    app = evaluate("[variables('appName')]")
    assert evaluate(tags) == {"retier-app": app}
    kept = {"owner": "security-team"}
    reused = {"existingSystemTopicName": "defender-topic", "existingSystemTopicTags": kept}
    assert evaluate(tags, **reused) == kept
    assert evaluate("[variables('systemTopicName')]", **reused) == "defender-topic"
    assert one("Microsoft.EventGrid/systemTopics")["tags"] == "[parameters('systemTopicTags')]"


def test_subscription_is_named_after_the_app_so_two_installs_can_share_a_topic():
    deployment = nested("subscriptionDeploymentName")
    assert inner_value(deployment, "subscriptionName") == "[variables('eventSubscriptionName')]"
    output = TEMPLATE["outputs"]["eventSubscriptionName"]["value"]
    default = evaluate("[variables('appName')]")
    names = {}
    for app in (default, "retier-a", "retier-b", "a" * 51, "b" * 52, "c" * 60, "Retier-App-1"):
        name = evaluate(output, appName=app) if app != default else evaluate(output)
        assert name == eventgrid.subscription_name(app), app
        assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", name), name  # Event Grid's naming rule
        names[app] = name
    assert len(set(names.values())) == len(names)  # two app names, two subscriptions
    assert names["retier-a"] == "retier-a-blob-created"
    # The local stand-ins keep their own fixed name; a deployment never uses it.
    assert eventgrid.SUBSCRIPTION not in names.values()


def test_subscription_delivers_blob_created_to_the_event_function():
    subscription = one("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    deployment = nested("subscriptionDeploymentName")
    assert TEMPLATE["variables"]["eventFunctionName"] == "retier_blob_created"
    assert (
        '@app.function_name(name="retier_blob_created")' in (ROOT / "function_app.py").read_text()
    )
    props = subscription["properties"]
    assert props["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert props["eventDeliverySchema"] == "EventGridSchema"  # what func.EventGridEvent reads
    assert props["destination"]["endpointType"] == "AzureFunction"
    assert props["destination"]["properties"]["resourceId"] == "[parameters('functionId')]"
    assert evaluate(inner_value(deployment, "functionId")).endswith(
        "/providers/Microsoft.Web/sites/"
        + evaluate("[variables('appName')]")
        + "/functions/retier_blob_created"
    )


def test_subscription_waits_for_the_code_and_the_dead_letter_role():
    deployment = nested("subscriptionDeploymentName")
    assert deployment["condition"] == "[parameters('deployEventSubscription')]"
    depends = " ".join(deployment["dependsOn"])
    assert "'Microsoft.Web/sites/extensions', variables('appName'), 'onedeploy'" in depends
    assert "'Microsoft.Resources/deployments', variables('deadLetterRoleDeploymentName')" in depends


def test_retry_policy_defaults_are_event_grids_documented_ones():
    props = one("Microsoft.EventGrid/systemTopics/eventSubscriptions")["properties"]
    assert props["retryPolicy"] == {
        "maxDeliveryAttempts": "[parameters('maxDeliveryAttempts')]",
        "eventTimeToLiveInMinutes": "[parameters('eventTimeToLiveInMinutes')]",
    }
    params = TEMPLATE["parameters"]
    assert params["maxDeliveryAttempts"]["defaultValue"] == eventgrid.DEFAULT_MAX_DELIVERY_ATTEMPTS
    assert (
        params["maxDeliveryAttempts"]["minValue"],
        params["maxDeliveryAttempts"]["maxValue"],
    ) == (1, 30)
    assert params["eventTimeToLiveInMinutes"]["defaultValue"] == eventgrid.DEFAULT_EVENT_TTL_MINUTES
    assert params["eventTimeToLiveInMinutes"]["maxValue"] == 1440


def test_dead_letters_go_to_the_host_container_written_with_the_topics_identity():
    props = one("Microsoft.EventGrid/systemTopics/eventSubscriptions")["properties"]
    assert "deadLetterDestination" not in props  # that form would use Event Grid's own identity
    assert props["deadLetterWithResourceIdentity"] == {
        "identity": {"type": "SystemAssigned"},
        "deadLetterDestination": {
            "endpointType": "StorageBlob",
            "properties": {
                "resourceId": "[parameters('deadLetterAccountId')]",
                "blobContainerName": "[parameters('deadLetterContainerName')]",
            },
        },
    }
    deployment = nested("subscriptionDeploymentName")
    assert inner_value(deployment, "deadLetterAccountId") == "[variables('hostStorageId')]"
    assert evaluate(inner_value(deployment, "deadLetterContainerName")) == "retier-dead-letter"


# -- the role against what the function really sends ---------------------------------------------

# Each REST operation the function's code path sends, and the permission Azure checks for it
# (with the ABAC suboperation, for data actions). Sources: docs/permissions.md and the role's
# metadata.permissionSources.
REST_PERMISSIONS = {
    "List Blobs": (BLOB_READ, "Blob.List"),
    "Get Container Properties": (CONTAINER_READ, None),
    "Set Blob Tier": (BLOB_WRITE, "Blob.Write.Tier"),
    "Blob Batch, container-scoped (the parent request)": (CONTAINER_WRITE, None),
}
_SUBREQUEST_LINE = re.compile(rb"^(\w+) (\S+) HTTP/1\.1\r?$", re.MULTILINE)


def rest_operation(method: str, url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    restype, comp = query.get("restype", [None])[0], query.get("comp", [None])[0]
    if method == "POST" and (restype, comp) == ("container", "batch"):
        return "Blob Batch, container-scoped (the parent request)"
    if method == "GET" and (restype, comp) == ("container", "list"):
        return "List Blobs"
    if method in ("GET", "HEAD") and (restype, comp) == ("container", None):
        return "Get Container Properties"
    if method == "PUT" and (restype, comp) == (None, "tier"):
        return "Set Blob Tier"
    return f"unexpected: {method} {url}"


class RecordingTransport(RequestsTransport):
    """The SDK's own transport, noting each REST operation it sends (and each batch sub-request)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sent: list[str] = []

    def send(self, request, **kwargs):
        self.sent.append(rest_operation(request.method, request.url))
        body = request.body if isinstance(request.body, (bytes, bytearray)) else b""
        if self.sent[-1].startswith("Blob Batch"):
            for method, path in _SUBREQUEST_LINE.findall(bytes(body)):
                self.sent.append("sub-request: " + rest_operation(method.decode(), path.decode()))
        return super().send(request, **kwargs)


@pytest.mark.azurite
def test_the_role_grants_exactly_what_the_handler_and_the_timer_send(
    azurite_connection_string, blob_service, container
):
    t1, t2, t3 = "20240101T020304Z", "20240102T020304Z", "20240103T020304Z"
    full = [f"duplicity-full.{t1}.vol{i}.difftar.gpg" for i in (1, 2, 3)]
    inc = [f"duplicity-inc.{t1}.to.{t2}.vol1.difftar.gpg"]
    later = [f"duplicity-full.{t3}.vol{i}.difftar.gpg" for i in (1, 2)]
    manifests = [
        f"duplicity-full.{t1}.manifest.gpg",
        f"duplicity-inc.{t1}.to.{t2}.manifest.gpg",
        f"duplicity-full.{t3}.manifest.gpg",
    ]
    client = blob_service.get_container_client(container)
    for name in full + inc + later + manifests:
        client.upload_blob(name, b"duplicity bytes", overwrite=True)
    transport = RecordingTransport()
    store = BlobStore.from_connection(
        Connection(connection_string=azurite_connection_string), transport=transport
    )
    settings = s.load_settings({s.STORAGE: azurite_connection_string, s.CONTAINERS: container})
    service = RetierService(settings, store)

    # The handler: a set of three volumes (one Blob Batch), a set of one (one Set Blob Tier).
    for manifest in manifests[:2]:
        item = next(iter(store.list_blobs(container, manifest)))
        event = blob_created_event(
            account=store.account_name,
            container=container,
            item=item,
            url=store.blob_url(container, manifest),
        )
        assert service.handle_event(event).status == HANDLED
    # The timer: the reconciliation sweep finds the third set (the restore hold read first).
    report = sweep_container(store, container, settings)
    assert report.ok and report.applied.done.count == len(later)

    tiers = {b.name: b.blob_tier for b in client.list_blobs()}
    assert {tiers[n] for n in full + inc + later} == {"Cold"}
    assert {tiers[n] for n in manifests} == {"Hot"}
    assert all(
        not op.startswith(("unexpected", "sub-request: unexpected")) for op in transport.sent
    )
    operations = {op.removeprefix("sub-request: ") for op in transport.sent}
    assert operations == set(REST_PERMISSIONS), transport.sent
    assert any(op.startswith("sub-request: Set Blob Tier") for op in transport.sent)

    actions, data_actions = granted(custom_role())
    assert actions | data_actions == {p for p, _ in REST_PERMISSIONS.values()}
    for permission, suboperation in REST_PERMISSIONS.values():
        if permission in data_actions:
            assert condition_allows(TIERING_CONDITION, permission, suboperation), permission


# -- alerts ------------------------------------------------------------------------------------

ALERT_TYPES = (
    "Microsoft.Insights/actionGroups",
    "Microsoft.Insights/metricAlerts",
    "Microsoft.Insights/scheduledQueryRules",
)
# The reconciliation timer's one record per run: retier.functions.SUMMARY_TOKEN, then JSON with a
# boolean "complete" (the log alert looks for a complete one each day).
SWEEP_SUMMARY_TOKEN = "retier-sweep-summary"


def top_level_deployed(**parameters) -> dict[str, list[dict]]:
    """Each alert resource type -> its resources as deployed with these parameters."""
    ev = Evaluator(TEMPLATE, {**BACKUP, **parameters})
    return {
        t: [x for r in TEMPLATE["resources"] if r["type"] == t for x in ev.expand(r)]
        for t in ALERT_TYPES
    }


def test_no_alert_resources_without_an_alert_email():
    assert all(found == [] for found in top_level_deployed().values())
    assert evaluate(TEMPLATE["outputs"]["alertsEnabled"]["value"]) is False
    assert TEMPLATE["parameters"]["alertEmail"]["defaultValue"] == ""


def test_an_alert_email_gets_an_action_group_and_both_alerts():
    email = "backups@example.com"
    found = top_level_deployed(alertEmail=email, appName="retier-a")
    ((group,), (dead_letters,), (health,)) = (found[t] for t in ALERT_TYPES)
    assert group["location"] == "Global"
    assert len(group["properties"]["groupShortName"]) <= 12
    assert group["properties"]["emailReceivers"] == [
        {"name": "retier-owner", "emailAddress": email, "useCommonAlertSchema": True}
    ]
    group_id = evaluate("[variables('actionGroupId')]")
    assert group_id.endswith(f"/providers/Microsoft.Insights/actionGroups/{group['name']}")
    assert evaluate(TEMPLATE["outputs"]["alertsEnabled"]["value"], alertEmail=email) is True

    # (a) Event Grid dead-lettered this install's events: the system topic's DeadLetteredCount.
    props = dead_letters["properties"]
    assert props["scopes"] == [evaluate("[variables('systemTopicId')]")]
    (criterion,) = props["criteria"]["allOf"]
    assert props["criteria"]["odata.type"] == (
        "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    )
    assert (criterion["metricNamespace"], criterion["metricName"]) == (
        "Microsoft.EventGrid/systemTopics",
        "DeadLetteredCount",
    )
    assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == (
        "GreaterThan",
        0,
        "Total",
    )
    assert criterion["dimensions"] == [
        {
            "name": "EventSubscriptionName",
            "operator": "Include",
            "values": [
                eventgrid.subscription_name("retier-a"),
                eventgrid.subscription_name("retier-a").upper(),
            ],
        }
    ]
    assert props["actions"] == [{"actionGroupId": group_id}]

    # (b) a failed execution, or no completed sweep, within a day: a log alert on App Insights.
    props = health["properties"]
    assert health["kind"] == "LogAlert"
    assert props["scopes"] == [evaluate("[variables('appInsightsId')]")]
    assert props["windowSize"] == "P1D" and props["evaluationFrequency"] == "PT1H"
    (criterion,) = props["criteria"]["allOf"]
    query = criterion["query"]
    assert "requests" in query and "success == false" in query
    assert f"startswith '{SWEEP_SUMMARY_TOKEN}'" in query and "summary.complete" in query
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count",
        "GreaterThan",
        0,
    )
    assert props["actions"] == {"actionGroups": [group_id]}


def test_the_alert_query_reads_the_sweep_summary_line_as_the_timer_writes_it():
    # The query strips the token with a regex and parses the rest as JSON: the record must be the
    # token, white space, then one JSON object with a boolean "complete".
    query = TEMPLATE["variables"]["healthQuery"]
    pattern = re.search(r"trim_start\(@'([^']*)', message\)", query).group(1)
    record = SWEEP_SUMMARY_TOKEN + " " + json.dumps({"complete": True, "containers": ["b"]})
    assert json.loads(re.sub("^" + pattern, "", record))["complete"] is True


# -- what Event Grid delivers: derived from the name grammar ------------------------------------


def delivered(**parameters) -> list[dict]:
    deployment = nested("subscriptionDeploymentName")
    return evaluate(inner_value(deployment, "advancedFilters"), **parameters)


def test_filter_suffix_lists_are_the_grammars():
    variables = TEMPLATE["variables"]
    assert variables["manifestSuffixes"] == list(names.event_filter_suffixes())
    assert variables["metadataSuffixes"] == list(names.event_filter_suffixes(metadata=True))


def test_by_default_only_manifests_of_the_configured_containers_are_delivered():
    assert delivered(RETIER_CONTAINERS="Backups, photos ,,") == [
        {
            "operatorType": "StringBeginsWith",
            "key": "subject",
            "values": [
                "/blobServices/default/containers/backups/blobs/",
                "/blobServices/default/containers/photos/blobs/",
            ],
        },
        {
            "operatorType": "StringEndsWith",
            "key": "subject",
            "values": list(names.event_filter_suffixes()),
        },
    ]


def test_metadata_tier_widens_the_filter_to_every_metadata_kind():
    (containers, suffixes) = delivered(RETIER_CONTAINERS="backups", RETIER_METADATA_TIER="Cool")
    assert containers["values"] == ["/blobServices/default/containers/backups/blobs/"]
    assert suffixes["values"] == list(names.event_filter_suffixes(metadata=True))


def test_container_filter_is_dropped_rather_than_exceed_event_grids_25_values():
    # Then the function's own RETIER_CONTAINERS allow-list still ignores other containers.
    widened = len(names.event_filter_suffixes(metadata=True))
    fits = ",".join(f"c{i}" for i in range(25 - widened))
    too_many = fits + ",one-more"
    assert len(delivered(RETIER_CONTAINERS=fits, RETIER_METADATA_TIER="Hot")) == 2
    (only,) = delivered(RETIER_CONTAINERS=too_many, RETIER_METADATA_TIER="Hot")
    assert only["operatorType"] == "StringEndsWith"
    # No containers configured: no container filter either (every container's manifests).
    (only,) = delivered()
    assert only["values"] == list(names.event_filter_suffixes())


def test_every_filter_stays_within_event_grids_limits():
    for metadata_tier, containers in itertools.product(["", "Cold"], ["", "a", "a,b,c", "a,b,c,d"]):
        filters = delivered(RETIER_CONTAINERS=containers, RETIER_METADATA_TIER=metadata_tier)
        assert sum(len(f["values"]) for f in filters) <= 25
        assert len(filters) <= 25


T1, T2 = "20240101T020304Z", "20240102T020304Z"
PREFIXES = ["", "host1/", "backups/srv.example.com/", "meta/", "h/hot/"]


def duplicity_names():
    """(name, kind) for every object duplicity 3 writes, with --file-prefix and per-type prefixes."""
    kinds = {
        ("full", False): Kind.VOLUME,
        ("inc", False): Kind.VOLUME,
        ("full", True): Kind.MANIFEST,
        ("inc", True): Kind.MANIFEST,
        ("full-sig", False): Kind.SIGNATURES,
        ("new-sig", False): Kind.SIGNATURES,
        ("full-stat", False): Kind.JSONSTAT,
        ("inc-stat", False): Kind.JSONSTAT,
    }
    out = []
    for prefix, per_type, gpgsm in itertools.product(PREFIXES, ["", "m-"], [False, True]):
        prefixes = Prefixes(
            all=prefix, archive="a-" if per_type else "", manifest=per_type, signature=per_type
        )
        for (dup_type, manifest), kind in kinds.items():
            for encrypted, gzipped in [(False, False), (True, False), (False, True)]:
                volume = None if manifest or dup_type not in ("full", "inc") else 3
                name = write_name(
                    dup_type,
                    t=1704074584,
                    t0=1703988184,
                    volume=volume,
                    manifest=manifest,
                    encrypted=encrypted,
                    gzipped=gzipped,
                    gpgsm=gpgsm,
                    prefixes=prefixes,
                )
                out.append((name, kind))
    return out


SHORT = [  # legacy --short-filenames objects (duplicity < 2.0 wrote them; 3.x still reads them)
    ("df.k5rvkw.m", Kind.MANIFEST),
    ("pre/di.k5rvkw.k5tpa8.m.g", Kind.MANIFEST),
    ("df.k5rvkw.m.z", Kind.MANIFEST),
    ("df.k5rvkw.1.dt.g", Kind.VOLUME),
    ("di.k5rvkw.k5tpa8.m1.dt", Kind.VOLUME),
    ("dfs.k5rvkw.st.g", Kind.SIGNATURES),
    ("dns.k5rvkw.k5tpa8.st", Kind.SIGNATURES),
    ("dfst.k5rvkw.jst.z", Kind.JSONSTAT),
]


def ends_with_any(name: str, suffixes) -> bool:
    # Event Grid compares advanced filter strings case-insensitively.
    return any(name.lower().endswith(s.lower()) for s in suffixes)


def test_every_manifest_duplicity_writes_is_delivered_and_nothing_else_is():
    written = duplicity_names() + SHORT
    assert {k for _, k in written} == {Kind.VOLUME, Kind.MANIFEST, Kind.SIGNATURES, Kind.JSONSTAT}
    default = names.event_filter_suffixes()
    for name, kind in written:
        assert parse(name).kind is kind, name
        assert ends_with_any(name, default) is (kind is Kind.MANIFEST), name
        # par2 recovery files never fire the default filter (their manifest tiers them).
        assert not ends_with_any(name + ".par2", default)
        assert not ends_with_any(name + ".vol00+01.par2", default)


def test_with_a_metadata_tier_every_metadata_object_and_par2_file_is_delivered():
    widened = names.event_filter_suffixes(metadata=True)
    for name, kind in duplicity_names() + SHORT:
        assert ends_with_any(name, widened) is (kind is not Kind.VOLUME), name
        assert ends_with_any(name + ".vol00+01.par2", widened)


def test_every_suffix_ends_a_name_of_the_kind_it_is_for():
    stems = {"long": f"x/duplicity-inc.{T1}.to.{T2}", "short": "x/di.k5rvkw.k5tpa8"}
    for suffix in names.event_filter_suffixes():
        stem = stems["short"] if suffix.startswith(".m.") or suffix == ".m" else stems["long"]
        assert parse(stem + suffix).kind is Kind.MANIFEST, suffix
    assert list(names.event_filter_suffixes()) == sorted(set(names.event_filter_suffixes()))


def test_suffixes_follow_the_grammar_not_a_copied_list(monkeypatch):
    # A new suffix in the grammar shows up in the filter: the list is read off names._FORMS.
    forms = tuple(
        f if f.short else dataclasses.replace(f, suffixes=(*f.suffixes, ".zst"))
        for f in names._FORMS
    )
    monkeypatch.setattr(names, "_FORMS", forms)
    assert ".manifest.zst" in names.event_filter_suffixes()


# -- one vocabulary --------------------------------------------------------------------------

# Set by the template from the backup account and the identity, not parameters:
DERIVED = {s.STORAGE_BLOB_SERVICE_URI, s.STORAGE_CLIENT_ID, s.STORAGE_CREDENTIAL}
# A connection string carries an account key: the deployed function never gets one.
NOT_DEPLOYED = {s.STORAGE}


def test_every_setting_the_code_reads_is_defined_and_every_retier_setting_is_read():
    defined = {n for n in app_settings() if n.startswith("RETIER_")}
    assert defined == set(s.ALL_SETTINGS) - NOT_DEPLOYED
    assert NOT_DEPLOYED | defined == set(s.ALL_SETTINGS)


def test_the_function_reaches_the_backup_account_with_its_identity():
    settings = app_settings()
    assert settings[s.STORAGE_CREDENTIAL] == "managedidentity"
    assert (
        settings[s.STORAGE_CLIENT_ID]
        == "[reference(variables('identityId'), '2023-01-31').clientId]"
    )
    assert settings[s.STORAGE_BLOB_SERVICE_URI] == (
        "[reference(variables('backupAccountId'), '2024-01-01').primaryEndpoints.blob]"
    )
    assert evaluate("[variables('backupAccountId')]") == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-backups"
        "/providers/Microsoft.Storage/storageAccounts/mybackups"
    )
    # What the app then reads, with the value Azure returns for primaryEndpoints.blob:
    loaded = s.load_settings(
        {
            s.STORAGE_BLOB_SERVICE_URI: "https://mybackups.blob.core.windows.net/",
            s.STORAGE_CLIENT_ID: "11111111-2222-3333-4444-555555555555",
            s.STORAGE_CREDENTIAL: "managedidentity",
        }
    )
    assert loaded.account_name == "mybackups"


def test_each_tunable_setting_is_a_parameter_of_the_same_name_with_the_codes_default():
    settings = app_settings()
    tunable = set(s.ALL_SETTINGS) - DERIVED - NOT_DEPLOYED
    code_defaults = s.load_settings({})
    expected_defaults = {
        s.VOLUME_TIER: code_defaults.policy.volume_tier,
        s.METADATA_TIER: code_defaults.policy.metadata_tier or "",
        s.CONTAINERS: ",".join(sorted(code_defaults.containers)),
        s.FILE_PREFIX_ARCHIVE: code_defaults.file_prefix_archive,
        s.FILE_PREFIX_MANIFEST: code_defaults.file_prefix_manifest,
        s.SWEEP_SCHEDULE: s.sweep_schedule({}),
    }
    assert set(expected_defaults) == tunable
    for name in tunable:
        assert settings[name] == f"[parameters('{name}')]"
        assert TEMPLATE["parameters"][name]["defaultValue"] == expected_defaults[name], name
    assert TEMPLATE["parameters"][s.VOLUME_TIER]["allowedValues"] == list(policy.VOLUME_TIERS)
    assert TEMPLATE["parameters"][s.METADATA_TIER]["allowedValues"] == ["", *policy.ONLINE_TIERS]


def test_every_allowed_value_is_one_the_code_accepts():
    for volume in TEMPLATE["parameters"][s.VOLUME_TIER]["allowedValues"]:
        for metadata in TEMPLATE["parameters"][s.METADATA_TIER]["allowedValues"]:
            s.load_settings({s.VOLUME_TIER: volume, s.METADATA_TIER: metadata})


# -- no secrets, useful outputs --------------------------------------------------------------


def test_no_key_sas_or_key_bearing_connection_string_anywhere():
    lowered = TEXT.lower()
    for needle in (
        "listkeys",
        "listaccountsas",
        "listservicesas",
        "accountkey",
        "sharedaccesskey",
        "sig=",
    ):
        assert needle not in lowered, needle
    # The only connection string is Application Insights', which names an ingestion endpoint;
    # with local authentication disabled it grants nothing without the identity's token.
    mentions = [m.start() for m in re.finditer("connection_?string", lowered)]
    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"].endswith(".ConnectionString]")
    assert len(mentions) == 2  # that setting's name and the property it reads


def test_outputs_say_what_comes_next_and_hold_no_secret():
    outputs = TEMPLATE["outputs"]
    # What scripts/deploy reads (outputs_to_vars) stays; identityRole and the rest are added.
    for needed in (
        "functionAppName",
        "functionName",
        "identityClientId",
        "identityPrincipalId",
        "hostStorageAccountName",
        "deadLetterContainer",
        "systemTopicName",
        "systemTopicResourceGroup",
        "eventSubscriptionName",
        "backupRoleAssignmentId",
        "backupRoleAssignmentIds",
        "tieringRoleDefinitionId",
        "identityRole",
        "alertsEnabled",
    ):
        assert needed in outputs
    for name, output in outputs.items():
        text = json.dumps(output).lower()
        assert "connectionstring" not in text and "key" not in text, name
        assert "alertemail" not in text, name  # an address is not needed back, nor logged
        assert output["type"] in ("string", "int", "bool", "array")
    assert evaluate(outputs["deadLetterContainer"]["value"]) == "retier-dead-letter"


def test_parameters_are_described():
    for name, spec in TEMPLATE["parameters"].items():
        assert len(spec.get("metadata", {}).get("description", "")) > 20, name


def test_the_evaluator_refuses_what_it_cannot_evaluate_and_expands_like_arm():
    ev = Evaluator(TEMPLATE, BACKUP)
    with pytest.raises(NotImplementedError, match="reference"):
        ev("[reference(variables('identityId'), '2023-01-31').principalId]")
    with pytest.raises(ValueError, match="copyIndex"):
        ev("[copyIndex()]")
    assert ev("[guid('a', 'b')]") == ev("[guid('a', 'b')]") != ev("[guid('a', 'c')]")
    assert ev("[union(createArray('x', 'y'), createArray('y', 'z'))]") == ["x", "y", "z"]
    looped = {
        "copy": {"name": "n", "count": "[add(1, 2)]"},
        "name": "[format('r{0}', copyIndex(1))]",
    }
    assert ev.expand(looped) == [{"name": "r1"}, {"name": "r2"}, {"name": "r3"}]
    assert ev.expand({"condition": "[equals(1, 2)]", "name": "x"}) == []


# -- the template is internally consistent ----------------------------------------------------


def test_every_parameter_and_variable_referenced_is_declared_and_every_one_declared_is_used():
    for scope in scopes(TEMPLATE):
        template = scope.template
        used = {"parameters": set(), "variables": set()}
        for text in own_strings(template):
            if not is_expression(text):
                continue
            for call in calls(parse_expression(text)):
                if call.name in used:
                    (arg,) = call.args
                    used[call.name].add(arg.value)
        where = scope.deployment["name"] if scope.deployment else "top level"
        assert used["parameters"] == set(template.get("parameters", {})), where
        assert used["variables"] == set(template.get("variables", {})), where


def _resource_key(resource: dict) -> tuple[str, tuple[str, ...]]:
    node = parse_expression(resource["name"]) if is_expression(resource["name"]) else None
    if node is None:
        parts = tuple(repr(p) for p in resource["name"].split("/"))
    elif node.name == "format" and node.args[0].value.count("/"):
        parts = tuple(render(a) for a in node.args[1:])
    else:
        parts = (render(node),)
    return resource["type"].lower(), parts


def _dependency_key(text: str) -> tuple[str, tuple[str, ...]]:
    node = parse_expression(text)
    if node.name == "extensionResourceId":
        return node.args[1].value.lower(), (render(node.args[2]),)
    assert node.name == "resourceId", text
    args = list(node.args)
    if not (isinstance(args[0], Literal) and "/" in args[0].value):
        args = args[1:]  # resourceId(resourceGroupName, type, names...)
    return args[0].value.lower(), tuple(render(a) for a in args[1:])


def test_every_dependency_names_a_resource_of_the_same_template():
    for scope in scopes(TEMPLATE):
        declared = {_resource_key(r) for r in scope.template.get("resources", [])}
        for resource in scope.template.get("resources", []):
            for dependency in resource.get("dependsOn", []):
                assert _dependency_key(dependency) in declared, dependency


def test_reference_api_versions_match_the_resources_they_read():
    versions = {r["type"].lower(): r["apiVersion"] for r, _ in all_resources(TEMPLATE)}
    variables = TEMPLATE["variables"]
    checked = 0
    for text in (t for scope in scopes(TEMPLATE) for t in own_strings(scope.template)):
        for match in re.finditer(r"reference\((.*?), '(\d{4}-\d{2}-\d{2})'", text):
            target, version = match.groups()
            variable = re.fullmatch(r"variables\('(\w+)'\)", target)
            if variable:
                target = variables[variable.group(1)]
            (type_,) = re.findall(r"'(Microsoft\.[A-Za-z]+/[A-Za-z/]+)'", target)
            assert versions[type_.lower()] == version, text
            checked += 1
    assert checked >= 10


# -- checkov ----------------------------------------------------------------------------------


def test_checkov_passes_and_every_inline_skip_is_used_and_says_why():
    if not CHECKOV.exists():
        pytest.fail(
            "checkov is not installed: scripts/test (bootstrap) installs it into .tools/checkov",
            pytrace=False,
        )
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(ROOT / "infra"), "--framework", "arm", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(proc.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [] and proc.returncode == 0, proc.stdout[-2000:]
    assert report["summary"]["passed"] >= 15  # it really scanned the template
    declared = {}
    for resource, _ in all_resources(TEMPLATE):
        for skip in resource.get("metadata", {}).get("checkov", []):
            check, _, reason = skip.partition(":")
            assert len(reason.strip()) > 30, f"{check} needs a reason"
            declared[check.strip()] = reason.strip()
    used = {c["check_id"] for c in results["skipped_checks"]}
    assert used == set(declared)
