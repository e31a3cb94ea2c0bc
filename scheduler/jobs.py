"""Background jobs run by arq on the shared queue: bulk retry by filter, and the retention sweep."""

from __future__ import annotations

import json
import logging
import time

from core.clock import now_ms
from core.models import DeliveryStatus
from core.store import Actor, DeliveryFilter, Store

log = logging.getLogger(__name__)

BULK_PAGE = 250
# The sweep stops after this long per run, whatever is left: the next run goes on.
SWEEP_BUDGET_SECONDS = 10.0
SWEEP_BATCH = 500


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


async def run_bulk_retry(store: Store, job_id: str) -> dict[str, int]:
    """Retry every delivery matching the job's filter, a page at a time, recording progress.

    The cursor is a position in an id-ordered index, so deliveries leaving the "failed" index as
    they are retried do not shift the pages still to come. Resumable: it starts from the saved cursor.
    """
    ops = store.operations
    record = await ops.bulk_progress(job_id)
    wanted = filter_from_json(json.loads(record["filter"]))
    actor = Actor(record.get("by", ""))
    cursor = record.get("cursor") or None
    totals = {"matched": 0, "queued": 0, "skipped": 0}
    await ops.update_bulk(job_id, state="running", started_ms=now_ms())
    while True:
        page, cursor = await store.monitoring.list_deliveries(wanted, limit=BULK_PAGE, cursor=cursor)
        results = await ops.retry([d.id for d in page], actor, via=f"bulk_retry:{job_id}")
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
    log.info("bulk retry %s: %d matched, %d queued", job_id, totals["matched"], totals["queued"])
    return totals


async def run_retention_sweep(store: Store) -> int:
    """Remove terminal deliveries past the retention, in bounded batches, for a bounded time."""
    removed = 0
    deadline = time.monotonic() + SWEEP_BUDGET_SECONDS
    while time.monotonic() < deadline:
        batch = await store.operations.sweep(SWEEP_BATCH)
        removed += batch
        if batch < SWEEP_BATCH:
            break
    if removed:
        log.info("retention sweep removed %d deliveries", removed)
    return removed
