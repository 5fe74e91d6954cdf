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


@pytest.mark.parametrize(
    "value, guess",
    [
        ("Backups,photos", "did you mean 'backups'?"),
        ("backups other", "separate the containers with commas; did you mean 'backups,other'?"),
        ("backups,azure://photos", "did you mean 'photos'?"),
        ("my_backups", "did you mean 'my-backups'?"),
        ("ab", "3-63 characters"),
    ],
)
def test_a_bad_container_name_stops_the_settings_and_says_what_was_meant(value, guess):
    """Never lowered silently, never a space taken for one odd name: the function must not run."""
    with pytest.raises(SettingsError, match="RETIER_CONTAINERS") as info:
        load_settings({"RETIER_CONTAINERS": value})
    assert guess in str(info.value)


@pytest.mark.parametrize(
    "typed, name",
    [
        ("backups", "backups"),
        (" backups ", "backups"),
        ("azure://backups", "backups"),
        ("https://acct.blob.core.windows.net/backups", "backups"),
        ("http://127.0.0.1:10000/devstoreaccount1/backups", "backups"),
        ("$root", "$root"),
        ("a" * 63, "a" * 63),
        ("0-a-1", "0-a-1"),
    ],
)
def test_a_typed_container_accepts_a_name_or_the_container_part_of_a_url(typed, name):
    assert s.check_container_name(typed, "--container", accept_url=True) == name


@pytest.mark.parametrize(
    "typed", ["", "Backups", "a" * 64, "-backups", "backups-", "back--ups", "back_ups", "ab"]
)
def test_a_typed_container_outside_azures_rules_is_refused_with_the_rule(typed):
    with pytest.raises(SettingsError, match="--container") as info:
        s.check_container_name(typed, "--container", accept_url=True)
    assert "lowercase letters, digits and hyphens, 3-63 characters" in str(info.value)


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


# -- no setting's value is ever repeated when it could be a secret (issue 15, item 1) -------------

# Made-up secrets, planted in every setting: the shape of a real account key and a real SAS.
KEY = "Zm9vYmFy" * 10 + "S2V5MTIzNDU2Nzg5MA=="  # 88 characters of base64, as Azure's keys
SIG = "q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c%3D"
CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    "EndpointSuffix=core.windows.net"
)
SAS_URL = f"https://acct.blob.core.windows.net/?sv=2024-11-04&ss=b&sp=rwl&sig={SIG}"
SAS_CONNECTION = (
    f"BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=2024-11-04&sig={SIG}"
)
PLANTED = {
    "a connection string": CONNECTION,
    "a URL with a SAS": SAS_URL,
    "a SAS connection string": SAS_CONNECTION,
    "a bare key": KEY,
    "a key cut short": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY[:50]}",
    "a broken connection string": f"AccountName=acct;AccountKey{KEY};BlobEndpoint",
    "a typo in a key name": CONNECTION.replace("AccountKey=", "AccountKy="),
    "a connection string with a URL as BlobEndpoint": f"{CONNECTION};BlobEndpoint={SAS_URL}",
}
FRAGMENTS = (KEY, KEY[:24], KEY[-24:], SIG, SIG[:24])
# Every setting retier reads, duplicity's connection string and the price file among them.
EVERY_SETTING = (*s.ALL_SETTINGS, s.DUPLICITY_CONNECTION_STRING, "RETIER_PRICES")
BASE = {"RETIER_STORAGE": AZURITE}


def _every_error(env) -> list[str]:
    """The message of every settings-error path that reads `env`."""
    from retier import costs
    from retier.replay import dead_letter_connection

    messages = []
    for read in (
        lambda: load_settings(env, allow_duplicity_env=True),
        lambda: load_settings(env),
        lambda: load_settings(env, allow_duplicity_env=True).require_connection(),
        lambda: s.sweep_schedule(env),
        lambda: costs.load_prices(env),
    ):
        try:
            read()
        except (SettingsError, costs.PriceError) as exc:
            messages.append(str(exc))
    for value in env.values():
        try:
            dead_letter_connection(value)  # --dead-letter-storage takes the same values
        except SettingsError as exc:
            messages.append(str(exc))
    return messages


@pytest.mark.parametrize("setting", EVERY_SETTING)
@pytest.mark.parametrize("planted", PLANTED)
def test_a_secret_planted_in_any_setting_is_never_repeated(setting, planted):
    from secret_guard import plant

    plant(KEY, SIG)  # and the session guard watches every log record for them too
    env = {**BASE, setting: PLANTED[planted]}
    if setting == s.STORAGE_BLOB_SERVICE_URI:
        env.pop("RETIER_STORAGE")  # set alone, as a user would, to reach the URL's own checks
    messages = _every_error(env)
    for message in messages:
        for fragment in FRAGMENTS:
            assert fragment not in message, (setting, planted, message)


@pytest.mark.parametrize(
    "setting, value, named",
    [
        (s.STORAGE_BLOB_SERVICE_URI, CONNECTION, "looks like a connection string"),
        (s.STORAGE_BLOB_SERVICE_URI, SAS_URL, "SAS"),
        (s.STORAGE, CONNECTION.replace("AccountKey=", "AccountKy="), "did you mean AccountKey"),
        (s.STORAGE, CONNECTION.replace(KEY, KEY[:50]), "AccountKey is not base64"),
        (s.STORAGE, "https://acct.blob.core.windows.net", s.STORAGE_BLOB_SERVICE_URI),
        (s.STORAGE, SAS_CONNECTION.replace("https://acct", "ftp://acct"), "BlobEndpoint"),
        (s.VOLUME_TIER, KEY, "not an access tier"),
        (s.METADATA_TIER, CONNECTION, "not an access tier"),
        (s.SWEEP_SCHEDULE, CONNECTION, "six-field NCRONTAB"),
        ("RETIER_PRICES", CONNECTION, "JSON file of prices"),
    ],
)
def test_each_settings_error_names_the_setting_and_the_shape_expected(setting, value, named):
    from retier import costs

    env = {setting: value} if setting.startswith("RETIER_STORAGE") else {**BASE, setting: value}
    messages = _every_error(env)
    relevant = [m for m in messages if named in m]
    assert relevant, messages
    # The message names the setting it is about (the connection's errors by its source).
    assert any(setting in m for m in messages), messages
    for message in messages:
        for fragment in FRAGMENTS:
            assert fragment not in message
    assert costs  # imported for the price setting's error path


def test_the_reported_leak_blob_service_uri_holding_a_connection_string():
    """The defect as reported: the whole value, key included, in `sweep`, `cost` and `doctor`."""
    with pytest.raises(SettingsError) as info:
        load_settings({s.STORAGE_BLOB_SERVICE_URI: CONNECTION})
    message = str(info.value)
    assert KEY not in message and "AccountKey" not in message
    assert message.startswith(f"{s.STORAGE_BLOB_SERVICE_URI}: not a blob service URL")
    assert "https://<account>.blob.core.windows.net" in message
    assert f"belongs in {s.STORAGE}" in message


@pytest.mark.parametrize("value", ["Archive", "cold-ish", "0 30 3 * * *", "/tmp/prices.json"])
def test_a_harmless_value_is_still_quoted_so_the_mistake_can_be_seen(value):
    from retier.errors import shown

    assert shown(value) == repr(value)


@pytest.mark.parametrize("value", [KEY, CONNECTION, SAS_URL, KEY[:30], f"x;y={KEY[:10]}"])
def test_a_value_that_could_be_a_secret_is_described_not_quoted(value):
    from retier.errors import shown

    assert value not in shown(value) and "not shown" in shown(value)
