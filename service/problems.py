"""Every error answer of the API as application/problem+json (RFC 9457), and the one table mapping
exceptions (hookpump's and Starlette's) to statuses. redis-py's never get here: the store's door
(core/store/connection.py) translates them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from core.errors import (
    Conflict,
    ForbiddenTarget,
    HistoryUnavailable,
    HookpumpError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

TYPE_BASE = "https://hookpump.dev/problems/"
MEDIA_TYPE = "application/problem+json"
# How long a client should wait before retrying while Redis is unreachable.
RETRY_AFTER_SECONDS = "5"

# status -> (slug, title). The slug ends the problem's `type` URI.
KINDS: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Missing or unknown API key"),
    403: ("forbidden", "API key lacks the required scope"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("store-unavailable", "Service unavailable"),
}


class Problem(HookpumpError):
    """A request refused by the HTTP layer itself (auth, body framing, media type): its status and a
    detail sentence. Domain refusals are core.errors exceptions and are mapped below."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    default_slug, default_title = KINDS.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.detail, headers=exc.headers)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals: unknown route (404) and a method the route lacks (405)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = f"There is no route {request.url.path}; see /openapi.yaml for the API's routes."
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not supported on {request.url.path}; use one of: {allowed}."
    else:
        detail = str(exc.detail)
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def on_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotFound)
    return problem_response(404, f"There is no {exc.kind} with id {exc.ident!r}; check the id.")


async def on_invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    detail = f"Field {exc.field!r} is invalid: {exc.problem}."
    if isinstance(exc, ForbiddenTarget):
        return problem_response(422, detail, slug="forbidden-target", title="Endpoint URL not allowed",
                                errors=[{"field": exc.field, "message": exc.problem}])
    return problem_response(422, detail, errors=[{"field": exc.field, "message": exc.problem}])


async def on_conflict(request: Request, exc: Exception) -> Response:
    text = str(exc).rstrip(".")
    return problem_response(409, f"{text[:1].upper()}{text[1:]}.")


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    # If Redis went away mid-request the write may have happened: say how to retry safely.
    detail = ("The data store is unreachable right now. Retry shortly; send an Idempotency-Key so "
              "that a retried message is never stored twice.")
    return problem_response(503, detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


async def on_history_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("history store unavailable on %s %s: %s", request.method, request.url.path, exc)
    detail = ("The delivery log's database is unreachable right now; deliveries go on and their history will "
              "appear once it is back. Retry shortly.")
    return problem_response(503, detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


async def on_client_disconnect(request: Request, exc: Exception) -> Response:
    # Nobody will read this answer; it only has to keep the disconnect out of the error log.
    return problem_response(400, "The client disconnected before sending the whole body.")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware calls this and then re-raises, so the server logs the traceback too.
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "Something went wrong on our side; the error has been logged. "
                            "Retry, and report it if it persists.")


def exception_handlers() -> dict[Any, Any]:
    """For Starlette(exception_handlers=...): lookups walk each exception's MRO, most specific first."""
    return {
        Problem: on_problem,
        HTTPException: on_http_exception,
        NotFound: on_not_found,
        InvalidInput: on_invalid_input,
        Conflict: on_conflict,
        StoreUnavailable: on_store_unavailable,
        HistoryUnavailable: on_history_unavailable,
        ClientDisconnect: on_client_disconnect,
        Exception: on_unexpected,
    }
