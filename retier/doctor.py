"""Is it working? Settings, credential, account and containers checked: a list of ok / warn / fail.

Every check says in one sentence why it passed or what to do. Nothing is changed: the only
request that could write is a blob-metadata write on a condition no blob meets (it proves the
credential may write blobs, which Set Blob Tier needs, and writes nothing).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from retier import costs, lifecycle, names, policy
from retier.names import Kind
from retier.settings import (
    CONTAINERS,
    DUPLICITY_CONNECTION_STRING,
    SWEEP_SCHEDULE,
    Settings,
    SettingsError,
    load_settings,
    sweep_schedule,
)
from retier.storage import BlobStore, ContainerProtection, StorageError
from retier.sweep import ABANDONED_AFTER, Plan, Planner

logger = logging.getLogger(__name__)

OK = "ok"
WARN = "warn"
FAIL = "fail"

ROLE = "Storage Blob Data Contributor"
ROLE_ID = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
MAX_EXAMPLES = 5  # names listed per finding; the rest are counted

# Azure's SKU names (Get Account Information's x-ms-sku-name). Archive needs LRS, GRS or RA-GRS.
STANDARD_SKUS = frozenset(
    {
        "Standard_LRS",
        "Standard_GRS",
        "Standard_RAGRS",
        "Standard_ZRS",
        "Standard_GZRS",
        "Standard_RAGZRS",
    }
)
NO_ARCHIVE_SKUS = frozenset({"Standard_ZRS", "Standard_GZRS", "Standard_RAGZRS"})
# Account kinds whose block blobs have Hot/Cool/Cold/Archive: general-purpose v2 and legacy Blob
# Storage. "Storage" (general-purpose v1) has no blob tiers; "BlockBlobStorage" (premium block
# blobs) and "FileStorage" have none either.
TIERED_KINDS = frozenset({"StorageV2", "BlobStorage"})


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: str  # OK, WARN, FAIL
    message: str
    hint: str | None = None
    container: str | None = None
    setting: bool = False  # a bad setting is bad usage (exit 2), not a failure to retry
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "check": self.name,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
            "container": self.container,
            "details": self.details,
        }


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Check:
        check = Check(*args, **kwargs)
        self.checks.append(check)
        # The checklist is the command's output; the log line is for -v and for callers' logs.
        logger.info("doctor %s %s: %s", check.status, check.name, check.message)
        return check

    @property
    def exit_code(self) -> int:
        """0 nothing failed; 2 a setting is wrong (bad usage); 1 something would stop the service."""
        failed = [c for c in self.checks if c.status == FAIL]
        if any(c.setting for c in failed):
            return 2
        return 1 if failed else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}

    def to_dict(self) -> dict:
        return {
            "exit": self.exit_code,
            **self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }


def tier_support(
    sku_name: str | None, account_kind: str | None, pol: policy.Policy
) -> tuple[str, str]:
    """(status, sentence): can an account of this SKU and kind hold the tiers `pol` moves blobs to?"""
    sku, kind = sku_name or "unknown SKU", account_kind or "unknown kind"
    wanted = [pol.volume_tier] + ([pol.metadata_tier] if pol.metadata_tier else [])
    if sku.startswith("Premium_") or kind in ("BlockBlobStorage", "FileStorage"):
        return FAIL, (
            f"{sku} {kind} is a premium account: its blobs have no Hot/Cool/Cold/Archive tiers, "
            "so retier can move nothing here"
        )
    if kind == "Storage":
        return FAIL, (
            f"{sku} {kind} is a general-purpose v1 account, which has no blob access tiers; "
            "upgrade it to general-purpose v2 (StorageV2)"
        )
    if sku not in STANDARD_SKUS or kind not in TIERED_KINDS:
        return WARN, (
            f"{sku} {kind} is not a SKU and kind retier knows; it cannot say whether "
            f"{', '.join(wanted)} is available"
        )
    if pol.volume_tier == "Archive" and sku in NO_ARCHIVE_SKUS:
        return FAIL, (
            f"{sku} has no Archive tier (ZRS, GZRS and RA-GZRS accounts do not); "
            "set RETIER_VOLUME_TIER=Cold, or use an LRS, GRS or RA-GRS account"
        )
    return OK, f"{sku} {kind}: {', '.join(wanted)} available"


ONLY_LIFECYCLE = "lifecycle"  # `--only lifecycle`: the policy-file check alone, no storage
ONLY_CHOICES = (ONLY_LIFECYCLE,)


def diagnose(
    env: Mapping[str, str] | None = None,
    containers: Collection[str] | None = None,
    *,
    now: datetime | None = None,
    store: BlobStore | None = None,
    lifecycle_policy: str | None = None,
    file_prefixes: Collection[str] = (),
    only: str | None = None,
) -> Report:
    """Run every check. `containers` default to RETIER_CONTAINERS; `now` is the clock ages use.

    `lifecycle_policy` is a policy file (`az storage account management-policy show` output):
    its rules are checked against the names duplicity writes with `file_prefixes` (its
    --file-prefix values). `only="lifecycle"` runs that check alone, with no storage access.
    """
    env = os.environ if env is None else env
    now = now or datetime.now(timezone.utc)
    report = Report()
    if only == ONLY_LIFECYCLE:
        return _lifecycle_only(env, containers, lifecycle_policy, file_prefixes, report)
    settings, prices = _check_settings(env, report)
    if settings is None:
        return report
    chosen = _chosen(containers, settings)
    if lifecycle_policy is not None:
        _check_lifecycle(lifecycle_policy, chosen, settings, prices, file_prefixes, report)
    if not settings.containers:
        report.add(
            "containers",
            WARN,
            f"{CONTAINERS} is unset: the function acts on events from every container and the "
            "daily sweep sweeps none",
            hint=f"set {CONTAINERS}=backups (comma-separated) to the containers duplicity writes to",
            setting=True,
        )
    if settings.connection is None:
        report.add(
            "storage",
            FAIL,
            _no_connection(settings),
            setting=True,
        )
        return report
    if store is None:
        store = BlobStore.from_connection(settings.connection)
    reachable, account_kind = _check_account(store, settings, report)
    if not reachable:
        return report  # no answer at all: every other check would say the same
    _check_data_protection(store, report)
    for container in chosen:
        _check_container(store, container, settings, prices, account_kind, now, report)
    return report


def _chosen(containers: Collection[str] | None, settings: Settings) -> list[str]:
    chosen = sorted({c.strip() for c in containers or () if c.strip()})  # as given: no lowercasing
    return chosen or sorted(settings.containers)


# -- lifecycle management rules ---------------------------------------------------------------------
def _lifecycle_only(
    env: Mapping[str, str],
    containers: Collection[str] | None,
    path: str | None,
    file_prefixes: Collection[str],
    report: Report,
) -> Report:
    """`--only lifecycle`: read the settings (tiers, prefixes, containers) and the policy file."""
    if path is None:
        report.add(
            "lifecycle", FAIL, "--only lifecycle needs --lifecycle-policy FILE", setting=True
        )
        return report
    try:
        settings = load_settings(env, allow_duplicity_env=True)
        prices = costs.load_prices(env)
    except (SettingsError, costs.PriceError) as exc:
        report.add("settings", FAIL, str(exc), setting=True)
        return report
    _check_lifecycle(path, _chosen(containers, settings), settings, prices, file_prefixes, report)
    return report


def _check_lifecycle(
    path: str,
    containers: list[str],
    settings: Settings,
    prices: dict | None,
    file_prefixes: Collection[str],
    report: Report,
) -> None:
    """One line per rule and container that touches duplicity's names (retier.lifecycle)."""
    if not containers:
        report.add(
            "lifecycle",
            FAIL,
            f"no container to check the policy against: give --container or set {CONTAINERS}",
            setting=True,
        )
        return
    try:
        rules = lifecycle.load_policy(path)
    except lifecycle.PolicyError as exc:
        report.add("lifecycle", FAIL, f"cannot read the lifecycle policy: {exc}", setting=True)
        return
    pol = settings.policy
    findings = lifecycle.check_policy(
        rules,
        containers,
        volume_tier=pol.volume_tier,
        metadata_tier=pol.metadata_tier,
        archive_prefix=settings.file_prefix_archive,
        manifest_prefix=settings.file_prefix_manifest,
        file_prefixes=tuple(file_prefixes) or ("",),
        prices=prices,
    )
    for f in findings:
        report.add(
            f"{f.container} lifecycle" + (f" {f.rule}" if f.rule else ""),
            f.status,
            f.message,
            container=f.container,
            details={"rule": f.rule, "harm": f.harm, "kinds": list(f.kinds), **f.details},
        )


