"""Browser fixtures: one hookpump stack and one chromium per module; a fresh browser context per test.

Chromium is Debian's (`apt-get install chromium`, done by .ci/run). Without it the tests are skipped
locally with a reason, and fail under CI=true so that a missing install cannot hide behind a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.stack import ADMIN_KEY, CHROMIUM, CHROMIUM_ARGS, Stack, chromium_available, running_stack
from tests.conftest import RedisServer

BROWSER_DB = 7  # a database of its own: the rest of the suite flushes database 0 per test


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    import redis

    url = f"redis://127.0.0.1:{redis_server.port}/{BROWSER_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    with running_stack(url) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext, stack: Stack) -> Iterator[Page]:
    """A signed-in admin page that fails the test on any console error or CSP violation."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, stack.base_url, ADMIN_KEY)
    yield page
    assert errors == []


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(base_url + "/ui/")
    assert "/ui/login" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + "/ui/")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where page screenshots go: $HOOKPUMP_SCREENSHOTS (docs/console for the README), else a temp dir."""
    folder = Path(os.environ.get("HOOKPUMP_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "hookpump-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
