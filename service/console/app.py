"""The console's route table, mounted at /ui by service.app.create_app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.console import actions, pages, render, session

STATIC = Path(__file__).resolve().parent / "static"
Handler = Callable[[Request], Awaitable[Response]]


def create_console() -> Starlette:
    """The console as a Starlette app; its owner sets `state.context` (service.context.Context)."""
    routes = [
        Route("/", pages.overview, methods=["GET"]),
        Route("/login", session.login, methods=["GET", "POST"]),
        Route("/logout", session.logout, methods=["POST"]),
        Route("/deliveries", pages.deliveries, methods=["GET"]),
        Route("/deliveries/retry", _by_method({"GET": pages.bulk_confirm, "POST": actions.bulk_retry}),
              methods=["GET", "POST"]),
        Route("/deliveries/{id}", pages.delivery, methods=["GET"]),
        Route("/deliveries/{id}/retry", actions.retry, methods=["POST"]),
        Route("/deliveries/{id}/cancel", actions.cancel, methods=["POST"]),
        Route("/bulk/{id}", pages.bulk, methods=["GET"]),
        Route("/endpoints", pages.endpoints, methods=["GET"]),
        Route("/endpoints/{id}", pages.endpoint, methods=["GET"]),
        Route("/endpoints/{id}/timeline.json", pages.endpoint_timeline, methods=["GET"]),
        Route("/endpoints/{id}/pause", actions.pause_endpoint, methods=["POST"]),
        Route("/endpoints/{id}/resume", actions.resume_endpoint, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {**render.exception_handlers(), session.SignInRequired: session.on_sign_in_required}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(render.SecurityHeaders)])
    app.router.redirect_slashes = False
    return app


def _by_method(table: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        return await table[request.method](request)

    return dispatch
