"""The console's actions (POST forms): retry or cancel a delivery, retry all deliveries matching a
filter, pause or resume an endpoint. Each passes session.acting_viewer (same Origin, CSRF token, admin
key) and calls the same operation as the JSON route. With htmx the answer is the changed fragment;
without JavaScript it is a redirect back to the page (POST, redirect, GET)."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.clock import now_ms
from core.errors import Conflict, InvalidInput
from service import validation
from service.console.pages import HIDDEN_RESPONSE_HEADERS, bulk_body, delivery_state, endpoint_labels, listed
from service.console.render import render
from service.console.session import Form, Viewer, acting_viewer, field, safe_next
from service.context import context
from service.deliveries import FILTERS, delivery_detail
from service.operations import cancel_one, pause, resume, retry_one, start_bulk


async def retry(request: Request) -> Response:
    return await _delivery_action(request, "retry")


async def cancel(request: Request) -> Response:
    return await _delivery_action(request, "cancel")


async def _delivery_action(request: Request, what: str) -> Response:
    who, form = await acting_viewer(request)
    ctx = context(request)
    did = validation.path_id(request.path_params["id"], validation.DELIVERY_ID, "delivery")
    notice, status = None, 200
    try:
        if what == "retry":
            await retry_one(ctx, who.key, did)
            notice = f"Retry queued for {did}; it goes out at the endpoint's pace."
        else:
            await cancel_one(ctx, who.key, did)
            notice = f"Delivery {did} cancelled."
    except Conflict as exc:
        if not request.headers.get("hx-request"):
            raise
        notice, status = str(exc), 409
    if not request.headers.get("hx-request"):
        return RedirectResponse(safe_next(field(form, "next") or f"/ui/deliveries/{did}"), status_code=303)
    return await _fragment(request, who, form, did, notice, status)


async def _fragment(request: Request, who: Viewer, form: Form, did: str, notice: str | None, status: int) -> Response:
    if field(form, "view") == "row":
        detail = await delivery_detail(context(request), did)
        return render(request, "_delivery_row.html", status, viewer=who, d=detail["delivery"], notice=notice,
                      here=safe_next(field(form, "next")),
                      labels=await endpoint_labels(context(request), [detail["delivery"]["endpoint_id"]]))
    return render(request, "_delivery_state.html", status, viewer=who, **await delivery_state(context(request), did),
                  notice=notice, hidden_headers=HIDDEN_RESPONSE_HEADERS)


async def bulk_retry(request: Request) -> Response:
    who, form = await acting_viewer(request)
    filters = listed(_query(form), FILTERS)
    started = await start_bulk(context(request), who.key, bulk_body(filters))
    return RedirectResponse(f"/ui/bulk/{started['id']}", status_code=303)


async def pause_endpoint(request: Request) -> Response:
    who, form = await acting_viewer(request)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    minutes = field(form, "minutes")
    until_ms = None
    if minutes:
        if not minutes.isdigit() or not 1 <= int(minutes) <= 7 * 24 * 60:
            raise InvalidInput("minutes", "must be a whole number of minutes from 1 to 10080, or empty")
        until_ms = now_ms() + int(minutes) * 60_000
    await pause(context(request), who.key, eid, until_ms)
    return RedirectResponse(f"/ui/endpoints/{eid}", status_code=303)


async def resume_endpoint(request: Request) -> Response:
    who, _form = await acting_viewer(request)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    await resume(context(request), who.key, eid)
    return RedirectResponse(f"/ui/endpoints/{eid}", status_code=303)


def _query(form: Form) -> QueryParams:
    return QueryParams([(k, v) for k, values in form.items() for v in values])
