"""DeliveryClient and attempt_delivery against real HTTP servers on loopback, scripted per path."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from core.credentials import REDACTED
from delivery.attempt import AttemptReport, attempt_delivery
from delivery.client import RESPONSE_HEADERS, DeliveryClient, HttpResult
from delivery.outcome import Outcome
from delivery.signing import generate_secret

LIMIT = 1000
REQUEST_TIMEOUT = 0.5
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


@dataclass
class Receiver:
    url: str
    hits: Counter[str] = field(default_factory=Counter)
    last: dict[str, Any] = field(default_factory=dict)


RECEIVER = web.AppKey("receiver", Receiver)


def make_client(allow_private: bool = True) -> DeliveryClient:
    return DeliveryClient(
        connect_timeout=0.5,
        request_timeout=REQUEST_TIMEOUT,
        allow_private_targets=allow_private,
        response_body_limit=LIMIT,
    )


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="thanks ✓", headers={"X-Request-Id": "req-7", "X-Internal": "hidden", "Retry-After": "3"})


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[RECEIVER].last = {"headers": dict(request.headers), "body": body}
    return web.json_response({"received": len(body)})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="too late")


async def slow_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(50):
        await response.write(b"tick ")
        await asyncio.sleep(0.1)
    return response


async def big(request: web.Request) -> web.StreamResponse:
    # Up to 1 GiB, unsized: a client that read it all would time out long before the end.
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    chunk = b"x" * 65536
    for _ in range(16384):
        await response.write(chunk)
    return response


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(location="/ok")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status body")


@web.middleware
async def count_hits(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request.app[RECEIVER].hits[request.path] += 1
    return await handler(request)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application(middlewares=[count_hits])
    for path, handler in [
        ("/ok", ok),
        ("/echo", echo),
        ("/slow", slow),
        ("/slow-body", slow_body),
        ("/big", big),
        ("/redirect", redirect),
        ("/status/{code}", status),
    ]:
        app.router.add_post(path, handler)
    app[RECEIVER] = server = Receiver("")
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """Start a bare TCP server whose connections `handler` scripts byte by byte; returns its URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(params=["send", "send_httpx"])
async def send(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[HttpResult]]]:
    """Each client test runs through the aiohttp path and the httpx path: both must agree."""
    async with make_client() as client:
        method = getattr(client, request.param)

        async def call(url: str, body: bytes = b"{}", headers: Mapping[str, str] = HEADERS) -> HttpResult:
            return await method(url, body, headers)  # type: ignore[no-any-return]

        yield call


async def test_success_returns_status_selected_headers_and_body(receiver: Receiver, send: Any) -> None:
    result = await send(receiver.url + "/ok")
    assert result.status == 200 and result.error_kind is None and result.error_message is None
    assert result.body_excerpt == "thanks ✓" and not result.body_truncated
    assert result.headers["x-request-id"] == "req-7" and result.headers["retry-after"] == "3"
    assert "x-internal" not in result.headers and set(result.headers) <= set(RESPONSE_HEADERS)
    assert 0 < result.duration_ms < 1000


async def test_request_carries_body_and_headers_unchanged(receiver: Receiver, send: Any) -> None:
    body = '{"b":1, "a":"ünï"}'.encode()
    result = await send(receiver.url + "/echo", body, {**HEADERS, "X-Tenant": "acme"})
    assert result.status == 200
    assert receiver.last["body"] == body
    assert receiver.last["headers"]["X-Tenant"] == "acme"
    assert receiver.last["headers"]["User-Agent"].startswith("hookpump/")
    assert "Cookie" not in receiver.last["headers"]


@pytest.mark.parametrize("code", [201, 404, 410, 429, 500, 503])
async def test_error_statuses_are_answers_not_errors(receiver: Receiver, send: Any, code: int) -> None:
    result = await send(f"{receiver.url}/status/{code}")
    assert result.status == code and result.error_kind is None and result.body_excerpt == "status body"


async def test_slow_receiver_times_out(receiver: Receiver, send: Any) -> None:
    started = time.monotonic()
    result = await send(receiver.url + "/slow")
    assert result.status is None and result.error_kind == "timeout"
    assert f"{REQUEST_TIMEOUT:g} s" in result.error_message
    assert REQUEST_TIMEOUT * 0.9 < time.monotonic() - started < REQUEST_TIMEOUT + 1.5


async def test_total_timeout_covers_a_trickling_body(receiver: Receiver, send: Any) -> None:
    started = time.monotonic()
    result = await send(receiver.url + "/slow-body")
    assert result.status == 200 and result.error_kind == "timeout"
    assert time.monotonic() - started < REQUEST_TIMEOUT + 1.5


async def test_big_body_is_read_only_up_to_the_limit(receiver: Receiver, send: Any) -> None:
    result = await send(receiver.url + "/big")
    assert result.status == 200 and result.error_kind is None
    assert result.body_truncated and result.body_excerpt == "x" * LIMIT
    assert result.duration_ms < REQUEST_TIMEOUT * 1000


async def test_body_of_exactly_the_limit_is_not_truncated(raw_server: Any, send: Any) -> None:
    async def exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % LIMIT + b"y" * LIMIT)
        await writer.drain()
        writer.close()

    result = await send(await raw_server(exact))
    assert result.status == 200 and not result.body_truncated and len(result.body_excerpt) == LIMIT


async def test_redirect_is_returned_not_followed(receiver: Receiver, send: Any) -> None:
    result = await send(receiver.url + "/redirect")
    assert result.status == 302 and result.headers["location"] == "/ok"
    assert receiver.hits["/ok"] == 0


