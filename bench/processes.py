"""What every benchmark needs: private processes (redis-server, receivers, hookpump's API and worker),
facts about the machine, CPU accounting, and `Result`, the shape in which a benchmark reports a figure
beside its reference.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from core.durability import Durability, redis_server_arguments
from hookpump.embedded_redis import find_redis_server

PYTHON = sys.executable
T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop, the loop hookpump itself runs on."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


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


def start_redis(
    directory: Path, port: int, *, appendonly: bool = True, durability: Durability = Durability.FAST
) -> subprocess.Popen[bytes]:
    """A private redis-server; with `appendonly`, fsynced as hookpump's `durability` asks (fast:
    everysec, strict: always), in `directory` (which must be on a real disk for strict to cost)."""
    persistence = redis_server_arguments(durability) if appendonly else ["--appendonly", "no"]
    process = subprocess.Popen(
        [
            find_redis_server(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(directory),
            *persistence,
            "--maxmemory-policy",
            "noeviction",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process


def start_uvicorn(app: str, port: int) -> subprocess.Popen[bytes]:
    """One uvicorn process with the settings hookpump's API uses: uvloop + httptools, no access log."""
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    )
    wait_for_port(port)
    return process


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    return start_uvicorn("bench.receiver:app", port)


def hookpump_env(redis_url: str, **settings: str) -> dict[str, str]:
    """This environment without any HOOKPUMP_* variable, plus the given settings (field names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKPUMP_")}
    env.update(HOOKPUMP_REDIS_URL=redis_url, HOOKPUMP_LOG_LEVEL="WARNING")
    # The history store of a run: never the default file in the working directory.
    settings.setdefault("database_url", f"sqlite:///{tempfile.mkdtemp(prefix='hookpump-bench-history-')}/history.db")
    env.update({f"HOOKPUMP_{name.upper()}": value for name, value in settings.items()})
    return env


def start_hookpump(command: str, env: Mapping[str, str], port: int | None = None) -> subprocess.Popen[bytes]:
    """`python -m hookpump serve|worker`; waits for the API's port when one is given."""
    process = subprocess.Popen([PYTHON, "-m", "hookpump", command], env=dict(env))
    if port is not None:
        wait_for_port(port, timeout=20)
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


def machine_facts() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start {load}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (a prefork pool), in seconds."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: hookpump's value beside its reference's, measured in the same run."""

    figure: str
    hookpump: str
    reference: str
    ratio: str


@dataclass(slots=True)
class Result:
    title: str
    command: str  # how to run this benchmark alone
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long it took

    def markdown(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            f"`{self.command}`" + (f" ({self.seconds:.0f} s)" if self.seconds else ""),
            "",
            "| figure | hookpump | reference (same run) | ratio |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r.figure} | {r.hookpump} | {r.reference} | {r.ratio} |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def ratio(value: float, reference: float) -> str:
    """`value / reference`, as "2.50x"; "n/a" without a usable reference."""
    return f"{value / reference:.2f}x" if reference and not math.isnan(reference) else "n/a"


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty sample; NaN for an empty one."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
