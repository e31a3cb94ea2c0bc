"""The console's pages (GET): overview, deliveries, one delivery, one endpoint, a bulk retry's
progress. Each reads through the same functions as the JSON routes and only arranges the answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.clock import now_ms
from core.errors import InvalidInput, NotFound
from core.models import DeliveryStatus, iso
from core.pacing import INDEFINITE_MS
from service import validation
from service.console.render import render
from service.console.session import viewer
from service.console.words import next_attempt_text, pause_text
from service.context import Context, context
from service.deliveries import FILTERS, delivery_detail, delivery_page, endpoint_attempts_page
from service.endpoints import endpoint_page
from service.health import history_health
from service.monitoring import endpoint_stats_json, queue_overview_json, timeline_json
from service.operations import RETRYABLE, bulk_estimate, bulk_progress, endpoint_with_flow

STATUSES = [s.value for s in DeliveryStatus]
PAGE_SIZES = (25, 50, 100, 250)
ATTEMPTS_SHOWN = 20
# Response headers that may carry a receiver's credentials or session: never shown.
HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "set-cookie2", "authorization", "proxy-authorization",
                                     "www-authenticate", "proxy-authenticate", "cookie"})


def listed(query: QueryParams, names: tuple[str, ...]) -> QueryParams:
    """The query without empty values (an empty form field means "any") and with only `names`."""
    return QueryParams([(k, v) for k, v in query.multi_items() if v != "" and k in names])


async def overview(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    queue = await queue_overview_json(ctx)
    backlogs = []
    for entry in queue["largest_backlogs"]:
        try:
            backlogs.append(await endpoint_stats_json(ctx, entry["endpoint_id"]))
        except NotFound:  # deleted between the two reads
            continue
    history = await history_health(ctx)  # the same report as /readyz: is the delivery log keeping up?
    return render(request, "overview.html", viewer=who, queue=queue, backlogs=backlogs, statuses=STATUSES,
                  history=history)


async def deliveries(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    query = listed(request.query_params, (*FILTERS, "limit", "cursor"))
    filters = listed(query, FILTERS)
    error = None
    try:
        page = await delivery_page(ctx, query)
    except InvalidInput as exc:
        page, error = {"data": [], "next_cursor": None}, f"{exc.field}: {exc.problem}."
    without_cursor = [item for item in query.multi_items() if item[0] != "cursor"]
    newest = "/ui/deliveries?" + urlencode(without_cursor)
    older = newest + "&" * bool(without_cursor) + urlencode({"cursor": page["next_cursor"]}) \
        if page["next_cursor"] else None
    chosen = {s for v in filters.getlist("status") for s in v.split(",")}
    return render(
        request, "deliveries.html", 422 if error else 200, viewer=who, page=page, error=error,
        filters=filters, chosen=chosen, statuses=STATUSES, page_sizes=PAGE_SIZES,
        limit=query.get("limit", str(validation.PAGE_DEFAULT)), cursor=query.get("cursor"),
        older=older, newest=newest, here=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
        bulk=_bulk_offer(filters, chosen), notice=None,
        labels=await endpoint_labels(ctx, [d["endpoint_id"] for d in page["data"]]),
    )


async def endpoint_labels(ctx: Context, eids: list[str]) -> dict[str, str]:
    """Each endpoint's name for a table cell: its description, else its URL without the scheme."""
    found = await ctx.store.endpoints.get_many(sorted(set(eids)))
    return {e.id: e.description or e.url.split("://", 1)[-1] for e in found}


def _bulk_offer(filters: QueryParams, chosen: set[str]) -> tuple[str | None, str]:
    """The filter as a bulk retry can take it (only ended statuses, no message id), or None and why not."""
    ended = ", ".join(RETRYABLE)
    if "message_id" in filters:
        return None, "Retry all matching cannot filter by message id: retry this message's deliveries one by one."
    if not chosen:
        return None, f"To retry all matching deliveries at once, tick only ended statuses ({ended})."
    queued = sorted(chosen - set(RETRYABLE))
    if queued:
        return None, (f"Retry all matching is offered for ended deliveries only ({ended}): {', '.join(queued)} "
                      f"{'is' if len(queued) == 1 else 'are'} already on the way.")
    return urlencode(list(filters.multi_items())), ""


def bulk_body(filters: QueryParams) -> dict[str, Any]:
    """The bulk retry request body for a deliveries filter (the same fields as POST /v1/deliveries/retry)."""
    body: dict[str, Any] = {name: filters[name] for name in ("endpoint_id", "event_type", "since", "until")
                            if name in filters}
    statuses = [s for v in filters.getlist("status") for s in v.split(",") if s]
    if statuses:
        body["status"] = sorted(set(statuses))
    return body


async def bulk_confirm(request: Request) -> Response:
    who = await viewer(request)
    filters = listed(request.query_params, FILTERS)
    body = bulk_body(filters)
    estimate = await bulk_estimate(context(request), body)
    return render(request, "bulk_confirm.html", viewer=who, body=body, estimate=estimate,
                  back="/ui/deliveries?" + urlencode(list(filters.multi_items())))


