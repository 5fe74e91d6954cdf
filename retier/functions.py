"""Glue between the Functions host's objects and the service (no azure.functions import needed)."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache

from retier.service import RetierService
from retier.settings import load_settings
from retier.storage import BlobStore

logger = logging.getLogger(__name__)


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


def run_scheduled_sweep() -> list[dict]:
    """The reconciliation timer: sweep RETIER_CONTAINERS; raise RetryLater if any container failed."""
    global _said_no_containers
    from retier.sweep import sweep_container

    service = service_from_environment()
    containers = sorted(service.settings.containers)
    if not containers:
        if not _said_no_containers:
            logger.warning("RETIER_CONTAINERS is unset: the reconciliation timer sweeps nothing")
            _said_no_containers = True
        return []
    from retier.costs import load_prices

    prices = load_prices()  # RETIER_PRICES prices the charges logged below
    reports = [
        sweep_container(service.store, c, service.settings, prices=prices) for c in containers
    ]
    for report in reports:
        log_charges(report)
    failed = [r.container for r in reports if not r.ok]
    if failed:
        # Failing the invocation makes it visible in monitoring; the next run retries anyway.
        raise RetryLater(f"sweep incomplete for {', '.join(failed)}")
    return [r.to_dict() for r in reports]


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
