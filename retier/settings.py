"""The RETIER_* settings, read once from the environment (pure: takes a mapping, returns values)."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from retier.errors import SettingsError, is_plain, shape, shown
from retier.events import is_path_style_host
from retier.policy import DEFAULT_VOLUME_TIER, TIERS, Policy, PolicyError

# One vocabulary: these names appear in the README, local.settings.example.json and the
# deployment template exactly as here.
STORAGE = "RETIER_STORAGE"
STORAGE_BLOB_SERVICE_URI = "RETIER_STORAGE__blobServiceUri"
STORAGE_CLIENT_ID = "RETIER_STORAGE__clientId"
STORAGE_CREDENTIAL = "RETIER_STORAGE__credential"
VOLUME_TIER = "RETIER_VOLUME_TIER"
METADATA_TIER = "RETIER_METADATA_TIER"
CONTAINERS = "RETIER_CONTAINERS"
FILE_PREFIX_ARCHIVE = "RETIER_FILE_PREFIX_ARCHIVE"
FILE_PREFIX_MANIFEST = "RETIER_FILE_PREFIX_MANIFEST"
SWEEP_SCHEDULE = "RETIER_SWEEP_SCHEDULE"
# Daily at 03:30 UTC: after typical nightly cron backups, before the working day.
DEFAULT_SWEEP_SCHEDULE = "0 30 3 * * *"
# The built-in role the deployment assigns (infra/main.json); doctor names it too.
CONTRIBUTOR_ROLE = "Storage Blob Data Contributor"
# duplicity's own variable; only the CLI falls back to it.
DUPLICITY_CONNECTION_STRING = "AZURE_CONNECTION_STRING"

ALL_SETTINGS = (
    STORAGE,
    STORAGE_BLOB_SERVICE_URI,
    STORAGE_CLIENT_ID,
    STORAGE_CREDENTIAL,
    VOLUME_TIER,
    METADATA_TIER,
    CONTAINERS,
    FILE_PREFIX_ARCHIVE,
    FILE_PREFIX_MANIFEST,
    SWEEP_SCHEDULE,
)


@dataclass(frozen=True)
class Connection:
    """How to reach the storage account. `connection_string` is a secret: never printed."""

    connection_string: str | None = field(default=None, repr=False)
    blob_service_uri: str | None = None
    client_id: str | None = None
    credential: str | None = None
    source: str = STORAGE

    @property
    def account_name(self) -> str:
        if self.connection_string:
            return account_from_connection_string(self.connection_string)
        assert self.blob_service_uri
        return account_from_url(self.blob_service_uri)

    @property
    def uses_managed_identity(self) -> bool:
        """As retier.storage.connect decides: a client id or `managedidentity` means only that."""
        return bool(self.client_id) or (self.credential or "").lower() == "managedidentity"

    @property
    def credential_text(self) -> str:
        """Which credential this is, in words, for messages (never a part of the secret)."""
        if self.connection_string:
            parts = _parse_connection_string(self.connection_string)
            if "usedevelopmentstorage" in parts:
                return f"the emulator's well-known key ({self.source})"
            if parts.get("accountkey"):
                return f"the account key in {self.source}"
            return f"the SAS in {self.source}"
        if self.uses_managed_identity:
            return "the managed identity" + (f" {self.client_id}" if self.client_id else "")
        return "your Azure sign-in (DefaultAzureCredential)"

    @property
    def refused_hint(self) -> str:
        """What to check when storage refuses this credential (HTTP 401/403)."""
        if self.connection_string:
            parts = _parse_connection_string(self.connection_string)
            if parts.get("accountkey") or "usedevelopmentstorage" in parts:
                return (
                    "copy the key again (portal: Access keys, or `az storage account keys list "
                    "-n <account>`): was it rotated, cut short, or another account's?"
                )
            return (
                "the SAS may have expired (its se= date), or lack the list, read and write "
                "permissions retier needs: make a new one"
            )
        # learn.microsoft.com/azure/role-based-access-control/troubleshooting: role assignment
        # changes can take up to 30 minutes to take effect.
        return (
            f'give {self.credential_text} the role "{CONTRIBUTOR_ROLE}" (or retier\'s own) on '
            "the storage account; a new role assignment can take up to 30 minutes to apply"
        )


@dataclass(frozen=True)
class Settings:
    connection: Connection | None
    policy: Policy
    containers: frozenset[str] = frozenset()
    file_prefix_archive: str = ""
    file_prefix_manifest: str = ""

    @property
    def name_prefixes(self) -> dict[str, str]:
        """duplicity's --file-prefix-archive/-manifest, as retier.names' listing and set_key functions take them."""
        return {
            "archive_prefix": self.file_prefix_archive,
            "manifest_prefix": self.file_prefix_manifest,
        }

    @property
    def account_name(self) -> str | None:
        return self.connection.account_name if self.connection else None

    def require_connection(self) -> Connection:
        if self.connection is None:
            raise SettingsError(
                f"no storage connection: set {STORAGE} to a connection string, or "
                f"{STORAGE_BLOB_SERVICE_URI} (with {STORAGE_CLIENT_ID} for a user-assigned identity)"
            )
        return self.connection


def _parse_connection_string(value: str) -> dict[str, str]:
    parts = {}
    for item in value.split(";"):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep:
            raise SettingsError("connection string is not a list of Key=Value pairs")
        parts[key.strip().lower()] = val.strip()
    return parts


# The storage emulator's shorthand, as azure-storage-blob (12.28+) expands it: the well-known
# account at Azurite's default blob endpoint. The Python SDK ignores DevelopmentStorageProxyUri
# (the .NET SDK honours it), so a connection string naming one is refused here rather than
# silently sent to 127.0.0.1.
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
DEVELOPMENT_STORAGE_ACCOUNT = "devstoreaccount1"
DEVELOPMENT_STORAGE_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


def is_development_storage(value: str) -> bool:
    """Whether a connection string is the emulator shorthand; SettingsError if it half is.

    Read exactly as the storage SDK reads it: the key in any case, the value only as `true`,
    and nothing else beside it (the SDK would ignore it without a word).
    """
    parts = _parse_connection_string(value)
    if "usedevelopmentstorage" not in parts:
        return False
    raw = dict(item.split("=", 1) for item in value.rstrip(";").split(";") if "=" in item)
    if {k.upper(): v for k, v in raw.items()}.get("USEDEVELOPMENTSTORAGE") != "true":
        raise SettingsError(
            f"write the emulator shorthand exactly as {DEVELOPMENT_STORAGE} "
            "(the storage SDK accepts no other value or spacing)"
        )
    others = sorted(k for k in raw if k.strip().lower() != "usedevelopmentstorage")
    if others:
        # Key names only: a value beside the shorthand could be a real key.
        raise SettingsError(
            f"{DEVELOPMENT_STORAGE} stands alone: the storage SDK would ignore "
            f"{', '.join(others)} and use {DEVELOPMENT_STORAGE_BLOB_ENDPOINT}; "
            "give the full connection string with BlobEndpoint instead"
        )
    return True


# The keys of a storage connection string (learn.microsoft.com/azure/storage/common/
# storage-configure-connection-string), and the secondary endpoints azure-storage-blob also reads
# (its _shared/base_client.py, _SERVICE_PARAMS). Any other key is a typo the SDK would ignore
# without a word: `AccountKy=` leaves the client anonymous and every request refused.
CONNECTION_STRING_KEYS = (
    "DefaultEndpointsProtocol",
    "AccountName",
    "AccountKey",
    "SharedAccessSignature",
    "EndpointSuffix",
    "BlobEndpoint",
    "BlobSecondaryEndpoint",
    "QueueEndpoint",
    "QueueSecondaryEndpoint",
    "TableEndpoint",
    "TableSecondaryEndpoint",
    "FileEndpoint",
    "FileSecondaryEndpoint",
)
_KNOWN_KEYS = {k.lower(): k for k in CONNECTION_STRING_KEYS}


def _check_connection_string_keys(value: str, parts: dict[str, str]) -> None:
    """Key names only in messages: a value beside them could be the account key."""
    for item in value.split(";"):
        key = item.partition("=")[0].strip()
        if key and key.lower() not in _KNOWN_KEYS:
            import difflib  # only for this hint: kept off the function's cold start

            close = difflib.get_close_matches(key.lower(), _KNOWN_KEYS, n=1, cutoff=0.75)
            hint = f"; did you mean {_KNOWN_KEYS[close[0]]}?" if close else ""
            named = shown(key, limit=32) if is_plain(key, limit=32) else "(not shown)"
            raise SettingsError(
                f"connection string key {named} is not one Azure knows "
                f"(DefaultEndpointsProtocol, AccountName, AccountKey, ...){hint}"
            )
    key = parts.get("accountkey")
    if key:
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise SettingsError(
                "connection string's AccountKey is not base64 (cut short when copied?): copy the whole key "
                "from the portal (Access keys) or `az storage account keys list`"
            ) from None
    if not (key and parts.get("accountname")) and not parts.get("sharedaccesssignature"):
        raise SettingsError(
            "connection string holds no credential: give AccountName with AccountKey, or "
            "SharedAccessSignature (or use RETIER_STORAGE__blobServiceUri with an identity)"
        )


def account_from_connection_string(value: str) -> str:
    parts = _parse_connection_string(value)
    if is_development_storage(value):
        return DEVELOPMENT_STORAGE_ACCOUNT
    _check_connection_string_keys(value, parts)
    if parts.get("accountname"):
        return parts["accountname"].lower()
    if parts.get("blobendpoint"):
        try:
            return account_from_url(parts["blobendpoint"])
        except SettingsError as exc:
            raise SettingsError(f"BlobEndpoint: {exc}") from None
    raise SettingsError("connection string names no AccountName or BlobEndpoint")


BLOB_SERVICE_URL_SHAPE = (
    "https://<account>.blob.core.windows.net (or the emulator's http://127.0.0.1:10000/<account>)"
)


def account_from_url(url: str) -> str:
    """`https://acct.blob.core.windows.net` or the emulator's `http://127.0.0.1:10000/acct`.

    The SettingsError never repeats the value: the mistake this catches most is a connection
    string (key included) pasted where the URL belongs. The caller names the setting.
    """
    if "=" in url and ";" in url:
        raise SettingsError(
            f"not a blob service URL: {shape(url)}; expected {BLOB_SERVICE_URL_SHAPE}. "
            f"A connection string belongs in {STORAGE}"
        )
    try:
        parsed = urlsplit(url)
        host = (parsed.hostname or "").lower()
    except ValueError:  # e.g. an unbalanced [ in the host
        host, parsed = "", None
    if parsed is None or parsed.scheme not in ("http", "https") or not host:
        raise SettingsError(
            f"not a blob service URL: {shown(url)}; expected {BLOB_SERVICE_URL_SHAPE}"
        )
    if parsed.query:
        # A SAS in the URL would be sent as a credential and shown by every message naming it.
        raise SettingsError(
            "a blob service URL with a query (a SAS token?) is not accepted: give the URL alone "
            f"({BLOB_SERVICE_URL_SHAPE}); a SAS belongs in a connection string in {STORAGE}"
        )
    if is_path_style_host(host):
        segments = [s for s in parsed.path.split("/") if s]
        if not segments:
            raise SettingsError(
                "an emulator URL must end with the account name, as "
                "http://127.0.0.1:10000/devstoreaccount1"
            )
        return segments[0].lower()
    return host.split(".")[0]


# -- container names ------------------------------------------------------------------------------
# Azure's rules ("Naming and Referencing Containers, Blobs, and Metadata",
# https://learn.microsoft.com/rest/api/storageservices/Naming-and-Referencing-Containers--Blobs--and-Metadata):
# 3 to 63 characters; lowercase letters, digits and hyphens; starting and ending with a letter or
# digit; every hyphen between two letters or digits. A name outside them is refused by storage
# with HTTP 400 InvalidResourceName, after a request; here it is refused before any.
CONTAINER_RULE = (
    "container names are lowercase letters, digits and hyphens, 3-63 characters, starting and "
    "ending with a letter or digit, no two hyphens together"
)
_CONTAINER_NAME = re.compile(r"(?=.{3,63}$)[a-z0-9](?:-?[a-z0-9])*")
# The same page's special containers: the root container, and the ones Azure itself writes.
SPECIAL_CONTAINERS = frozenset({"$root", "$logs", "$web"})


def is_container_name(name: str) -> bool:
    return name in SPECIAL_CONTAINERS or bool(_CONTAINER_NAME.fullmatch(name))


def _container_in_url(value: str) -> str | None:
    """The container part of duplicity's `azure://backups` or of a blob URL, else None."""
    lowered = value.lower()
    if lowered.startswith("azure://"):
        rest = value[len("azure://") :]
    elif lowered.startswith(("https://", "http://")):
        try:
            parsed = urlsplit(value)
        except ValueError:
            return None
        segments = [s for s in parsed.path.split("/") if s]
        if parsed.hostname and is_path_style_host(parsed.hostname.lower()):
            segments = segments[1:]  # the emulator's path starts with the account
        rest = segments[0] if segments else ""
    else:
        return None
    return rest.strip("/").split("/")[0] or None


