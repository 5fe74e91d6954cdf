"""The steady-state monthly bill of a duplicity schedule under each tiering strategy (pure).

The schedule: a full backup every D days and an incremental on each other day, each incremental
the size of PCT % of the source; `duplicity remove-older-than K` after every backup. duplicity
deletes a chain only once the *last* set of that chain is older than K days (an incremental
needs its full and every incremental before it), so with a daily removal the chain's full lives
D + K days and its j-th incremental D + K - j days: a chain outlives `--keep-days` by up to a
chain period. Six strategies store those sets:

- all-Hot: duplicity's default, every object in Hot;
- all-Cool: duplicity's `--azure-blob-tier Cool`, every object set to Cool after its upload;
- volumes-Cool / -Cold / -Archive: retier moves each finished set's volumes there when its
  manifest lands; manifests and signatures stay Hot;
- Smart (no retier): the account's default tier is Smart and nothing else runs: each object is
  Hot for 30 days, Cool until day 90, then Cold, for Smart's monitoring fee.

For each: storage (the average bytes held), operations (uploads, and for retier its listings, tier
changes, restore-hold reads, the daily sweep, Event Grid and Function executions), early deletion
(a set deleted before its tier's minimum days pays the remaining days) and restores (R a year of
the latest chain: retrieval per GB and read requests, and out of Archive the rehydration with
Standard priority, its early deletion, a day in Hot and the move back). `ASSUMPTIONS` lists every
simplification; the CLI's --help prints it and the README sums it up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from retier import costs

MIB = 1024**2
# The storage SDK duplicity's Azure backend uses (azure-storage-blob, default settings: duplicity
# passes none unless --azure-max-single-put-size / --azure-max-block-size are given) uploads a
# blob of up to 64 MiB with one Put Blob, a larger one as 4 MiB Put Blocks and a Put Block List,
# and downloads the first 32 MiB in one Get Blob and the rest in 4 MiB ranges.
MAX_SINGLE_PUT = 64 * MIB
BLOCK_SIZE = 4 * MIB
MAX_SINGLE_GET = 32 * MIB
GET_CHUNK = 4 * MIB
# duplicity's signatures (librsync block signatures) relative to the data they describe.
SIGNATURE_FRACTION = 0.01
# A rehydrated chain stays online (Hot) for about a day: up to 15 h of rehydration, the restore,
# then `retier release`.
REHYDRATED_DAYS = 1.0
UPLOAD_TIER = "Hot"  # the account's default access tier, where every upload lands
# Smart tier moves an object unread for 30 days to Cool, and to Cold after 90 days unread; objects
# under 128 KiB stay Hot with no fee. Put Blob counts as an access: a volume duplicity never reads
# again ages from its upload. https://learn.microsoft.com/azure/storage/blobs/access-tiers-smart
SMART_COOL_AFTER_DAYS = 30
SMART_COLD_AFTER_DAYS = 90
SMART = "Smart (no retier)"

# Every simplification, one a line: `--json` lists them and `retier cost --help` prints them.
ASSUMPTIONS = (
    (
        "one backup a day: a full every D days (--full-every-days), an incremental each other day "
        "holding PCT % of the source (--daily-change)"
    ),
    (
        "no compression (duplicity's encrypted volumes are as big as incompressible data): volumes "
        "of --volsize-mb MB (MiB), the last one of a set smaller; signatures 1 % of the data of "
        "their set; manifests negligible in size"
    ),
    (
        "`duplicity remove-older-than K` after every backup (--keep-days K): duplicity deletes a "
        "chain only once its LAST set is older than K days, so a full lives D + K days and its "
        "j-th incremental D + K - j days: chains outlive K by up to D days"
    ),
    (
        "strategies: all-Hot (duplicity's default), all-Cool (duplicity's --azure-blob-tier Cool: "
        "each object set to Cool right after its upload), volumes-Cool/-Cold/-Archive (retier "
        "moves each finished set's volumes when its manifest lands, minutes after the upload, so "
        "no time in Hot is charged; manifests and signatures stay Hot)"
    ),
    (
        "storage: the average bytes kept, at each tier's price per GB-month (GB = 2^30 bytes, as "
        "Azure bills it; a month is 365.25/12 days)"
    ),
    (
        "operations: uploads (one Put Blob up to 64 MiB, else 4 MiB Put Blocks and a Put Block "
        "List, the storage SDK's defaults that duplicity's Azure backend keeps, billed as Hot "
        "writes); for retier, each finished set's manifest event (the set's listing and its tier "
        "changes, a write at the destination each, in batches of up to 256; a volume's event makes "
        "no request), a daily sweep (the container's listing and the restore-hold read), and an "
        "Event Grid delivery and a Function execution for every BlobCreated (no Event Grid filter: "
        "an upper bound); the free grants, taken as retier's alone, usually cover those entirely"
    ),
    (
        "early deletion: a set deleted before its tier's minimum (Cool 30, Cold 90, Archive 180 "
        "days) pays the remaining days"
    ),
    (
        "restores (--restores-per-year R): the latest chain on a random day of it; Hot/Cool/Cold: "
        "Get Blob requests (32 MiB, then 4 MiB ranges) and retrieval per GB; Archive: "
        "Standard-priority rehydration to Hot (High costs five times more per GB), a read request "
        "and retrieval per GB at Archive's price, the early deletion of volumes archived under 180 "
        "days, a day in Hot, the reads, and a write per volume back to Archive"
    ),
    (
        "Smart (no retier): the account's default tier is Smart (a zone-redundant account: no "
        "Archive), priced with the same table; every object 128 KiB or more is Hot for 30 days, "
        "Cool until day 90, Cold after (duplicity never reads old volumes or, with its cache, old "
        "signatures), for the monitoring fee a month each; manifests under 128 KiB stay Hot, free; "
        "no early deletion; a restore reads at Hot's price with no retrieval charge (and moves the "
        "chain back to Hot, which is not counted)"
    ),
    (
        "not counted (the same for every strategy): duplicity's own listings and manifest reads, "
        "egress of restored data, the Function app's own storage account"
    ),
)


class ModelError(ValueError):
    """A schedule the model cannot take (negative sizes, no days)."""


@dataclass(frozen=True)
class Schedule:
    source_gb: float
    daily_change_pct: float
    full_every_days: int
    keep_days: int
    volsize_mb: int = 200
    restores_per_year: float = 1.0

    def __post_init__(self) -> None:
        if not self.source_gb > 0:
            raise ModelError("--source-gb must be more than 0")
        if not 0 <= self.daily_change_pct <= 100:
            raise ModelError("--daily-change is a percentage between 0 and 100")
        if self.full_every_days < 1:
            raise ModelError("--full-every-days must be at least 1")
        if self.keep_days < 0:
            raise ModelError("--keep-days cannot be negative")
        if self.volsize_mb < 1:
            raise ModelError("--volsize-mb must be at least 1")
        if self.restores_per_year < 0:
            raise ModelError("--restores-per-year cannot be negative")

    @property
    def full_bytes(self) -> float:
        return self.source_gb * costs.GB

    @property
    def incremental_bytes(self) -> float:
        return self.full_bytes * self.daily_change_pct / 100

    @property
    def volume_bytes(self) -> int:
        return self.volsize_mb * MIB

    def set_bytes(self, j: int) -> float:
        """Size of the chain's j-th set (0: the full)."""
        return self.full_bytes if j == 0 else self.incremental_bytes

    def lifetime_days(self, j: int) -> float:
        """Days the chain's j-th set is kept: until the chain's last set is older than K days."""
        return self.full_every_days + self.keep_days - j

    def to_dict(self) -> dict:
        return {
            "source_gb": self.source_gb,
            "daily_change_pct": self.daily_change_pct,
            "full_every_days": self.full_every_days,
            "keep_days": self.keep_days,
            "volsize_mb": self.volsize_mb,
            "restores_per_year": self.restores_per_year,
        }