# -- settings ---------------------------------------------------------------------------------------
def _check_settings(env: Mapping[str, str], report: Report) -> tuple[Settings | None, dict | None]:
    try:
        settings = load_settings(env, allow_duplicity_env=True)
    except SettingsError as exc:
        # The message names the setting and never a secret value (settings.py's rule).
        report.add("settings", FAIL, str(exc), setting=True)
        settings = None
    else:
        pol = settings.policy
        metadata = f"metadata to {pol.metadata_tier}" if pol.metadata_tier else "metadata stays"
        scope = ", ".join(sorted(settings.containers)) or "any"
        report.add(
            "settings",
            OK,
            f"RETIER_* settings parse: volumes to {pol.volume_tier}, {metadata}, containers: {scope}",
            setting=True,
        )
        if settings.connection and settings.connection.source == DUPLICITY_CONNECTION_STRING:
            report.add(
                "settings",
                WARN,
                f"the connection comes from duplicity's {DUPLICITY_CONNECTION_STRING}; the "
                "function app reads only RETIER_STORAGE or RETIER_STORAGE__blobServiceUri",
                setting=True,
            )
    try:
        schedule = sweep_schedule(env)
    except SettingsError as exc:
        report.add("sweep schedule", FAIL, str(exc), setting=True)
    else:
        report.add(
            "sweep schedule",
            OK,
            f"{SWEEP_SCHEDULE} {schedule!r} is six-field NCRONTAB (UTC)",
            setting=True,
        )
    try:
        prices = costs.load_prices(env)
    except costs.PriceError as exc:
        report.add("prices", FAIL, str(exc), setting=True)
        prices = None
    else:
        source = "your RETIER_PRICES file" if env.get(costs.PRICES_SETTING, "").strip() else ""
        report.add(
            "prices",
            OK,
            f"{source or 'built-in table'}: {prices.get('region')} {prices.get('redundancy')} "
            f"{prices.get('currency')}, as of {prices.get('as_of')}",
            setting=True,
        )
    return settings, prices