def _suggested_container(value: str) -> str | None:
    """A valid name close to what was typed ('Backups', 'my_backups', 'azure://backups')."""
    if not is_plain(value, limit=200):
        return None  # derived from a secret, a suggestion would repeat it
    candidate = _container_in_url(value) or value
    candidate = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-")
    return candidate if is_container_name(candidate) and candidate != value else None


def check_container_name(value: str, source: str, *, accept_url: bool = False) -> str:
    """`value` as a container name, or a SettingsError that names `source`, the rule and a guess.

    The one check for --container, RETIER_CONTAINERS, the bridge and doctor: nothing is lowered
    silently (Azure would not find 'Backups'). With `accept_url`, duplicity's `azure://backups`
    (or a blob URL) is taken for the container it names, as a person typing it means.
    """
    name = value.strip()
    where = f"{source} " if source else ""
    if not name:
        raise SettingsError(
            f"{where}is an empty container name (an unset shell variable?); {CONTAINER_RULE}"
        )
    if is_container_name(name):
        return name
    in_url = _container_in_url(name)
    if accept_url and in_url and is_container_name(in_url):
        return in_url
    guess = _suggested_container(name)
    raise SettingsError(
        f"{where}{shown(name)} is no container name: {CONTAINER_RULE}"
        + (f"; did you mean {guess!r}?" if guess else "")
    )