async def bulk(request: Request) -> Response:
    who = await viewer(request)
    job_id = validation.path_id(request.path_params["id"], validation.BULK_RETRY_ID, "bulk retry")
    job = await bulk_progress(context(request), job_id)
    return render(request, "bulk.html", viewer=who, job=job, deliveries=_bulk_deliveries(job))


def _bulk_deliveries(job: dict[str, Any]) -> str:
    """The deliveries page for a bulk retry's filter, any status (those it re-queued have moved on from
    the statuses it matched), created before it started (it never reached later ones)."""
    wanted = job["filter"]
    query = [("endpoint_id", wanted["endpoint_id"]), ("event_type", wanted["event_type"]),
             ("since", wanted["since"]), ("until", wanted["until"] or job["started_at"] or job["created_at"])]
    return "/ui/deliveries?" + urlencode([(name, v) for name, v in query if v])


async def delivery(request: Request) -> Response:
    who = await viewer(request)
    did = validation.path_id(request.path_params["id"], validation.DELIVERY_ID, "delivery")
    ctx = context(request)
    state = await delivery_state(ctx, did)
    return render(request, "delivery.html", viewer=who, **state, notice=None, hidden_headers=HIDDEN_RESPONSE_HEADERS,
                  payload=await message_payload(ctx, state["detail"]["message"]["id"]))


async def message_payload(ctx: Context, mid: str) -> dict[str, Any] | None:
    """The message's payload as the receiver gets it (read as GET /v1/messages/{id} reads it), pretty-printed,
    with its size in bytes as sent; None once retention has dropped the message."""
    try:
        message = await ctx.log.get_message(mid)
    except NotFound:
        return None
    pretty = json.dumps(json.loads(message.payload_json), indent=2, ensure_ascii=False)
    return {"pretty": pretty, "bytes": len(message.payload_json.encode())}


async def delivery_state(ctx: Context, did: str) -> dict[str, Any]:
    """What _delivery_state.html shows: the delivery's detail, and what it waits for when its next
    attempt's time alone would mislead (its endpoint's pause, say)."""
    detail = await delivery_detail(ctx, did)
    try:
        endpoint = await endpoint_with_flow(ctx, detail["delivery"]["endpoint_id"])
    except NotFound:  # deleted: its deliveries are cancelled, there is nothing to wait for
        endpoint = None
    return {"detail": detail, "wait": next_attempt_text(detail["delivery"], endpoint)}


async def endpoints(request: Request) -> Response:
    who = await viewer(request)
    query = listed(request.query_params, ("cursor",))
    ctx = context(request)
    page = await endpoint_page(ctx, QueryParams([("limit", "100"), *query.multi_items()]))
    return render(request, "endpoints.html", viewer=who, page=page, states=await endpoint_states(ctx, page["data"]))


async def endpoint_states(ctx: Context, endpoints: list[dict[str, Any]]) -> dict[str, str]:
    """Each endpoint's state in words ('enabled', 'paused until ...: why', 'disabled: why'), its pace read
    for the whole page in one round trip (as the metrics read it)."""
    loads = await ctx.store.monitoring.endpoint_loads([e["id"] for e in endpoints])
    now = now_ms()
    states = {}
    for e in endpoints:
        pace = loads[e["id"]].pace if e["id"] in loads else None
        if not e["enabled"]:
            states[e["id"]] = pause_text("gone" if e["disabled_reason"] == "gone" else "disabled", None)
        elif pace is not None and pace.paused_until_ms > now:
            until = iso(pace.paused_until_ms) if pace.paused_until_ms < INDEFINITE_MS else None
            states[e["id"]] = pause_text(pace.pause_reason.value if pace.pause_reason else None, until)
        else:
            states[e["id"]] = "enabled"
    return states


async def endpoint(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    query = listed(request.query_params, ("cursor",))
    config = await endpoint_with_flow(ctx, eid)
    stats = await endpoint_stats_json(ctx, eid)
    paging = QueryParams([("limit", str(ATTEMPTS_SHOWN)), *query.multi_items()])
    attempts = await endpoint_attempts_page(ctx, eid, paging)
    timeline = await timeline_json(ctx, eid, 300)
    return render(request, "endpoint.html", viewer=who, endpoint=config, stats=stats, attempts=attempts,
                  timeline=timeline, busiest=_busiest(timeline))


def _busiest(timeline: dict[str, Any]) -> dict[str, Any]:
    """The caption's figures: the most requests in one second, and in which."""
    points = timeline["points"]
    top = max(points, key=lambda p: p["sent"]) if points else None
    return {"sent": top["sent"] if top else 0, "at": top["at"] if top else None,
            "total": sum(p["sent"] for p in points)}


async def endpoint_timeline(request: Request) -> Response:
    """The chart's data for a signed-in operator: exactly GET /v1/endpoints/{id}/timeline's answer."""
    await viewer(request)
    eid = validation.path_id(request.path_params["id"], validation.ENDPOINT_ID, "endpoint")
    return JSONResponse(await timeline_json(context(request), eid, 300), headers={"Cache-Control": "no-store"})

