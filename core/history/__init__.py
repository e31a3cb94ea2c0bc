"""Delivery history on disk: the HistoryStore interface, its two backends (PostgreSQL for production,
SQLite as the embedded default), and the outbox writer that fills it from Redis.

Callers get a store from `create_history_store(settings)` and never ask which backend it is.
"""

from __future__ import annotations

import logging
import os

from core.errors import HistoryUnavailable
from core.history.protocol import DailyCount, DeliveryHistory, HistoryStore
from core.history.records import ActionRecord, AttemptRecord, DeliveryState, HistoryBatch, MessageRecord
from core.settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "ActionRecord",
    "AttemptRecord",
    "DailyCount",
    "DeliveryHistory",
    "DeliveryState",
    "HistoryBatch",
    "HistoryStore",
    "MessageRecord",
    "create_history_store",
    "default_sqlite_path",
    "open_history_store",
]


def default_sqlite_path(settings: Settings) -> str:
    return os.path.join(settings.data_dir, "history.db")


def create_history_store(settings: Settings) -> HistoryStore:
    """The backend HOOKPUMP_DATABASE_URL names (already checked by Settings), unopened."""
    url = settings.database_url
    if url is not None and url.startswith(("postgresql:", "postgres:")):
        from core.history.postgres import PostgresHistory

        return PostgresHistory(url)
    from core.history.sqlite import SqliteHistory

    path = default_sqlite_path(settings) if url is None else url[len("sqlite:///"):]
    return SqliteHistory(path)


async def open_history_store(history: HistoryStore, settings: Settings) -> None:
    """Open the store (applying migrations). A database that is down is not fatal: delivery does not
    depend on it (the outbox keeps the records, /readyz says the history is degraded) and the store
    connects when it can. A schema newer than this code is fatal (HistorySchemaTooNew propagates).
    Without HOOKPUMP_DATABASE_URL (serve, worker) it says that the default SQLite file suits one host
    only; `hookpump dev` names its SQLite file itself and stays quiet."""
    if settings.database_url is None:
        logger.info("delivery history in SQLite (%r): this suits one host only; set HOOKPUMP_DATABASE_URL="
                 "postgresql://... when the API and workers run on several hosts", history)
    try:
        await history.open()
    except HistoryUnavailable as exc:
        logger.warning("history store unavailable at start-up (%s); delivering anyway, the log will catch up", exc)
