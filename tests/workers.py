"""Real `hookpump worker` processes for crash, shutdown and multi-worker tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

from core.settings import Settings

# The environment a test worker runs with: the test settings, as HOOKPUMP_* variables.
_FIELDS = ("pump_interval", "allow_private_targets", "connect_timeout", "request_timeout", "lease_seconds",
           "retry_base", "retry_cap", "backoff_base", "backoff_cap", "log_format", "worker_concurrency",
           "worker_metrics_port", "database_url", "arq_redis_url")


def worker_env(settings: Settings, worker_id: str, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKPUMP_")}
    assert settings.redis_url is not None
    env["HOOKPUMP_REDIS_URL"] = settings.redis_url
    env["HOOKPUMP_WORKER_ID"] = worker_id
    for field in _FIELDS:
        value = overrides.get(field, getattr(settings, field))
        if value is None:  # unset: the default applies, as it would for a user
            continue
        env[f"HOOKPUMP_{field.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def start_worker(settings: Settings, worker_id: str, log: IO[bytes], **overrides: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hookpump", "worker"], env=worker_env(settings, worker_id, **overrides),
        stdout=log, stderr=subprocess.STDOUT,
    )


@asynccontextmanager
async def worker_process(
    settings: Settings, worker_id: str, **overrides: object
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker subprocess; its log goes to a temporary file, printed if the test fails.

    Waits happen in a thread: the receivers under test share this event loop and must keep answering.
    """
    log = tempfile.TemporaryFile()
    process = start_worker(settings, worker_id, log, **overrides)
    try:
        yield process
    except BaseException:
        log.seek(0)
        print(f"--- log of worker {worker_id} ---\n" + log.read().decode(errors="replace")[-5000:])
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        log.close()