def parse_containers(value: str) -> frozenset[str]:
    """RETIER_CONTAINERS: comma-separated names; any bad one stops the function (a SettingsError)."""
    names = set()
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        words = item.split()
        if len(words) > 1 and all(is_container_name(w) for w in words):
            raise SettingsError(
                f"{CONTAINERS}={shown(value, limit=200)}: separate the containers with commas; "
                f"did you mean {','.join(words)!r}?"
            )
        names.add(check_container_name(item, CONTAINERS))
    return frozenset(names)


def _connection(env: Mapping[str, str], *, allow_duplicity_env: bool) -> Connection | None:
    conn = env.get(STORAGE, "").strip()
    uri = env.get(STORAGE_BLOB_SERVICE_URI, "").strip()
    client_id = env.get(STORAGE_CLIENT_ID, "").strip() or None
    credential = env.get(STORAGE_CREDENTIAL, "").strip() or None
    if conn and uri:
        raise SettingsError(f"set either {STORAGE} or {STORAGE_BLOB_SERVICE_URI}, not both")
    if conn:
        if "=" not in conn:
            # Functions allows RETIER_STORAGE to name another setting; we keep it simple and say so.
            hint = (
                f"; a blob service URL belongs in {STORAGE_BLOB_SERVICE_URI}"
                if conn.lower().startswith(("https://", "http://"))
                else ""
            )
            raise SettingsError(f"{STORAGE} must be a connection string (Key=Value;...){hint}")
        result = Connection(connection_string=conn, source=STORAGE)
    elif uri:
        if credential and credential.lower() != "managedidentity":
            raise SettingsError(f"{STORAGE_CREDENTIAL} may only be 'managedidentity'")
        result = Connection(
            blob_service_uri=uri,
            client_id=client_id,
            credential=credential,
            source=STORAGE_BLOB_SERVICE_URI,
        )
    elif allow_duplicity_env and env.get(DUPLICITY_CONNECTION_STRING, "").strip():
        result = Connection(
            connection_string=env[DUPLICITY_CONNECTION_STRING].strip(),
            source=DUPLICITY_CONNECTION_STRING,
        )
    else:
        return None
    try:
        _ = result.account_name  # validate now, not at the first event
    except SettingsError as exc:
        raise SettingsError(f"{result.source}: {exc}") from None  # name the setting, not its value
    return result


