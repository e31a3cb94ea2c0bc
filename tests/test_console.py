"""The operator console at /ui, route by route with real Redis: sign-in and sessions, every page for
each scope, filters and cursors against the JSON API, CSRF and Origin refusals, the CSP header, and
a receiver's hostile answer rendered inert."""

from __future__ import annotations

import html as html_text
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core import keys
from core.settings import Settings
from core.store import Completion, Store
from service.console.render import CSP
from service.guessing import GUESS_LIMIT
from tests.api import ADMIN, ADMIN_KEY, api_client, snapshot
from tests.console import SAME_ORIGIN, csrf_token, row_ids, sign_in
from tests.history_db import caught_up
from tests.pumping import make_endpoint, send

NOWHERE = "http://127.0.0.1:9/never"


@pytest.fixture
async def client(store: Store, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


async def new_key(client: httpx.AsyncClient, scope: str) -> dict[str, Any]:
    response = await client.post("/v1/api-keys", json={"name": f"{scope}-operator", "scopes": [scope]},
                                 headers=ADMIN)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def failed_delivery(store: Store, settings: Settings, eid: str, record: dict[str, Any] | None = None) -> str:
    """A delivery whose one attempt failed (HTTP 400), recorded through the pump's own completion path
    and written to the history store (where the log pages read it)."""
    [did] = await send(store, 1, endpoint_ids=[eid])
    claim = await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    [claimed] = [d for d in claim.deliveries if d.id == did]
    attempt = record or {"number": 1, "trigger": "scheduled", "started_at": "2026-01-01T00:00:00.000Z",
                         "duration_ms": 3.0, "request": {"url": NOWHERE, "headers": {}},
                         "response": {"status": 400, "headers": {}, "body": "no", "body_truncated": False},
                         "error": None, "outcome": "failed"}
    await store.pump.complete([Completion(did, claimed.attempt, "failed", status_code=400, error="HTTP 400",
                                          record=attempt, started_ms=int(time.time() * 1000))])
    await caught_up(store, settings)
    return did


def visible(page: str) -> str:
    """A page's text as a reader sees it: no tags, no script data, entities decoded, spaces collapsed."""
    page = re.sub(r"<script[^>]*>.*?</script>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html_text.unescape(re.sub(r"<[^>]+>", " ", page)))


async def hold(store: Store, eid: str, reason: str, seconds: float) -> str:
    """Pause `eid` as the pump's overload control does (its flow state and its pauses list); the end, in
    the API's time format."""
    until_ms = int(time.time() * 1000 + seconds * 1000)
    await store.redis.hset(keys.endpoint_flow(eid), mapping={"paused_until": until_ms, "pause_reason": reason})
    event = {"start_ms": until_ms - 60_000, "end_ms": until_ms, "reason": reason, "status_code": 429}
    await store.redis.lpush(keys.endpoint_pauses(eid), json.dumps(event))
    return time.strftime("%H:%M:%S", time.gmtime(until_ms / 1000))


async def test_pages_send_a_visitor_without_a_session_to_sign_in(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    [did] = await send(store, 1, endpoint_ids=[eid])
    for path in ("/ui/", "/ui/deliveries?status=failed", f"/ui/deliveries/{did}", f"/ui/endpoints/{eid}",
                 "/ui/endpoints", f"/ui/endpoints/{eid}/timeline.json"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F"), path
    client.cookies.set("hookpump_console", "forged-token", path="/ui")
    assert (await client.get("/ui/")).status_code == 303


async def test_sign_in_gives_a_strict_opaque_session_cookie_kept_only_as_a_digest(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post("/ui/login", data={"key": ADMIN_KEY}, headers=SAME_ORIGIN)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age=43200"):
        assert attribute in cookie, cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert ADMIN_KEY not in cookie
    stored = [key for key in await store.redis.keys("hp:ui:sess:*")]
    assert len(stored) == 1 and token not in stored[0]
    assert token not in str(await store.redis.hgetall(stored[0]))
    assert 0 < await store.redis.ttl(stored[0]) <= 43200
    assert (await client.get("/ui/")).status_code == 200
    csrf = await csrf_token(client)
    out = await client.post("/ui/logout", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert out.status_code == 303 and await store.redis.keys("hp:ui:sess:*") == []
    assert (await client.get("/ui/")).status_code == 303


async def test_a_send_key_or_a_wrong_key_cannot_sign_in(client: httpx.AsyncClient, store: Store) -> None:
    sender = await new_key(client, "send")
    for key in (sender["key"], "hp_not-a-key", ""):
        response = await client.post("/ui/login", data={"key": key}, headers=SAME_ORIGIN)
        assert response.status_code == 401 and "set-cookie" not in response.headers
        assert 'role="alert"' in response.text
    assert await store.redis.keys("hp:ui:sess:*") == []


async def test_sign_in_failures_are_limited_per_address(client: httpx.AsyncClient, store: Store) -> None:
    for _ in range(GUESS_LIMIT):
        assert (await client.post("/ui/login", data={"key": "wrong"}, headers=SAME_ORIGIN)).status_code == 401
    refused = await client.post("/ui/login", data={"key": ADMIN_KEY}, headers=SAME_ORIGIN)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert await store.redis.keys("hp:ui:sess:*") == []


async def test_deleting_the_key_signs_its_sessions_out(client: httpx.AsyncClient, store: Store) -> None:
    reader = await new_key(client, "read")
    await sign_in(client, reader["key"])
    assert (await client.get("/ui/")).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{reader['id']}", headers=ADMIN)).status_code == 204
    assert (await client.get("/ui/")).status_code == 303
    assert await store.redis.keys("hp:ui:sess:*") == []


async def test_every_page_renders_for_both_scopes_and_a_read_key_sees_no_action(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    did = await failed_delivery(store, settings, eid)
    await send(store, 2, endpoint_ids=[eid])
    await caught_up(store, settings)
    blk = (await client.post("/v1/deliveries/retry", json={"status": ["cancelled"]}, headers=ADMIN)).json()["id"]
    reader = await new_key(client, "read")
    pages = ("/ui/", "/ui/deliveries", "/ui/deliveries?status=failed", f"/ui/deliveries/{did}", "/ui/endpoints",
             f"/ui/endpoints/{eid}", "/ui/deliveries/retry?status=failed", f"/ui/bulk/{blk}")
    for key, acts in ((ADMIN_KEY, True), (reader["key"], False)):
        client.cookies.clear()
        await sign_in(client, key)
        for path in pages:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            assert response.headers["content-security-policy"] == CSP
            assert response.headers["content-type"].startswith("text/html")
            assert ('method="post" action="/ui/deliveries/' in response.text) is (
                acts and path in ("/ui/deliveries", "/ui/deliveries?status=failed", f"/ui/deliveries/{did}",
                                  "/ui/deliveries/retry?status=failed")), (key, path)
        listed = (await client.get("/ui/endpoints")).text
        assert re.findall(r'data-testid="endpoint-row" data-id="([^"]+)"', listed) == [eid]
        endpoint_page = (await client.get(f"/ui/endpoints/{eid}")).text
        assert (f'action="/ui/endpoints/{eid}/pause"' in endpoint_page) is acts
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP


async def test_a_read_session_is_refused_every_action_and_nothing_changes(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    did = await failed_delivery(store, settings, eid)
    [pending] = await send(store, 1, endpoint_ids=[eid])
    reader = await new_key(client, "read")
    await sign_in(client, reader["key"])
    csrf = await csrf_token(client)
    before = await snapshot(store)
    for path, form in ((f"/ui/deliveries/{did}/retry", {}), (f"/ui/deliveries/{pending}/cancel", {}),
                       ("/ui/deliveries/retry", {"status": "failed"}), (f"/ui/endpoints/{eid}/pause", {}),
                       (f"/ui/endpoints/{eid}/resume", {})):
        response = await client.post(path, data={"csrf": csrf, **form}, headers=SAME_ORIGIN)
        assert response.status_code == 403, path
        assert "admin" in response.text
    assert await snapshot(store) == before


async def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    did = await failed_delivery(store, settings, eid)
    await sign_in(client, ADMIN_KEY)
    csrf = await csrf_token(client)
    before = await snapshot(store)
    path = f"/ui/deliveries/{did}/retry"
    for data, headers in (({"next": "/ui/"}, SAME_ORIGIN), ({"csrf": "guess"}, SAME_ORIGIN),
                          ({"csrf": csrf}, {"Origin": "https://evil.example"}),
                          ({"csrf": csrf}, {"Origin": "http://hookpump.test:8443"}),
                          ({"csrf": csrf}, {"Origin": "null"}), ({"csrf": csrf}, {})):
        response = await client.post(path, data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
    assert (await client.post("/ui/login", data={"key": ADMIN_KEY},
                              headers={"Origin": "https://evil.example"})).status_code == 403
    assert await snapshot(store) == before
    ok = await client.post(path, data={"csrf": csrf, "next": "https://evil.example/"}, headers=SAME_ORIGIN)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"  # never sent off-site
    assert (await client.get(f"/v1/deliveries/{did}", headers=ADMIN)).json()["delivery"]["status"] == "pending"


async def test_retry_and_cancel_work_as_plain_forms_and_as_htmx_fragments(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    failed = await failed_delivery(store, settings, eid)
    [waiting] = await send(store, 1, endpoint_ids=[eid])
    await sign_in(client, ADMIN_KEY)
    csrf = await csrf_token(client)
    plain = await client.post(f"/ui/deliveries/{failed}/retry",
                              data={"csrf": csrf, "next": "/ui/deliveries?status=failed"}, headers=SAME_ORIGIN)
    assert plain.status_code == 303 and plain.headers["location"] == "/ui/deliveries?status=failed"
    await caught_up(store, settings)  # the action is read from the history store
    detail = (await client.get(f"/v1/deliveries/{failed}", headers=ADMIN)).json()
    assert detail["delivery"]["status"] == "pending" and detail["actions"][0]["action"] == "retry"
    htmx = {**SAME_ORIGIN, "HX-Request": "true"}
    row = await client.post(f"/ui/deliveries/{waiting}/cancel",
                            data={"csrf": csrf, "view": "row", "next": "/ui/deliveries"}, headers=htmx)
    assert row.status_code == 200
    assert row.text.lstrip().startswith(f'<tr id="row-{waiting}"') and 'data-status="cancelled"' in row.text
    assert "cancelled" in re.sub(r"\s+", " ", row.text) and 'data-testid="notice"' in row.text
    # Being sent right now: 409, and the fragment says why (htmx swaps a 409 in, see base.html).
    await client.post(f"/ui/deliveries/{failed}/cancel", data={"csrf": csrf}, headers=SAME_ORIGIN)
    await client.post(f"/ui/deliveries/{failed}/retry", data={"csrf": csrf}, headers=SAME_ORIGIN)
    await store.pump.claim("w-test", horizon_ms=200, max_endpoints=10, max_deliveries=10)
    busy = await client.post(f"/ui/deliveries/{failed}/retry", data={"csrf": csrf, "view": "detail"}, headers=htmx)
    assert busy.status_code == 409 and "being sent right now" in busy.text
    assert busy.text.lstrip().startswith('<section id="delivery-state"')


async def test_the_deliveries_page_shows_what_the_api_returns_for_every_filter(
    client: httpx.AsyncClient, store: Store
) -> None:
    one = await make_endpoint(store, NOWHERE)
    two = await make_endpoint(store, NOWHERE)
    dids = await send(store, 6, endpoint_ids=[one, two])
    dids += await send(store, 3, endpoint_ids=[two], event_type="user.created")
    for did in dids[:4]:
        await client.post(f"/v1/deliveries/{did}/cancel", headers=ADMIN)
    message = (await client.get(f"/v1/deliveries/{dids[0]}", headers=ADMIN)).json()["message"]["id"]
    await sign_in(client, ADMIN_KEY)
    queries = ["", "status=cancelled", "status=pending&status=cancelled", f"endpoint_id={two}",
               f"endpoint_id={two}&status=pending", "event_type=user.created", f"message_id={message}",
               "since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z", "limit=3", "status=pending,cancelled&limit=2"]
    for query in queries:
        api = (await client.get(f"/v1/deliveries?{query}", headers=ADMIN)).json()
        page = await client.get(f"/ui/deliveries?{query}")
        assert page.status_code == 200
        assert row_ids(page.text) == [d["id"] for d in api["data"]], query
        assert ('data-testid="older"' in page.text) is (api["next_cursor"] is not None), query
    # Empty fields of the filter form mean "any"; a bad value is explained, not a 500.
    blank = await client.get("/ui/deliveries?endpoint_id=&status=&event_type=&since=&until=&message_id=&limit=50")
    assert row_ids(blank.text) == [d["id"] for d in (await client.get("/v1/deliveries", headers=ADMIN)).json()["data"]]
    bad = await client.get("/ui/deliveries?since=yesterday")
    assert bad.status_code == 422 and "since" in bad.text and row_ids(bad.text) == []


async def test_cursor_pages_never_repeat_or_skip_while_deliveries_arrive(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    first = await send(store, 7, endpoint_ids=[eid])
    await caught_up(store, settings)
    await sign_in(client, ADMIN_KEY)
    seen: list[str] = []
    url = "/ui/deliveries?limit=3"
    while url:
        page = await client.get(url)
        seen += row_ids(page.text)
        await send(store, 2, endpoint_ids=[eid])  # newer ones arrive between the pages
        await caught_up(store, settings)
        older = re.search(r'href="([^"]+)" data-testid="older"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == sorted(first, reverse=True)


async def test_a_hostile_receiver_answer_is_rendered_inert(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    record = {"number": 1, "trigger": "scheduled", "started_at": "2026-01-01T00:00:00.000Z", "duration_ms": 1.0,
              "request": {"url": NOWHERE, "headers": {"webhook-signature": "[redacted]"}},
              "response": {"status": 400, "headers": {"x-evil": '"><img src=x onerror=alert(2)>',
                                                      "set-cookie": "receiver-session=s3cr3t"},
                           "body": "<script>alert(1)</script></pre><b>bold</b>", "body_truncated": False},
              "error": None, "outcome": "failed"}
    did = await failed_delivery(store, settings, eid, record)
    await sign_in(client, ADMIN_KEY)
    html = (await client.get(f"/ui/deliveries/{did}")).text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>bold</b>" not in html
    assert "s3cr3t" not in html
    assert all(src.startswith("/ui/static/") for src in re.findall(r'<script[^>]* src="([^"]+)"', html))
    assert re.findall(r"<script(?![^>]* src=)[^>]*>", html) == []  # no inline script at all


async def test_bulk_retry_is_confirmed_with_a_count_then_started_as_the_api_would(
    client: httpx.AsyncClient, store: Store
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    dids = await send(store, 5, endpoint_ids=[eid])
    for did in dids[:3]:
        await client.post(f"/v1/deliveries/{did}/cancel", headers=ADMIN)
    await sign_in(client, ADMIN_KEY)
    listing = await client.get(f"/ui/deliveries?status=cancelled&endpoint_id={eid}")
    assert 'data-testid="bulk-link"' in listing.text
    assert 'data-testid="bulk-link"' not in (await client.get("/ui/deliveries?status=pending")).text
    confirm = await client.get(f"/ui/deliveries/retry?status=cancelled&endpoint_id={eid}")
    assert re.search(r"<strong>3</strong> deliveries match", confirm.text)
    csrf = await csrf_token(client)
    started = await client.post("/ui/deliveries/retry", headers=SAME_ORIGIN,
                                data={"csrf": csrf, "status": "cancelled", "endpoint_id": eid})
    assert started.status_code == 303 and started.headers["location"].startswith("/ui/bulk/blk_")
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = (await client.get(f"/v1/deliveries/retry/{job_id}", headers=ADMIN)).json()
    assert job["filter"]["status"] == ["cancelled"] and job["filter"]["endpoint_id"] == eid
    assert job["by"] == "bootstrap"
    progress = await client.get(started.headers["location"])
    assert 'data-testid="bulk-state">queued<' in progress.text and 'hx-trigger="every 1s"' in progress.text


async def test_pause_and_resume_from_the_endpoint_page(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE)
    await sign_in(client, ADMIN_KEY)
    csrf = await csrf_token(client)
    paused = await client.post(f"/ui/endpoints/{eid}/pause", data={"csrf": csrf, "minutes": "5"},
                               headers=SAME_ORIGIN)
    assert paused.status_code == 303
    stats = (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()
    assert stats["paused"] and stats["pause_reason"] == "operator"
    page = (await client.get(f"/ui/endpoints/{eid}")).text
    assert re.search(r"Paused until \d\d:\d\d:\d\d UTC \(in [45] min( \d+ s)?\): an operator paused it", visible(page))
    assert f'action="/ui/endpoints/{eid}/resume"' in page
    bad = await client.post(f"/ui/endpoints/{eid}/pause", data={"csrf": csrf, "minutes": "soon"},
                            headers=SAME_ORIGIN)
    assert bad.status_code == 422
    await client.post(f"/ui/endpoints/{eid}/resume", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert not (await client.get(f"/v1/endpoints/{eid}/stats", headers=ADMIN)).json()["paused"]


async def test_the_overview_shows_what_each_pace_learnt_and_whether_the_log_keeps_up(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=600)
    await send(store, 3, endpoint_ids=[eid])
    await store.redis.hset(f"hp:ep:{eid}:flow", mapping={"eff_rate": "240", "w_max": "300", "cut_ms": "1"})
    await sign_in(client, ADMIN_KEY)
    waiting = (await client.get("/ui/")).text
    # The ingest's history records are still in the outbox: the page says so.
    assert re.search(r'data-testid="history">up to date · \d+ records waiting to be written', waiting), waiting
    assert re.search(r'data-testid="pace">probing \(refused at 300.0/min\)', waiting)
    await caught_up(store, settings)
    assert 'data-testid="history">up to date · 0 records waiting' in (await client.get("/ui/")).text


async def test_the_endpoint_page_says_what_the_pace_learnt(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=600)
    await store.redis.hset(f"hp:ep:{eid}:flow", mapping={"eff_rate": "240", "w_max": "300", "cut_ms": "1",
                                                          "est": "245", "s0": "0.25"})
    await send(store, 1, endpoint_ids=[eid])  # something to send: an idle endpoint says so instead
    await sign_in(client, ADMIN_KEY)
    page = re.sub(r"\s+", " ", (await client.get(f"/ui/endpoints/{eid}")).text)
    assert "Sending at 240.0 of 600 requests per minute: the receiver refused at 300.0/min" in page
    assert "the pace runs just under what it accepts (245.0/min)" in page
    assert "It refuses 25% of requests whatever the rate" in page


async def test_pauses_and_the_pace_are_told_in_plain_words_not_codes(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=600)
    await send(store, 30, endpoint_ids=[eid])
    until = await hold(store, eid, "retry_after", 30)
    await sign_in(client, ADMIN_KEY)
    said = f"paused until {until} UTC (in 29 s): the receiver asked to wait (Retry-After)"
    for path in ("/ui/", f"/ui/endpoints/{eid}"):
        text = visible((await client.get(path)).text)
        assert said in text or said.replace("29 s", "30 s") in text, (path, text)
        for code in ("retry_after", "retry after", "None", "pause_reason", "_per_minute"):
            assert code not in text, (path, code, text)
    page = visible((await client.get(f"/ui/endpoints/{eid}")).text)
    assert "Paused until" in page and "Pace waiting as the receiver asked (Retry-After)" in page
    # What the pace has not learnt is left out, not shown as None; what it has is said in words.
    learnt = {"paused_until": 0, "eff_rate": "240", "w_max": "300", "est": "245"}
    await store.redis.hset(keys.endpoint_flow(eid), mapping=learnt)
    page = visible((await client.get(f"/ui/endpoints/{eid}")).text)
    assert "Pace probing (refused at 300.0/min; accepts about 245.0/min)" in page and "None" not in page


async def test_a_paused_endpoint_says_when_it_resumes_and_that_the_estimate_starts_then(
    client: httpx.AsyncClient, store: Store
) -> None:
    # As a receiver that answers 429 with Retry-After: 30 to everything leaves it: 30 queued, paused 30 s.
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=120)
    [did, *_] = await send(store, 30, endpoint_ids=[eid])
    until = await hold(store, eid, "retry_after", 30)
    await store.redis.hset(keys.endpoint_flow(eid), "streak_fails", 3)
    await sign_in(client, ADMIN_KEY)
    said = re.compile(rf"resumes at {until} UTC; the estimate starts then: about 1[45] s at 120.0/min, if the "
                      r"receiver takes them \(it refused the last 3\)")
    for path in ("/ui/", f"/ui/endpoints/{eid}"):
        assert said.search(visible((await client.get(path)).text)), path
    # A delivery held by the pause says what it waits for and until when, not "next attempt ... ago".
    held = visible((await client.get(f"/ui/deliveries/{did}")).text)
    assert re.search(rf"Next attempt waits for the endpoint's pause to end at {until} UTC \(in (29|30) s\): "
                     r"the receiver asked to wait \(Retry-After\)", held), held
    assert " ago)" not in held.split("Next attempt", 1)[1].split("Last result")[0]
    # Paused by an operator until resumed: no estimate at all, and the delivery waits for the operator.
    await client.post(f"/v1/endpoints/{eid}/pause", headers=ADMIN)
    assert "Drains in not until an operator resumes it" in visible((await client.get(f"/ui/endpoints/{eid}")).text)
    assert "Next attempt waits for an operator to resume the endpoint (an operator paused it)" in visible(
        (await client.get(f"/ui/deliveries/{did}")).text)
    # Resumed, a delivery due a while ago waits for its turn at the pace; it does not say "40 s ago".
    await client.post(f"/v1/endpoints/{eid}/resume", headers=ADMIN)
    waiting = visible((await client.get(f"/ui/deliveries/{did}")).text)
    assert re.search(r"Next attempt due since \d\d:\d\d:\d\d UTC; it goes out in its turn at the endpoint's pace",
                     waiting), waiting


async def test_an_endpoint_with_nothing_queued_says_it_is_idle(client: httpx.AsyncClient, store: Store) -> None:
    eid = await make_endpoint(store, NOWHERE, rate_limit_per_minute=300)
    await sign_in(client, ADMIN_KEY)
    page = visible((await client.get(f"/ui/endpoints/{eid}")).text)
    assert "Idle: nothing is queued. The next deliveries go out at up to 300.0 of 300 requests per minute." in page
    assert "Sending at" not in page and "Drains in nothing queued" in page
    await send(store, 1, endpoint_ids=[eid])
    assert "Sending at 300.0 of 300 requests per minute." in visible((await client.get(f"/ui/endpoints/{eid}")).text)


async def test_the_delivery_page_shows_the_payload_indented_escaped_and_its_size(
    client: httpx.AsyncClient, store: Store
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    payload = {"order": {"id": 7, "note": "<script>alert(1)</script>", "city": "Zürich"}, "items": [1, 2]}
    sent = await client.post("/v1/messages", headers=ADMIN,
                             json={"event_type": "order.paid", "payload": payload, "endpoint_ids": [eid]})
    assert sent.status_code == 202, sent.text
    did = sent.json()["deliveries"][0]["id"]
    await sign_in(client, ADMIN_KEY)
    response = await client.get(f"/ui/deliveries/{did}")
    page = response.text
    shown = re.search(r'<pre class="body" data-testid="payload"[^>]*>(.*?)</pre>', page, flags=re.S)
    assert shown is not None
    assert html_text.unescape(shown.group(1)) == json.dumps(payload, indent=2, ensure_ascii=False)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.group(1) and "<script>alert(1)" not in page
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())  # as the receiver gets it
    assert f"{size} bytes as sent" in visible(page)
    assert response.headers["content-security-policy"] == CSP
    assert re.findall(r"<script(?![^>]* src=)[^>]*>", page) == []  # still no inline script


async def test_bulk_retry_says_why_it_is_not_offered_and_its_job_links_to_the_deliveries(
    client: httpx.AsyncClient, store: Store, settings: Settings
) -> None:
    eid = await make_endpoint(store, NOWHERE)
    dids = await send(store, 4, endpoint_ids=[eid])
    for did in dids[:3]:
        await client.post(f"/v1/deliveries/{did}/cancel", headers=ADMIN)
    await sign_in(client, ADMIN_KEY)
    why = {"": "To retry all matching deliveries at once, tick only ended statuses (failed, succeeded, cancelled).",
           "status=pending&status=cancelled": "Retry all matching is offered for ended deliveries only (failed, "
           "succeeded, cancelled): pending is already on the way.",
           "status=cancelled&message_id=msg_01m919w3h03me0zd3sswxpfzyh": "Retry all matching cannot filter by "
           "message id: retry this message's deliveries one by one."}  # fmt: skip
    for query, said in why.items():
        page = (await client.get(f"/ui/deliveries?{query}")).text
        assert 'data-testid="bulk-link"' not in page and said in visible(page), query
    offered = (await client.get(f"/ui/deliveries?status=cancelled&endpoint_id={eid}")).text
    assert 'data-testid="bulk-link"' in offered and 'data-testid="bulk-why-not"' not in offered
    confirm = visible((await client.get(f"/ui/deliveries/retry?status=cancelled&endpoint_id={eid}")).text)
    assert "3 deliveries match now. Each goes back to pending" in confirm and "Retry 3 deliveries" in confirm
    one = visible((await client.get(f"/ui/deliveries/retry?status=cancelled&endpoint_id={eid}&until=" +
                                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60)))).text)
    assert "An index cannot count this filter" in one  # a time range: the job counts as it goes
    csrf = await csrf_token(client)
    started = await client.post("/ui/deliveries/retry", headers=SAME_ORIGIN,
                                data={"csrf": csrf, "status": "cancelled", "endpoint_id": eid})
    later = await send(store, 1, endpoint_ids=[eid])  # after the job: out of its reach, and out of its link
    job_page = (await client.get(started.headers["location"])).text
    link = re.search(r'href="([^"]+)" data-testid="bulk-deliveries"', job_page)
    assert link is not None
    href = html_text.unescape(link.group(1))
    assert f"endpoint_id={eid}" in href and "until=" in href and "status" not in href
    await caught_up(store, settings)  # the deliveries page reads the history store
    listed = row_ids((await client.get(href)).text)
    assert set(dids[:3]) <= set(listed) and later[0] not in listed


async def test_the_endpoints_list_shows_each_endpoints_state(client: httpx.AsyncClient, store: Store) -> None:
    sending = await make_endpoint(store, NOWHERE)
    waiting = await make_endpoint(store, NOWHERE)
    until = await hold(store, waiting, "retry_after", 30)
    held = await make_endpoint(store, NOWHERE)
    assert (await client.post(f"/v1/endpoints/{held}/pause", headers=ADMIN)).status_code == 200
    off = await make_endpoint(store, NOWHERE)
    assert (await client.patch(f"/v1/endpoints/{off}", json={"enabled": False}, headers=ADMIN)).status_code == 200
    await sign_in(client, ADMIN_KEY)
    page = (await client.get("/ui/endpoints")).text
    states = dict(re.findall(r'data-id="([^"]+)">.*?data-testid="state">([^<]*)<', page, flags=re.S))
    assert states[sending] == "enabled"
    assert re.fullmatch(rf"paused until {until} UTC \(in (29|30) s\): the receiver asked to wait \(Retry-After\)",
                        html_text.unescape(states[waiting])), states[waiting]
    assert states[held] == "paused until resumed: an operator paused it"
    assert states[off] == "disabled: an operator disabled it"
