"""Azure prices in one dated table, and the pure estimates built on them (charges, retier's own cost)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from retier.errors import PriceError, shown

# The only place prices live. They change by region, redundancy and date: check them against
# the pages in "sources" for your account and override the table with
# RETIER_PRICES=/path/to/prices.json (same keys; any key you give replaces ours, and a nested
# object replaces only the entries it names).
#
# What was checked, and how (2026-11-29, from this machine, which cannot open Azure's pricing
# pages): the blob storage, read, write and retrieval figures match a public East US 2 LRS table
# (kubequest.pages.dev, AZ-104 notes, "Tier Comparison Matrix (LRS, East US 2)") and Microsoft's
# own worked examples ($0.002/GB-month Archive, 180/90/30 minimum days). Which REST call is billed
# as which operation type (List Blobs: "list and create container"; Get Container Properties and
# the Blob Batch request itself: "other"; Set Blob Tier to a colder tier: a write at the
# destination; Put Blob/Put Block/Put Block List: writes; Delete Blob: free) is from Microsoft's
# "Map each REST operation to a price" (learn.microsoft.com, 2025-05-14). The "list" and "other"
# prices, the Event Grid price and the Flex Consumption prices could not be checked against a
# primary source here: they are Azure's published list prices as commonly quoted (the Flex
# figures from modal.com's Azure Functions pricing guide, 2025-05-22). Verify them before you
# rely on a figure where they matter.
DEFAULT_PRICES: dict = {
    "as_of": "2026-11-29",
    "source": "Azure list prices (pay-as-you-go), East US 2, LRS, flat namespace; "
    "https://azure.microsoft.com/pricing/details/storage/blobs/ (see 'sources' per key)",
    "region": "East US 2",
    "redundancy": "LRS",
    "currency": "USD",
    "storage_per_gb_month": {"Hot": 0.0184, "Cool": 0.01, "Cold": 0.0036, "Archive": 0.002},
    # Write operations (Put Blob, Put Block, Put Block List; Set Blob Tier to a colder tier is
    # billed as a write at the destination tier's price).
    "write_per_10k": {"Hot": 0.05, "Cool": 0.10, "Cold": 0.18, "Archive": 0.10},
    # Read operations (Get Blob; rehydrating out of Archive is a read at Archive's price).
    "read_per_10k": {
        "Hot": 0.004,
        "Cool": 0.01,
        "Cold": 0.10,
        "Archive": 5.00,
        "ArchiveHigh": 50.00,
    },
    "retrieval_per_gb": {
        "Hot": 0.0,
        "Cool": 0.01,
        "Cold": 0.03,
        "Archive": 0.02,
        "ArchiveHigh": 0.10,
    },
    # "List and create container operations": List Blobs, one per page of up to 5,000 blobs.
    "list_per_10k": 0.05,
    # "All other operations" (Delete is free): Get Container Properties (the restore-hold read)
    # and the Blob Batch request that carries up to 256 Set Blob Tier sub-requests.
    "other_per_10k": 0.004,
    "minimum_days": {"Hot": 0, "Cool": 30, "Cold": 90, "Archive": 180},
    # Smart tier: a monthly monitoring operation for each object of 128 KiB or more that Smart
    # manages, "$0.04 (USD) per 10K Monitoring Operations" from 2026-01-01 (Smart's own page, in
    # preview; the GA page of April 2026 defers to the pricing page, not readable from here).
    # Smart has no capacity price of its own (its blobs pay their underlying tier's), and no early
    # deletion, retrieval or in-Smart transition charges.
    "smart_monitoring_per_10k_objects": 0.04,
    # Rehydration times from Azure's documentation: Standard up to 15 h; High usually under 1 h
    # for blobs under 10 GB, at most 10 GiB per account per hour with high priority.
    "rehydrate_hours": {"Standard": 15, "High": 1},
    "high_priority_gib_per_hour": 10,
    # Event Grid (basic): publishing, advanced filter matches and delivery attempts are each an
    # operation; the first 100,000 a month are free.
    "event_grid_per_million": 0.60,
    "event_grid_free_per_month": 100_000,
    # Azure Functions, Flex Consumption, on demand: per execution and per GB-second of instance
    # memory while executing, each with a monthly free grant per subscription.
    "functions_per_million_executions": 0.40,
    "functions_free_executions_per_month": 250_000,
    "functions_per_gb_second": 0.000026,
    "functions_free_gb_seconds_per_month": 100_000,
    "sources": {
        "storage_per_gb_month": "azure.microsoft.com/pricing/details/storage/blobs (checked against "
        "a public East US 2 LRS summary, kubequest.pages.dev AZ-104 notes)",
        "write_per_10k": "as storage_per_gb_month",
        "read_per_10k": "as storage_per_gb_month",
        "retrieval_per_gb": "azure.microsoft.com/pricing/details/storage/blobs",
        "list_per_10k": "azure.microsoft.com/pricing/details/storage/blobs (not verified here)",
        "other_per_10k": "azure.microsoft.com/pricing/details/storage/blobs (not verified here)",
        "operation types": "learn.microsoft.com/azure/storage/blobs/map-rest-apis-transaction-categories",
        "minimum_days": "learn.microsoft.com/azure/storage/blobs/access-tiers-overview",
        "smart_monitoring_per_10k_objects": "learn.microsoft.com/azure/storage/blobs/"
        "access-tiers-smart (MicrosoftDocs/azure-docs articles/storage/blobs/access-tiers-smart.md, "
        "2025-11-03: '$0.04 (USD) per 10K Monitoring Operations', one a month per object over "
        "128 KiB; not verified against the pricing page)",
        "event_grid_per_million": "azure.microsoft.com/pricing/details/event-grid (not verified here)",
        "functions_per_million_executions": "azure.microsoft.com/pricing/details/functions, Flex "
        "Consumption on demand (not verified here; quoted by modal.com, 2025-05-22)",
    },
}

PRICES_SETTING = "RETIER_PRICES"
# The one gigabyte of this project: Azure bills storage, retrieval and bandwidth per "GB" meaning
# 2^30 bytes (Microsoft's answer in github.com/MicrosoftDocs/azure-docs/issues/41142, "1 GB is
# 1,024 MB", and azure.microsoft.com/pricing/details/bandwidth's 1 TB = 1,024 GB). Every
# conversion from bytes to billed GB (and every GB shown next to a price) uses it. It is not a
# price-table key: RETIER_PRICES cannot change what Azure means by a gigabyte.
GB = 2**30
# A price table older than this is flagged as stale by `retier prices`.
STALE_AFTER_DAYS = 365
# Azure bills a GB-month as the average of the bytes stored each day over the month; a schedule's
# "per month" is 365.25 / 12 days of it.
DAYS_PER_MONTH = 365.25 / 12
# Azure prorates early deletion by 30-day months ("(180 - 90 days) / 30 days x price").
EARLY_DELETION_DAYS_PER_MONTH = 30
# Smart tier neither moves nor charges a monitoring fee for objects under 128 KiB: they stay Hot
# (learn.microsoft.com/azure/storage/blobs/access-tiers-smart, "Working with smart tier").
SMART_MONITORED_FROM = 128 * 1024
LISTING_PAGE = 5000  # blobs per List Blobs page (the service's maximum, the SDK's default)
BATCH_LIMIT = 256  # sub-requests per Blob Batch request


def load_prices_and_overrides(env: Mapping[str, str] | None = None) -> tuple[dict, list[str]]:
    """The default table with the user's RETIER_PRICES file laid over it, and the keys it replaced."""
    env = os.environ if env is None else env
    path = env.get(PRICES_SETTING, "").strip()
    prices = json.loads(json.dumps(DEFAULT_PRICES))  # a deep copy
    if not path:
        return prices, []
    # The path is quoted only when it cannot be a secret pasted into the wrong setting.
    named = f"{PRICES_SETTING}={shown(path, limit=240)}"
    try:
        override = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PriceError(
            f"{named}: {exc.strerror}; it names a JSON file of prices (see `retier prices`)"
        ) from None
    except json.JSONDecodeError as exc:
        raise PriceError(f"{named}: not JSON ({exc.msg})") from None
    if not isinstance(override, dict):
        raise PriceError(f"{named}: must hold a JSON object")
    replaced: list[str] = []
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(prices.get(key), dict):
            prices[key].update(value)
            replaced += [f"{key}.{inner}" for inner in value]
        else:
            prices[key] = value
            replaced.append(key)
    return prices, replaced