def _no_connection(settings: Settings) -> str:
    try:
        settings.require_connection()
    except SettingsError as exc:
        return str(exc)
    return "no storage connection"


# -- storage and account ----------------------------------------------------------------------------
def _managed_identity(settings: Settings) -> bool:
    """As retier.storage.connect decides: a client id or `managedidentity` means only that."""
    conn = settings.connection
    return bool(conn.client_id) or (conn.credential or "").lower() == "managedidentity"


def _credential(settings: Settings) -> str:
    conn = settings.connection
    if conn.connection_string:
        return f"the connection string in {conn.source}"
    if _managed_identity(settings):
        return "the managed identity" + (f" {conn.client_id}" if conn.client_id else "")
    return "DefaultAzureCredential (az login, environment, or managed identity)"


def _uses_identity(settings: Settings) -> bool:
    return not settings.connection.connection_string


def _role_hint(settings: Settings, account: str) -> str:
    scope = (
        f"storage account {account} (scope …/providers/Microsoft.Storage/storageAccounts/{account})"
    )
    grant = (
        f'az role assignment create --role "{ROLE}" --assignee <principal id> '
        f'--scope "$(az storage account show -n {account} --query id -o tsv)"'
    )
    if _uses_identity(settings):
        who = (
            "the managed identity"
            if _managed_identity(settings)
            else "the signed-in identity (here: your az login; in Azure: the function's identity)"
        )
        return f'{who} needs the role "{ROLE}" ({ROLE_ID}) on {scope}: {grant}'
    return (
        f"the account key (or SAS) in {settings.connection.source} is wrong, rotated or too "
        f'narrow; an identity would need the role "{ROLE}" on {scope}'
    )


