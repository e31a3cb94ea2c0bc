"""Reading a request body: bounded in size (stops reading once over), JSON only, UTF-8 only, and
nested at most MAX_DEPTH levels, checked without recursion.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from core.errors import InvalidInput
from service.problems import Problem

JSON_MEDIA_TYPE = "application/json"
MAX_DEPTH = 64


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Problem(400, "The Content-Length header must be a whole number of bytes.")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    # ASGI receive() directly rather than request.stream(): cheaper on the ingest path, where the
    # whole body almost always arrives in one message.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def read_json(request: Request, limit: int, *, optional: bool = False) -> Any:
    """The parsed JSON body. An empty body is None if `optional`, else 400."""
    body = await read_body(request, limit)
    if not body:
        if optional:
            return None
        raise Problem(400, "The request body is empty; send a JSON object (Content-Type: application/json).")
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        shown = content_type[:100] or "none"
        raise Problem(415, f"The body must be sent as Content-Type: application/json (got {shown}).")
    parsed = parse_json(body)
    if parsed is None and optional:
        # Not the same as no body: `null` is a value, and this body must be an object when sent.
        raise Problem(400, "The request body is JSON null; send a JSON object, or no body at all.")
    return parsed


def parse_json(body: bytes) -> Any:
    try:
        # Decoded explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"The request body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON."
        raise Problem(400, detail) from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise _too_deep() from exc
    except json.JSONDecodeError as exc:
        raise Problem(400, f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
                      f"column {exc.colno}).") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer longer than Python will parse
        raise Problem(400, f"The request body is not valid JSON: {exc}.") from exc
    # Counting brackets is a fast upper bound on the depth; most bodies never need the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        check_depth(value)
    return value


def check_depth(value: Any) -> None:
    """InvalidInput if arrays/objects nest more than MAX_DEPTH levels (the body itself is level 1)."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _too_large(size: int, limit: int) -> Problem:
    return Problem(413, f"The request body is {size} bytes or more; the limit is {limit} bytes.")


def _too_deep() -> InvalidInput:
    return InvalidInput("body", f"arrays and objects may nest at most {MAX_DEPTH} levels deep")
