"""Unauthenticated routes: the liveness probe and the API contract (openapi.yaml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

# In a wheel the contract is packaged beside this module; in a checkout it is at the repository root.
CONTRACT_PLACES = (
    Path(__file__).resolve().parent / "openapi.yaml",
    Path(__file__).resolve().parent.parent / "openapi.yaml",
)


async def healthz(request: Request) -> Response:
    """Liveness only: the process answers. It does not ask Redis, so a Redis outage does not get
    every API process restarted; requests answer 503 meanwhile."""
    return JSONResponse({"status": "ok"})


async def openapi(request: Request) -> Response:
    return Response(contract(), media_type="application/yaml")


@cache
def contract() -> bytes:
    for place in CONTRACT_PLACES:
        if place.is_file():
            return place.read_bytes()
    raise FileNotFoundError(f"openapi.yaml is in none of {', '.join(str(p) for p in CONTRACT_PLACES)}")