def _refused(exc: StorageError) -> bool:
    return exc.status in (401, 403)


def _check_account(store: BlobStore, settings: Settings, report: Report):
    """Reachability and tier support: (storage answered, the account kind if it could be read)."""
    account = settings.account_name
    credential = _credential(settings)
    try:
        info = store.account_information()
    except StorageError as exc:
        if exc.status is None:
            report.add(
                "storage",
                FAIL,
                f"no answer from {store.endpoint} with {credential}: {exc}",
                hint=(
                    "check the endpoint and the network; an identity that cannot get a token "
                    "yet (az login? a managed identity outside Azure?) also ends here"
                ),
            )
            return False, None
        report.add(
            "storage", OK, f"{account} answered at {store.endpoint} (credential: {credential})"
        )
        if _refused(exc) and _uses_identity(settings):
            # Get Account Information needs .../blobServices/getInfo/action, which the role the
            # function needs does not grant: a warning, since tiering works without it.
            report.add(
                "account",
                WARN,
                f"the identity may not read the account's SKU and kind ({exc}); "
                f'"{ROLE}" does not include Microsoft.Storage/storageAccounts/blobServices/getInfo/action',
                hint=(
                    f"check it yourself: az storage account show -n {account} --query "
                    "'{sku:sku.name,kind:kind}' (premium accounts have no tiers; "
                    "ZRS/GZRS/RA-GZRS have no Archive)"
                ),
            )
        elif _refused(exc):
            report.add(
                "account",
                FAIL,
                f"storage refused the credential ({exc})",
                hint=_role_hint(settings, account),
            )
        else:
            report.add("account", WARN, f"could not read the account's SKU and kind: {exc}")
        return True, None
    report.add("storage", OK, f"{account} answered at {store.endpoint} (credential: {credential})")
    status, message = tier_support(info.sku_name, info.account_kind, settings.policy)
    report.add(
        "account",
        status,
        message,
        details={"sku_name": info.sku_name, "account_kind": info.account_kind},
    )
    _report_hns(info.is_hns_enabled, report)
    return True, info.account_kind


# -- Data Lake, immutability, versioning, soft delete (docs/accounts.md has the sources) ------------
def _report_hns(is_hns_enabled: bool | None, report: Report) -> None:
    if is_hns_enabled is None:
        return
    if not is_hns_enabled:
        report.add("data lake", OK, "flat namespace: tier changes go out in Blob Batch requests")
        return
    # Access tiers (Set Blob Tier) are supported with a hierarchical namespace (Azure's feature
    # table: learn.microsoft.com/azure/storage/blobs/storage-feature-support-in-storage-accounts);
    # Blob Batch is not documented for it and has been reported refused with 400
    # (github.com/Azure/azure-sdk-for-js/issues/9578): retier falls back to one request per blob.
    report.add(
        "data lake",
        OK,
        "hierarchical namespace (Data Lake): Set Blob Tier works; if the account refuses Blob "
        "Batch, retier sends one Set Blob Tier per blob (the same tier writes, one request each "
        "instead of one per 256); blob versioning and version-level immutability are not "
        "available on such accounts",
        details={"is_hns_enabled": True},
    )


