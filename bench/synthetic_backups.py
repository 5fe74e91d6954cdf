"""A synthetic duplicity backup history of a chosen number of blobs, with the tier every blob should end in.

The history is weekly full backups with daily incrementals (default: 26 chains of a full
and 6 incrementals, half a year), each finished set with its volumes, signatures and
manifest, plus what real containers also hold: unfinished sets (the newest incremental
interrupted during its volumes, an abandoned full with volumes and signatures but no
manifest, an orphaned incremental) and names that are no duplicity object (notes, a
`.part` upload, a `.bak` copy, exports). The number of sets is fixed by the chains; the
number of blobs is reached by the volumes per set, as a smaller --volsize or more data
would. So two histories of 10,000 and 100,000 blobs have the same sets, the second with
ten times the volumes: what a sweep keeps per set is the same, what it keeps per blob is
ten times more.

Every blob knows its role; only the volumes of finished sets are to be tiered (`to_tier`).
Names follow duplicity's grammar exactly (see DESIGN.md §1), and `check()` confirms
retier.names reads each role as intended, so the expected end state does not depend on
the code under test.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # run from a checkout without installing

from retier import names

VOLSIZE = 200 * 1024 * 1024  # duplicity's default --volsize (MiB 200)

# Roles. Only FINISHED_VOLUME is to be tiered.
FINISHED_VOLUME = "volume"
UNFINISHED_VOLUME = "unfinished-volume"
MANIFEST = "manifest"
SIGNATURES = "signatures"
UNKNOWN = "unknown"

_KIND_OF_ROLE = {
    FINISHED_VOLUME: names.Kind.VOLUME,
    UNFINISHED_VOLUME: names.Kind.VOLUME,
    MANIFEST: names.Kind.MANIFEST,
    SIGNATURES: names.Kind.SIGNATURES,
    UNKNOWN: names.Kind.UNKNOWN,
}


@dataclass(frozen=True)
class Blob:
    name: str
    role: str
    size: int  # the size the real object would have; the uploaded body is a single byte

    @property
    def to_tier(self) -> bool:
        return self.role == FINISHED_VOLUME


@dataclass(frozen=True)
class History:
    blobs: tuple[Blob, ...]
    chains: int
    finished_sets: int
    unfinished_sets: int

    @property
    def sets(self) -> int:
        return self.finished_sets + self.unfinished_sets

    @property
    def to_tier(self) -> list[str]:
        return [b.name for b in self.blobs if b.to_tier]

    def newest_incrementals(self) -> set[str]:
        """The finished volumes of the newest chain's incrementals.

        What a reconciliation sweep has to repair when Event Grid dropped a week of daily
        backups' events: the benchmark seeds every other finished volume at the target tier
        already, as the event handler would have left it.
        """
        parsed = [names.parse(b.name) for b in self.blobs if b.to_tier]
        newest_full = max(p.time for p in parsed if p.type == "full")
        return {p.name for p in parsed if p.type == "inc" and p.start_time >= newest_full}

    def roles(self) -> Counter:
        return Counter(b.role for b in self.blobs)

    def represented_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def check(self) -> None:
        """Raise AssertionError unless every name is unique and reads as its role's kind."""
        assert len({b.name for b in self.blobs}) == len(self.blobs), "duplicate names"
        for blob in self.blobs:
            kind = names.parse(blob.name).kind
            assert kind is _KIND_OF_ROLE[blob.role], (
                f"{blob.name}: parsed as {kind.value}, meant as {blob.role}"
            )


