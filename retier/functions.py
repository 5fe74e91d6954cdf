"""Glue between the Functions host's objects and the service (no azure.functions import needed)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime
from functools import lru_cache

from retier.service import RetierService
from retier.settings import load_settings
from retier.storage import BlobStore

logger = logging.getLogger(__name__)

# The Azure SDK's request/response logger: Information records with every request's headers.
SDK_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


class RetryLater(Exception):
    """Raised from a trigger so the host answers non-2xx and Event Grid redelivers the event."""


@lru_cache(maxsize=1)
def service_from_environment() -> RetierService:
    """Built once per worker process: the client's connection pool outlives one invocation."""
    settings = load_settings()
    return RetierService(settings, BlobStore.from_connection(settings.require_connection()))


def event_to_dict(event) -> dict:
    """A func.EventGridEvent as the Event Grid-schema mapping that retier.events parses."""
    event_time = event.event_time
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event_time.isoformat() if isinstance(event_time, datetime) else event_time,
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


_said_no_containers = False

# Every reconciliation run logs exactly one record starting with this token, then one JSON object
# (sweep_summary). The deployment's alert looks for a `"complete": true` one each day: keep both.
SUMMARY_TOKEN = "retier-sweep-summary"


def run_scheduled_sweep() -> list[dict]:
    """The reconciliation timer: sweep RETIER_CONTAINERS; raise RetryLater if any container failed.

    Whatever happens (settings refused, a container gone, a bug), the run ends with one
    `retier-sweep-summary {...}` log record.
    """
    global _said_no_containers
    reports, error, prices = [], None, None
    try:
        from retier.sweep import sweep_container

        service = service_from_environment()
        containers = sorted(service.settings.containers)
        if not containers and not _said_no_containers:
            logger.warning("RETIER_CONTAINERS is unset: the reconciliation timer sweeps nothing")
            _said_no_containers = True
        from retier.costs import load_prices

        prices = load_prices()  # RETIER_PRICES prices the charges logged below
        reports = [
            sweep_container(service.store, c, service.settings, prices=prices) for c in containers
        ]
        for report in reports:
            log_charges(report)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        log_sweep_summary(reports, error, prices)
    failed = [r.container for r in reports if not r.ok]
    if failed:
        # Failing the invocation makes it visible in monitoring; the next run retries anyway.
        raise RetryLater(f"sweep incomplete for {', '.join(failed)}")
    return [r.to_dict() for r in reports]


def sweep_summary(reports, error: str | None = None, prices: dict | None = None) -> dict:
    """One run's outcome over every container: what "is it working, and what did it save" reads.

    bytes_by_tier is where the blobs the sweep listed are now, as it decided them (a move that
    failed is counted in `failures`, not taken back out of its target tier); saving_per_month is
    their monthly storage charge in Hot minus in those tiers, from retier.costs' price table.
    `complete` is true only when every container was listed and every decided move went through
    (a container on restore hold is deliberately skipped and does not make a run incomplete).
    """
    from retier import costs, policy

    prices = prices or costs.DEFAULT_PRICES
    by_tier: dict[str, int] = defaultdict(int)
    sets = moved = moved_bytes = failures = 0
    failed, held = [], []
    for r in reports:
        if r.held:
            held.append(r.container)
        if not r.ok:
            failed.append(r.container)
        if r.applied:
            moved += r.applied.done.count
            moved_bytes += r.applied.done.bytes
            failures += r.applied.failed
        if r.plan:
            sets += r.plan.sets_finished
            for (_kind, _before, after), tally in r.plan.rows.items():
                by_tier[after] += tally.bytes
    # Priced as the cost report prices a tier label ("Smart/Cold" as Cold, no tier as Hot).
    saving = sum(
        costs.storage_per_month(n, "Hot", prices)
        - costs.storage_per_month(n, policy.priced_tier(tier) or "Hot", prices)
        for tier, n in by_tier.items()
    )
    return {
        "containers": [r.container for r in reports],
        "held": held,
        "sets_finished": sets,
        "volumes_moved": moved,  # every blob moved: volumes, and metadata if RETIER_METADATA_TIER
        "bytes_moved": moved_bytes,
        "bytes_by_tier": dict(sorted(by_tier.items())),
        "saving_per_month": saving,  # unrounded: small sums add up in a query
        "currency": prices["currency"],
        "failures": failures,  # tier changes that failed (after the sweep's own retries)
        "failed_containers": failed,
        "error": error,
        "complete": error is None and not failed,
    }


def log_sweep_summary(reports, error: str | None = None, prices: dict | None = None) -> dict:
    summary = sweep_summary(reports, error, prices)
    level = logging.INFO if summary["complete"] else logging.WARNING
    logger.log(level, "%s %s", SUMMARY_TOKEN, json.dumps(summary, sort_keys=True))
    return summary


def log_charges(report) -> None:
    """The timer cannot ask before a charged move (the CLI does): it follows the settings and says
    what each one cost, so the bill holds no surprise."""
    from retier.costs import format_money

    plan = report.plan
    if report.dry_run or plan is None or not plan.early_deletion.count:
        return
    for move in plan.early_deletion_moves:
        logger.warning(
            "sweep %s: %s %s -> %s is charged an early deletion of ~%s",
            report.container,
            move.name,
            move.current,
            move.target,
            format_money(move.early_deletion, plan.currency),
        )
    logger.warning(
        "sweep %s: %d move(s) charged an early deletion, ~%s in all%s",
        report.container,
        plan.early_deletion.count,
        format_money(plan.early_deletion_charge, plan.currency),
        ""
        if plan.early_deletion.count == len(plan.early_deletion_moves)
        else f" ({len(plan.early_deletion_moves)} named above)",
    )


def handle_grid_event(event) -> dict:
    """Run one delivered event; raise RetryLater when a retry can help, return the outcome otherwise."""
    outcome = service_from_environment().handle_event(event_to_dict(event))
    if outcome.retry:
        raise RetryLater(outcome.reason)
    return outcome.to_dict()