def _check_data_protection(store: BlobStore, report: Report) -> None:
    """Blob soft delete (account-wide): what duplicity's deletions cost while it lasts."""
    try:
        days = store.soft_delete_days()
    except StorageError as exc:
        report.add(
            "soft delete",
            WARN,
            f"could not read the blob service properties ({exc}); soft delete unknown",
            hint="check it yourself: az storage account blob-service-properties show -n ACCOUNT",
        )
        return
    if days is None:
        report.add("soft delete", OK, "blob soft delete is off: a deleted blob is gone at once")
        return
    report.add(
        "soft delete",
        OK,
        f"blob soft delete keeps deleted blobs {days} day(s): what duplicity deletes "
        "(remove-older-than, cleanup) stays billed in its tier that long; retier lists no "
        "soft-deleted blob (it never asks List Blobs to include them)",
        details={"soft_delete_days": days},
    )


def _report_immutability(protection: ContainerProtection, container: str, report: Report) -> None:
    kinds = [
        name
        for name, on in (
            ("a time-based retention policy", protection.immutability_policy),
            ("a legal hold", protection.legal_hold),
            ("version-level immutability", protection.version_level_worm),
        )
        if on
    ]
    if not kinds:
        report.add(f"{container} immutability", OK, "no immutability policy", container=container)
        return
    # "All blob access tiers support immutable storage. You can change the access tier of a blob
    # with the Set Blob Tier operation." learn.microsoft.com/azure/storage/blobs/immutable-storage-overview
    report.add(
        f"{container} immutability",
        OK,
        f"{' and '.join(kinds)}: Azure allows tier changes on immutable blobs, so retier works "
        "as usual; duplicity's remove-older-than and cleanup cannot delete until it lapses, and "
        "an archived volume kept past its 180 days stays billed",
        container=container,
        details={"immutability": kinds},
    )


def _report_versioning(store: BlobStore, container: str, report: Report) -> None:
    try:
        versioned = store.versioned(container)
    except StorageError as exc:
        report.add(
            f"{container} versioning",
            WARN,
            f"could not list {container} with versions ({exc}); versioning unknown",
            container=container,
        )
        return
    if not versioned:
        state = "unknown (empty container)" if versioned is None else "off"
        report.add(f"{container} versioning", OK, f"blob versioning {state}", container=container)
        return
    # A tier change is no write: it creates no version. duplicity writes each name once, so a
    # volume has one version, and tiering it leaves no previous version behind in Hot. Deleting
    # a blob turns its current version into a previous one, billed in its tier
    # (learn.microsoft.com/azure/storage/blobs/versioning-overview, "Pricing and billing").
    report.add(
        f"{container} versioning",
        OK,
        "blob versioning is on: duplicity writes each name once, so retier tiers a volume's only "
        "version and no Hot copy is left behind; what duplicity deletes stays as a previous "
        "version, billed in its tier, until a lifecycle rule deletes versions",
        container=container,
        details={"versioning": True},
    )


# -- containers -------------------------------------------------------------------------------------
@dataclass
class _CoolTrap:
    """Volumes uploaded as explicit Cool that retier will move colder: each pays Cool's remainder."""

    count: int = 0
    bytes: int = 0
    charge: float = 0.0
    examples: list[str] = field(default_factory=list)


