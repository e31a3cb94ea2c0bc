"""The API's telemetry: a span per ingest request (a child of the caller's `traceparent`), the ingest
counters, the queue-wide gauges read from Redis counters when scraped, and GET /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.clock import now_ms
from core.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from core.settings import Settings
from core.store import Store
from core.store.monitoring import EndpointLoad
from core.telemetry import (
    PROMETHEUS_TEXT,
    ROOT_CONTEXT,
    Span,
    SpanKind,
    SpanScope,
    Tally,
    Telemetry,
    observe_gauge,
    parent_context,
)
from service.auth import READING
from service.context import context
from service.problems import Problem

log = logging.getLogger(__name__)

# Endpoints with the largest backlogs get per-endpoint gauges, besides those HOOKPUMP_METRICS_ENDPOINTS names.
TOP_BACKLOGS = 10
# How often the queue gauges are read from Redis when metrics are pushed (OTLP) rather than scraped.
PUSHED_REFRESH_SECONDS = 15.0
QUEUE_READ_TIMEOUT_SECONDS = 3.0

Reading = Iterable[tuple[float, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue as the Redis counters told it at the last scrape (core/store/monitoring.py)."""

    counts: dict[str, int]
    oldest_pending_age: float | None
    endpoints_ready: int
    pump_lag: float | None
    pump_last_run_age: float | None
    workers_alive: int
    endpoints: dict[str, EndpointLoad] = field(default_factory=dict)
    read_at_ms: int = 0
    outbox_length: int = 0  # history records not yet committed to the history store
    outbox_oldest_age: float | None = None


