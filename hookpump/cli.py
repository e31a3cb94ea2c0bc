"""The server side of the `hookpump` command: `dev`, `serve` and `worker`.

Each long-running command runs its parts in one uvloop event loop. The first SIGINT/SIGTERM lets them
finish what they are doing; a second cancels them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Generator, Mapping, Sequence
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from core.errors import ConfigError, HookpumpError, StoreUnavailable
from core.logs import configure_logging
from core.settings import Settings
from core.telemetry import Telemetry, create_telemetry
from hookpump import dev
from hookpump.embedded_redis import EmbeddedRedis

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CONFIG = 2
# How long a server command waits at start-up for HOOKPUMP_REDIS_URL to answer a PING.
REDIS_CHECK_SECONDS = 5.0


class ApiServer(uvicorn.Server):
    """uvicorn without signal handlers of its own: `Shutdown` decides when the API stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would take SIGINT/SIGTERM for itself and re-raise them once it stops, so the
        # worker sharing this loop would hear of the signal only after the API had shut down.
        yield


class Shutdown:
    """Signal handling shared by every command: a first signal asks, a second insists."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.forced = False
        self.servers: list[uvicorn.Server] = []
        # Cancelled by a second signal. The API is not among them: `force_exit` is uvicorn's own
        # way of stopping at once, and leaves it to close its connections.
        self.tasks: list[asyncio.Task[None]] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.on_signal, signum)

    def request(self) -> None:
        self.stop.set()
        for server in self.servers:
            server.should_exit = True

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            logger.info("%s: finishing in-flight work (send it again to exit at once)", name)
            self.request()
            return
        logger.warning("%s again: exiting at once", name)
        self.forced = True
        for server in self.servers:
            server.force_exit = True
        for task in self.tasks:
            task.cancel()


def api_server(settings: Settings, telemetry: Telemetry) -> ApiServer:
    # Imported here so a configuration error is reported before the app's dependencies load.
    from service.app import create_app

    config = uvicorn.Config(
        create_app(settings, telemetry), host=settings.host, port=settings.port, loop="uvloop", http="httptools",
        lifespan="on", log_config=None, **uvicorn_options(settings),
    )  # fmt: skip
    return ApiServer(config)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What uvicorn believes of proxies: X-Forwarded-For/-Proto from HOOKPUMP_TRUSTED_PROXIES only (none
    unless set; uvicorn alone would trust loopback, or $FORWARDED_ALLOW_IPS)."""
    return {"proxy_headers": bool(settings.trusted_proxies), "forwarded_allow_ips": list(settings.trusted_proxies)}


def worker_metrics_server(settings: Settings, telemetry: Telemetry) -> ApiServer | None:
    """The worker's own /metrics on HOOKPUMP_WORKER_METRICS_PORT, if set, of HOOKPUMP_WORKER_METRICS_HOST
    (loopback by default: it answers without a key): its delivery metrics live in its process, not the
    API's."""
    if not settings.worker_metrics_port:
        return None
    from service.telemetry import worker_metrics_app

    config = uvicorn.Config(
        worker_metrics_app(telemetry), host=settings.worker_metrics_host, port=settings.worker_metrics_port,
        loop="uvloop", http="httptools", lifespan="off", log_config=None,
    )  # fmt: skip
    return ApiServer(config)


async def serve_api(server: uvicorn.Server, shutdown: Shutdown, what: str = "the API") -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn calls sys.exit(1) when it cannot bind its port
        raise HookpumpError(f"{what} could not listen on {server.config.host}:{server.config.port}") from exc
    if not server.started and not shutdown.stop.is_set():
        raise HookpumpError(f"{what} did not start (its start-up error is logged above)")


async def run_parts(
    shutdown: Shutdown,
    *,
    api: uvicorn.Server | None = None,
    worker: Coroutine[Any, Any, None] | None = None,
    metrics: uvicorn.Server | None = None,
) -> int:
    """Run the API, the worker and/or the worker's metrics server until a signal stops them or one of
    them ends; the exit status."""
    shutdown.install(asyncio.get_running_loop())
    tasks: list[asyncio.Task[None]] = []
    if api is not None:
        shutdown.servers.append(api)
        tasks.append(asyncio.create_task(serve_api(api, shutdown), name="api"))
    if metrics is not None:
        shutdown.servers.append(metrics)
        tasks.append(asyncio.create_task(serve_api(metrics, shutdown, "the worker's metrics server"), name="metrics"))
    if worker is not None:
        tasks.append(asyncio.create_task(worker, name="worker"))
        shutdown.tasks.append(tasks[-1])
    failed = False
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failed = not _ended_well(task, shutdown) or failed
        # One part ending ends them all: an API whose worker died would accept messages and never
        # deliver them.
        shutdown.request()
    return EXIT_FAILED if failed or shutdown.forced else 0


def _ended_well(task: asyncio.Task[None], shutdown: Shutdown) -> bool:
    if task.cancelled():
        return True  # only a second signal cancels, and `forced` already tells of it
    exc = task.exception()
    if isinstance(exc, HookpumpError):
        logger.error("%s: %s", task.get_name(), exc)
    elif exc is not None:
        logger.error("%s crashed", task.get_name(), exc_info=exc)
    elif not shutdown.stop.is_set():
        logger.error("%s stopped although no one asked it to", task.get_name())
    else:
        return True
    return False


