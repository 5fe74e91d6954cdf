"""`retier probe`: a canary backup set proves, in the user's own account, that Event Grid -> function -> tier change works.

The probe runs as the operator, with the CLI's credentials. It uploads one tiny volume and then
its manifest (the canary), waits for the deployed function to move the volume to the policy's
volume tier, reports how long that took by the service's own clock, and deletes the canary. On a
timeout it says which step most likely failed and how to look at it. Whatever happens (an error,
a timeout, Ctrl-C), the canary is deleted before `run` returns.

Why the canary's names work (duplicity 3.2.1's duplicity/file_naming.py, dup_collections.py,
dup_main.py and backends/azurebackend.py):

* retier's grammar (retier.names) takes any text before the duplicity part of a name as its
  prefix, so "retier-probe-<id>.duplicity-full.<T>.manifest" and its ".vol1.difftar" are a
  finished full set to the function. The manifest's ending is one the deployment's Event Grid
  filter delivers (names.event_filter_suffixes(), the same list infra/main.json holds), and the
  filter's other half only names the container. RETIER_FILE_PREFIX_ARCHIVE/-MANIFEST go where
  duplicity puts them, after the run prefix, so the function's listing finds the volume.
* duplicity lists the whole container (the Azure backend's _list has no prefix) and reads each
  name with regexes anchored at the start of the name: "^" + --file-prefix + --file-prefix-<kind>
  + "duplicity-full" ... A name that starts with "retier-probe-<id>." matches none of them (unless
  a user's --file-prefix were that very text), so file_naming.parse() returns None for it.
* A name parse() does not recognise is skipped wherever duplicity reads a remote listing: backup
  sets ("Ignoring file (rejected by backup set)"), signature chains, the metadata sync. `cleanup`
  deletes only get_extraneous(), built from recognised sets and signature names;
  `remove-all-but-n-full` and `remove-older-than` delete whole sets of recognised chains. So no
  duplicity command lists, deletes or trips over the canary (tests/test_probe.py runs them).
* No "/" in the run prefix: on a hierarchical-namespace account a "/" creates a directory that
  deleting the blob leaves behind. (A RETIER_FILE_PREFIX_* with "/" still does; cleanup deletes
  whatever is left under the run prefix, deepest first.)
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from retier import costs, eventgrid, names
from retier.errors import StorageError
from retier.names import Kind
from retier.settings import Settings

if TYPE_CHECKING:  # `retier probe --help` and the CLI's parser load no Storage SDK
    from retier.storage import BlobItem, BlobStore

logger = logging.getLogger(__name__)

# The steps of the path, in order; a failed probe names one of them.
UPLOAD = "upload"  # the operator's upload of the canary
EVENT = "event"  # Event Grid delivering the manifest's BlobCreated to the function
INVOCATION = "invocation"  # the function running and being allowed to list and set tiers
TIER = "tier"  # the volume reaching the policy's tier
CLEANUP = "cleanup"  # deleting the canary
STEPS = (UPLOAD, EVENT, INVOCATION, TIER, CLEANUP)

DEFAULT_TIMEOUT = 300.0
# Polling the volume's properties (one Get Blob Properties each): 1 s, then 1.5 times longer each
# time, at most 10 s apart. A Flex Consumption app that has to start takes seconds to tens of
# seconds, and nothing here is billed by the minute.
FIRST_POLL_SECONDS = 1.0
POLL_FACTOR = 1.5
MAX_POLL_SECONDS = 10.0

CANARY_PREFIX = "retier-probe-"
MANIFEST_ENDING = ".manifest"  # unencrypted, long-name manifest: one of event_filter_suffixes()
VOLUME_DATA = b"retier probe canary volume; the probe deletes it\n"
MANIFEST_DATA = b"retier probe canary manifest; the probe deletes it\n"

# Event Grid's lastDeliveryOutcome values that mean the function was reached and failed or was
# too slow (retier.eventgrid.delivery_outcome: 5xx -> GenericError, no answer -> TimedOut). Any
# other outcome (NotFound, Unauthorized, Forbidden, BadRequest, ...) means delivery itself failed.
FUNCTION_FAILED_OUTCOMES = frozenset({"GenericError", "TimedOut", "Busy"})
# A dead-letter blob holds one delivery's batch; anything far larger is not Event Grid's.
MAX_DEAD_LETTER_BYTES = 1024 * 1024
FUNCTION_NAME = "retier_blob_created"  # function_app.py's Event Grid function
_RUN_ID = re.compile(r"[0-9a-z]{1,32}\Z")


class ProbeError(ValueError):
    """The probe cannot be run as asked (bad input, a setting that makes it meaningless)."""


@dataclass(frozen=True)
class Canary:
    """The canary set's blob names; every one starts with `prefix`, unique to one probe run."""

    prefix: str
    volume: str
    manifest: str

    @property
    def blobs(self) -> tuple[str, str]:
        """In upload order: the volume, then the manifest (duplicity's order; a set is finished
        when its manifest lands)."""
        return (self.volume, self.manifest)