def _check_container(
    store: BlobStore,
    container: str,
    settings: Settings,
    prices: dict | None,
    account_kind: str | None,
    now: datetime,
    report: Report,
) -> None:
    account = settings.account_name
    try:
        hold, protection = store.container_state(container)
    except StorageError as exc:
        if exc.status == 404:
            report.add(
                f"{container}",
                FAIL,
                f"container {container} does not exist in {account} ({exc})",
                hint="check the name: RETIER_CONTAINERS and --container take names like 'backups'",
                container=container,
            )
            return
        report.add(
            f"{container}",
            FAIL,
            f"cannot read the properties of {container} ({exc})",
            hint=_role_hint(settings, account) if _refused(exc) else None,
            container=container,
        )
    else:
        report.add(f"{container}", OK, "exists; its properties are readable", container=container)
        if hold is not None:
            report.add(
                f"{container} hold",
                WARN,
                f"on restore hold ({hold}): the handler and the sweep leave it alone",
                hint=f"when the restore is done: retier release --container {container}",
                container=container,
            )
        else:
            report.add(f"{container} hold", OK, "not on restore hold", container=container)
        _report_immutability(protection, container, report)
        _report_versioning(store, container, report)

    smart_blobs: Counter = Counter()
    try:
        plan, trap = _scan(store, container, settings, prices, account_kind, now, smart_blobs)
    except StorageError as exc:
        report.add(
            f"{container} listing",
            FAIL,
            f"cannot list {container} ({exc})",
            hint=_role_hint(settings, account) if _refused(exc) else None,
            container=container,
        )
        plan = None
    else:
        moves = plan.moves
        pending = (
            f"; {moves.count} blob(s) ({costs.format_bytes(moves.bytes)}) not yet at their tier: the next "
            f"event or sweep moves them (or: retier sweep --container {container})"
            if moves.count
            else "; every blob is where retier wants it"
        )
        report.add(
            f"{container} listing",
            OK,
            f"listed {plan.listed:,} blobs{pending}",
            container=container,
            details={"listed": plan.listed, "to_move": moves.count, "to_move_bytes": moves.bytes},
        )

    try:
        store.probe_blob_write(container, f".retier-doctor-probe-{uuid.uuid4().hex}")
    except StorageError as exc:
        report.add(
            f"{container} tier changes",
            FAIL,
            f"the credential may not write blobs in {container}, so it cannot set tiers ({exc})",
            hint=_role_hint(settings, account) if _refused(exc) else None,
            container=container,
        )
    else:
        report.add(
            f"{container} tier changes",
            OK,
            "the credential may write blobs here (asked on a condition no blob meets: nothing written)",
            container=container,
        )

    if plan is not None:
        _report_cool_trap(trap, container, settings, prices, report)
        _report_unfinished(plan, container, now, report)
        _report_smart_default(smart_blobs, plan, container, settings, report)


def _scan(
    store: BlobStore,
    container: str,
    settings: Settings,
    prices: dict | None,
    account_kind: str | None,
    now: datetime,
    smart_blobs: Counter | None = None,
) -> tuple[Plan, _CoolTrap]:
    """One streamed listing: the sweep's planner (sets, unfinished sets) and the explicit-Cool count.

    Sets whose volumes are listed before their manifest (per-type prefixes, legacy short names)
    are listed again by prefix, as the sweep does: only then are their volumes decided.
    """
    planner = Planner(container, settings.policy, **settings.name_prefixes)
    trap = _CoolTrap()
    cool_has_minimum = account_kind != "BlobStorage"  # no Cool minimum on legacy Blob Storage
    for item in store.list_blobs(container):
        name = names.parse(item.name)
        planner.feed(item, name)
        if smart_blobs is not None and policy.is_smart(item.tier):
            smart_blobs[item.tier_label] += 1
        if item.tier != "Cool" or item.tier_inferred or name.kind is not Kind.VOLUME:
            continue
        decision = policy.decide(name, item.tier, item.archive_status, settings.policy)
        if not decision.move:
            continue  # volumes already bound for Cool: no trap
        trap.count += 1
        trap.bytes += item.size
        if prices and cool_has_minimum:
            since = item.since
            trap.charge += costs.early_deletion(item.size, "Cool", since, now, prices)
        if len(trap.examples) < MAX_EXAMPLES:
            trap.examples.append(item.name)
    for _decided in planner.relist(store):
        pass  # the planner counts the re-listed volumes' decisions itself
    return planner.finish(), trap