async def test_connection_reset_mid_request(raw_server: Any, send: Any) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        writer.transport.abort()

    result = await send(await raw_server(reset))
    assert result.status is None and result.error_kind in ("reset", "protocol")
    assert result.error_message


async def test_truncated_body_keeps_the_status_and_reports_protocol(raw_server: Any, send: Any) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    result = await send(await raw_server(short))
    assert result.status == 200 and result.error_kind in ("protocol", "reset")


async def test_garbage_instead_of_http_is_a_protocol_error(raw_server: Any, send: Any) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP ready, not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    result = await send(await raw_server(garbage))
    assert result.status is None and result.error_kind == "protocol"


async def test_refused_connection(send: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        result = await send(f"http://127.0.0.1:{port}/hook")
    assert result.status is None and result.error_kind == "connect"


async def test_unresolvable_name(send: Any) -> None:
    result = await send("http://does-not-exist.invalid/hook")
    assert result.status is None and result.error_kind == "dns"
    assert "does-not-exist.invalid" in result.error_message


@pytest.fixture(params=["send", "send_httpx"])
async def guarded_send(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[str], Awaitable[HttpResult]]]:
    async with make_client(allow_private=False) as client:
        method = getattr(client, request.param)

        async def call(url: str) -> HttpResult:
            return await method(url, b"{}", HEADERS)  # type: ignore[no-any-return]

        yield call


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_private_targets_are_refused_at_connect_time(receiver: Receiver, guarded_send: Any, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    result = await guarded_send(f"http://{host}:{port}/ok")
    assert result.status is None and result.error_kind == "forbidden_address"
    assert "loopback" in result.error_message
    assert receiver.hits["/ok"] == 0


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "127.1", "0x7f.1"])
async def test_legacy_numeric_ip_does_not_slip_past_the_guard(receiver: Receiver, guarded_send: Any, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    result = await guarded_send(f"http://{host}:{port}/ok")  # 127.0.0.1 written as inet_aton reads it
    assert result.status is None and result.error_kind == "forbidden_address"
    assert "127.0.0.1 is a loopback address" in (result.error_message or "")
    assert receiver.hits["/ok"] == 0


async def test_httpx_api_shares_the_guarded_pool(receiver: Receiver) -> None:
    async with make_client() as client:
        response = await client.http.post(receiver.url + "/ok", content=b"{}")
        assert response.status_code == 200 and response.text == "thanks ✓"
        assert response.headers["x-request-id"] == "req-7"


async def attempt(client: DeliveryClient, url: str, **overrides: Any) -> AttemptReport:
    """attempt_delivery with everything a test does not care about filled in."""
    args: dict[str, Any] = {
        "msg_id": "msg_1",
        "event_type": "e",
        "payload_json": "{}",
        "secrets": [generate_secret()],
        "extra_headers": {},
        "traceparent": None,
        "attempt_number": 1,
        "trigger": "scheduled",
    }
    return await attempt_delivery(client, url=url, **{**args, **overrides})


async def test_attempt_sends_exact_signed_payload_and_records_it(receiver: Receiver) -> None:
    secret = generate_secret()
    payload = '{"z":1,"a":[1,2],"name":"Zoë"}'  # key order and spacing must survive as-is
    async with make_client() as client:
        report = await attempt(
            client,
            url=receiver.url + "/echo",
            msg_id="msg_abc",
            event_type="order.created",
            payload_json=payload,
            secrets=[secret],
            extra_headers={"X-Api-Key": "k", "X-Tenant": "acme"},
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            attempt_number=2,
            trigger="manual",
        )
    assert receiver.last["body"] == payload.encode()
    Webhook(secret).verify(receiver.last["body"], receiver.last["headers"])
    assert receiver.last["headers"]["traceparent"].startswith("00-4bf92f")
    assert report.outcome is Outcome.SUCCEEDED and report.status_code == 200 and report.error is None
    record = json.loads(json.dumps(report.record))
    assert record["number"] == 2 and record["trigger"] == "manual" and record["outcome"] == "succeeded"
    assert record["started_at"].endswith("Z") and len(record["started_at"]) == len("2024-01-01T00:00:00.000Z")
    assert record["request"]["url"] == receiver.url + "/echo"
    assert record["request"]["headers"]["webhook-signature"] == REDACTED
    assert record["request"]["headers"]["X-Api-Key"] == REDACTED
    assert record["request"]["headers"]["X-Tenant"] == "acme"
    response = record["response"]
    assert response["status"] == 200 and response["body_truncated"] is False
    assert response["body"] == json.dumps({"received": len(payload.encode())})
    assert response["headers"]["content-type"].startswith("application/json")
    assert record["error"] is None


async def test_attempt_reports_overload_with_retry_after(receiver: Receiver) -> None:
    async with make_client() as client:
        overloaded = await attempt(client, url=receiver.url + "/status/503")
        answered_ok = await attempt(client, url=receiver.url + "/ok")
    assert overloaded.outcome is Outcome.OVERLOADED and overloaded.error == "HTTP 503"
    assert overloaded.retry_after is None
    assert answered_ok.retry_after == pytest.approx(3.0)


async def test_attempt_on_transport_error_has_no_response(receiver: Receiver) -> None:
    async with make_client() as client:
        report = await attempt(client, url=receiver.url + "/slow", now=1_700_000_000.0)
    assert report.outcome is Outcome.RETRY and report.status_code is None
    assert report.error is not None and report.error.startswith("timeout: ")
    assert report.record["response"] is None
    assert report.record["error"]["kind"] == "timeout"
    assert report.record["started_at"] == "2023-11-14T22:13:20.000Z"
