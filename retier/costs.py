"""Azure Blob Storage prices in one dated table, and the estimates built on them (pure)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# The only place prices live. They change by region, redundancy and date: check them against
# https://azure.microsoft.com/pricing/details/storage/blobs/ for your account and override the
# table with RETIER_PRICES=/path/to/prices.json (same keys; any key you give replaces ours).
DEFAULT_PRICES: dict = {
    "as_of": "2026-11-26",
    "source": "Azure Blob Storage list prices (pay-as-you-go) for East US 2, LRS, as published in public "
    "pricing summaries; verify at https://azure.microsoft.com/pricing/details/storage/blobs/",
    "region": "East US 2",
    "redundancy": "LRS",
    "currency": "USD",
    "storage_per_gb_month": {"Hot": 0.0184, "Cool": 0.01, "Cold": 0.0036, "Archive": 0.002},
    "write_per_10k": {"Hot": 0.05, "Cool": 0.10, "Cold": 0.18, "Archive": 0.10},
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
    "minimum_days": {"Hot": 0, "Cool": 30, "Cold": 90, "Archive": 180},
    # Rehydration times from Azure's documentation: Standard up to 15 h; High usually under 1 h
    # for blobs under 10 GB, at most 10 GiB per account per hour with high priority.
    "rehydrate_hours": {"Standard": 15, "High": 1},
    "high_priority_gib_per_hour": 10,
}

PRICES_SETTING = "RETIER_PRICES"
GB = 1000**3
GIB = 1024**3


class PriceError(ValueError):
    """The price override file is missing or malformed."""


def load_prices(env: Mapping[str, str] | None = None) -> dict:
    """The default table, with the user's RETIER_PRICES file (if any) laid over it."""
    env = os.environ if env is None else env
    path = env.get(PRICES_SETTING, "").strip()
    prices = json.loads(json.dumps(DEFAULT_PRICES))  # a deep copy
    if not path:
        return prices
    try:
        override = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PriceError(f"{PRICES_SETTING}={path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PriceError(f"{PRICES_SETTING}={path}: not JSON ({exc.msg})") from None
    if not isinstance(override, dict):
        raise PriceError(f"{PRICES_SETTING}={path}: must hold a JSON object")
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(prices.get(key), dict):
            prices[key].update(value)
        else:
            prices[key] = value
    return prices


def early_deletion(
    size: int, tier: str, since: datetime | None, now: datetime, prices: dict
) -> float:
    """Charge for leaving `tier` before its minimum days: the remaining days, prorated."""
    minimum = prices["minimum_days"].get(tier, 0)
    if not minimum or since is None:
        return 0.0
    days = max((now - since).total_seconds() / 86400, 0.0)
    if days >= minimum:
        return 0.0
    return (minimum - days) / 30 * prices["storage_per_gb_month"][tier] * size / GB


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
    retrieval = size / GB * prices["retrieval_per_gb"]["ArchiveHigh" if high else "Archive"]
    operations = (
        len(archived) / 10_000 * prices["read_per_10k"]["ArchiveHigh" if high else "Archive"]
    )
    early = sum(early_deletion(s, "Archive", since, now, prices) for s, since in archived)
    if high:
        hours = max(
            prices["rehydrate_hours"]["High"], size / GIB / prices["high_priority_gib_per_hour"]
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
