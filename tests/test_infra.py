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

import pytest
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
from retier.names import Kind, parse

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


def _role(assignment: dict) -> str:
    return assignment["properties"]["roleDefinitionId"]


def test_role_guids_sit_in_variables_named_after_the_role():
    variables = TEMPLATE["variables"]
    assert variables["storageBlobDataContributorRoleId"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert variables["storageBlobDataOwnerRoleId"] == STORAGE_BLOB_DATA_OWNER
    assert variables["monitoringMetricsPublisherRoleId"] == MONITORING_METRICS_PUBLISHER


def test_backup_account_role_is_blob_data_contributor_scoped_to_that_account_only():
    backup_side = nested("backupSideDeploymentName")
    assert backup_side["resourceGroup"] == "[parameters('backupResourceGroup')]"
    assert inner_value(backup_side, "roleId") == "[variables('storageBlobDataContributorRoleId')]"
    assert inner_value(backup_side, "principalId") == (
        "[reference(variables('identityId'), '2023-01-31').principalId]"
    )
    inner = backup_side["properties"]["template"]
    (assignment,) = [r for r in inner["resources"] if r["type"].endswith("roleAssignments")]
    # The account itself: never its resource group or the subscription.
    assert (
        assignment["scope"]
        == "[format('Microsoft.Storage/storageAccounts/{0}', parameters('accountName'))]"
    )
    assert inner_value(backup_side, "accountName") == "[parameters('backupStorageAccountName')]"
    assert _role(assignment) == (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', parameters('roleId'))]"
    )
    assert assignment["properties"]["principalId"] == "[parameters('principalId')]"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"


def test_every_role_assignment_is_scoped_to_one_resource():
    assignments = role_assignments()
    assert len(assignments) == 4
    for assignment, _ in assignments:
        scope = assignment["scope"]
        resources = ("[format('Microsoft.Storage/", "[format('Microsoft.Insights/components/")
        assert scope.startswith(resources), scope
        assert "resourceGroup()" not in scope and "subscription()" not in scope


def test_functions_host_roles_on_its_own_storage_and_app_insights():
    by_role = {_role(a): a for a, _ in role_assignments()}
    owner = by_role[
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('storageBlobDataOwnerRoleId'))]"
    ]
    assert (
        owner["scope"]
        == "[format('Microsoft.Storage/storageAccounts/{0}', variables('hostStorageName'))]"
    )
    publisher = by_role[
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('monitoringMetricsPublisherRoleId'))]"
    ]
    assert (
        publisher["scope"]
        == "[format('Microsoft.Insights/components/{0}', variables('appInsightsName'))]"
    )
    for assignment in (owner, publisher):
        assert assignment["properties"]["principalId"] == (
            "[reference(variables('identityId'), '2023-01-31').principalId]"
        )


def test_system_topic_writes_dead_letters_to_that_container_only():
    (topic_role,) = [
        a for a, scope in role_assignments() if "topicPrincipalId" in a["properties"]["principalId"]
    ]
    assert topic_role["scope"] == (
        "[format('Microsoft.Storage/storageAccounts/{0}/blobServices/default/containers/{1}', "
        "variables('hostStorageName'), variables('deadLetterContainerName'))]"
    )
    assert _role(topic_role) == (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('storageBlobDataContributorRoleId'))]"
    )


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


def test_subscription_is_named_as_agreed_and_delivers_blob_created_to_the_event_function():
    subscription = one("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    deployment = nested("subscriptionDeploymentName")
    assert TEMPLATE["variables"]["eventSubscriptionName"] == eventgrid.SUBSCRIPTION
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
    assert (
        "'Microsoft.Authorization/roleAssignments', variables('deadLetterAssignmentName')"
        in depends
    )


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
    from duplicity import config, dup_time, file_naming

    saved = {
        a: getattr(config, a)
        for a in (
            "file_prefix",
            "file_prefix_manifest",
            "file_prefix_archive",
            "file_prefix_signature",
            "use_gpgsm",
        )
    }
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
    try:
        for prefix, per_type, gpgsm in itertools.product(PREFIXES, ["", "m-"], [False, True]):
            config.file_prefix = prefix.encode()
            config.file_prefix_manifest = per_type.encode()  # --file-prefix-manifest
            config.file_prefix_archive = b"a-" if per_type else b""
            config.file_prefix_signature = per_type.encode()
            config.use_gpgsm = gpgsm
            file_naming.prepare_regex(force=True)
            dup_time.setcurtime(1704074584)
            dup_time.setprevtime(1703988184)
            for (dup_type, manifest), kind in kinds.items():
                for encrypted, gzipped in [(False, False), (True, False), (False, True)]:
                    volume = None if manifest or dup_type not in ("full", "inc") else 3
                    name = file_naming.get(
                        dup_type, volume, manifest=manifest, encrypted=encrypted, gzipped=gzipped
                    ).decode()
                    out.append((name, kind))
    finally:
        for attr, value in saved.items():
            setattr(config, attr, value)
        file_naming.prepare_regex(force=True)
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
    for needed in (
        "functionAppName",
        "deadLetterContainer",
        "hostStorageAccountName",
        "identityClientId",
    ):
        assert needed in outputs
    for name, output in outputs.items():
        text = json.dumps(output).lower()
        assert "connectionstring" not in text and "key" not in text, name
        assert output["type"] in ("string", "int", "bool")
    assert evaluate(outputs["deadLetterContainer"]["value"]) == "retier-dead-letter"


def test_parameters_are_described():
    for name, spec in TEMPLATE["parameters"].items():
        assert len(spec.get("metadata", {}).get("description", "")) > 20, name


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
