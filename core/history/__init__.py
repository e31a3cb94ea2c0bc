"""Delivery history on disk: the HistoryStore interface, its two backends (PostgreSQL for production,
SQLite as the embedded default), and the outbox writer that fills it from Redis.

Callers get a store from `create_history_store(settings)` and never ask which backend it is.
"""

from __future__ import annotations

import os

from core.history.protocol import DailyCount, DeliveryHistory, HistoryStore
from core.history.records import ActionRecord, AttemptRecord, DeliveryState, HistoryBatch
from core.settings import Settings

__all__ = [
    "ActionRecord",
    "AttemptRecord",
    "DailyCount",
    "DeliveryHistory",
    "DeliveryState",
    "HistoryBatch",
    "HistoryStore",
    "create_history_store",
    "default_sqlite_path",
    "is_single_host",
]


def default_sqlite_path(settings: Settings) -> str:
    return os.path.join(settings.data_dir, "history.db")


def is_single_host(settings: Settings) -> bool:
    """True when history lives in a SQLite file: fine for one host, not for workers on several."""
    return settings.database_url is None or settings.database_url.startswith("sqlite:")


def create_history_store(settings: Settings) -> HistoryStore:
    """The backend HOOKPUMP_DATABASE_URL names (already checked by Settings), unopened."""
    url = settings.database_url
    if url is not None and url.startswith(("postgresql:", "postgres:")):
        from core.history.postgres import PostgresHistory

        return PostgresHistory(url)
    from core.history.sqlite import SqliteHistory

    path = default_sqlite_path(settings) if url is None else url[len("sqlite:///"):]
    return SqliteHistory(path)
