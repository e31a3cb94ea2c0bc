"""The Starlette application: the route table, the lifespan that opens and closes the store and the job
queue, and the problem+json exception handlers. `create_app(settings)` is the only entry point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from core.history import create_history_store, open_history_store
from core.history.log import DeliveryLog
from core.settings import Settings
from core.store import create_store
from core.telemetry import Telemetry, create_telemetry
from scheduler.job_queue import JobQueue
from service import api_keys, deliveries, endpoints, health, messages, monitoring, operations, problems, validation
from service.auth import Authenticator
from service.console import create_console
from service.context import Context
from service.guessing import GuessLimiter
from service.telemetry import ApiTelemetry, metrics

Handler = Callable[[Request], Awaitable[Response]]

# Handlers that read (and check) their own query parameters; every other /v1 route takes none.
QUERY_HANDLERS: frozenset[Handler] = frozenset({
    endpoints.list_endpoints,
    api_keys.list_api_keys,
    deliveries.list_deliveries,
    deliveries.list_endpoint_attempts,
    monitoring.endpoint_timeline,
})


def resource(path: str, handlers: dict[str, Handler]) -> Route:
    """One Route per path, whatever its methods: a 405 then lists every method the path supports
    (with one Route per method, Starlette's 405 would name only the first route's methods)."""
    table = dict(handlers)
    if "GET" in table:
        table["HEAD"] = table["GET"]

    async def dispatch(request: Request) -> Response:
        handler = table[request.method]
        if request.scope["query_string"] and handler not in QUERY_HANDLERS:
            validation.query_names(request.query_params, ())
        return await handler(request)

    return Route(path, dispatch, methods=list(handlers))


def routes(console: Starlette) -> list[Route | Mount]:
    # Starlette tries routes in order; the ingest route comes first because it is the busiest.
    return [
        resource("/v1/messages", {"POST": messages.send_message}),
        resource("/v1/messages/batch", {"POST": messages.send_batch}),
        resource("/v1/messages/{id}", {"GET": messages.get_message}),
        resource("/v1/endpoints", {"GET": endpoints.list_endpoints, "POST": endpoints.create_endpoint}),
        resource("/v1/endpoints/{id}", {
            "GET": endpoints.get_endpoint,
            "PATCH": endpoints.update_endpoint,
            "DELETE": endpoints.delete_endpoint,
        }),
        resource("/v1/endpoints/{id}/secret/rotate", {"POST": endpoints.rotate_secret}),
        resource("/v1/endpoints/{id}/attempts", {"GET": deliveries.list_endpoint_attempts}),
        resource("/v1/endpoints/{id}/stats", {"GET": monitoring.endpoint_stats}),
        resource("/v1/endpoints/{id}/timeline", {"GET": monitoring.endpoint_timeline}),
        resource("/v1/endpoints/{id}/pause", {"POST": operations.pause_endpoint}),
        resource("/v1/endpoints/{id}/resume", {"POST": operations.resume_endpoint}),
        resource("/v1/deliveries", {"GET": deliveries.list_deliveries}),
        # Before /v1/deliveries/{id}, which would otherwise take "retry" for a delivery id.
        resource("/v1/deliveries/retry", {"POST": operations.start_bulk_retry}),
        resource("/v1/deliveries/retry/{id}", {"GET": operations.get_bulk_retry}),
        resource("/v1/deliveries/{id}", {"GET": deliveries.get_delivery}),
        resource("/v1/deliveries/{id}/retry", {"POST": operations.retry_delivery}),
        resource("/v1/deliveries/{id}/cancel", {"POST": operations.cancel_delivery}),
        resource("/v1/queue", {"GET": monitoring.queue_overview}),
        resource("/v1/api-keys", {"GET": api_keys.list_api_keys, "POST": api_keys.create_api_key}),
        # Before /v1/api-keys/{id}, which would otherwise take "me" for a key id.
        resource("/v1/api-keys/me", {"GET": api_keys.current_api_key}),
        resource("/v1/api-keys/{id}", {"DELETE": api_keys.delete_api_key}),
        # Unauthenticated and lenient: probes and doc tools may add query parameters of their own.
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/openapi.yaml", health.openapi, methods=["GET"]),
        # Scrapers may add query parameters too; the read scope, or none with HOOKPUMP_METRICS_OPEN.
        Route("/metrics", metrics, methods=["GET"]),
        # The operator console (service/console/): HTML pages over the same operations.
        Route("/ui", _to_console, methods=["GET"]),
        Mount("/ui", app=console),
    ]


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=308)


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> Starlette:
    """`telemetry` is the process's, shut down by its owner; without one the app makes its own (metrics
    for /metrics, tracing as the OTEL_* variables say) and shuts it down with its lifespan."""
    process_telemetry = telemetry or create_telemetry(settings, "hookpump-api", prometheus=True)
    api_telemetry = ApiTelemetry(process_telemetry, settings)
    console = create_console()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await create_store(settings)
        history = create_history_store(settings)
        try:
            await open_history_store(history, settings)
            jobs = await JobQueue.connect(settings)
        except BaseException:
            await history.close()
            await store.close()
            raise
        auth = Authenticator(settings.api_key, store.api_keys, limiter=GuessLimiter(store.auth_failures))
        app.state.context = console.state.context = Context(
            settings, store, auth, jobs, api_telemetry, history, DeliveryLog(store, history),
        )
        try:
            async with api_telemetry.refreshing(store):
                yield
        finally:
            await jobs.close()
            await history.close()
            await store.close()
            if telemetry is None:
                process_telemetry.shutdown()

    app = Starlette(routes=routes(console), exception_handlers=problems.exception_handlers(), lifespan=lifespan)
    # An API has one spelling per route: "/v1/endpoints/" is a 404, not a redirect.
    app.router.redirect_slashes = False
    return app
