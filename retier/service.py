"""One BlobCreated event in, one outcome out: tier a finished set's volumes when its manifest lands."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from os.path import commonprefix

from retier import events, names, policy
from retier.names import DuplicityName, Kind
from retier.settings import Settings
from retier.storage import (
    FAILED,
    GONE,
    OK,
    SKIPPED,
    TIER_NOT_SUPPORTED,
    TRANSIENT,
    BlobItem,
    BlobStore,
    StorageError,
)

logger = logging.getLogger(__name__)

# Outcome statuses. HANDLED and IGNORED are final; RETRY asks Event Grid to redeliver;
# INVALID is an event no retry can fix.
HANDLED = "handled"
IGNORED = "ignored"
RETRY = "retry"
INVALID = "invalid"

# Why a volume's own event changes nothing (no storage call either).
VOLUME_WAITS = "volumes move when their set's manifest lands (its event, or the sweep)"


@dataclass
class Outcome:
    status: str
    reason: str
    event_id: str | None = None
    container: str | None = None
    blob: str | None = None
    kind: str | None = None
    decisions: list[policy.Decision] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def retry(self) -> bool:
        return self.status == RETRY

    @property
    def moved(self) -> list[policy.Decision]:
        return [d for d in self.decisions if d.move]

    def to_dict(self) -> dict:
        return {
            "id": self.event_id,
            "status": self.status,
            "reason": self.reason,
            "container": self.container,
            "blob": self.blob,
            "kind": self.kind,
            "moved": [d.to_dict() for d in self.moved],
            "kept": len([d for d in self.decisions if not d.move]),
            "failures": self.failures,
        }


class RetierService:
    """The decisions of one deployment: its settings and its storage account."""

    def __init__(self, settings: Settings, store: BlobStore):
        self.settings = settings
        self.store = store

    # -- entry point ---------------------------------------------------------------------------
    def handle_event(self, event: Mapping) -> Outcome:
        try:
            blob_event = events.parse_event(
                event,
                account=self.settings.account_name,
                containers=self.settings.containers or None,
            )
        except events.IgnoredEvent as exc:
            return self._log(Outcome(IGNORED, exc.reason, event_id=_event_id(event)))
        except events.InvalidEvent as exc:
            return self._log(Outcome(INVALID, exc.reason, event_id=_event_id(event)))

        name = names.parse(blob_event.blob)
        outcome = Outcome(
            HANDLED,
            "",
            event_id=blob_event.id,
            container=blob_event.container,
            blob=blob_event.blob,
            kind=name.kind.value,
        )
        try:
            self._handle_blob(blob_event.container, name, outcome)
        except StorageError as exc:
            outcome.status = RETRY if exc.transient else HANDLED
            outcome.reason = str(exc) if exc.transient else f"gave up: {exc}"
            if not exc.transient:
                outcome.failures.append(
                    {"name": blob_event.blob, "outcome": FAILED, "error": str(exc)}
                )
        return self._log(outcome)

    # -- per kind ------------------------------------------------------------------------------
    def _handle_blob(self, container: str, name: DuplicityName, outcome: Outcome) -> None:
        if name.kind is Kind.UNKNOWN:
            outcome.status, outcome.reason = IGNORED, "not a duplicity object"
            return
        if name.kind is Kind.MANIFEST and not name.par2:
            self._manifest_landed(container, name, outcome)
        elif name.kind is Kind.VOLUME:
            # The manifest is the trigger: duplicity uploads it last, and Event Grid delivers its
            # event at least once, so a volume's event has nothing to add. Acting on it cost a
            # listing per volume, and when it raced its manifest's event (or a backlog of volume
            # events arrived at once) the same set was tiered several times over.
            outcome.status, outcome.reason = IGNORED, VOLUME_WAITS
        else:
            self._metadata_landed(container, name, outcome)

    def _manifest_landed(self, container: str, manifest: DuplicityName, outcome: Outcome) -> None:
        listed = self._set_listing(container, manifest)
        if not any(self._is_manifest_of(n, manifest) for n, _ in listed):
            # The event says the manifest exists, the account says it does not: do nothing rather
            # than archive a set that may be unfinished (or replayed after it was deleted).
            outcome.status, outcome.reason = (
                IGNORED,
                "manifest not found in storage; set left alone",
            )
            return
        volumes = [
            (n, item) for n, item in listed if n.kind is Kind.VOLUME and self._same_set(n, manifest)
        ]
        own = []
        if self.settings.policy.metadata_tier:
            # This event's manifest and its par2 files move too: they are in the same listing.
            own = [
                (n, item)
                for n, item in listed
                if n.name == manifest.name or n.par2_of == manifest.name
            ]
        self._apply(container, volumes + own, outcome)  # one restore-hold read for the whole set
        outcome.reason = outcome.reason or f"set finished: {len(volumes)} volume(s) listed"

    def _metadata_landed(self, container: str, meta: DuplicityName, outcome: Outcome) -> None:
        if not self.settings.policy.metadata_tier:
            outcome.status, outcome.reason = IGNORED, "metadata stays as uploaded"
            return
        own = [
            (n, item)
            for item in self.store.list_blobs(container, meta.name)
            if (n := names.parse(item.name)).kind is meta.kind and self._same_set(n, meta)
        ]
        self._apply(container, own, outcome)
        outcome.reason = outcome.reason or "metadata tier setting"

    # -- helpers -------------------------------------------------------------------------------
    def _same_set(self, a: DuplicityName, b: DuplicityName) -> bool:
        prefixes = self.settings.name_prefixes
        return names.set_key(a, **prefixes) == names.set_key(b, **prefixes)

    def _is_manifest_of(self, candidate: DuplicityName, obj: DuplicityName) -> bool:
        return (
            candidate.kind is Kind.MANIFEST
            and not candidate.par2
            and self._same_set(candidate, obj)
        )

    def _set_listing(
        self, container: str, manifest: DuplicityName
    ) -> list[tuple[DuplicityName, BlobItem]]:
        """The set's manifest(s) and volumes, parsed, with whatever else their listing prefixes
        catch: one listing when both share a prefix, else one for each."""
        volume_prefix = names.volume_listing_prefix(manifest, **self.settings.name_prefixes)
        manifest_prefix = names.manifest_listing_prefix(manifest)
        if self.settings.file_prefix_archive == self.settings.file_prefix_manifest:
            prefixes = [commonprefix([volume_prefix, manifest_prefix])]
        else:
            prefixes = [manifest_prefix, volume_prefix]
        return [
            (names.parse(item.name), item)
            for prefix in prefixes
            for item in self.store.list_blobs(container, prefix)
        ]

    def _apply(
        self, container: str, blobs: Iterable[tuple[DuplicityName, BlobItem]], outcome: Outcome
    ) -> None:
        by_target: dict[str, list[str]] = defaultdict(list)
        index: dict[str, int] = {}
        guarded: list[str] = []  # moves of blobs whose tier was set before: the hold guards them
        for name, item in blobs:
            decision = policy.decide(
                name, item.tier, item.archive_status, self.settings.policy, item.smart_tier
            )
            if decision.move:
                index[name.name] = len(outcome.decisions)
                by_target[decision.target].append(name.name)
                if item.tier_set:
                    guarded.append(name.name)
            outcome.decisions.append(decision)
        # The restore hold keeps rehydrated volumes from going back to Archive, and only a blob
        # whose tier was set can be one: a new set's volumes (the common case) need no hold read,
        # so a one-volume set costs one listing and one Set Blob Tier. The hold is read after the
        # listing: a rehydration the listing saw had set the hold before it began, so it is seen.
        hold = self.store.get_hold(container) if guarded else None
        if hold is not None:
            for blob in guarded:
                i = index.pop(blob)
                outcome.decisions[i] = replace(
                    outcome.decisions[i], move=False, reason="container on restore hold"
                )
            by_target = {
                target: kept
                for target, blob_names in by_target.items()
                if (kept := [n for n in blob_names if n in index])
            }
            if not by_target:
                outcome.status, outcome.reason = (
                    IGNORED,
                    f"container on restore hold ({hold}); nothing moved",
                )
                return
            outcome.reason = (
                f"container on restore hold ({hold}); only blobs never tiered before were moved"
            )
        for target, blob_names in by_target.items():
            for result in self.store.set_tier(container, blob_names, target):
                decision = outcome.decisions[index[result.name]]
                if result.outcome == OK:
                    logger.info(
                        "%s %s %s -> %s %s",
                        result.name,
                        decision.kind,
                        decision.current,
                        target,
                        decision.reason,
                    )
                    continue
                outcome.decisions[index[result.name]] = replace(
                    decision, move=False, reason=f"not moved: {result.outcome}"
                )
                if result.outcome in (GONE, SKIPPED):
                    logger.info(
                        "%s left: %s (HTTP %s %s)",
                        result.name,
                        result.outcome,
                        result.status,
                        result.code or "",
                    )
                    continue
                outcome.failures.append(
                    {
                        "name": result.name,
                        "outcome": result.outcome,
                        "status": result.status,
                        "code": result.code,
                    }
                )
                if result.outcome == TRANSIENT:
                    outcome.status = RETRY
                outcome.reason = f"{len(outcome.failures)} blob(s) not tiered"
                if result.code == TIER_NOT_SUPPORTED:
                    outcome.reason += (
                        f": this account has no {target} tier (zone-redundant accounts, which "
                        "Smart tier needs, have no Archive); set RETIER_VOLUME_TIER=Cold"
                    )

    def _log(self, outcome: Outcome) -> Outcome:
        level = (
            logging.WARNING
            if outcome.status in (RETRY, INVALID) or outcome.failures
            else logging.INFO
        )
        logger.log(
            level,
            "event %s %s/%s kind=%s status=%s moved=%d reason=%s",
            _printable(outcome.event_id),
            outcome.container,
            _printable(outcome.blob),
            outcome.kind,
            outcome.status,
            len(outcome.moved),
            _printable(outcome.reason),
        )
        return outcome


def _event_id(event: object) -> str | None:
    value = event.get("id") if isinstance(event, Mapping) else None
    return value if isinstance(value, str) else None


_LOG_LIMIT = 300


def _printable(text: str | None) -> str | None:
    """`text` for one log line: whoever can post an event chooses its id (and, within Azure's
    rules, a blob's name), so line breaks and other control or separator characters are escaped
    (no forged log lines) and the length is capped."""
    if text is None or (text.isprintable() and len(text) <= _LOG_LIMIT):
        return text
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:_LOG_LIMIT])
    return shown + ("…" if len(text) > _LOG_LIMIT else "")
