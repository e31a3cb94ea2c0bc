"""A real `hookpump dev` process for command-line tests, and a way to run `hookpump` commands
against it as a user would (a subprocess that finds the API and its key through HOOKPUMP_URL and
the dev data directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
# Short windows so retries, pauses and pacing show within a test's patience.
DEV_SETTINGS = {
    "HOOKPUMP_PUMP_INTERVAL": "1",
    "HOOKPUMP_RETRY_BASE": "0.3",
    "HOOKPUMP_RETRY_CAP": "1",
    "HOOKPUMP_RETRY_HORIZON": "3",
    "HOOKPUMP_BACKOFF_BASE": "0.3",
    "HOOKPUMP_BACKOFF_CAP": "2",
    "HOOKPUMP_REQUEST_TIMEOUT": "3",
    "HOOKPUMP_LEASE_SECONDS": "6",
}


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
        port = free_port()
        env = clean_env()
        env.update(DEV_SETTINGS)
        env.update({"HOOKPUMP_REDIS_URL": redis_url, "HOOKPUMP_PORT": str(port),
                    "HOOKPUMP_DATA_DIR": str(Path(directory) / "data")})  # fmt: skip
        env.update(variables)
        log_path = Path(directory) / "dev.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "hookpump", "dev"], env=env, stdout=log, stderr=log)
        server = DevServer(f"http://127.0.0.1:{port}", Path(directory) / "data", log_path)
        try:
            wait_until_ready(server, process)
            yield server
        except BaseException:
            print("--- hookpump dev log ---\n" + server.log_tail())
            raise
        finally:
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