class ApiTelemetry:
    def __init__(self, telemetry: Telemetry, settings: Settings) -> None:
        self.telemetry = telemetry
        self.tracer = telemetry.tracer  # None: tracing is off and ingest makes no span at all
        self._settings = settings
        self._queue: QueueSnapshot | None = None
        meter = telemetry.meter
        self.accepted = Tally(meter, "hookpump.messages.accepted", unit="{message}",
                              description="Messages accepted by ingest (idempotent replays not counted)")  # fmt: skip
        self.created = Tally(meter, "hookpump.deliveries.created", unit="{delivery}",
                             description="Deliveries created by ingest: one per message and endpoint")  # fmt: skip
        gauges: list[tuple[str, str, str]] = [
            ("hookpump.queue.deliveries", "{delivery}", "Stored deliveries by status"),
            ("hookpump.queue.backlog", "{delivery}", "Deliveries waiting to be sent (pending and retrying)"),
            ("hookpump.queue.in_flight", "{delivery}", "Deliveries claimed by a worker and not yet reported"),
            ("hookpump.queue.oldest_pending_age", "s", "How long the longest-waiting due delivery has waited"),
            ("hookpump.queue.endpoints_ready", "{endpoint}", "Endpoints that may send now"),
            ("hookpump.queue.pump_lag", "s", "How late the last reporting pump window started after its tick"),
            ("hookpump.queue.pump_last_run_age", "s", "Time since any worker's pump last reported from a run"),
            ("hookpump.queue.workers_alive", "{worker}", "Workers that reported within three pump intervals"),
            ("hookpump.endpoint.backlog", "{delivery}", "Waiting deliveries of the largest and the marked endpoints"),
            ("hookpump.endpoint.in_flight", "{delivery}", "In-flight deliveries of the same endpoints"),
            ("hookpump.endpoint.effective_rate_per_minute", "{request}", "The adaptive pace of the same endpoints now"),
            ("hookpump.endpoint.last_failed_rate_per_minute", "{request}",
             "The pace at the same endpoints' last congestion event (429/503 while the receiver took some)"),
            ("hookpump.endpoint.pace_state", "1",
             "1 for the state the same endpoints' pace is in: steady, probing, backing_off, retry_after, paused, "
             "disabled"),
            ("hookpump.history.outbox_length", "{record}", "History records in the outbox, not yet in the database"),
            ("hookpump.history.outbox_oldest_age", "s", "Age of the oldest history record not yet in the database"),
        ]
        for name, unit, description in gauges:
            observe_gauge(meter, name, self._reader(name), unit=unit, description=description)

    def start_ingest(self, request: Request, route: str) -> Span:
        """The ingest request's span (call only when `tracer` is set): a child of the caller's trace."""
        assert self.tracer is not None
        parent = parent_context(request.headers.get("traceparent")) or ROOT_CONTEXT
        attributes = {"http.request.method": "POST", "http.route": route}
        return self.tracer.start_span(route, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    def prometheus_text(self) -> bytes:
        return self.telemetry.prometheus_text()

    async def refresh_queue(self, store: Store) -> None:
        """Read the queue gauges from Redis; if Redis is unreachable they are left out (not stale)."""
        try:
            # Bounded: the store retries for ~30 s across a Redis restart, longer than a scrape may take.
            async with asyncio.timeout(QUEUE_READ_TIMEOUT_SECONDS):
                overview = await store.monitoring.queue_overview(
                    pump_interval=self._settings.pump_interval, top=TOP_BACKLOGS
                )
                largest = [row["endpoint_id"] for row in overview["largest_backlogs"]]
                eids = list(dict.fromkeys([*self._settings.metrics_endpoints, *largest]))
                loads = await store.monitoring.endpoint_loads(eids) if eids else {}
                outbox = await store.outbox.backlog()
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("queue gauges left out of the metrics: %s", exc or "Redis did not answer in time")
            self._queue = None
            return
        pump = overview["pump"]
        self._queue = QueueSnapshot(
            counts=overview["counts"],
            oldest_pending_age=overview["oldest_pending_age_seconds"],
            endpoints_ready=overview["endpoints_ready"],
            pump_lag=None if pump["lag_ms"] is None else pump["lag_ms"] / 1000,
            pump_last_run_age=pump["seconds_since_last_run"],
            workers_alive=len(overview["workers"]),
            endpoints=loads,
            read_at_ms=now_ms(),
            outbox_length=outbox.length,
            outbox_oldest_age=outbox.oldest_age_seconds,
        )

    @contextlib.asynccontextmanager
    async def refreshing(self, store: Store) -> AsyncIterator[None]:
        """While metrics are pushed (OTLP), keep the queue gauges fresh without waiting for a scrape."""
        if not self.telemetry.pushes_metrics:
            yield
            return

        async def refresh_forever() -> None:
            while True:
                await self.refresh_queue(store)
                await asyncio.sleep(PUSHED_REFRESH_SECONDS)

        task = asyncio.create_task(refresh_forever(), name="hookpump-queue-gauges")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _reader(self, name: str) -> Callable[[], Reading]:
        return lambda: self._read(name)

    def _read(self, name: str) -> Reading:
        queue = self._queue
        if queue is None:
            return []
        counts = queue.counts
        if name == "hookpump.queue.deliveries":
            return [(n, {"status": status}) for status, n in counts.items()]
        if name == "hookpump.queue.backlog":
            return [(counts.get("pending", 0) + counts.get("retrying", 0), {})]
        if name == "hookpump.queue.in_flight":
            return [(counts.get("delivering", 0), {})]
        if name.startswith("hookpump.endpoint."):
            return _endpoint_readings(name, queue)
        value = {
            "hookpump.queue.oldest_pending_age": queue.oldest_pending_age,
            "hookpump.queue.endpoints_ready": queue.endpoints_ready,
            "hookpump.queue.pump_lag": queue.pump_lag,
            "hookpump.queue.pump_last_run_age": queue.pump_last_run_age,
            "hookpump.queue.workers_alive": queue.workers_alive,
            "hookpump.history.outbox_length": queue.outbox_length,
            "hookpump.history.outbox_oldest_age": queue.outbox_oldest_age,
        }[name]
        return [] if value is None else [(value, {})]


def _endpoint_readings(name: str, queue: QueueSnapshot) -> Reading:
    readings: list[tuple[float, dict[str, str]]] = []
    for eid, load in queue.endpoints.items():
        labels = {"endpoint_id": eid}
        if name == "hookpump.endpoint.backlog":
            readings.append((load.backlog, labels))
        elif name == "hookpump.endpoint.in_flight":
            readings.append((load.in_flight, labels))
        elif name == "hookpump.endpoint.effective_rate_per_minute":
            readings.append((load.pace.effective_per_minute, labels))
        elif name == "hookpump.endpoint.last_failed_rate_per_minute" and load.pace.last_failed_per_minute is not None:
            readings.append((load.pace.last_failed_per_minute, labels))
        elif name == "hookpump.endpoint.pace_state":
            readings.append((1, {**labels, "state": load.pace.state(queue.read_at_ms).value}))
    return readings


class IngestScope(SpanScope):
    """The ingest span's scope: records the answer's status; only a 5xx marks the span failed (a
    refused request is the caller's error, not ours)."""

    def finish(self, span: Span, exc: BaseException | None) -> None:
        status = 202 if exc is None else status_of(exc)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            super().finish(span, exc)


def status_of(exc: BaseException) -> int:
    """The status the problem handlers (service/problems.py) answer `exc` with."""
    if isinstance(exc, Problem):
        return exc.status
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    return 503 if isinstance(exc, StoreUnavailable) else 500


async def metrics(request: Request) -> Response:
    """GET /metrics: this process's metrics and the queue gauges, in Prometheus text format."""
    ctx = context(request)
    if not ctx.settings.metrics_open:
        await ctx.auth.require(request, READING)
    await ctx.telemetry.refresh_queue(ctx.store)
    return Response(ctx.telemetry.prometheus_text(), media_type=PROMETHEUS_TEXT)


def worker_metrics_app(telemetry: Telemetry) -> Starlette:
    """What `hookpump worker` serves on HOOKPUMP_WORKER_METRICS_PORT: its own metrics at GET /metrics,
    without a key (the worker has no API keys to check): bind it to a private address."""

    async def worker_metrics(request: Request) -> Response:
        return Response(telemetry.prometheus_text(), media_type=PROMETHEUS_TEXT)

    return Starlette(routes=[Route("/metrics", worker_metrics, methods=["GET"])])
