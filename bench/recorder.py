"""A webhook receiver that records when each request arrived: raw ASGI under uvicorn (httptools), 200 to
every POST, for the latency and smoothness benchmarks.

    python -m uvicorn bench.recorder:app --http httptools --loop uvloop --port N

`GET /arrivals` answers a JSON list of `[unix seconds, path, webhook-id]`, one per POST in arrival order,
timestamped when the request's headers were parsed (the wall clock: comparable across processes on
one machine). `DELETE /arrivals` forgets them. It keeps at most `LIMIT` arrivals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LIMIT = 1_000_000
arrivals: list[tuple[float, str, str]] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    arrived = time.time()
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b"ok"
    if scope["method"] == "POST":
        if len(arrivals) < LIMIT:
            webhook_id = next((v.decode() for k, v in scope["headers"] if k == b"webhook-id"), "")
            arrivals.append((arrived, scope["path"], webhook_id))
    elif scope["path"] == "/arrivals" and scope["method"] == "GET":
        body = json.dumps(arrivals).encode()
    elif scope["path"] == "/arrivals" and scope["method"] == "DELETE":
        arrivals.clear()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
