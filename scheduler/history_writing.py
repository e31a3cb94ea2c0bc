"""Where a worker's history writer runs: in a process of its own (`hookpump worker`, `hookpump dev`)
or as a task on the worker's event loop (in-process workers of tests and benchmarks).

Why a process: the writer (reading the outbox stream, parsing it, the database driver, forgetting
finished deliveries) cost about 0.37 s of CPU per 1,000 deliveries inside the worker's process, which
spent 1.0 s per 1,000 in all: on the worker's one core, that was a third of what it could send
(`python -m bench.throughput --deliveries 20000 --concurrency 128`, with the writer switched off
0.64 s, 30 Nov 2026). In its own process the writer uses another core and the event loop that
paces and sends never waits behind it.

The child writes under the worker's id, so a restarted writer first re-reads its own unacknowledged
entries; a dead child is started again; a child whose worker died (SIGKILL) notices within a second
and exits, and another writer takes over its entries after the outbox's claim time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess
from typing import Protocol

import backoff

from core.history import HistoryStore, create_history_store, open_history_store
from core.history.writer import HistoryWriter
from core.logs import configure_logging
from core.settings import Settings
from core.store import Store, create_store

log = logging.getLogger(__name__)

# How long a stopping writer may go on draining what the worker's last results appended.
DRAIN_GRACE_SECONDS = 3.0


class WriterHandle(Protocol):
    async def stop(self) -> None: ...


class InlineHistoryWriter:
    """The writer as a task on this event loop."""

    def __init__(self, store: Store, history: HistoryStore, settings: Settings) -> None:
        self._writer = HistoryWriter(store.outbox, history, consumer=settings.worker_id)
        self._task = asyncio.create_task(self._writer.run(), name="hookpump-history-writer")

    async def stop(self) -> None:
        await stop_writer(self._writer, self._task)


class HistoryWriterProcess:
    """The writer in a child process, started again if it dies, stopped after the worker's last
    results are in the outbox."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self._process: BaseProcess | None = None
        self._stopping = False
        self._watch = asyncio.create_task(self._keep_running(), name="hookpump-history-writer-process")

    async def _keep_running(self) -> None:
        delays = backoff.expo(base=2, factor=0.5, max_value=10.0)
        next(delays)
        while not self._stopping:
            process = self._context.Process(
                target=write_history_in_this_process, args=(self._settings, os.getpid()),
                name=f"hookpump-history-writer-{self._settings.worker_id}", daemon=True,
            )
            process.start()
            self._process = process
            await _exited(process)
            if self._stopping:
                return
            delay = float(next(delays))
            log.error("history writer process exited with %s; starting it again in %.1f s", process.exitcode, delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: it drains what is waiting (bounded), then exits
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, process.join, DRAIN_GRACE_SECONDS + 5)
            if process.is_alive():
                log.warning("history writer process did not stop in time; killed (the outbox keeps its records)")
                process.kill()
                await loop.run_in_executor(None, process.join, 5)
        self._watch.cancel()
        await asyncio.gather(self._watch, return_exceptions=True)


async def _exited(process: BaseProcess) -> None:
    """Wait for the child to end: its sentinel (a pipe) becomes readable then."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(process.sentinel, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(process.sentinel)


def write_history_in_this_process(settings: Settings, parent_pid: int) -> None:
    """The child's entry point."""
    configure_logging(settings)
    # Ctrl-C reaches the whole process group: the worker decides when its writer stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_write_history(settings, parent_pid))


async def _write_history(settings: Settings, parent_pid: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    store = await create_store(settings)
    history = create_history_store(settings)
    await open_history_store(history, settings)
    writer = HistoryWriter(store.outbox, history, consumer=settings.worker_id)
    task = asyncio.create_task(writer.run(), name="hookpump-history-writer")
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        await stop_writer(writer, task)
        await history.close()
        await store.close()


async def stop_writer(writer: HistoryWriter, writing: asyncio.Task[None],
                      grace_seconds: float = DRAIN_GRACE_SECONDS) -> None:
    """Let the writer settle what the last results appended (bounded), then stop it. Anything left
    stays in the outbox for the next writer."""
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    deadline = asyncio.get_running_loop().time() + grace_seconds
    with contextlib.suppress(Exception):
        while asyncio.get_running_loop().time() < deadline:
            async with asyncio.timeout(max(0.1, deadline - asyncio.get_running_loop().time())):
                if await writer.drain_once(block_ms=50) == 0:
                    break