def make_canary(settings: Settings, *, run_id: str, when: datetime) -> Canary:
    """The canary's names, derived from retier's grammar and checked against it.

    The manifest is "<run prefix><RETIER_FILE_PREFIX_MANIFEST>duplicity-full.<when>.manifest";
    the volume is what names.volume_listing_prefix() says the function will list for it, plus
    "1.difftar". Raises ProbeError when the grammar does not read them as one finished set.
    """
    if not _RUN_ID.match(run_id):
        raise ProbeError(f"run id {run_id!r}: use 1-32 lower-case letters and digits")
    if MANIFEST_ENDING not in names.event_filter_suffixes():
        raise ProbeError(f"{MANIFEST_ENDING!r} is no longer an ending the event filter delivers")
    prefix = f"{CANARY_PREFIX}{run_id}."
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    manifest_name = (
        f"{prefix}{settings.file_prefix_manifest}duplicity-full.{stamp}{MANIFEST_ENDING}"
    )
    manifest = names.parse(manifest_name)
    if manifest.kind is not Kind.MANIFEST or manifest.prefix != (
        prefix + settings.file_prefix_manifest
    ):
        raise ProbeError(f"retier's grammar does not read {manifest_name!r} as a manifest")
    volume_name = names.volume_listing_prefix(manifest, **settings.name_prefixes) + "1.difftar"
    volume = names.parse(volume_name)
    same_set = names.set_key(volume, **settings.name_prefixes) == names.set_key(
        manifest, **settings.name_prefixes
    )
    if volume.kind is not Kind.VOLUME or not same_set or not volume_name.startswith(prefix):
        raise ProbeError(
            f"retier's grammar does not read {volume_name!r} as a volume of {manifest_name!r}"
        )
    return Canary(prefix, volume_name, manifest_name)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def event_subject(container: str, blob: str) -> str:
    """The subject Blob Storage gives a BlobCreated event (what the subscription filters on)."""
    return f"/blobServices/default/containers/{container}/blobs/{blob}"


@dataclass(frozen=True)
class Hints:
    """Names the operator may give so that a failure message shows exact commands.

    resource_group is the function app's (where its Application Insights is); the system topic
    lives in the backup account's resource group, which the printed command looks up.
    """

    function_app: str | None = None
    resource_group: str | None = None
    system_topic: str | None = None
    event_subscription: str | None = None
    dead_letter_account: str | None = None
    dead_letter_container: str = eventgrid.DEAD_LETTER_CONTAINER


def _q(value: str | None, placeholder: str) -> str:
    return shlex.quote(value) if value else placeholder