@dataclass(frozen=True)
class Strategy:
    name: str
    volume_tier: str
    metadata_tier: str
    retier: bool  # retier moves the volumes (its own running cost applies)
    duplicity_sets_tier: bool = False  # duplicity's --azure-blob-tier: a one-blob batch per upload
    smart: bool = False  # the account's default tier is Smart: objects cool by age, for a fee


STRATEGIES = (
    Strategy("all-Hot", "Hot", "Hot", retier=False),
    Strategy("all-Cool", "Cool", "Cool", retier=False, duplicity_sets_tier=True),
    Strategy("volumes-Cool", "Cool", "Hot", retier=True),
    Strategy("volumes-Cold", "Cold", "Hot", retier=True),
    Strategy("volumes-Archive", "Archive", "Hot", retier=True),
    Strategy(SMART, "Smart", "Smart", retier=False, smart=True),
)
STRATEGY_NAMES = tuple(s.name for s in STRATEGIES)


@dataclass(frozen=True)
class StrategyCost:
    name: str
    storage: float
    operations: float
    early_deletion: float
    restores: float
    details: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.storage + self.operations + self.early_deletion + self.restores

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "storage_per_month": round(self.storage, 6),
            "operations_per_month": round(self.operations, 6),
            "early_deletion_per_month": round(self.early_deletion, 6),
            "restores_per_month": round(self.restores, 6),
            "total_per_month": round(self.total, 6),
            "details": self.details,
        }


