"""Rendering: the one Jinja2 environment (autoescape on for every template), the headers every console
answer carries (a strict Content-Security-Policy among them), and error pages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from service.console import words
from service.console.words import absolute, relative
from service.problems import Problem

TEMPLATES = Path(__file__).resolve().parent / "templates"
# No inline script or style anywhere: scripts and styles come from /ui/static only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, auto_reload=False)


def short_id(ident: str) -> str:
    """'dlv_…7bq3g0_1' for 'dlv_01m9165yymdf600rw85g7bq3g0_1': the prefix, and the random tail that tells
    ids apart (a ULID's first characters are its time, alike for ids made together)."""
    prefix, _, rest = ident.partition("_")
    body, _, suffix = rest.partition("_")
    if len(body) <= 8:
        return ident
    return f"{prefix}_…{body[-6:]}" + (f"_{suffix}" if suffix else "")


def clock(value: str | None, with_relative: bool = True) -> Markup:
    """A time in a table cell, kept to one line: '13:27:04 (3 min ago)', with the full UTC time in its
    title and datetime; the date too when it is not today's (UTC)."""
    if not value:
        return Markup('<span class="none">-</span>')
    today = time.strftime("%Y-%m-%d", time.gmtime())
    shown = value[11:19] if value[:10] == today else value[:10] + " " + value[11:16]
    title = f"{absolute(value)} ({relative(value)})"
    html = Markup('<time datetime="{0}" title="{1}">{2}</time>').format(value, title, shown)
    return html + Markup(' <span class="rel">({0})</span>').format(relative(value)) if with_relative else html


def moment(value: str | None) -> Markup:
    """A time as `<time>` in UTC with its relative text (Crontrol's style); a filter rather than a macro,
    since a page of deliveries shows two per row."""
    if not value:
        return Markup('<span class="none">-</span>')
    return Markup('<time datetime="{0}" title="{0}">{1}</time> <span class="rel">({2})</span>').format(
        value, absolute(value), relative(value))


_env.filters["moment"] = moment
_env.filters["clock"] = clock
_env.filters["short_id"] = short_id
_env.filters["absolute"] = absolute
_env.filters["relative"] = relative
_env.filters["span"] = words.span
_env.filters["utc_time"] = words.utc_time
_env.filters["pause_text"] = words.pause_text
_env.filters["why_paused"] = words.why_paused
_env.filters["endpoint_state"] = words.endpoint_state
_env.filters["pace_state"] = words.pace_state
_env.filters["pace_text"] = words.pace_text
_env.filters["sentence"] = words.sentence
_env.filters["drain_text"] = words.drain_text
_env.filters["flow_text"] = words.flow_text


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every answer under /ui, pages, redirects and static files alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


ERROR_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict", 413: "Too large",
                415: "Unsupported form", 422: "Invalid input", 429: "Too many attempts", 503: "Unavailable"}


def error_page(request: Request, status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    response = render(request, "error.html", status, title=ERROR_TITLES.get(status, "Error"), detail=detail,
                      status=status)
    response.headers.update(headers or {})
    return response


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return error_page(request, exc.status, exc.detail, exc.headers)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return error_page(request, 404, f"There is no {exc.kind} with id {exc.ident!r}.")
    if isinstance(exc, InvalidInput):
        return error_page(request, 422, f"{exc.field}: {exc.problem}.")
    assert isinstance(exc, Conflict)
    return error_page(request, 409, str(exc))


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    return error_page(request, 503, "The data store is unreachable right now; reload in a few seconds.",
                      {"Retry-After": "5"})


def exception_handlers() -> dict[Any, Any]:
    """Domain refusals as HTML pages; anything else falls through to the API's problem+json handlers."""
    return {Problem: on_problem, NotFound: on_domain_error, InvalidInput: on_domain_error,
            Conflict: on_domain_error, StoreUnavailable: on_store_unavailable}