def load_prices(env: Mapping[str, str] | None = None) -> dict:
    """The default table, with the user's RETIER_PRICES file (if any) laid over it."""
    return load_prices_and_overrides(env)[0]


def prices_age_days(prices: dict, today: date | None = None) -> int | None:
    """Days since the table's `as_of` date (None when it has no readable date)."""
    try:
        as_of = date.fromisoformat(str(prices.get("as_of")))
    except ValueError:
        return None
    return ((today or date.today()) - as_of).days


def is_stale(prices: dict, today: date | None = None) -> bool:
    age = prices_age_days(prices, today)
    return age is None or age > STALE_AFTER_DAYS


def billed_gb(size: float) -> float:
    """Bytes as the billed GB (2^30 bytes)."""
    return size / GB


def storage_per_month(size: float, tier: str, prices: dict) -> float:
    """The monthly storage charge of `size` bytes in `tier`."""
    return billed_gb(size) * prices["storage_per_gb_month"][tier]


def smart_monitoring_per_month(objects: float, prices: dict) -> float:
    """Smart tier's monthly monitoring fee for `objects` it manages (each of 128 KiB or more)."""
    return per_10k(objects, prices.get("smart_monitoring_per_10k_objects", 0.0))


def per_10k(count: float, price: float) -> float:
    return count / 10_000 * price