@dataclass(frozen=True)
class ModelResult:
    schedule: Schedule
    strategies: list[StrategyCost]
    currency: str
    prices_as_of: str | None

    @property
    def recommended(self) -> StrategyCost:
        return min(self.strategies, key=lambda s: s.total)  # the first of equals: the warmer

    def by_name(self, name: str) -> StrategyCost:
        return next(s for s in self.strategies if s.name == name)

    def to_dict(self) -> dict:
        return {
            "schedule": self.schedule.to_dict(),
            "currency": self.currency,
            "prices_as_of": self.prices_as_of,
            "strategies": [s.to_dict() for s in self.strategies],
            "recommended": self.recommended.name,
            "assumptions": list(ASSUMPTIONS),
        }


# -- objects and their requests -----------------------------------------------------------------


def volumes_of(size: float, volume: int) -> tuple[int, float]:
    """(number of volumes, size of the last one) of a set of `size` bytes; at least one volume."""
    if size <= volume:
        return 1, size
    n = math.ceil(size / volume)
    return n, size - volume * (n - 1)


def upload_requests(size: float) -> int:
    """Write requests to upload one blob of `size` bytes with the storage SDK's defaults."""
    if size <= MAX_SINGLE_PUT:
        return 1
    return math.ceil(size / BLOCK_SIZE) + 1


def download_requests(size: float) -> int:
    """Get Blob requests to download one blob of `size` bytes with the storage SDK's defaults."""
    if size <= MAX_SINGLE_GET:
        return 1
    return 1 + math.ceil((size - MAX_SINGLE_GET) / GET_CHUNK)


@dataclass(frozen=True)
class _Set:
    j: int
    bytes: float
    volumes: int
    last_volume: float
    lifetime: float

    def each_volume(self, volume: int) -> list[tuple[float, int]]:
        """(size, how many) of its volumes: full-size ones and the last."""
        out = [(self.last_volume, 1)]
        if self.volumes > 1:
            out.append((float(volume), self.volumes - 1))
        return out


def _chain(schedule: Schedule) -> list[_Set]:
    out = []
    for j in range(schedule.full_every_days):
        size = schedule.set_bytes(j)
        n, last = volumes_of(size, schedule.volume_bytes)
        out.append(_Set(j, size, n, last, schedule.lifetime_days(j)))
    return out


# -- the model ----------------------------------------------------------------------------------


def run_model(schedule: Schedule, prices: dict) -> ModelResult:
    """The monthly bill of `schedule` under every strategy, with `prices`."""
    chain = _chain(schedule)
    return ModelResult(
        schedule,
        [_strategy_cost(schedule, chain, s, prices) for s in STRATEGIES],
        prices["currency"],
        prices.get("as_of"),
    )