def diagnosis_commands(hints: Hints, *, account: str, canary: Canary) -> dict[str, str]:
    """The commands that show each step a timeout may have stopped at (nothing is run here).

    event: the subscription's provisioning state, filter and destination (Azure CLI, core
    `az eventgrid system-topic event-subscription show`, which takes --name, --resource-group and
    --system-topic-name: https://learn.microsoft.com/cli/azure/eventgrid/system-topic/event-subscription).
    invocation: the function's own log lines about the canary's manifest in Application Insights
    (`az monitor app-insights query`, the application-insights extension, which takes --app (a
    name with --resource-group) and --analytics-query:
    https://github.com/Azure/azure-cli-extensions/tree/main/src/application-insights). The service logs one line per event, "event <id>
    <container>/<blob> kind=... status=... reason=...": a 403 AuthorizationPermissionMismatch
    there means the function's role does not allow the listing or the tier change.
    """
    subscription = hints.event_subscription or eventgrid.SUBSCRIPTION
    topic_group = (
        f'"$(az storage account show --name {shlex.quote(account)} --query resourceGroup -o tsv)"'
    )
    event = (
        f"az eventgrid system-topic event-subscription show --name {shlex.quote(subscription)} "
        f"--system-topic-name {_q(hints.system_topic, '<system-topic>')} "
        f"--resource-group {topic_group} "
        '--query "{state:provisioningState, filter:filter, destination:destination.endpointType}"'
    )
    # The run prefix is in the service's line for the manifest's event ("event <id> <container>/
    # <manifest> ... status=retry reason=list <container>/<set prefix>*: HTTP 403 ...") and in the
    # message of the exception that makes the host answer 500 (classic `exceptions`.outerMessage:
    # https://learn.microsoft.com/azure/azure-monitor/reference/tables/appexceptions).
    name = json.dumps(canary.prefix)  # a KQL string literal (no quote or backslash in it)
    kql = (
        "union traces, exceptions | where timestamp > ago(1h) "
        f"| where message contains {name} or outerMessage contains {name} "
        "| project timestamp, itemType, severityLevel, text = coalesce(message, outerMessage)"
    )
    group = _q(hints.resource_group, "<function-app-resource-group>")
    app_insights = (
        f'"$(az resource list --resource-group {group} '
        '--resource-type Microsoft.Insights/components --query [0].name -o tsv)"'
    )
    invocation = (
        f"az monitor app-insights query --app {app_insights} --resource-group {group} "
        f"--analytics-query {shlex.quote(kql)}"
    )
    # Is the function there to deliver to? (core `az functionapp function show`, which takes
    # --name, --resource-group and --function-name.)
    function = (
        f"az functionapp function show --name {_q(hints.function_app, '<function-app>')} "
        f"--resource-group {group} --function-name {FUNCTION_NAME} "
        '--query "{name:name, disabled:isDisabled}"'
    )
    return {EVENT: event, INVOCATION: invocation, "function": function, "log_query": kql}


@dataclass
class ProbeResult:
    """What one probe found; `to_dict()` is the --json contract."""

    account: str
    container: str
    canary: Canary
    target_tier: str
    ok: bool = False
    failed_step: str | None = None
    message: str = ""
    delay_seconds: float | None = None
    manifest_last_modified: datetime | None = None
    tier_change_time: datetime | None = None
    volume_tier: str | None = None
    waited_seconds: float = 0.0
    early_deletion: float = 0.0
    currency: str = "USD"
    deleted: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    dead_letter: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def fail(self, step: str, message: str) -> None:
        if self.failed_step is None:  # the first failure is the one that stopped the path
            self.ok, self.failed_step, self.message = False, step, message

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "delay_seconds": self.delay_seconds,
            "failed_step": self.failed_step,
            "message": self.message,
            "account": self.account,
            "container": self.container,
            "canary": {"volume": self.canary.volume, "manifest": self.canary.manifest},
            "subject": event_subject(self.container, self.canary.manifest),
            "target_tier": self.target_tier,
            "volume_tier": self.volume_tier,
            "manifest_last_modified": _iso(self.manifest_last_modified),
            "tier_change_time": _iso(self.tier_change_time),
            "waited_seconds": round(self.waited_seconds, 1),
            "early_deletion": {
                "amount": self.early_deletion,
                "currency": self.currency,
            },
            "deleted": self.deleted,
            "left_behind": self.left_behind,
            "dead_letter": self.dead_letter,
            "checks": self.checks,
            "interrupted": self.interrupted,
        }


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat() if when else None