def _report_cool_trap(
    trap: _CoolTrap, container: str, settings: Settings, prices: dict | None, report: Report
) -> None:
    target = settings.policy.volume_tier
    if not trap.count:
        report.add(
            f"{container} explicit Cool",
            OK,
            "no volume uploaded as explicit Cool (duplicity's --azure-blob-tier Cool)",
            container=container,
        )
        return
    currency = prices.get("currency", "") if prices else ""
    charge = (
        f"; moving them to {target} now pays Cool's early-deletion charge, about "
        f"{costs.format_money(trap.charge, currency)}"
        if prices
        else ""
    )
    report.add(
        f"{container} explicit Cool",
        WARN,
        f"{trap.count} volume(s), {costs.format_bytes(trap.bytes)}, were uploaded as explicit Cool "
        f"(duplicity's --azure-blob-tier Cool){charge}",
        hint=(
            "drop --azure-blob-tier from duplicity's command line: volumes uploaded Hot (the "
            f"account default) go to {target} with no early-deletion charge"
        ),
        container=container,
        details={
            "volumes": trap.count,
            "bytes": trap.bytes,
            "charge": trap.charge,
            "currency": currency,
            "examples": trap.examples,
        },
    )


def _report_smart_default(
    smart_blobs: Counter, plan: Plan, container: str, settings: Settings, report: Report
) -> None:
    """Say what retier does on an account whose default access tier is Smart (said only then).

    Get Account Information does not tell the account's default tier (it answers x-ms-sku-name,
    x-ms-account-kind and x-ms-is-hns-enabled: learn.microsoft.com/rest/api/storageservices/
    get-account-information); the listing does: a blob whose tier was never set carries the
    default, and on a Smart account it lists as AccessTier=Smart with its SmartAccessTier.
    """
    if not smart_blobs:
        return
    target = settings.policy.volume_tier
    total = sum(smart_blobs.values())
    where = ", ".join(f"{n:,} {label}" for label, n in sorted(smart_blobs.items()))
    to_move = sum(
        t.count
        for (kind, before, after), t in plan.rows.items()
        if kind == Kind.VOLUME.value and policy.is_smart(before.split("/")[0]) and after != before
    )
    details = {"smart_blobs": dict(smart_blobs), "volumes_to_move": to_move, "volume_tier": target}
    if target == "Archive":
        report.add(
            f"{container} default tier",
            FAIL,
            f"{total:,} blob(s) are under Smart tier ({where}): Smart needs a zone-redundant "
            "account, which has no Archive, so RETIER_VOLUME_TIER=Archive cannot work here",
            hint="set RETIER_VOLUME_TIER=Cold (docs/smart-tier.md)",
            container=container,
            details=details,
        )
        return
    report.add(
        f"{container} default tier",
        OK,
        f"the account's default tier is Smart ({where}): finished sets' volumes get explicit "
        f"{target} ({to_move:,} still to move), which ends Smart's monitoring fee for them; "
        "manifests and signatures stay Smart",
        container=container,
        details=details,
    )


def _report_unfinished(plan: Plan, container: str, now: datetime, report: Report) -> None:
    old = [u for u in plan.unfinished if u.abandoned(now)]
    recent = len(plan.unfinished) - len(old)
    limit = f"{ABANDONED_AFTER.days} days"
    if not old:
        running = f"; {recent} younger than {limit} (a backup may be running)" if recent else ""
        report.add(
            f"{container} unfinished sets",
            OK,
            f"no unfinished set older than {limit}{running}",
            container=container,
        )
        return
    for u in old:
        report.add(
            f"{container} unfinished sets",
            WARN,
            f"set {u.label} has {u.volumes} volume(s), {costs.format_bytes(u.bytes)}, and no manifest; its "
            f"newest volume is {u.age_days(now):.1f} days old: an abandoned backup, still billed",
            hint=(
                f"duplicity cleanup azure://{container} lists what duplicity would delete; "
                "add --force to delete it"
            ),
            container=container,
            details={
                "set": u.label,
                "volumes": u.volumes,
                "bytes": u.bytes,
                "age_days": round(u.age_days(now), 2),
            },
        )