def _strategy_cost(
    schedule: Schedule, chain: list[_Set], strategy: Strategy, prices: dict
) -> StrategyCost:
    if strategy.smart:
        return _smart_cost(schedule, chain, strategy, prices)
    d = schedule.full_every_days
    chains_per_month = costs.DAYS_PER_MONTH / d
    volume_tier, meta_tier = strategy.volume_tier, strategy.metadata_tier
    vol = schedule.volume_bytes

    # Storage: each set's bytes for its lifetime, one chain every D days.
    volume_gb = sum(costs.billed_gb(s.bytes) * s.lifetime for s in chain) / d
    signature_gb = volume_gb * SIGNATURE_FRACTION
    storage = (
        volume_gb * prices["storage_per_gb_month"][volume_tier]
        + signature_gb * prices["storage_per_gb_month"][meta_tier]
    )

    # Early deletion: a set deleted before its tier's minimum pays the remaining days.
    early_per_chain = sum(
        costs.early_deletion_for_days(s.bytes, volume_tier, s.lifetime, prices)
        + costs.early_deletion_for_days(s.bytes * SIGNATURE_FRACTION, meta_tier, s.lifetime, prices)
        for s in chain
    )

    # Uploads: every volume, signature file and manifest, billed as writes in the upload tier.
    writes = 0
    blobs_per_chain = 0
    for s in chain:
        writes += sum(upload_requests(size) * n for size, n in s.each_volume(vol))
        writes += upload_requests(s.bytes * SIGNATURE_FRACTION) + 1  # signatures, manifest
        blobs_per_chain += s.volumes + 2
    uploads = costs.per_10k(writes, prices["write_per_10k"][UPLOAD_TIER]) * chains_per_month
    tiering = 0.0
    if strategy.duplicity_sets_tier:
        # duplicity sets the tier of each uploaded blob with a one-blob Blob Batch: the batch
        # request ("other") and its Set Blob Tier (a write at the destination).
        tiering = (
            costs.per_10k(blobs_per_chain, prices["other_per_10k"])
            + costs.per_10k(blobs_per_chain, prices["write_per_10k"][volume_tier])
        ) * chains_per_month
    retier_cost = None
    if strategy.retier:
        sets_per_month = costs.DAYS_PER_MONTH
        alive_blobs = sum((s.volumes + 2) * s.lifetime for s in chain) / d
        retier_cost = costs.running_cost(
            sets_per_month=sets_per_month,
            volumes_per_set=sum(s.volumes for s in chain) / len(chain),
            events_per_set=blobs_per_chain / len(chain),
            volume_tier=volume_tier,
            container_blobs=math.ceil(alive_blobs),
            prices=prices,
        )
    operations = uploads + tiering + (retier_cost.total if retier_cost else 0.0)

    restore = _restore_cost(schedule, chain, volume_tier, prices)
    details = {
        "volume_tier": volume_tier,
        "metadata_tier": meta_tier,
        "stored_gb": round(volume_gb + signature_gb, 3),
        "uploads_per_month": round(uploads, 6),
        "duplicity_tier_changes_per_month": round(tiering, 6),
        "retier_per_month": retier_cost.to_dict() if retier_cost else None,
        "restore_each": round(restore, 6),
        "volumes_per_full": chain[0].volumes,
    }
    return StrategyCost(
        strategy.name,
        storage,
        operations,
        early_per_chain * chains_per_month,
        restore * schedule.restores_per_year / 12,
        details,
    )


def smart_days(lifetime: float) -> dict[str, float]:
    """Days an object kept `lifetime` days and never read spends in each tier under Smart."""
    return {
        "Hot": min(lifetime, SMART_COOL_AFTER_DAYS),
        "Cool": min(
            max(lifetime - SMART_COOL_AFTER_DAYS, 0.0),
            SMART_COLD_AFTER_DAYS - SMART_COOL_AFTER_DAYS,
        ),
        "Cold": max(lifetime - SMART_COLD_AFTER_DAYS, 0.0),
    }


