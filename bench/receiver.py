"""A minimal webhook receiver for benchmarks: raw ASGI under uvicorn (httptools), answers 200 to anything.

Run as `python -m uvicorn bench.receiver:app --http httptools --loop uvloop --port N`. It counts
requests per path so a benchmark can check nothing was lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

received = 0


Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global received
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    received += 1
    if scope["path"] == "/count":
        body = str(received).encode()
    else:
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