def early_deletion(
    size: int, tier: str, since: datetime | None, now: datetime, prices: dict
) -> float:
    """Charge for leaving `tier` before its minimum days: the remaining days, prorated."""
    if since is None:
        return 0.0
    return early_deletion_for_days(size, tier, (now - since).total_seconds() / 86400, prices)


def early_deletion_for_days(size: float, tier: str, days: float, prices: dict) -> float:
    """The early-deletion charge of `size` bytes that leave `tier` after `days` in it.

    Nothing for a tier with no minimum (Hot, or a tier the table does not price), nor once the
    minimum is over.
    """
    remaining = prices["minimum_days"].get(tier, 0) - max(days, 0.0)
    if remaining <= 0:
        return 0.0
    return (
        remaining
        / EARLY_DELETION_DAYS_PER_MONTH
        * prices["storage_per_gb_month"][tier]
        * billed_gb(size)
    )


@dataclass(frozen=True)
class RehydrationEstimate:
    blobs: int
    bytes: int
    priority: str
    retrieval: float
    operations: float
    early_deletion: float
    hours: float
    currency: str

    @property
    def total(self) -> float:
        return self.retrieval + self.operations + self.early_deletion

    def to_dict(self) -> dict:
        return {
            "blobs": self.blobs,
            "bytes": self.bytes,
            "priority": self.priority,
            "retrieval": round(self.retrieval, 4),
            "operations": round(self.operations, 4),
            "early_deletion": round(self.early_deletion, 4),
            "total": round(self.total, 4),
            "currency": self.currency,
            "hours_up_to": round(self.hours, 1),
        }


def rehydration_estimate(
    archived: list[tuple[int, datetime | None]], priority: str, now: datetime, prices: dict
) -> RehydrationEstimate:
    """Cost and time to bring `archived` (size, archived-since) blobs online with `priority`."""
    high = priority == "High"
    size = sum(s for s, _ in archived)
    retrieval = billed_gb(size) * prices["retrieval_per_gb"]["ArchiveHigh" if high else "Archive"]
    operations = per_10k(
        len(archived), prices["read_per_10k"]["ArchiveHigh" if high else "Archive"]
    )
    early = sum(early_deletion(s, "Archive", since, now, prices) for s, since in archived)
    if high:
        hours = max(
            prices["rehydrate_hours"]["High"],
            billed_gb(size) / prices["high_priority_gib_per_hour"],
        )
    else:
        hours = prices["rehydrate_hours"]["Standard"]
    return RehydrationEstimate(
        len(archived),
        size,
        priority,
        retrieval,
        operations,
        early,
        hours if archived else 0.0,
        prices["currency"],
    )


# -- what retier itself costs to run -----------------------------------------------------------


@dataclass(frozen=True)
class Requests:
    """Storage requests by billing type; `writes` are tier changes at the destination's price."""

    lists: float = 0
    others: float = 0
    writes: float = 0

    def __add__(self, other: Requests) -> Requests:
        return Requests(
            self.lists + other.lists, self.others + other.others, self.writes + other.writes
        )

    def times(self, factor: float) -> Requests:
        return Requests(self.lists * factor, self.others * factor, self.writes * factor)

    @property
    def transactions(self) -> float:
        return self.lists + self.others + self.writes

    def charge(self, write_tier: str, prices: dict) -> float:
        return (
            per_10k(self.lists, prices["list_per_10k"])
            + per_10k(self.others, prices["other_per_10k"])
            + per_10k(self.writes, prices["write_per_10k"][write_tier])
        )


def manifest_event_requests(volumes: float) -> Requests:
    """What the event handler sends when a set of `volumes` volumes finishes (its manifest lands).

    One listing of the set, then the tier changes: a single Set Blob Tier for one volume, Blob
    Batch requests of up to 256 otherwise (each batch is one "other" request plus one write per
    volume). A new set's volumes were never tiered, so the restore hold is not read: 2
    transactions for a one-volume set. (A set whose volumes were tiered before, as after a
    restore, pays one hold read more: rare, and not counted here.) Volume events make no request.
    The one place to change when the handler's count changes.
    """
    if volumes <= 0:
        return Requests(lists=1)
    batches = 0 if volumes <= 1 else math.ceil(volumes / BATCH_LIMIT)
    return Requests(lists=1, others=batches, writes=volumes)


def sweep_requests(blobs: int) -> Requests:
    """One reconciliation sweep that finds nothing to move: the hold read and the paged listing."""
    return Requests(lists=max(1, math.ceil(blobs / LISTING_PAGE)), others=1)


