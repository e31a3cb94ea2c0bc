"""Background jobs run by arq on the shared queue: bulk retry by filter, and the history retention sweep."""

from __future__ import annotations

import json
import logging

from core.clock import now_ms
from core.history import HistoryStore
from core.history.log import DeliveryLog
from core.models import DeliveryStatus
from core.settings import Settings
from core.store import Actor, DeliveryFilter, Store

logger = logging.getLogger(__name__)

BULK_PAGE = 250


def filter_from_json(raw: dict[str, object]) -> DeliveryFilter:
    statuses = raw.get("status") or ["failed"]
    assert isinstance(statuses, list)
    return DeliveryFilter(
        endpoint_id=raw.get("endpoint_id"),  # type: ignore[arg-type]
        statuses=frozenset(DeliveryStatus(s) for s in statuses),
        event_type=raw.get("event_type"),  # type: ignore[arg-type]
        since_ms=raw.get("since_ms"),  # type: ignore[arg-type]
        until_ms=raw.get("until_ms"),  # type: ignore[arg-type]
    )


async def run_bulk_retry(store: Store, log: DeliveryLog, job_id: str) -> dict[str, int]:
    """Retry every delivery matching the job's filter (in the delivery log), a page at a time,
    recording progress.

    The cursor is the last id handled, so deliveries leaving the "failed" status as they are
    retried do not shift the pages still to come. Resumable: it starts from the saved cursor.
    """
    ops = store.operations
    record = await ops.bulk_progress(job_id)
    wanted = filter_from_json(json.loads(record["filter"]))
    actor = Actor(record.get("by", ""))
    cursor = record.get("cursor") or None
    totals = {"matched": 0, "queued": 0, "skipped": 0}
    await ops.update_bulk(job_id, state="running", started_ms=now_ms())
    while True:
        page, cursor = await log.list_deliveries(wanted, limit=BULK_PAGE, cursor=cursor)
        results = await log.retry([d.id for d in page], actor, via=f"bulk_retry:{job_id}")
        queued = results.count("queued")
        await ops.add_bulk_counts(
            job_id, matched=len(page), queued=queued, skipped=len(page) - queued, cursor=cursor or ""
        )
        totals["matched"] += len(page)
        totals["queued"] += queued
        totals["skipped"] += len(page) - queued
        if cursor is None:
            break
    await ops.update_bulk(job_id, state="done", finished_ms=now_ms())
    logger.info("bulk retry %s: %d matched, %d queued", job_id, totals["matched"], totals["queued"])
    return totals


async def run_retention_sweep(store: Store, history: HistoryStore, settings: Settings) -> int:
    """Retention in the history store (and prepare its storage ahead). Deliveries created more than
    HOOKPUMP_RETENTION + HOOKPUMP_RETRY_HORIZON ago go, so one that ended late still gets its full
    retention; the status counters drop by what went. Pending and retrying ones are never removed."""
    now = now_ms()
    cutoff = now - int((settings.retention + settings.retry_horizon) * 1000)
    removed = await history.sweep(cutoff_ms=cutoff, now_ms=now)
    if removed:
        await store.operations.decrement_counts(removed)
        logger.info("retention sweep removed %d deliveries from the history", sum(removed.values()))
    return sum(removed.values())
