"""A real `hookpump dev` process for command-line tests, and a way to run `hookpump` commands
against it as a user would (a subprocess that finds the API and its key through HOOKPUMP_URL and
the dev data directory)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings
from core.store import create_store
from tests.conftest import RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
# Short windows so retries, pauses and pacing show within a test's patience.
DEV_SETTINGS = {
    "HOOKPUMP_PUMP_INTERVAL": "1",
    "HOOKPUMP_RETRY_BASE": "0.3",
    "HOOKPUMP_RETRY_CAP": "1",
    "HOOKPUMP_RETRY_HORIZON": "120",
    "HOOKPUMP_BACKOFF_BASE": "0.3",
    "HOOKPUMP_BACKOFF_CAP": "2",
    "HOOKPUMP_REQUEST_TIMEOUT": "3",
    "HOOKPUMP_LEASE_SECONDS": "6",
}


def empty_database(redis_server: RedisServer, number: int) -> str:
    """The URL of database `number` of the session's redis-server, emptied (a test's own, so that
    leftovers of another run cannot be mistaken for this one's)."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{number}"

    async def flush() -> None:
        store = await create_store(Settings(redis_url=url))
        try:
            await store.flush_all_for_tests()
        finally:
            await store.close()

    asyncio.run(flush())
    return url


def clean_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HOOKPUMP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # `hookpump` itself (the console script of this venv), as a user's shell would find it.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("COLUMNS", None)
    return env


@dataclass
class DevServer:
    url: str
    data_dir: Path
    log_path: Path

    @property
    def key(self) -> str:
        return (self.data_dir / "admin-key").read_text().strip()

    def cli_env(self, **variables: str) -> dict[str, str]:
        """What a user's shell beside `hookpump dev` has: the URL, and the data dir holding its key."""
        env = clean_env()
        env.update({"HOOKPUMP_URL": self.url, "HOOKPUMP_DATA_DIR": str(self.data_dir)})
        env.update(variables)
        return env

    def hookpump(
        self, *args: str, input: str | None = None, timeout: float = 60, **variables: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookpump", *args], env=self.cli_env(**variables), capture_output=True,
            text=True, timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL,
        )  # fmt: skip

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def dev_server(redis_url: str, **variables: str) -> Iterator[DevServer]:
    """`hookpump dev` on a free port against `redis_url`, with its data dir in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="hookpump-cli-") as directory:
        env = clean_env()
        env.update(DEV_SETTINGS)
        env.update({"HOOKPUMP_REDIS_URL": redis_url, "HOOKPUMP_DATA_DIR": str(Path(directory) / "data")})
        env.update(variables)
        log_path = Path(directory) / "dev.log"
        # A free port picked here can be taken by another process's outgoing connection before `hookpump
        # dev` binds it: then it says it could not listen, and gets a fresh port (up to three times).
        for attempt in range(3):
            port = free_port()
            env["HOOKPUMP_PORT"] = str(port)
            with log_path.open("wb") as log:
                process = subprocess.Popen([sys.executable, "-m", "hookpump", "dev"], env=env, stdout=log,
                                           stderr=log)
            server = DevServer(f"http://127.0.0.1:{port}", Path(directory) / "data", log_path)
            try:
                wait_until_ready(server, process)
                break
            except RuntimeError:
                stop_process(process)
                if attempt == 2 or "could not listen" not in server.log_tail():
                    print("--- hookpump dev log ---\n" + server.log_tail())
                    raise
        try:
            yield server
        except BaseException:
            print("--- hookpump dev log ---\n" + server.log_tail())
            raise
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited within 20 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_ready(server: DevServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hookpump dev exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("hookpump dev did not become ready within 30 s")


class Listening:
    """A running `hookpump listen --json`; `received` fills as deliveries arrive (read in a thread)."""

    def __init__(self, server: DevServer, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hookpump", "listen", "--port", str(self.port), "--json", *options],
            env=server.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        banner = self.process.stderr.readline()
        assert "listening on" in banner, banner + self.process.stderr.read()
        self.received: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.received.append(json.loads(line))

    def wait_for(self, count: int, timeout: float = 30, accepted_only: bool = False) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.received if not accepted_only or r["status"] < 300]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"the listener got {len(self.received)} deliveries, not {count}: {self.received}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.communicate(timeout=10)  # drains and closes the pipes
        self.reader.join(5)

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