# Per event: Event Grid counts the publishing of the event and its delivery attempt as operations.
EVENT_GRID_OPERATIONS_PER_EVENT = 2
# Flex Consumption bills the instance memory while executing: the default instance size (2,048 MB)
# for about a second per event (most events make no request; the manifest's a few).
FUNCTION_GB = 2.0
FUNCTION_SECONDS_PER_EVENT = 1.0


@dataclass(frozen=True)
class RunningCost:
    """What retier costs per month for a container's cadence: requests, Event Grid, Functions."""

    sets_per_month: float
    volumes_per_set: float
    events_per_month: float
    sweeps_per_month: float
    requests: Requests
    storage_operations: float
    event_grid_operations: float
    event_grid: float  # after the monthly free grant
    executions: float
    gb_seconds: float
    functions: float  # after the monthly free grants
    functions_before_grant: float
    currency: str

    @property
    def total(self) -> float:
        return self.storage_operations + self.event_grid + self.functions

    def to_dict(self) -> dict:
        return {
            "sets_per_month": round(self.sets_per_month, 2),
            "volumes_per_set": round(self.volumes_per_set, 2),
            "events_per_month": round(self.events_per_month, 1),
            "sweeps_per_month": round(self.sweeps_per_month, 2),
            "tier_changes_per_month": round(self.requests.writes, 1),
            "listings_per_month": round(self.requests.lists, 1),
            "other_requests_per_month": round(self.requests.others, 1),
            "storage_operations": round(self.storage_operations, 6),
            "event_grid_operations": round(self.event_grid_operations, 1),
            "event_grid": round(self.event_grid, 6),
            "executions": round(self.executions, 1),
            "gb_seconds": round(self.gb_seconds, 1),
            "functions": round(self.functions, 6),
            "functions_before_free_grant": round(self.functions_before_grant, 6),
            "total_per_month": round(self.total, 6),
            "currency": self.currency,
        }


def running_cost(
    *,
    sets_per_month: float,
    volumes_per_set: float,
    events_per_set: float,
    volume_tier: str,
    container_blobs: int,
    prices: dict,
    sweeps_per_month: float = DAYS_PER_MONTH,
) -> RunningCost:
    """retier's own monthly cost: each finished set's events, its tier changes, and the daily sweep.

    Assumes Event Grid delivers every BlobCreated of the container (no advanced filter: an upper
    bound, since the deployment's filter delivers manifests only), each an execution (a volume's
    or metadata's event makes no storage request), and that the free grants of Event Grid and
    Functions are retier's alone (they are per subscription).
    """
    volumes = max(0.0, volumes_per_set)
    per_set = manifest_event_requests(volumes)
    requests = per_set.times(sets_per_month) + sweep_requests(container_blobs).times(
        sweeps_per_month
    )
    events = events_per_set * sets_per_month
    eg_ops = events * EVENT_GRID_OPERATIONS_PER_EVENT
    eg = (
        max(0.0, eg_ops - prices["event_grid_free_per_month"])
        / 1e6
        * prices["event_grid_per_million"]
    )
    executions = events + sweeps_per_month
    gb_s = executions * FUNCTION_GB * FUNCTION_SECONDS_PER_EVENT
    before = (
        executions / 1e6 * prices["functions_per_million_executions"]
        + gb_s * prices["functions_per_gb_second"]
    )
    functions = (
        max(0.0, executions - prices["functions_free_executions_per_month"])
        / 1e6
        * prices["functions_per_million_executions"]
        + max(0.0, gb_s - prices["functions_free_gb_seconds_per_month"])
        * prices["functions_per_gb_second"]
    )
    return RunningCost(
        sets_per_month=sets_per_month,
        volumes_per_set=volumes,
        events_per_month=events,
        sweeps_per_month=sweeps_per_month,
        requests=requests,
        storage_operations=requests.charge(volume_tier, prices),
        event_grid_operations=eg_ops,
        event_grid=eg,
        executions=executions,
        gb_seconds=gb_s,
        functions=functions,
        functions_before_grant=before,
        currency=prices["currency"],
    )


def format_bytes(n: float) -> str:
    """Bytes in binary units: Azure bills per "GB" of 2^30 bytes (GB above), shown as GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_money(value: float, currency: str) -> str:
    """An amount as money: cents when it is a cent or more, else 3 significant figures written
    out (0.0000792 USD, never 7.92e-05 USD)."""
    if value == 0:
        return f"0.00 {currency}"
    decimals = 2 - math.floor(math.log10(abs(value)))
    if abs(value) >= 0.01 or abs(round(value, decimals)) >= 0.01:
        return f"{value:,.2f} {currency}"
    return f"{value:.{decimals}f} {currency}"