class Prober:
    """One probe of one deployment's path. Storage goes through `store` (retier.storage).

    `sleep`, `clock` (monotonic seconds, for the timeout only) and `now` (UTC, for the canary's
    set time and the early-deletion charge) are injectable; the delay itself is always the
    service's own timestamps. `on_waiting(canary)` runs once, after the upload and before the
    wait: the canary is in the container then (tests run duplicity there).
    """

    def __init__(
        self,
        store: BlobStore,
        settings: Settings,
        *,
        hints: Hints = Hints(),
        prices: dict | None = None,
        dead_letter_store: BlobStore | None = None,
        run_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_waiting: Callable[[Canary], None] | None = None,
        first_poll: float = FIRST_POLL_SECONDS,
        max_poll: float = MAX_POLL_SECONDS,
    ):
        self.store = store
        self.settings = settings
        self.hints = hints
        self.prices = prices if prices is not None else costs.load_prices()
        self.dead_letter_store = dead_letter_store
        self.run_id = run_id or new_run_id()
        self.sleep = sleep
        self.clock = clock
        self.now = now
        self.on_waiting = on_waiting
        self.first_poll = first_poll
        self.max_poll = max_poll
        self._canary: Canary | None = None

    @property
    def canary(self) -> Canary:
        """This run's names (fixed at the first call: the set time is taken once)."""
        if self._canary is None:
            self._canary = make_canary(self.settings, run_id=self.run_id, when=self.now())
        return self._canary

    def check_container(self, container: str) -> None:
        """Refuse a container the function is configured to ignore (RETIER_CONTAINERS)."""
        allowed = self.settings.containers
        if allowed and container not in allowed:
            raise ProbeError(
                f"the function ignores container {container}: it is not in RETIER_CONTAINERS "
                f"({', '.join(sorted(allowed))}); probe one of those, with the function's settings"
            )

    def run(self, container: str, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
        """Upload, wait, report, delete. Never raises for a storage failure or Ctrl-C: the result
        says what failed, and the canary is gone (or `left_behind` names what could not go)."""
        if timeout <= 0:
            raise ProbeError("the timeout must be more than 0 seconds")
        self.check_container(container)
        canary = self.canary
        result = ProbeResult(
            account=self.store.account_name,
            container=container,
            canary=canary,
            target_tier=self.settings.policy.volume_tier,
            currency=self.prices.get("currency", "USD"),
        )
        step = UPLOAD
        try:
            if self._upload(container, canary, result):
                step = TIER  # waiting for the tier change (event and invocation come first)
                if self.on_waiting is not None:
                    self.on_waiting(canary)
                self._wait(container, canary, timeout, result)
        except KeyboardInterrupt:
            result.interrupted = True
            result.fail(step, f"interrupted during the {step} step")
        finally:
            self._clean(container, canary, result)
        return result

    # -- the steps ---------------------------------------------------------------------------
    def _upload(self, container: str, canary: Canary, result: ProbeResult) -> bool:
        try:
            # Create-only: a probe never replaces a blob, not even its own.
            self.store.write_blob(container, canary.volume, VOLUME_DATA, overwrite=False)
            self.store.write_blob(container, canary.manifest, MANIFEST_DATA, overwrite=False)
            manifest = self.store.blob_properties(container, canary.manifest)
        except StorageError as exc:
            hint = ""
            if exc.status == 404:
                hint = f" (does container {container} exist in {result.account}?)"
            elif exc.status == 403:
                hint = " (your login needs a data role that may write blobs here, e.g. Storage Blob Data Contributor)"
            result.fail(UPLOAD, f"could not upload the canary: {exc}{hint}")
            return False
        result.manifest_last_modified = manifest.last_modified
        logger.info("canary uploaded: %s/%s and %s", container, canary.volume, canary.manifest)
        return True

    def _wait(self, container: str, canary: Canary, timeout: float, result: ProbeResult) -> None:
        start = self.clock()
        deadline = start + timeout
        interval = self.first_poll
        while True:
            item = self._volume(container, canary, result)
            result.waited_seconds = self.clock() - start
            if result.failed_step:
                return
            if item is not None and self._settled(item, result):
                return
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._timed_out(container, canary, timeout, result)
                return
            self.sleep(min(interval, remaining))
            interval = min(interval * POLL_FACTOR, self.max_poll)

    def _volume(self, container: str, canary: Canary, result: ProbeResult) -> BlobItem | None:
        try:
            return self.store.blob_properties(container, canary.volume)
        except StorageError as exc:
            if exc.status == 404:
                result.fail(TIER, "the canary volume disappeared while the probe waited for it")
            elif not exc.transient:
                result.fail(TIER, f"could not read the canary volume's tier: {exc}")
            else:
                logger.warning("reading the canary volume failed, trying again: %s", exc)
            return None

    def _settled(self, item: BlobItem, result: ProbeResult) -> bool:
        """True when the wait is over: the volume reached the target, or went somewhere else."""
        result.volume_tier = item.tier
        target = result.target_tier
        if item.tier == target and item.tier_set:
            result.ok = True
            result.tier_change_time = item.tier_change_time
            if item.tier_change_time and result.manifest_last_modified:
                delay = item.tier_change_time - result.manifest_last_modified
                result.delay_seconds = delay.total_seconds()
                result.message = (
                    f"tiering works in {result.account}: a volume reached {target} "
                    f"{result.delay_seconds:.0f} s after its manifest"
                )
            else:
                result.message = (
                    f"tiering works in {result.account}: a volume reached {target} "
                    "(storage reported no access-tier change time, so no delay)"
                )
            return True
        if item.tier == target:
            # Inferred from the account's default tier: the function has nothing to move.
            result.fail(
                TIER,
                f"the account's default tier is already {target}, RETIER_VOLUME_TIER: new volumes "
                "start there, so there is no tier change to see",
            )
            return True
        if item.tier_set:
            result.tier_change_time = item.tier_change_time
            result.fail(
                TIER,
                f"the volume was moved to {item.tier}, not {target}: the function's "
                f"RETIER_VOLUME_TIER differs from this shell's ({target}), or someone else moved it",
            )
            return True
        return False

    def _timed_out(
        self, container: str, canary: Canary, timeout: float, result: ProbeResult
    ) -> None:
        result.checks = diagnosis_commands(self.hints, account=result.account, canary=canary)
        result.dead_letter = self._dead_letter(canary, result)
        found = result.dead_letter.get("found")
        waited = f"the volume stayed {result.volume_tier or 'where it was'} for {timeout:g} s"
        if found:
            outcome = found.get("last_outcome")
            step = INVOCATION if outcome in FUNCTION_FAILED_OUTCOMES else EVENT
            what = (
                "the function was reached and failed"
                if step == INVOCATION
                else "Event Grid could not deliver it to the function"
            )
            result.fail(
                step,
                f"{waited}; Event Grid dead-lettered the canary's event "
                f"({found.get('reason')}, last outcome {outcome}, "
                f"{found.get('attempts')} attempt(s)): {what}",
            )
            return
        result.fail(
            EVENT,
            f"{waited}: no sign the function acted. Most likely no event was delivered "
            "(subscription missing, failed or filtering it out; function not deployed); "
            "otherwise the invocation failed (e.g. 403 AuthorizationPermissionMismatch under a "
            "narrow role) or ignored it (RETIER_CONTAINERS, RETIER_FILE_PREFIX_* differ from "
            "this shell's). The checks below tell them apart.",
        )

    def _dead_letter(self, canary: Canary, result: ProbeResult) -> dict[str, Any]:
        """Look for the canary manifest's event in the dead-letter container, if it can be read."""
        where = {
            "account": self.hints.dead_letter_account,
            "container": self.hints.dead_letter_container,
        }
        if self.dead_letter_store is None:
            return {
                **where,
                "checked": False,
                "found": None,
                "note": "not checked: give --dead-letter-account (retier's host storage account)",
            }
        since = result.manifest_last_modified
        try:
            found = find_dead_letter(
                self.dead_letter_store,
                self.hints.dead_letter_container,
                canary.manifest,
                subscription=self.hints.event_subscription,
                since=since,
            )
        except StorageError as exc:
            return {**where, "checked": False, "found": None, "note": f"cannot read it: {exc}"}
        note = (
            "the canary's event is there"
            if found
            else "no dead-lettered canary event (Event Grid writes one about 5 minutes after its "
            "last attempt, and retries a failing function for up to 24 hours)"
        )
        return {**where, "checked": True, "found": found, "note": note}

    def _clean(self, container: str, canary: Canary, result: ProbeResult) -> None:
        """Delete every blob under the run prefix (deepest first) and check that none is left."""
        now = self.now()
        try:
            items = list(self.store.list_blobs(container, canary.prefix))
        except StorageError as exc:
            if exc.status != 404:
                logger.warning("listing the canary failed, deleting it by name: %s", exc)
            items = []
        result.early_deletion = sum(
            costs.early_deletion(item.size, item.tier, item.since, now, self.prices)
            for item in items
            if item.tier in self.prices["minimum_days"]
        )
        doomed = {item.name for item in items} | set(canary.blobs)
        errors = []
        for name in sorted(doomed, key=lambda n: (-n.count("/"), n)):
            if not name.startswith(canary.prefix):  # never anything but this run's canary
                continue
            try:
                self.store.delete_blob(container, name)
                result.deleted.append(name)
            except StorageError as exc:
                if exc.status != 404:
                    errors.append(f"{name}: {exc}")
        try:
            result.left_behind = [i.name for i in self.store.list_blobs(container, canary.prefix)]
        except StorageError as exc:
            if exc.status != 404:
                result.left_behind = sorted(doomed)
                errors.append(f"could not list what is left: {exc}")
        if result.left_behind:
            detail = "; ".join(errors) or "still listed after deletion"
            left = ", ".join(result.left_behind)
            if result.failed_step is None:
                result.fail(CLEANUP, f"the canary could not be deleted ({detail}): delete {left}")
            else:
                result.message += f" The canary could not be deleted ({detail}): delete {left}."


def find_dead_letter(
    store: BlobStore,
    container: str,
    manifest: str,
    *,
    subscription: str | None = None,
    since: datetime | None = None,
) -> dict[str, Any] | None:
    """The dead-lettered event for blob `manifest`, if Event Grid wrote one since `since`.

    Dead-letter blobs are `<SUBSCRIPTION>/<yyyy>/<m>/<d>/<h>/<guid>.json`, each a JSON array of
    events with deadLetterReason, deliveryAttempts and lastDeliveryOutcome added
    (retier.eventgrid). With `subscription`, only that subscription's blobs are read; blobs
    written more than a minute before `since`, or filed away by `retier replay`, are skipped.
    """
    prefix = f"{subscription.upper()}/" if subscription else None
    ending = f"/blobs/{manifest}"
    oldest = since - timedelta(minutes=1) if since else None
    for item in store.list_blobs(container, prefix):
        if item.name.startswith(eventgrid.REPLAYED_PREFIX) or item.size > MAX_DEAD_LETTER_BYTES:
            continue
        if oldest and item.last_modified and item.last_modified < oldest:
            continue
        try:
            records = json.loads(store.read_blob(container, item.name).data)
        except (ValueError, UnicodeDecodeError):
            continue
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and str(record.get("subject", "")).endswith(ending):
                return {
                    "blob": item.name,
                    "reason": record.get("deadLetterReason"),
                    "attempts": record.get("deliveryAttempts"),
                    "last_outcome": record.get("lastDeliveryOutcome"),
                }
    return None