def _smart_cost(
    schedule: Schedule, chain: list[_Set], strategy: Strategy, prices: dict
) -> StrategyCost:
    """The schedule on a Smart-default account with nothing else running (see ASSUMPTIONS)."""
    d = schedule.full_every_days
    chains_per_month = costs.DAYS_PER_MONTH / d
    vol = schedule.volume_bytes
    price = prices["storage_per_gb_month"]
    storage = 0.0
    monitored = 0.0  # objects Smart charges for, times the days they are kept, per chain
    writes = 0
    stored_gb = 0.0
    for s in chain:
        days = smart_days(s.lifetime)
        for size, n in [*s.each_volume(vol), (s.bytes * SIGNATURE_FRACTION, 1)]:
            if size < costs.SMART_MONITORED_FROM:
                storage += costs.billed_gb(size) * n * s.lifetime * price["Hot"]
            else:
                storage += costs.billed_gb(size) * n * sum(days[t] * price[t] for t in days)
                monitored += n * s.lifetime
            writes += upload_requests(size) * n
        writes += 1  # the manifest: under 128 KiB, Hot, no fee
        stored_gb += costs.billed_gb(s.bytes) * (1 + SIGNATURE_FRACTION) * s.lifetime
    storage /= d  # GB-days per chain, one chain every D days: average GB-months
    fee = costs.smart_monitoring_per_month(monitored / d, prices)
    uploads = costs.per_10k(writes, prices["write_per_10k"][UPLOAD_TIER]) * chains_per_month
    restore = _restore_cost(schedule, chain, "Hot", prices)  # billed as Hot, no retrieval
    details = {
        "volume_tier": strategy.volume_tier,
        "metadata_tier": strategy.metadata_tier,
        "stored_gb": round(stored_gb / d, 3),
        "uploads_per_month": round(uploads, 6),
        "smart_monitoring_per_month": round(fee, 6),
        "smart_monitored_objects": round(monitored / d, 1),
        "duplicity_tier_changes_per_month": 0.0,
        "retier_per_month": None,
        "restore_each": round(restore, 6),
        "volumes_per_full": chain[0].volumes,
    }
    return StrategyCost(
        strategy.name,
        storage + fee,
        uploads,
        0.0,
        restore * schedule.restores_per_year / 12,
        details,
    )


def _restore_cost(schedule: Schedule, chain: list[_Set], tier: str, prices: dict) -> float:
    """Expected cost of restoring the latest chain on a random day of it (k incrementals made)."""
    vol = schedule.volume_bytes
    per_set = []  # cost of reading back each set of the chain
    for s in chain:
        reads = sum(download_requests(size) * n for size, n in s.each_volume(vol))
        gb = costs.billed_gb(s.bytes)
        if tier != "Archive":
            cost = costs.per_10k(reads, prices["read_per_10k"][tier])
            cost += gb * prices["retrieval_per_gb"][tier]
            per_set.append(lambda _k, c=cost: c)
            continue
        fixed = (
            costs.per_10k(s.volumes, prices["read_per_10k"]["Archive"])  # the rehydration request
            + gb * prices["retrieval_per_gb"]["Archive"]
            + gb * prices["storage_per_gb_month"]["Hot"] * REHYDRATED_DAYS / costs.DAYS_PER_MONTH
            + costs.per_10k(reads, prices["read_per_10k"]["Hot"])
            + costs.per_10k(s.volumes, prices["write_per_10k"]["Archive"])  # back to Archive
        )

        def archive_cost(k: int, s=s, fixed=fixed) -> float:
            age = k - s.j  # days since this set was archived
            # Leaving Archive early is charged now; the copy archived again starts a new 180 days,
            # so the later deletion's charge grows by what the first stay had already covered.
            now = costs.early_deletion_for_days(s.bytes, "Archive", age, prices)
            later = costs.early_deletion_for_days(
                s.bytes, "Archive", s.lifetime - age, prices
            ) - costs.early_deletion_for_days(s.bytes, "Archive", s.lifetime, prices)
            return fixed + now + later

        per_set.append(archive_cost)
    d = len(chain)
    return sum(sum(per_set[j](k) for j in range(k + 1)) for k in range(d)) / d
