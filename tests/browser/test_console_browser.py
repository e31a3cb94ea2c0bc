"""The console in a real browser (Debian's chromium via Playwright) against real `hookpump serve` and
`hookpump worker` processes and a loopback receiver: sign in, filter, page while deliveries arrive,
retry in place, bulk retry with progress, the pacing chart against the timeline route, auto-refresh,
a hostile receiver, pages with JavaScript off, and axe-core on every page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page

from tests.browser.conftest import sign_in
from tests.browser.stack import ADMIN_KEY, HOSTILE_BODY, Stack

pytestmark = pytest.mark.slow
AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-core" / "axe-4.14.1.min.js"


def wait_until(page: Page, expression: str, timeout: float = 10) -> None:
    """Poll a JavaScript expression (page.wait_for_function evaluates strings with eval, which the
    console's CSP refuses, as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.1)


def assert_no_axe_violations(page: Page, name: str) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert violations == [], (name, json.dumps(violations))


def row_ids(page: Page) -> list[str]:
    return [row.get_attribute("data-id") or "" for row in page.locator("[data-testid=row]").all()]


def test_filter_keeps_the_url_and_pages_never_repeat_while_deliveries_arrive(page: Page, stack: Stack) -> None:
    eid = stack.endpoint("/ok", rate_limit_per_minute=6000)
    first = stack.send(eid, 12)
    stack.wait_for_statuses(first, {"succeeded"})
    page.goto(stack.base_url + "/ui/deliveries")
    page.get_by_label("succeeded").check()
    page.get_by_label("Endpoint id").fill(eid)
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply").click()
    wait_until(page, "location.search.includes('status=succeeded') && location.search.includes('limit=25')")
    assert f"endpoint_id={eid}" in page.url
    wait_until(page, "document.querySelectorAll('[data-testid=row]').length === 12")
    assert sorted(row_ids(page), reverse=True) == row_ids(page) == sorted(first, reverse=True)
    assert {r.get_attribute("data-status") for r in page.locator("[data-testid=row]").all()} == {"succeeded"}
    # Page by 5 while new deliveries arrive between pages: no repeats, no skips, no newcomers.
    page.goto(stack.base_url + f"/ui/deliveries?endpoint_id={eid}&limit=5")
    seen = row_ids(page)
    while page.locator("[data-testid=older]").count():
        stack.send(eid, 3)
        page.locator("[data-testid=older]").click()
        page.wait_for_load_state()
        seen += row_ids(page)
    assert seen == sorted(first, reverse=True)
    page.go_back()
    assert "cursor=" in page.url or page.url.endswith("limit=5")


def test_retry_of_a_failed_delivery_changes_its_row_in_place_and_is_logged(page: Page, stack: Stack) -> None:
    eid = stack.endpoint("/flaky", rate_limit_per_minute=6000)
    stack.receiver.flaky_status = 400
    [did] = stack.send(eid, 1)
    stack.wait_for_statuses([did], {"failed"})
    stack.receiver.flaky_status = 200
    page.goto(stack.base_url + f"/ui/deliveries?status=failed&endpoint_id={eid}")
    page.evaluate("window.notReloaded = true")
    row = page.locator(f"#row-{did}")
    assert row.get_attribute("data-status") == "failed"
    with page.expect_response(lambda r: r.url.endswith(f"/ui/deliveries/{did}/retry")) as answer:
        page.get_by_role("button", name=f"Retry {did}").click()
    assert answer.value.status == 200
    wait_until(page, f"document.querySelector('#row-{did}').dataset.status !== 'failed'")
    assert page.evaluate("window.notReloaded") is True  # swapped in place, no navigation
    assert "Retry queued" in page.locator(f"#row-{did} [data-testid=notice]").inner_text()
    stack.wait_for_statuses([did], {"succeeded"})
    page.goto(stack.base_url + f"/ui/deliveries/{did}")
    assert "retry by bootstrap" in page.locator("[data-testid=actions]").inner_text()
    triggers = [a.get_attribute("data-trigger") for a in page.locator("[data-testid=attempt]").all()]
    assert triggers == ["manual", "scheduled"]  # newest first


def test_bulk_retry_is_confirmed_and_its_progress_followed(page: Page, stack: Stack) -> None:
    eid = stack.endpoint("/fail", rate_limit_per_minute=6000)
    dids = stack.send(eid, 5)
    stack.wait_for_statuses(dids, {"failed"})
    page.goto(stack.base_url + f"/ui/deliveries?status=failed&endpoint_id={eid}")
    page.locator("[data-testid=bulk-link]").click()
    assert "5" in page.locator("[data-testid=estimate]").inner_text()
    page.locator("[data-testid=confirm]").click()
    page.wait_for_url("**/ui/bulk/blk_*")
    page.evaluate("window.notReloaded = true")
    wait_until(page, "document.querySelector('[data-testid=bulk]').dataset.state === 'done'", timeout=30)
    assert page.evaluate("window.notReloaded") is True  # progress came in through htmx polling
    assert page.locator("[data-testid=queued]").inner_text() == "5"
    stack.wait_for_statuses(dids, {"failed"})  # sent again (and failed again) by the worker
    assert all(len(stack.api.get(f"/v1/deliveries/{d}").json()["attempts"]) == 2 for d in dids)


def test_the_chart_draws_the_timeline_and_a_paced_run_stays_under_the_line(
    page: Page, stack: Stack, screenshots: Path
) -> None:
    eid = stack.endpoint("/ok", rate_limit_per_minute=240)  # 4/s: the line is at 5
    dids = stack.send(eid, 24)
    stack.wait_for_statuses(dids, {"succeeded"}, timeout=40)
    time.sleep(1.2)  # let the last second close
    # A pause as the pump's overload control records it (hp:ep:{eid}:pauses, newest first): shaded on the chart.
    now_ms = int(time.time() * 1000)
    pause = {"start_ms": now_ms - 40_000, "end_ms": now_ms - 30_000, "reason": "retry_after", "status_code": 429}
    with redis.Redis.from_url(stack.redis_url) as client:
        client.lpush(f"hp:ep:{eid}:pauses", json.dumps(pause))
    page.goto(stack.base_url + f"/ui/endpoints/{eid}")
    wait_until(page, "window.hookpumpChart !== undefined")
    api: dict[str, Any] = stack.api.get(f"/v1/endpoints/{eid}/timeline").json()
    chart: dict[str, Any] = page.evaluate("window.hookpumpChart.timeline")
    drawn: list[list[float]] = page.evaluate("window.hookpumpChart.data")
    assert page.locator("#chart canvas").is_visible()
    # The same series as the route (the two reads may be a second apart: compare the shared seconds).
    page_points = {p["at"]: p["sent"] for p in chart["points"]}
    shared = [p for p in api["points"] if p["at"] in page_points]
    assert len(shared) >= 295 and all(page_points[p["at"]] == p["sent"] for p in shared)
    assert sum(p["sent"] for p in api["points"]) == 24
    assert drawn[1] == [p["sent"] for p in chart["points"]]
    assert set(drawn[2]) == {api["limit_per_second"]} == {5}
    assert max(drawn[1]) <= api["limit_per_second"]
    assert [(p["reason"], p["status_code"]) for p in chart["pauses"]] == [("retry_after", 429)] == [
        (p["reason"], p["status_code"]) for p in api["pauses"]]
    page.screenshot(path=str(screenshots / "endpoint.png"), full_page=True)


def test_the_overview_refreshes_itself_without_a_reload(page: Page, stack: Stack, screenshots: Path) -> None:
    eid = stack.endpoint("/ok")
    stack.api.post(f"/v1/endpoints/{eid}/pause", json={})
    page.goto(stack.base_url + "/ui/")
    page.evaluate("window.notReloaded = true")
    before = int(page.locator("[data-testid=backlog]").inner_text())
    stack.send(eid, 7)
    wait_until(page, f"Number(document.querySelector('[data-testid=backlog]').innerText) === {before + 7}",
                           timeout=12)
    assert page.evaluate("window.notReloaded") is True
    assert "worker" in page.locator("[data-testid=pump-health]").inner_text()
    page.screenshot(path=str(screenshots / "overview.png"), full_page=True)
    page.goto(stack.base_url + f"/ui/deliveries?endpoint_id={eid}")
    page.screenshot(path=str(screenshots / "deliveries.png"), full_page=True)
    stack.api.post(f"/v1/endpoints/{eid}/resume")


def test_a_hostile_receiver_answer_runs_nothing(page: Page, stack: Stack, screenshots: Path) -> None:
    eid = stack.endpoint("/evil", rate_limit_per_minute=6000)
    [did] = stack.send(eid, 1)
    stack.wait_for_statuses([did], {"failed"})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(stack.base_url + f"/ui/deliveries/{did}")
    page.locator("details").first.click()
    assert page.locator("[data-testid=response-body]").inner_text() == HOSTILE_BODY
    assert json.loads(page.locator("[data-testid=payload]").inner_text()) == {"n": 0}  # what was sent
    assert "s3cr3t" not in page.content()
    page.wait_for_timeout(300)
    assert dialogs == []
    page.screenshot(path=str(screenshots / "delivery.png"), full_page=True)


def test_the_pages_work_with_javascript_off(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, stack.base_url, ADMIN_KEY)
        eid = stack.endpoint("/fail", rate_limit_per_minute=6000)
        [did] = stack.send(eid, 1)
        stack.wait_for_statuses([did], {"failed"})
        page.goto(stack.base_url + "/ui/deliveries")
        page.get_by_label("failed").check()
        page.get_by_label("Endpoint id").fill(eid)
        page.get_by_role("button", name="Apply").click()
        page.wait_for_load_state()
        assert "status=failed" in page.url and f"endpoint_id={eid}" in page.url
        assert row_ids(page) == [did]
        page.get_by_role("button", name=f"Retry {did}").click()  # a plain POST, then a redirect back
        page.wait_for_load_state()
        assert "status=failed" in page.url
        detail = stack.api.get(f"/v1/deliveries/{did}").json()
        assert [a["action"] for a in detail["actions"]] == ["retry"]
        # Retry all matching, confirmed, then followed with the Refresh link.
        stack.wait_for_statuses([did], {"failed"})
        page.goto(stack.base_url + f"/ui/deliveries?status=failed&endpoint_id={eid}")
        page.locator("[data-testid=bulk-link]").click()
        page.locator("[data-testid=confirm]").click()
        page.wait_for_url("**/ui/bulk/blk_*")
        deadline = time.monotonic() + 30
        while page.locator("[data-testid=bulk]").get_attribute("data-state") != "done":
            assert time.monotonic() < deadline
            time.sleep(0.3)
            page.get_by_role("link", name="Refresh").click()
        assert page.locator("[data-testid=queued]").inner_text() == "1"
        page.goto(stack.base_url + f"/ui/endpoints/{eid}")
        assert page.locator("[data-testid=stats]").is_visible()
        page.goto(stack.base_url + "/ui/")
        assert page.locator("[data-testid=counts]").is_visible()
    finally:
        context.close()


def test_every_page_passes_axe(browser: Browser, stack: Stack) -> None:
    # CSP would (rightly) refuse the injected axe script, so this context bypasses it.
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(stack.base_url + "/ui/login")
        pages = {"login": page.url}
        sign_in(page, stack.base_url, ADMIN_KEY)
        eid = stack.endpoint("/fail", rate_limit_per_minute=6000)
        [did] = stack.send(eid, 1)
        stack.wait_for_statuses([did], {"failed"})
        job = stack.api.post("/v1/deliveries/retry", json={"endpoint_id": eid}).json()["id"]
        pages.update({
            "overview": "/ui/", "deliveries": "/ui/deliveries",
            "filtered": f"/ui/deliveries?status=failed&endpoint_id={eid}",
            "delivery": f"/ui/deliveries/{did}", "endpoint": f"/ui/endpoints/{eid}", "endpoints": "/ui/endpoints",
            "confirm": f"/ui/deliveries/retry?status=failed&endpoint_id={eid}", "bulk": f"/ui/bulk/{job}",
        })
        for name, path in pages.items():
            page.goto(path if path.startswith("http") else stack.base_url + path)
            assert_no_axe_violations(page, name)
        # And after an htmx swap: retry a row in place (an endpoint of its own, out of the bulk job's reach).
        other = stack.endpoint("/fail", rate_limit_per_minute=6000)
        [swapped] = stack.send(other, 1)
        stack.wait_for_statuses([swapped], {"failed"})
        page.goto(stack.base_url + f"/ui/deliveries?status=failed&endpoint_id={other}")
        with page.expect_response(lambda r: r.url.endswith(f"/ui/deliveries/{swapped}/retry")):
            page.get_by_role("button", name=f"Retry {swapped}").click()
        wait_until(page, "document.querySelector('[data-testid=notice]') !== null")
        assert_no_axe_violations(page, "after a row swap")
    finally:
        context.close()


WIDTHS = {"phone": 390, "laptop": 1280}
# For a failure's message: elements reaching past the viewport's right edge, or spilling out of their box.
WIDE_ELEMENTS = """[...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5
    || e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === "visible" && e.clientWidth > 0)
  .slice(-5).map(e => e.tagName + "." + e.className + " " + (e.textContent || "").slice(0, 40))"""


def overflow(page: Page) -> int:
    """How far the page scrolls sideways (0: it fits its viewport)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.mark.parametrize("width", WIDTHS.values(), ids=WIDTHS.keys())
def test_every_page_fits_the_screen_with_data_in_its_tables(browser: Browser, stack: Stack, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(stack.base_url + "/ui/login")
        assert overflow(page) <= 0, "login"
        assert_no_axe_violations(page, f"login at {width}")
        sign_in(page, stack.base_url, ADMIN_KEY)
        eid = stack.endpoint("/fail", rate_limit_per_minute=6000, description="billing receiver of a long name")
        ok = stack.endpoint("/ok-with-a-rather-long-path/for/the/receiver/of/order/events", rate_limit_per_minute=6000)
        dids = stack.send(eid, 3, event_type="order.refund.requested") + stack.send(ok, 3)
        stack.wait_for_statuses(dids, {"failed", "succeeded"})
        job = stack.api.post("/v1/deliveries/retry", json={"endpoint_id": eid}).json()["id"]
        # Paused, so the longest sentences show: the state, the drain estimate, what a delivery waits for.
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
        assert stack.api.post(f"/v1/endpoints/{eid}/pause", json={"until": until}).status_code == 200
        pages = {
            "overview": "/ui/", "deliveries": "/ui/deliveries",
            "filtered": f"/ui/deliveries?status=failed&endpoint_id={eid}",
            "delivery": f"/ui/deliveries/{dids[0]}", "endpoint": f"/ui/endpoints/{eid}", "endpoints": "/ui/endpoints",
            "confirm": f"/ui/deliveries/retry?status=failed&endpoint_id={eid}", "bulk": f"/ui/bulk/{job}",
        }  # fmt: skip
        for name, path in pages.items():
            page.goto(stack.base_url + path)
            page.wait_for_load_state("load")
            assert overflow(page) <= 0, (name, width, overflow(page), page.evaluate(WIDE_ELEMENTS))
            assert_no_axe_violations(page, f"{name} at {width}")
        page.goto(stack.base_url + "/ui/deliveries")
        rows = page.locator("[data-testid=row]")
        assert rows.count() >= 6
        first = rows.first
        if width == WIDTHS["laptop"]:
            # One line per row: a short id with a copy button, the endpoint named by its description or URL.
            heights = page.evaluate("[...document.querySelectorAll('[data-testid=row]')].map(r => r.offsetHeight)")
            line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
            assert max(heights) < 2 * line, (heights, line)
            shown_id = first.locator("[data-testid=delivery-id]")
            assert len(shown_id.inner_text()) < 20 and shown_id.get_attribute("title") == first.get_attribute("data-id")
            assert first.get_by_role("button", name=f"Copy id {first.get_attribute('data-id')}").is_visible()
            names = set(page.locator("[data-testid=row] [data-testid=endpoint]").all_inner_texts())
            assert "billing receiver of a long name" in names and any("/ok-with-a" in n for n in names), names
        else:
            # A stack: each cell on its own line under its column's name, beside the label it belongs to.
            assert first.locator("td").first.evaluate("td => getComputedStyle(td).display") == "block"
            headings = first.locator("td").evaluate_all(
                "tds => tds.map(td => getComputedStyle(td, '::before').content)"
            )
            assert headings[:4] == ['"Delivery: "', '"Endpoint: "', '"Event type: "', '"Status: "'], headings
            for field in ("Endpoint id", "Event type", "Since"):
                label = page.get_by_test_id("filters").get_by_text(field, exact=True).bounding_box()
                box = page.get_by_label(field).bounding_box()
                assert label and box and abs(label["y"] - box["y"]) < 40, (field, label, box)
            nav = page.get_by_role("navigation", name="Console").bounding_box()
            assert nav and nav["x"] + nav["width"] <= width
    finally:
        context.close()


def test_the_chart_reads_in_24_hour_utc_and_its_legend_shows_the_latest_second(browser: Browser, stack: Stack) -> None:
    # A browser far from UTC: the axis must still read as the tables do (24-hour UTC), not local 12-hour time.
    context = browser.new_context(timezone_id="America/Los_Angeles", locale="en-US")
    try:
        page = context.new_page()
        sign_in(page, stack.base_url, ADMIN_KEY)
        eid = stack.endpoint("/ok", rate_limit_per_minute=6000)
        stack.wait_for_statuses(stack.send(eid, 3), {"succeeded"})
        page.goto(stack.base_url + f"/ui/endpoints/{eid}")
        wait_until(page, "window.hookpumpChart !== undefined && window.hookpumpChart.plot.axes[0]._values !== null")
        labels: list[str] = page.evaluate("window.hookpumpChart.plot.axes[0]._values")
        utc: list[str] = page.evaluate(
            "window.hookpumpChart.plot.axes[0]._splits.map(v => new Date(v * 1000).toISOString().slice(11, 19))")
        assert labels and labels == utc, (labels, utc)
        # Before any hover the legend holds the latest second's values, not "--".
        values = page.locator(".u-legend .u-value").all_inner_texts()
        drawn: list[list[float]] = page.evaluate("window.hookpumpChart.data")
        assert values == [utc_clock(drawn[0][-1]), str(drawn[1][-1]), str(drawn[2][-1])], values
        # Hovering shows that point; leaving the chart brings the latest back.
        box = page.locator("#chart .u-over").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
        wait_until(page, "window.hookpumpChart.plot.legend.idx < window.hookpumpChart.data[0].length - 1")
        page.mouse.move(0, 0)
        wait_until(page, "window.hookpumpChart.plot.legend.idx === window.hookpumpChart.data[0].length - 1")
        assert "--" not in page.locator(".u-legend").inner_text()
    finally:
        context.close()


def utc_clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))
