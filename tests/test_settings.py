"""Settings: one vocabulary, clear errors, no secret in any message."""

import json
from pathlib import Path

import pytest

from retier import settings as s
from retier.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0LWtleQ==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


def test_defaults_are_cold_volumes_and_metadata_left_alone():
    cfg = load_settings({})
    assert cfg.policy.volume_tier == "Cold"
    assert cfg.policy.metadata_tier is None
    assert cfg.containers == frozenset()
    assert cfg.connection is None


def test_tier_settings_are_case_insensitive_and_canonical():
    cfg = load_settings({"RETIER_VOLUME_TIER": "archive", "RETIER_METADATA_TIER": " cOOL "})
    assert (cfg.policy.volume_tier, cfg.policy.metadata_tier) == ("Archive", "Cool")


@pytest.mark.parametrize("value", ["Archive", "archive"])
def test_metadata_tier_archive_is_refused_with_the_reason(value):
    with pytest.raises(SettingsError, match="RETIER_METADATA_TIER.*online"):
        load_settings({"RETIER_METADATA_TIER": value})


@pytest.mark.parametrize("value", ["Hot", "Premium", "cold-ish"])
def test_volume_tier_must_be_a_colder_tier(value):
    with pytest.raises(SettingsError, match="RETIER_VOLUME_TIER"):
        load_settings({"RETIER_VOLUME_TIER": value})


def test_containers_is_a_comma_separated_allow_list():
    cfg = load_settings({"RETIER_CONTAINERS": " backups, photos ,,"})
    assert cfg.containers == frozenset({"backups", "photos"})


def test_container_names_are_lower_cased_as_azure_requires():
    assert load_settings({"RETIER_CONTAINERS": "Backups,PHOTOS"}).containers == frozenset(
        {"backups", "photos"}
    )


def test_connection_string_gives_the_account_and_is_never_in_repr():
    cfg = load_settings({"RETIER_STORAGE": AZURITE})
    assert cfg.account_name == "devstoreaccount1"
    assert "c2VjcmV0LWtleQ" not in repr(cfg)


def test_identity_connection_follows_functions_convention():
    cfg = load_settings(
        {
            "RETIER_STORAGE__blobServiceUri": "https://MyAcct.blob.core.windows.net",
            "RETIER_STORAGE__clientId": "1111-2222",
            "RETIER_STORAGE__credential": "managedidentity",
        }
    )
    assert cfg.account_name == "myacct"
    assert cfg.connection.client_id == "1111-2222"
    assert cfg.connection.connection_string is None


def test_duplicity_connection_string_is_a_fallback_for_the_cli_only():
    env = {"AZURE_CONNECTION_STRING": AZURITE}
    assert load_settings(env).connection is None
    cli = load_settings(env, allow_duplicity_env=True)
    assert cli.connection.source == "AZURE_CONNECTION_STRING"
    assert cli.account_name == "devstoreaccount1"


def test_retier_storage_wins_over_duplicity_connection_string():
    other = AZURITE.replace("devstoreaccount1", "otheraccount")
    # On its own, the duplicity variable would be used, and would name the other account...
    assert (
        load_settings({"AZURE_CONNECTION_STRING": other}, allow_duplicity_env=True).account_name
        == "otheraccount"
    )
    # ...but with RETIER_STORAGE also set, RETIER_STORAGE is the connection used.
    cfg = load_settings(
        {"RETIER_STORAGE": AZURITE, "AZURE_CONNECTION_STRING": other}, allow_duplicity_env=True
    )
    assert cfg.account_name == "devstoreaccount1"
    assert (cfg.connection.source, cfg.connection.connection_string) == ("RETIER_STORAGE", AZURITE)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RETIER_STORAGE": "not a connection string"}, "RETIER_STORAGE"),
        ({"RETIER_STORAGE": "AccountKey=c2VjcmV0LWtleQ=="}, "AccountName"),
        (
            {
                "RETIER_STORAGE": AZURITE,
                "RETIER_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
            },
            "not both",
        ),
        (
            {
                "RETIER_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
                "RETIER_STORAGE__credential": "secret",
            },
            "managedidentity",
        ),
    ],
)
def test_bad_connection_settings_say_what_is_wrong_without_the_secret(env, message):
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(env)
    assert "c2VjcmV0LWtleQ" not in str(info.value)


def test_require_connection_names_both_ways_to_connect():
    with pytest.raises(SettingsError, match="RETIER_STORAGE.*RETIER_STORAGE__blobServiceUri"):
        load_settings({}).require_connection()


def test_local_settings_example_shows_every_setting_and_nothing_else():
    example = json.loads((ROOT / "local.settings.example.json").read_text())
    values = example["Values"]
    retier_keys = {k for k in values if k.startswith("RETIER_")}
    assert retier_keys == set(s.ALL_SETTINGS)
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_readme_documents_every_setting():
    from retier.costs import PRICES_SETTING

    readme = (ROOT / "README.md").read_text()
    missing = [
        name
        for name in (*s.ALL_SETTINGS, s.DUPLICITY_CONNECTION_STRING, PRICES_SETTING)
        if name not in readme
    ]
    assert missing == []
