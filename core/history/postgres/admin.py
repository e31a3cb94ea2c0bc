"""Plain SQL on a PostgreSQL server, outside the HistoryStore interface: what benchmarks and
operators' scripts run (create a scratch database, bulk-fill, ANALYZE, sizes). Beside the adapter
so that `asyncpg` keeps one door; driver errors become HistoryUnavailable here too."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from core.errors import HistoryUnavailable


@contextlib.asynccontextmanager
async def _connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    try:
        db = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise HistoryUnavailable(f"PostgreSQL unreachable: {exc}") from exc
    try:
        yield db
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise HistoryUnavailable(f"PostgreSQL failed: {exc}") from exc
    finally:
        await db.close()


async def execute(dsn: str, statement: str, *args: Any) -> str:
    """Run one statement (no statement timeout: a bulk fill may take minutes); returns its status tag."""
    async with _connected(dsn) as db:
        return str(await db.execute(statement, *args))


async def fetch(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with _connected(dsn) as db:
        return [tuple(row) for row in await db.fetch(query, *args)]


@contextlib.asynccontextmanager
async def scratch_database(server_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new database with a unique name on the server of `server_dsn`, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await execute(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield server_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
