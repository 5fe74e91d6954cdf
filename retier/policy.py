"""Which tier a recognised duplicity object should be in, and whether to move it (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from retier.names import DuplicityName, Kind

# Warmest first: a move is allowed only towards the end of this tuple.
TIERS = ("Hot", "Cool", "Cold", "Archive")
ONLINE_TIERS = ("Hot", "Cool", "Cold")
VOLUME_TIERS = ("Cool", "Cold", "Archive")
_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
_BY_LOWER = {tier.lower(): tier for tier in TIERS}

DEFAULT_VOLUME_TIER = "Cold"

# Smart tier (GA April 2026) is an account default tier, not a place: a Smart blob lists as
# AccessTier=Smart with the tier it sits in now in SmartAccessTier (x-ms-smart-access-tier),
# one of Hot, Cool, Cold; Smart never archives. Setting an explicit tier takes a blob out of
# Smart for good ("Once moved to an explicit tier, objects can't be tiered back to smart tier"),
# ends its monitoring fee and its move back to Hot on the next read.
# https://learn.microsoft.com/azure/storage/blobs/access-tiers-smart (source:
# github.com/MicrosoftDocs/azure-docs, articles/storage/blobs/access-tiers-smart.md);
# SmartAccessTier: learn.microsoft.com/dotnet/api/azure.storage.blobs.models.blobproperties.smartaccesstier
SMART = "Smart"
SMART_TIERS = ("Hot", "Cool", "Cold")


class PolicyError(ValueError):
    """A tier setting that would be unsafe or is not a tier at all."""


def canonical_tier(value: str) -> str:
    """Return Azure's spelling of an access tier given in any case ('cold' -> 'Cold')."""
    tier = _BY_LOWER.get(str(value).strip().lower())
    if tier is None:
        raise PolicyError(f"{value!r} is not an access tier; use one of {', '.join(TIERS)}")
    return tier


def _named_tier(setting: str, value: str) -> str:
    try:
        return canonical_tier(value)
    except PolicyError as exc:
        raise PolicyError(f"{setting}: {exc}") from None


def is_colder(tier: str, than: str) -> bool:
    return _RANK[tier] > _RANK[than]


def is_smart(tier: str | None) -> bool:
    return tier is not None and str(tier).strip().lower() == SMART.lower()


def smart_underlying(smart_tier: str | None) -> str | None:
    """The tier a Smart blob sits in now (Hot, Cool or Cold), or None when not reported."""
    tier = _BY_LOWER.get(str(smart_tier).strip().lower()) if smart_tier else None
    return tier if tier in SMART_TIERS else None


def tier_label(tier: str | None, smart_tier: str | None = None) -> str | None:
    """A blob's tier as plans and reports show it: its tier, or "Smart/Cold" for a Smart blob
    that sits in Cold now ("Smart" alone when the listing did not say where)."""
    if not is_smart(tier):
        return tier
    underlying = smart_underlying(smart_tier)
    return f"{SMART}/{underlying}" if underlying else SMART


def priced_tier(label: str | None) -> str | None:
    """The tier whose storage price applies to a label: "Smart/Cold" is billed as Cold (Smart has
    no capacity price of its own); a label with no standard tier gives None."""
    if label and is_smart(label.split("/", 1)[0]):
        return smart_underlying(label.partition("/")[2])
    return label if label in TIERS else None


