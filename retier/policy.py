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
    name: DuplicityName, current_tier: str | None, archive_status: str | None, policy: Policy
) -> Decision:
    """Decide one blob. Moves only a recognised object, to a colder tier, when it is not rehydrating."""

    def keep(reason: str, target: str | None = None) -> Decision:
        return Decision(name.name, name.kind.value, current_tier, target, False, reason)

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
