"""Helpers for console tests: sign in through the form, read the CSRF token and row ids from pages."""

from __future__ import annotations

import re

import httpx

ORIGIN = "http://hookpump.test"  # tests/api.py's base_url
SAME_ORIGIN = {"Origin": ORIGIN}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ROW_ID = re.compile(r'data-testid="row" data-id="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/ui/login", data={"key": key, "next": "/ui/"}, headers=SAME_ORIGIN)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/"


async def csrf_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/ui/")
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match is not None
    return match.group(1)


def row_ids(html: str) -> list[str]:
    return ROW_ID.findall(html)
