"""The one interface every history backend implements (PostgreSQL, SQLite); callers never ask
which backend they have. The conformance suite (tests/test_history_store.py) holds both to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.history.records import HistoryBatch
from core.models import Delivery, DeliveryFilter, Message

# Terminal statuses: the only rows retention may remove.
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class DeliveryHistory:
    delivery: Delivery
    attempts: list[dict[str, Any]]  # wire-ready attempt records, oldest first, with id and delivery_id
    actions: list[dict[str, Any]]  # operator actions, oldest first
    version: int = 0  # the stored state's version (see records.DeliveryState)


@dataclass(frozen=True, slots=True)
class DailyCount:
    day_start_ms: int  # UTC midnight of the deliveries' creation day
    status: str
    deliveries: int


class HistoryStore(Protocol):
    """Every method raises HistoryUnavailable when the database cannot be reached, and
    HistoryRecordRejected from `write` when a record's content is refused (the batch is rolled back)."""

    async def open(self) -> None:
        """Connect and apply pending migrations (safe when several processes start at once);
        HistorySchemaTooNew if the database was migrated by newer code."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise HistoryUnavailable unless the database answers."""

    async def write(self, batch: HistoryBatch) -> None:
        """Upsert every record in one transaction: a delivery's row only moves to a higher version,
        an attempt's to a later record; writing the same batch twice changes nothing."""

    async def list_deliveries(
        self, wanted: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; `cursor` is the last id of the previous page, None when no more follow."""

    async def get_delivery(self, did: str) -> DeliveryHistory | None: ...

    async def get_message(self, mid: str) -> Message | None:
        """The message as accepted (payload, trace, its delivery ids), while retention keeps it."""

    async def endpoint_attempts(
        self, eid: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's attempts, most recently recorded first."""

    async def daily_counts(self, eid: str, *, since_ms: int, until_ms: int) -> list[DailyCount]:
        """Deliveries of the endpoint created in [since_ms, until_ms), by UTC day and status."""

    async def sweep(self, *, cutoff_ms: int, now_ms: int) -> dict[tuple[str, str], int]:
        """Retention: remove terminal deliveries created before `cutoff_ms`, with their attempts,
        actions and (once none of its deliveries is left) message; never a pending, retrying or
        delivering one. Also prepares storage ahead of
        `now_ms` (PostgreSQL partitions). Returns how many were removed per (endpoint, status)."""
