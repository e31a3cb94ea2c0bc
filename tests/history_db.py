"""A private PostgreSQL database for the history tests, and the `history` fixture over both backends.

PostgreSQL comes from HOOKPUMP_TEST_DATABASE_URL when set; else a database with a unique name is
created on the server at 127.0.0.1:5432 (user postgres) and dropped afterwards; else a throwaway
cluster is started with initdb/pg_ctl from PATH. With none of these the PostgreSQL half is skipped
with a loud reason locally, and fails under CI=true.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.errors import HistoryUnavailable
from core.history import HistoryStore
from core.history.postgres import PostgresHistory
from core.history.postgres import admin as postgres_admin
from core.history.sqlite import SqliteHistory
from core.history.writer import HistoryWriter
from core.settings import Settings
from core.store import Store
from tests.conftest import free_port

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")


def _sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from sync code, even when a loop is running (async fixtures)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL history tests cannot run: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: PostgreSQL is required)")
    pytest.skip("!!! " + message + " !!!")


async def _try(url: str) -> bool:
    try:
        await postgres_admin.execute(url, "SELECT 1")
    except HistoryUnavailable:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    given = os.environ.get("HOOKPUMP_TEST_DATABASE_URL")
    if given:
        yield given
        return
    name = f"hookpump_test_{uuid.uuid4().hex[:12]}"
    if _sync(_try(LOCAL_SERVER)):
        _sync(_admin(LOCAL_SERVER, f'CREATE DATABASE "{name}"'))
        try:
            yield LOCAL_SERVER.rsplit("/", 1)[0] + "/" + name
        finally:
            _sync(_admin(LOCAL_SERVER, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        if os.geteuid() == 0:
            _unavailable("nothing answers on 127.0.0.1:5432 and initdb refuses to run as root; "
                         "set HOOKPUMP_TEST_DATABASE_URL")
        yield from _own_cluster()
        return
    _unavailable("no HOOKPUMP_TEST_DATABASE_URL, nothing on 127.0.0.1:5432, no initdb/pg_ctl on PATH")


async def _admin(url: str, statement: str) -> None:
    await postgres_admin.execute(url, statement)


def _own_cluster() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="hookpump-test-pg-") as directory:
        data, port = Path(directory) / "data", free_port()
        subprocess.run(["initdb", "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["pg_ctl", "-D", str(data), "-w", "-l", str(Path(directory) / "log"), "-o",
                        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start"], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"], check=False,
                           stdout=subprocess.DEVNULL)


async def endpoint_attempt_ids(history: HistoryStore, eid: str, page_size: int = 200) -> list[str]:
    """Every attempt id in an endpoint's attempt log, following the cursor page by page."""
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = await history.endpoint_attempts(eid, limit=page_size, cursor=cursor)
        ids += [a["id"] for a in page]
        if cursor is None:
            return ids


async def reset_postgres(url: str) -> None:
    """An empty schema: every test starts before migration 0001."""
    await _admin(url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgres"])
def history_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def history_url(history_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A HOOKPUMP_DATABASE_URL for an empty database of the test's backend."""
    if history_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("postgres_url")
    await reset_postgres(url)
    return url


def open_history(url: str) -> HistoryStore:
    if url.startswith("sqlite:"):
        return SqliteHistory(url[len("sqlite:///"):])
    return PostgresHistory(url)


@pytest.fixture
async def history(history_url: str) -> AsyncIterator[HistoryStore]:
    store = open_history(history_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def caught_up(store: Store, settings: Settings, timeout: float = 15.0) -> None:
    """Wait until the history store holds everything the scripts have appended to the outbox: this
    test drains it itself (no worker may be running) and waits for any running worker's writer."""
    assert settings.database_url is not None
    history = open_history(settings.database_url)
    await history.open()
    try:
        writer = HistoryWriter(store.outbox, history, consumer="test-catch-up")
        await store.outbox.ensure_group()
        deadline = time.monotonic() + timeout
        while (await store.outbox.backlog()).length:
            assert time.monotonic() < deadline, "the outbox did not drain"
            await writer.drain_once(block_ms=20)
    finally:
        await history.close()