@dataclass(frozen=True)
class Policy:
    """Target tiers: volumes always go to `volume_tier`; metadata only if `metadata_tier` is set."""

    volume_tier: str = DEFAULT_VOLUME_TIER
    metadata_tier: str | None = None

    def __post_init__(self) -> None:
        volume = _named_tier("RETIER_VOLUME_TIER", self.volume_tier)
        if volume not in VOLUME_TIERS:
            raise PolicyError(
                f"RETIER_VOLUME_TIER={self.volume_tier!r}: volumes can go to {', '.join(VOLUME_TIERS)}; "
                "Hot would never save anything"
            )
        object.__setattr__(self, "volume_tier", volume)
        if self.metadata_tier is not None:
            metadata = _named_tier("RETIER_METADATA_TIER", self.metadata_tier)
            if metadata not in ONLINE_TIERS:
                # duplicity downloads the last manifest on every backup and all signatures
                # when its local cache is lost: archived metadata breaks the next backup.
                raise PolicyError(
                    f"RETIER_METADATA_TIER={self.metadata_tier!r}: manifests and signatures must stay "
                    f"online ({', '.join(ONLINE_TIERS)}); duplicity reads them on every backup"
                )
            object.__setattr__(self, "metadata_tier", metadata)

    def target(self, name: DuplicityName) -> str | None:
        """The tier this object belongs in, or None when it is to be left as it is."""
        if name.kind is not Kind.UNKNOWN and name.par2_index:
            # duplicity's par2 wrapper downloads "<object>.par2" right after every object it
            # reads, and a restore fails on an archived one: an index is read like metadata.
            return self.metadata_tier
        if name.kind is Kind.VOLUME:
            return self.volume_tier
        if name.kind in (Kind.MANIFEST, Kind.SIGNATURES, Kind.JSONSTAT):
            return self.metadata_tier
        return None


@dataclass(frozen=True)
class Decision:
    name: str
    kind: str
    current: str | None
    target: str | None
    move: bool
    reason: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "from": self.current,
            "to": self.target if self.move else self.current,
            "move": self.move,
            "reason": self.reason,
        }


def decide(
    name: DuplicityName,
    current_tier: str | None,
    archive_status: str | None,
    policy: Policy,
    smart_tier: str | None = None,
) -> Decision:
    """Decide one blob. Moves only a recognised object, to a colder tier, when it is not rehydrating.

    `smart_tier` is where a Smart blob sits now (SmartAccessTier); see `_decide_smart`.
    """
    label = tier_label(current_tier, smart_tier)

    def keep(reason: str, target: str | None = None) -> Decision:
        return Decision(name.name, name.kind.value, label, target, False, reason)

    if name.kind is Kind.UNKNOWN:
        return keep("not a duplicity object")
    target = policy.target(name)
    if target is None:
        return keep(
            "par2 index stays as uploaded" if name.par2_index else "metadata stays as uploaded"
        )
    if archive_status:
        # Set Blob Tier on a rehydrating blob is refused or changes the rehydration target.
        return keep(f"rehydrating ({archive_status})", target)
    if current_tier is None:
        return keep("tier unknown (not a standard block blob account?)", target)
    if is_smart(current_tier):
        return _decide_smart(name, smart_tier, target, keep)
    try:
        current = canonical_tier(current_tier)
    except PolicyError:
        return keep(f"tier {current_tier!r} is not a standard block blob tier", target)
    if current == target:
        return keep("already at target", target)
    if not is_colder(target, current):
        return keep(f"never moves warmer ({current} -> {target})", target)
    return Decision(
        name.name,
        name.kind.value,
        current,
        target,
        True,
        "finished set" if name.kind is Kind.VOLUME else "metadata tier setting",
    )


def _decide_smart(name: DuplicityName, smart_tier: str | None, target: str, keep) -> Decision:
    """A blob under Smart tier management.

    Metadata stays Smart, whatever RETIER_METADATA_TIER says: Smart keeps the manifest duplicity
    reads on every backup in Hot and lets the rest cool, with no retrieval or early-deletion
    charge; an explicit tier could never be undone.
    A volume goes to its explicit target on day 0 rather than after 90 days of Smart's inactivity
    and its monitoring fee, unless that is warmer than where Smart has it now (never warmer: a
    Smart/Cold volume and a Cool target stay). Smart/Cold with a Cold target does move: the same
    price per GB, but no monitoring fee and no move back to Hot when a restore reads it. Where
    the listing does not say (no SmartAccessTier), the coldest Smart reaches, Cold, is assumed,
    so an explicit tier is never a warmer one.
    """
    if name.par2_index or name.kind is not Kind.VOLUME:
        return keep(
            "metadata stays Smart (it follows duplicity's reads, no retrieval charge)", target
        )
    underlying = smart_underlying(smart_tier) or "Cold"
    if is_colder(underlying, target):
        return keep(f"never moves warmer ({SMART}/{underlying} -> {target})", target)
    return Decision(
        name.name,
        name.kind.value,
        tier_label(SMART, smart_tier),
        target,
        True,
        "finished set (out of Smart)",
    )