def _t(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


@dataclass
class _Set:
    stem: str  # "duplicity-full.T" or "duplicity-inc.T1.to.T2"
    sig: str | None  # signatures name, or None (interrupted before them)
    finished: bool  # manifest uploaded
    weight: float  # share of the volumes
    volumes: int = 0


def backup_history(
    total_blobs: int, *, chains: int = 26, incrementals: int = 6, seed: int = 1
) -> History:
    """A history of exactly `total_blobs` blobs; see the module docstring."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 7, 2, 0, 0, tzinfo=timezone.utc)
    sets: list[_Set] = []
    last = start
    for c in range(chains):
        full = start + timedelta(days=7 * c, minutes=rng.randint(0, 40), seconds=rng.randint(0, 59))
        if c == chains // 3:
            # An abandoned full, an hour earlier: volumes and signatures uploaded, then the run died.
            t = _t(full - timedelta(hours=1))
            sets.append(
                _Set(f"duplicity-full.{t}", f"duplicity-full-signatures.{t}.sigtar.gpg", False, 8)
            )
        sets.append(
            _Set(
                f"duplicity-full.{_t(full)}",
                f"duplicity-full-signatures.{_t(full)}.sigtar.gpg",
                True,
                30,
            )
        )
        prev = full
        for k in range(1, incrementals + 1):
            now = full + timedelta(days=k, minutes=rng.randint(0, 40), seconds=rng.randint(0, 59))
            t1, t2 = _t(prev), _t(now)
            if c == (2 * chains) // 3 and k == 3:
                # An orphaned incremental from the same base (a failed run, later redone): one volume, no manifest.
                orphan = _t(now - timedelta(hours=2))
                sets.append(_Set(f"duplicity-inc.{t1}.to.{orphan}", None, False, 0.2))
            sets.append(
                _Set(
                    f"duplicity-inc.{t1}.to.{t2}",
                    f"duplicity-new-signatures.{t1}.to.{t2}.sigtar.gpg",
                    True,
                    rng.uniform(1, 5),
                )
            )
            prev = now
        last = prev
    # The newest incremental is still uploading (or was interrupted): volumes only.
    newest = _t(last + timedelta(days=1))
    sets.append(_Set(f"duplicity-inc.{_t(last)}.to.{newest}", None, False, 3))

    unknown = [
        "notes.txt",
        "README.md",
        "keys/backup-signing-key.asc",
        f"{sets[1].stem}.manifest.gpg.bak",
        f"{sets[-1].stem}.vol9.difftar.gpg.part",
        f"{sets[-1].stem}.manifest.part",
        "restore-test/etc/hosts",
        "duplicity-full.latest",
    ]
    unknown += [f"exports/report-{k:04d}.csv" for k in range(total_blobs // 1000)]
    metadata = sum(1 for s in sets if s.sig) + sum(1 for s in sets if s.finished)
    volume_budget = total_blobs - metadata - len(unknown)
    if volume_budget < len(sets):
        raise ValueError(
            f"{total_blobs} blobs is too few for {len(sets)} sets (need at least {metadata + len(unknown) + len(sets)})"
        )
    _share(sets, volume_budget)

    blobs: list[Blob] = []
    for s in sets:
        role = FINISHED_VOLUME if s.finished else UNFINISHED_VOLUME
        for v in range(1, s.volumes + 1):
            size = VOLSIZE if v < s.volumes else rng.randint(1, VOLSIZE)
            blobs.append(Blob(f"{s.stem}.vol{v}.difftar.gpg", role, size))
        data = s.volumes * VOLSIZE
        if s.sig:
            blobs.append(
                Blob(
                    s.sig,
                    SIGNATURES,
                    max(4096, data // (50 if s.stem.startswith("duplicity-full") else 400)),
                )
            )
        if s.finished:
            blobs.append(Blob(f"{s.stem}.manifest.gpg", MANIFEST, 1024 + 280 * s.volumes))
    blobs += [Blob(n, UNKNOWN, rng.randint(100, 100_000)) for n in unknown]
    assert len(blobs) == total_blobs, (len(blobs), total_blobs)
    return History(
        tuple(blobs), chains, sum(s.finished for s in sets), sum(not s.finished for s in sets)
    )


def _share(sets: list[_Set], budget: int) -> None:
    """Give every set at least one volume and the rest in proportion to its weight (largest remainder)."""
    spare = budget - len(sets)
    total = sum(s.weight for s in sets)
    exact = [spare * s.weight / total for s in sets]
    for s, e in zip(sets, exact):
        s.volumes = 1 + int(e)
    left = budget - sum(s.volumes for s in sets)
    for i in sorted(range(len(sets)), key=lambda i: exact[i] - int(exact[i]), reverse=True)[:left]:
        sets[i].volumes += 1