def load_settings(
    env: Mapping[str, str] | None = None, *, allow_duplicity_env: bool = False
) -> Settings:
    """Read every RETIER_* setting; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    volume_tier = env.get(VOLUME_TIER, "").strip() or DEFAULT_VOLUME_TIER
    metadata_tier = env.get(METADATA_TIER, "").strip() or None
    for setting, value in ((VOLUME_TIER, volume_tier), (METADATA_TIER, metadata_tier)):
        if value is not None and not is_plain(value, limit=16):
            # policy.py quotes what it refuses; a tier is a short word, so this is no tier.
            raise SettingsError(
                f"{setting}={shown(value)}: not an access tier; use one of {', '.join(TIERS)}"
            )
    try:
        policy = Policy(volume_tier=volume_tier, metadata_tier=metadata_tier)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    containers = parse_containers(env.get(CONTAINERS, ""))
    return Settings(
        connection=_connection(env, allow_duplicity_env=allow_duplicity_env),
        policy=policy,
        containers=containers,
        file_prefix_archive=env.get(FILE_PREFIX_ARCHIVE, ""),
        file_prefix_manifest=env.get(FILE_PREFIX_MANIFEST, ""),
    )


def sweep_schedule(env: Mapping[str, str] | None = None) -> str:
    """The timer's NCRONTAB schedule (six fields: second minute hour day month weekday)."""
    env = os.environ if env is None else env
    value = env.get(SWEEP_SCHEDULE, "").strip() or DEFAULT_SWEEP_SCHEDULE
    if len(value.split()) != 6:
        raise SettingsError(
            f"{SWEEP_SCHEDULE}={shown(value)}: use a six-field NCRONTAB expression "
            f"(second minute hour day month weekday), e.g. {DEFAULT_SWEEP_SCHEDULE!r}"
        )
    return value
