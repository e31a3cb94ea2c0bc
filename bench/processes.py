"""Processes a benchmark needs: a private redis-server, a receiver, and facts about the machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from hookpump.embedded_redis import find_redis_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def start_redis(directory: Path, port: int, *, appendonly: bool = True) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory),
         "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
         "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--port", str(port), "--http", "httptools",
         "--loop", "uvloop", "--no-access-log", "--log-level", "warning"])
    wait_for_port(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