def run(main: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def require_redis_url(settings: Settings, command: str) -> None:
    if settings.redis_url is None:
        raise ConfigError(
            "HOOKPUMP_REDIS_URL",
            f"not set; `hookpump {command}` needs a Redis (for example redis://localhost:6379/0), "
            "or use `hookpump dev`, which starts its own",
        )


async def check_durability(settings: Settings) -> None:
    """Refuse to start when HOOKPUMP_DURABILITY=strict and Redis does not fsync every write."""
    from core.store.durability import check_durability as check  # loads redis-py: only for server commands

    await check(settings)
def require_redis_answers(settings: Settings) -> None:
    """Fail at start-up, in one line, when HOOKPUMP_REDIS_URL names a Redis that does not answer.

    Once running, the parts ride out a Redis restart (the store retries for ~30 s); at start-up a
    wrong or stale URL would otherwise show as arq's retries, a lifespan traceback and a worker
    that waits for ever."""
    from core.store import create_store

    url = dev.redacted(settings.redis_url or "")

    async def ping() -> None:
        store = await create_store(settings)
        try:
            await asyncio.wait_for(store.ping(), REDIS_CHECK_SECONDS)  # the store's door translates errors
        finally:
            await store.close()

    try:
        asyncio.run(ping())
    except (StoreUnavailable, TimeoutError) as exc:
        raise HookpumpError(
            f"cannot reach Redis at {url} (HOOKPUMP_REDIS_URL): no answer within {REDIS_CHECK_SECONDS:g} s; "
            "start it or fix the URL (`hookpump dev` starts its own Redis when the variable is unset)"
        ) from exc
    except HookpumpError:
        raise
    except Exception as exc:  # an answer that is not Redis's, a refused password: say what came back
        raise HookpumpError(f"Redis at {url} (HOOKPUMP_REDIS_URL) refused hookpump: {exc}") from exc


def command_serve(settings: Settings) -> int:
    require_redis_url(settings, "serve")
    configure_logging(settings)
    require_redis_answers(settings)
    telemetry = create_telemetry(settings, "hookpump-api", prometheus=True)

    async def main() -> int:
        await check_durability(settings)
        return await run_parts(Shutdown(), api=api_server(settings, telemetry))

    try:
        return run(main())
    finally:
        telemetry.shutdown()


def command_worker(settings: Settings) -> int:
    require_redis_url(settings, "worker")
    configure_logging(settings)
    require_redis_answers(settings)
    telemetry = create_telemetry(settings, "hookpump-worker", prometheus=bool(settings.worker_metrics_port))
    from scheduler.worker import run_worker

    async def main() -> int:
        await check_durability(settings)
        shutdown = Shutdown()
        return await run_parts(
            shutdown,
            worker=run_worker(settings, shutdown.stop, telemetry, writer_process=True),
            metrics=worker_metrics_server(settings, telemetry),
        )

    try:
        return run(main())
    finally:
        telemetry.shutdown()


def command_dev(environ: Mapping[str, str]) -> int:
    settings = dev.dev_settings(environ)
    configure_logging(settings)
    from scheduler.worker import run_worker

    # Whatever ends this block, the embedded Redis is stopped last, after the worker has finished
    # its in-flight deliveries.
    with EmbeddedRedis(durability=settings.durability) as embedded:
        if settings.redis_url is None:
            settings = settings.replace(redis_url=embedded.start(settings.data_dir))
        else:
            require_redis_answers(settings)
        if settings.api_key is None:
            settings = settings.replace(api_key=dev.load_or_create_admin_key(settings.data_dir))
        print(dev.banner(settings, embedded if embedded.url else None), flush=True)
        # One process: the API's /metrics serves the worker's metrics too.
        telemetry = create_telemetry(settings, "hookpump", prometheus=True)

        async def main() -> int:
            await check_durability(settings)
            shutdown = Shutdown()
            return await run_parts(
                shutdown, api=api_server(settings, telemetry),
                worker=run_worker(settings, shutdown.stop, telemetry, writer_process=True),
            )

        try:
            return run(main())
        finally:
            telemetry.shutdown()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Until an event loop takes over the signals, SIGTERM unwinds like Ctrl-C does, so the
    # `finally` that stops an embedded Redis still runs.
    raise SystemExit(128 + signum)


def run_server_command(command: str, environ: Mapping[str, str] | None = None) -> int:
    """Run `dev`, `serve` or `worker`; the exit status. A bad setting is a usage error (2) naming the
    variable; a Redis that does not answer is one line and exit 1."""
    env = os.environ if environ is None else environ
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if command == "dev":
            return command_dev(env)
        settings = Settings.from_env(env)
        if command == "serve":
            return command_serve(settings)
        return command_worker(settings)
    except ConfigError as exc:
        print(f"hookpump: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HookpumpError as exc:
        print(f"hookpump: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    """The `hookpump` command, for installs whose script still points here (hookpump.commands:main)."""
    from hookpump.commands import main as run_command_line

    return run_command_line(argv)
