"""The WordPress plugin end to end: a real WordPress (Debian's package, php-cli, MariaDB) with the
plugin active, a real `hookpump dev`, and a real receiver on loopback.

The tests run in file order and share one site: each step builds on what the one before sent.
Without php, WordPress or MariaDB they are skipped, loudly; under CI=true that is a failure.
"""

from __future__ import annotations

import datetime
import html
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import free_port
from tests.wordpress_site import HookpumpDev, HungServer, Receiver, WordPressSite, eventually, require_the_parts

pytestmark = pytest.mark.slow

# The plugin's send timeout (Hookpump_Client::DEFAULT_TIMEOUT), and how far past one timeout a request
# that meets a hung hookpump may run (WordPress's own work for the request, on a busy machine).
SEND_TIMEOUT = 2.0
ONE_TIMEOUT_TOLERANCE = 1.5


# --- the world: site, hookpump, receiver ------------------------------------------------------------


@dataclass
class World:
    site: WordPressSite
    hookpump: HookpumpDev
    receiver: Receiver
    activation: dict[str, Any]
    send_key: str
    monitor_key: str
    posts_endpoint: dict[str, Any]
    comments_endpoint: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.hookpump.admin_key}"}
        return httpx.request(method, self.hookpump.url + path, headers=headers, timeout=10, **kwargs)

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = self.api("GET", "/v1/deliveries", params={"limit": 250, **filters})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_the_parts()
    directory = tmp_path_factory.mktemp("wordpress")
    receiver = Receiver()
    receiver.start()
    hookpump = HookpumpDev(directory / "hookpump")
    site: WordPressSite | None = None
    try:
        hookpump.start()
        admin = {"Authorization": f"Bearer {hookpump.admin_key}"}

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = httpx.post(hookpump.url + path, json=body, headers=admin, timeout=10)
            assert response.status_code == 201, response.text
            created: dict[str, Any] = response.json()
            return created

        send_key = post("/v1/api-keys", {"name": "wordpress send", "scopes": ["send"]})["key"]
        monitor_key = post("/v1/api-keys", {"name": "wordpress monitor", "scopes": ["read", "admin"]})["key"]
        posts_endpoint = post("/v1/endpoints", {
            "url": receiver.url("/hook"), "rate_limit_per_minute": 600,
            "event_types": ["post.published", "post.trashed"],
        })  # fmt: skip
        comments_endpoint = post("/v1/endpoints", {
            "url": receiver.url("/fail"), "rate_limit_per_minute": 600, "event_types": ["comment.posted"],
        })  # fmt: skip

        site = WordPressSite.create(directory)
        site.php("install")
        activation = site.php("activate").result
        assert isinstance(activation, dict)
        site.php(
            "configure",
            hookpump_url=hookpump.url,
            hookpump_send_key=send_key,
            hookpump_read_key=monitor_key,
            hookpump_enabled_rules=["post_published", "comment_posted"],
            hookpump_endpoint_ids=[posts_endpoint["id"], comments_endpoint["id"]],
        )
        cookies = site.php("login").result
        assert isinstance(cookies, dict)
        site.cookies = cookies
        yield World(site, hookpump, receiver, activation, send_key, monitor_key, posts_endpoint, comments_endpoint)
    finally:
        hookpump.stop()
        receiver.stop()
        if site is not None:
            site.drop()


# --- static checks ----------------------------------------------------------------------------------


# --- activation -------------------------------------------------------------------------------------


def test_activation_creates_the_outbox_table_a_flush_schedule_and_keeps_keys_out_of_autoload(
    world: World,
) -> None:
    assert world.activation["error"] is None
    assert world.activation["table"] == "wp_hookpump_outbox"
    assert world.activation["send_key_autoload"] == "no"
    assert world.activation["cron"]


# --- sending ----------------------------------------------------------------------------------------


def test_a_published_post_reaches_hookpump_and_the_receiver_signed(world: World) -> None:
    run = world.site.php("publish_post", title="Hello hookpump")
    assert isinstance(run.result, dict)
    post_id = run.result["post_id"]
    assert run.result["outbox"] == []
    world.state["first_post"] = post_id

    hit = eventually(lambda: world.receiver.on("/hook"), what="the webhook at the receiver")[0]
    Webhook(world.posts_endpoint["secret"]).verify(hit.body, hit.headers)  # raises if the signature is wrong
    body = json.loads(hit.body)
    assert body["type"] == "post.published"
    assert body["site"] == "http://wp.test"
    assert body["data"]["id"] == post_id
    assert body["data"]["title"] == "Hello hookpump"
    assert body["data"]["status"] == "publish"
    assert body["data"]["type"] == "post"
    assert body["data"]["url"].startswith("http://wp.test/")

    [delivery] = eventually(
        lambda: [d for d in world.deliveries(endpoint_id=world.posts_endpoint["id"]) if d["status"] == "succeeded"],
        what="a succeeded delivery",
    )
    assert delivery["event_type"] == "post.published"
    message = world.api("GET", f"/v1/messages/{delivery['message_id']}").json()
    assert message["payload"] == body
    # Nothing else was sent: the comment endpoint is not subscribed to posts.
    assert world.deliveries(endpoint_id=world.comments_endpoint["id"]) == []


def test_the_same_hook_fired_twice_sends_once(world: World) -> None:
    post_id = world.state["first_post"]
    for _ in range(2):
        run = world.site.php("republish", post_id=post_id)
        assert isinstance(run.result, dict)
        assert run.result["outbox"] == []  # hookpump answered (a replay): nothing kept for later
    time.sleep(3)  # three pump windows: a second message would have been delivered by now
    assert len(world.receiver.on("/hook")) == 1
    assert len(world.deliveries(endpoint_id=world.posts_endpoint["id"])) == 1


def test_hookpump_send_returns_the_same_message_id_for_a_repeat_and_a_new_one_for_a_change(world: World) -> None:
    args = {"object": "order:7"}
    first = world.site.php("send", event_type="order.paid", payload={"id": 7, "total": "9.50"}, args=args).result
    again = world.site.php("send", event_type="order.paid", payload={"id": 7, "total": "9.50"}, args=args).result
    changed = world.site.php("send", event_type="order.paid", payload={"id": 7, "total": "12.00"}, args=args).result
    assert isinstance(first, dict) and isinstance(again, dict) and isinstance(changed, dict)
    assert first["id"].startswith("msg_")
    assert again["id"] == first["id"]
    assert changed["id"] != first["id"]
    bad = world.site.php("send", event_type="order paid!", payload={}).result
    assert bad["error"] == "hookpump_invalid_event_type" and "order paid!" in bad["message"]


def test_with_hookpump_down_posts_wait_in_the_outbox_and_each_goes_out_once_when_it_returns(world: World) -> None:
    world.hookpump.stop()
    titles = ["Down one", "Down two", "Down three"]
    post_ids = []
    for title in titles:
        started = time.monotonic()
        run = world.site.php("publish_post", title=title)
        assert time.monotonic() - started < 15  # a refused connection does not hold the page up
        assert isinstance(run.result, dict)
        post_ids.append(run.result["post_id"])
    outbox = world.site.php("outbox").result
    assert isinstance(outbox, dict)
    assert [row["status"] for row in outbox["outbox"]] == ["pending"] * 3
    assert [json.loads(row["message"])["payload"]["data"]["id"] for row in outbox["outbox"]] == post_ids
    assert outbox["health"]["status"] == "recommended"
    assert "3 events are waiting" in outbox["health"]["description"]
    assert "could not be reached" in outbox["last_error"]["message"]
    assert world.hookpump.admin_key not in json.dumps(outbox) and world.send_key not in json.dumps(outbox)

    world.hookpump.start()
    flushed = world.site.php("run_cron").result
    assert isinstance(flushed, dict)
    assert flushed["outbox"] == []
    eventually(lambda: len(world.receiver.on("/hook")) >= 4, what="the three kept posts at the receiver")
    # A second flush finds nothing; give any duplicate time to arrive before counting.
    world.site.php("run_cron")
    time.sleep(3)
    delivered = [json.loads(hit.body)["data"]["id"] for hit in world.receiver.on("/hook")]
    assert sorted(delivered) == sorted([world.state["first_post"], *post_ids])
    health = world.site.php("outbox").result
    assert isinstance(health, dict)
    assert health["health"]["status"] == "good"
    assert health["last_error"] is None  # hookpump took events since: the error no longer stands


def test_titles_arrive_as_plain_text_and_only_published_posts_send_post_trashed(world: World) -> None:
    world.site.php("configure", hookpump_enabled_rules=["post_published", "post_trashed", "comment_posted"])
    before = len(world.receiver.on("/hook"))
    try:
        title = 'Fish & Chips, "Peas" and the cook\'s <em>best</em>'
        published = world.site.php("publish_post", title=title).result["post_id"]
        draft = world.site.php("publish_post", title="A draft nobody saw", status="draft").result["post_id"]
        world.site.php("trash_post", post_id=draft)
        world.site.php("trash_post", post_id=published)
        eventually(lambda: len(world.receiver.on("/hook")) >= before + 2, what="post.published and post.trashed")
        time.sleep(2)  # a post.trashed for the draft would have arrived by now
    finally:
        world.site.php("configure", hookpump_enabled_rules=["post_published", "comment_posted"])
    bodies = [json.loads(hit.body) for hit in world.receiver.on("/hook")[before:]]
    assert [(b["type"], b["data"]["id"]) for b in bodies] == [
        ("post.published", published),
        ("post.trashed", published),
    ]
    assert [b["data"]["title"] for b in bodies] == ['Fish & Chips, "Peas" and the cook\'s best'] * 2
    assert bodies[1]["data"]["status"] == "trash"


def test_site_health_warns_while_no_event_is_ticked(world: World) -> None:
    world.site.php("configure", hookpump_enabled_rules=[])
    try:
        health = world.site.php("outbox").result["health"]
    finally:
        world.site.php("configure", hookpump_enabled_rules=["post_published", "comment_posted"])
    assert health["status"] == "recommended"
    assert health["label"] == "hookpump sends no events yet"
    assert "No event is ticked on Settings" in health["description"]
    assert world.site.php("outbox").result["health"]["status"] == "good"


def test_the_next_successful_send_also_sends_what_waits(world: World) -> None:
    world.hookpump.stop()
    waiting = world.site.php("publish_post", title="Waiting").result
    world.hookpump.start()
    world.site.php("forget_unreachable")  # the minute in which events go straight to the outbox is over
    before = len(world.receiver.on("/hook"))
    arriving = world.site.php("publish_post", title="Arriving").result
    [kept] = waiting["outbox"]
    assert kept["event_type"] == "post.published"
    assert json.loads(kept["message"])["payload"]["data"]["id"] == waiting["post_id"]
    # The harness reads the table at the very end of the request: the waiting row went with it.
    assert arriving["outbox"] == []
    eventually(lambda: len(world.receiver.on("/hook")) >= before + 2, what="both posts at the receiver")
    time.sleep(2)
    ids = [json.loads(hit.body)["data"]["id"] for hit in world.receiver.on("/hook")[before:]]
    assert sorted(ids) == sorted([waiting["post_id"], arriving["post_id"]])


def test_with_hookpump_hung_a_request_publishing_five_posts_pays_one_timeout_and_loses_nothing(
    world: World,
) -> None:
    hung = HungServer()
    world.site.php("configure", hookpump_url=hung.url)
    before = len(world.receiver.on("/hook"))
    try:
        started = time.monotonic()
        run = world.site.php("publish_posts", title="Hung", n=5).result
        wall = time.monotonic() - started
        # One timeout (SEND_TIMEOUT) and the rest straight to the outbox; five timeouts would be 10 s.
        # "work" is the request from WordPress loaded to its end; "elapsed" adds PHP's start and
        # WordPress's load, which a busy machine stretches.
        assert SEND_TIMEOUT - 0.2 <= run["work"] <= SEND_TIMEOUT + ONE_TIMEOUT_TOLERANCE, run
        assert run["elapsed"] <= SEND_TIMEOUT + 2 * ONE_TIMEOUT_TOLERANCE, run
        assert wall <= SEND_TIMEOUT + 2 * ONE_TIMEOUT_TOLERANCE + 1
        assert hung.accepted == 1
        ids = [json.loads(row["message"])["payload"]["data"]["id"] for row in run["outbox"]]
        assert ids == run["post_ids"] and len(ids) == 5

        # The next request within the minute does not wait on hookpump at all.
        again = world.site.php("publish_post", title="Hung again").result
        assert again["work"] < SEND_TIMEOUT / 2
        assert hung.accepted == 1
        assert len(again["outbox"]) == 6
    finally:
        world.site.php("configure", hookpump_url=world.hookpump.url)
        hung.close()

    # hookpump answers again: WP-Cron's flush sends all six, each once.
    flushed = world.site.php("run_cron").result
    assert flushed["outbox"] == []
    expected = sorted([*run["post_ids"], again["post_id"]])
    eventually(lambda: len(world.receiver.on("/hook")) >= before + 6, what="the six kept posts at the receiver")
    world.site.php("run_cron")
    time.sleep(3)  # time for a duplicate to arrive, if there were one
    delivered = [json.loads(hit.body)["data"]["id"] for hit in world.receiver.on("/hook")[before:]]
    assert sorted(delivered) == expected


def test_the_wp_cli_commands_send_report_and_flush(world: World) -> None:
    """The command methods with a stand-in for WP-CLI's output functions (WP-CLI is not installable here)."""

    def cli(command: str, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = world.site.php("cli", command=command, args=list(args)).result
        return result

    world.hookpump.stop()
    queued = cli("send", "order.refunded", '{"id": 8}')
    assert queued["exit"] == 0 and queued["lines"][0].startswith("Warning: The event is kept and will be sent later")
    status = cli("status")["lines"]
    assert "pending: 1" in status and "rejected: 0" in status
    failed = cli("flush")
    assert failed["exit"] == 1 and failed["lines"][0].startswith("Error: sent 0, refused 0, failed 1")
    assert cli("send", "order.refunded", "not json")["lines"] == ["Error: The payload must be a JSON object or array."]

    world.hookpump.start()
    assert cli("flush")["lines"] == ["Success: sent 1, refused 0, failed 0"]
    assert "pending: 0" in cli("status")["lines"]
    sent = cli("send", "order.refunded", '{"id": 9}')
    assert sent["exit"] == 0 and sent["lines"][0].startswith("Success: msg_")
    message = world.api("GET", "/v1/messages/" + sent["lines"][0].removeprefix("Success: ")).json()
    assert (message["event_type"], message["payload"]) == ("order.refunded", {"id": 9})


# --- the admin pages -------------------------------------------------------------------------------


class Forms(HTMLParser):
    """The forms of a page: each one's action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                {"action": attributes.get("action", ""), "class": attributes.get("class", ""), "fields": {}}
            )
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


def retry_form(html: str, delivery_id: str) -> dict[str, str]:
    for form in forms_of(html):
        if "hookpump-retry" in form["class"] and form["fields"].get("delivery") == delivery_id:
            fields: dict[str, str] = form["fields"]
            return fields
    raise AssertionError(f"no Retry button for {delivery_id}")


def test_the_deliveries_page_lists_deliveries_and_its_retry_button_retries_a_failed_one(world: World) -> None:
    world.site.php("comment", post_id=world.state["first_post"], content="Nice post")
    [failed] = eventually(
        lambda: world.deliveries(endpoint_id=world.comments_endpoint["id"], status="failed"),
        what="the comment's delivery to fail (the receiver answers 400 once)",
    )
    page = world.site.request("wp-admin/tools.php", get={"page": "hookpump-deliveries"}).output
    listed = dict(re.findall(r'data-delivery="([^"]+)" data-status="([^"]+)"', page))
    expected = [*world.deliveries(endpoint_id=world.posts_endpoint["id"]), failed]
    assert listed == {d["id"]: d["status"] for d in expected}
    assert "Webhook deliveries" in page

    form = retry_form(page, failed["id"])
    answer = world.site.request("wp-admin/admin-post.php", post=form)
    assert answer.redirects and "page=hookpump-deliveries" in answer.redirects[-1]
    eventually(lambda: len(world.receiver.on("/fail")) == 2, what="the retried delivery at the receiver")
    # The status comes from Redis at once, the attempts from the history store once the outbox
    # writer has committed them (eventually consistent, openapi.yaml): wait for both.
    detail = eventually(
        lambda: (
            (d := world.api("GET", f"/v1/deliveries/{failed['id']}").json())["delivery"]["status"] == "succeeded"
            and len(d["attempts"]) == 2
            and d
        ),
        what="the retried delivery to succeed with both attempts in its log",
    )
    assert [a["trigger"] for a in detail["attempts"]] == ["scheduled", "manual"]
    assert [a["action"] for a in detail["actions"]] == ["retry"]
    world.state["retried"] = failed["id"]

    # The delivery's own page shows both attempts.
    page = world.site.request(
        "wp-admin/tools.php", get={"page": "hookpump-deliveries", "delivery": failed["id"]}
    ).output
    assert re.findall(r'data-outcome="([^"]+)"', page) == ["failed", "succeeded"]
    assert "Delivery " + failed["id"] + " is queued again." in page  # the notice after the redirect


def test_a_retry_without_a_valid_nonce_or_login_is_refused_and_changes_nothing(world: World) -> None:
    delivery_id = world.state["retried"]
    page = world.site.request("wp-admin/tools.php", get={"page": "hookpump-deliveries"}).output
    form = retry_form(page, delivery_id)

    forged = {**form, "_wpnonce": "0123456789"}
    refused = world.site.request("wp-admin/admin-post.php", post=forged)
    assert "The link you followed has expired." in refused.output
    assert not refused.redirects

    cookies, world.site.cookies = world.site.cookies, {}
    try:
        anonymous = world.site.request("wp-admin/admin-post.php", post=form)
    finally:
        world.site.cookies = cookies
    assert "queued again" not in anonymous.output

    detail = world.api("GET", f"/v1/deliveries/{delivery_id}").json()
    assert [a["action"] for a in detail["actions"]] == ["retry"]  # still only the one real retry
    assert detail["delivery"]["status"] == "succeeded"


def test_retry_acts_only_on_deliveries_of_the_sites_own_endpoints(world: World) -> None:
    other = world.api(
        "POST", "/v1/endpoints", json={"url": world.receiver.url("/other"), "event_types": ["other.event"]}
    )
    assert other.status_code == 201, other.text
    assert world.api("POST", "/v1/messages", json={"event_type": "other.event", "payload": {}}).status_code == 202
    [delivery] = eventually(
        lambda: world.deliveries(endpoint_id=other.json()["id"], status="succeeded"),
        what="the other endpoint's delivery",
    )
    page = world.site.request("wp-admin/tools.php", get={"page": "hookpump-deliveries", "delivery": delivery["id"]})
    answer = world.site.request("wp-admin/admin-post.php", post=retry_form(page.output, delivery["id"]))
    assert answer.redirects
    page = world.site.request("wp-admin/tools.php", get={"page": "hookpump-deliveries", "delivery": delivery["id"]})
    assert "is not to one of this site&#039;s endpoints" in page.output
    assert world.api("GET", f"/v1/deliveries/{delivery['id']}").json()["actions"] == []


def test_the_settings_page_tests_the_connection_and_never_shows_a_key(world: World) -> None:
    page = world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    assert world.send_key not in page and world.monitor_key not in page
    assert world.send_key[-4:] in page
    test_form = next(f["fields"] for f in forms_of(page) if f["fields"].get("action") == "hookpump_test_connection")
    tested = world.site.request("wp-admin/admin-post.php", post=test_form)
    assert tested.redirects == ["http://wp.test/wp-admin/options-general.php?page=hookpump"]
    page = world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    assert "Send key: hookpump accepts it." in page
    assert "Monitoring key: hookpump lets it read the delivery log." in page

    # A wrong key is reported, not shown.
    world.site.php("configure", hookpump_send_key="hp_wrong_key_for_test")
    world.site.request("wp-admin/admin-post.php", post=test_form)
    page = world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    assert "Send key: hookpump answered 401." in page
    assert "hp_wrong_key_for_test" not in page
    world.site.php("configure", hookpump_send_key=world.send_key)


def press_test_connection(world: World) -> str:
    """Presses Test connection and returns the settings page it comes back to."""
    page = world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    form = next(f["fields"] for f in forms_of(page) if f["fields"].get("action") == "hookpump_test_connection")
    world.site.request("wp-admin/admin-post.php", post=form)
    return world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output


def notices(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<div class="notice notice-\w+"><p>(.*?)</p></div>', page)]


def test_connection_refuses_a_url_ending_in_v1(world: World) -> None:
    world.site.php("configure", hookpump_url=world.hookpump.url + "/v1")
    try:
        shown = notices(press_test_connection(world))
    finally:
        world.site.php("configure", hookpump_url=world.hookpump.url)
    assert shown == [
        "The hookpump URL ends in /v1: enter hookpump's own URL (e.g. https://hooks.example.com); "
        "the plugin adds /v1 itself."
    ]


def test_a_server_that_answers_200_but_is_not_hookpump_is_refused_and_loses_no_event(world: World) -> None:
    impostor = Receiver(get_body=b"<html>It works!</html>")
    impostor.start()
    world.site.php("configure", hookpump_url=impostor.url("").rstrip("/"))
    try:
        shown = notices(press_test_connection(world))
        sent = world.site.php("send", event_type="order.paid", payload={"id": 70}).result
        outbox = world.site.php("outbox").result["outbox"]
    finally:
        world.site.php("configure", hookpump_url=world.hookpump.url)
        impostor.stop()
    assert len(shown) == 2
    assert shown[0].startswith("Send key: http://127.0.0.1:") and "answered, but not as hookpump does" in shown[0]
    assert shown[1].startswith("Monitoring key: http://127.0.0.1:")
    # hookpump_send never calls a 200 without a message id a success: the event is kept.
    assert sent["error"] == "hookpump_queued" and "not as hookpump does" in sent["message"]
    assert [json.loads(row["message"])["payload"] for row in outbox] == [{"id": 70}]
    assert world.site.php("run_cron").result["outbox"] == []  # sent once hookpump is back


def test_connection_checks_each_key_for_the_scope_it_is_used_for(world: World) -> None:
    def key(scopes: list[str]) -> str:
        response = world.api("POST", "/v1/api-keys", json={"name": "scoped", "scopes": scopes})
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    reader, sender = key(["read"]), key(["send"])
    world.site.php("configure", hookpump_send_key=reader, hookpump_read_key=sender)
    try:
        wrong_way_round = notices(press_test_connection(world))
        world.site.php("configure", hookpump_send_key=sender, hookpump_read_key=reader)
        right = notices(press_test_connection(world))
    finally:
        world.site.php("configure", hookpump_send_key=world.send_key, hookpump_read_key=world.monitor_key)
    assert wrong_way_round == [
        "Send key: it lacks the send scope, so hookpump would refuse every event (its scopes: read).",
        "Monitoring key: it lacks the read scope, so Tools → Webhook deliveries cannot show anything "
        "(its scopes: send).",
    ]
    assert right == [
        "Send key: hookpump accepts it.",
        "Monitoring key: hookpump lets it read the delivery log. Without the admin scope it cannot Retry.",
    ]


def test_the_settings_form_saves_through_the_settings_api_and_keeps_keys_left_empty(world: World) -> None:
    page = world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    form = next(f["fields"] for f in forms_of(page) if f["fields"].get("option_page") == "hookpump")
    names = [
        "hookpump_url",
        "hookpump_send_key",
        "hookpump_read_key",
        "hookpump_enabled_rules",
        "hookpump_endpoint_ids",
    ]
    before = world.site.php("options", names=names).result
    ids = [world.posts_endpoint["id"], world.comments_endpoint["id"]]
    submitted = {
        "option_page": form["option_page"], "action": form["action"], "_wpnonce": form["_wpnonce"],
        "_wp_http_referer": form["_wp_http_referer"], "hookpump_url": world.hookpump.url + "/",
        "hookpump_send_key": "", "hookpump_read_key": "",
        "hookpump_enabled_rules": ["post_published", "comment_posted", "post_updated", "no_such_rule"],
        "hookpump_endpoint_ids": f"{ids[0]}\nnot-an-endpoint, {ids[1]}",
    }  # fmt: skip

    forged = world.site.request("wp-admin/options.php", post={**submitted, "_wpnonce": "0123456789"})
    assert "The link you followed has expired." in forged.output
    assert world.site.php("options", names=names).result == before

    saved = world.site.request("wp-admin/options.php", post=submitted)
    assert saved.redirects and "settings-updated=true" in saved.redirects[-1]
    assert world.site.php("options", names=names).result == {
        "hookpump_url": world.hookpump.url,
        "hookpump_send_key": world.send_key,  # left empty: kept
        "hookpump_read_key": world.monitor_key,
        "hookpump_enabled_rules": ["post_published", "post_updated", "comment_posted"],
        "hookpump_endpoint_ids": ids,
    }
    world.site.php("configure", hookpump_enabled_rules=["post_published", "comment_posted"])


def test_without_a_monitoring_key_the_deliveries_page_says_what_to_configure(world: World) -> None:
    world.site.php("configure", hookpump_read_key="")
    try:
        page = world.site.request("wp-admin/tools.php", get={"page": "hookpump-deliveries"}).output
    finally:
        world.site.php("configure", hookpump_read_key=world.monitor_key)
    assert "To see deliveries here, set hookpump" in page
    assert "data-delivery=" not in page


def listed_rows(page: str) -> dict[str, list[str]]:
    """The deliveries page's rows: delivery id -> the text of its cells."""
    rows = re.findall(r'<tr data-delivery="([^"]+)"[^>]*>(.*?)</tr>', page, re.S)
    return {did: [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for did, row in rows}  # fmt: skip


def test_the_deliveries_page_pages_past_the_newest_25_in_the_sites_time_zone(world: World) -> None:
    batch = {"messages": [{"event_type": "page.test", "payload": {"n": n}, "endpoint_ids": [world.posts_endpoint["id"]]}
                          for n in range(30)]}  # fmt: skip
    assert world.api("POST", "/v1/messages/batch", json=batch).status_code == 202
    site_ids = [world.posts_endpoint["id"], world.comments_endpoint["id"]]
    expected = eventually(
        lambda: (
            (all_ := [d for eid in site_ids for d in world.deliveries(endpoint_id=eid)]) and len(all_) >= 33 and all_
        ),
        what="the batch's deliveries in the log",
    )
    world.site.php("configure", timezone_string="Asia/Kolkata", date_format="Y-m-d", time_format="H:i:s")
    seen: list[str] = []
    pages = 0
    get = {"page": "hookpump-deliveries"}
    while True:
        page = world.site.request("wp-admin/tools.php", get=get).output
        rows = listed_rows(page)
        pages += 1
        assert 0 < len(rows) <= 25
        seen += list(rows)
        for did, cells in rows.items():
            created = next(d["created_at"] for d in expected if d["id"] == did)
            utc = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
            local = utc + datetime.timedelta(hours=5, minutes=30)  # Asia/Kolkata has no summer time
            assert cells[6] == local.strftime("%Y-%m-%d %H:%M:%S"), (created, cells)
        older = re.search(r'<a class="button hookpump-older" href="([^"]+)"', page)
        if older is None:
            break
        get = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(html.unescape(older.group(1))).query))
        assert pages < 5
    assert pages == 2
    assert len(seen) == len(set(seen)) and set(seen) == {d["id"] for d in expected}
    assert seen == sorted(seen, reverse=True)  # newest first across both endpoints


def test_woocommerce_order_status_changes_are_sent_when_woocommerce_is_active(world: World) -> None:
    endpoint = {"url": world.receiver.url("/orders"), "event_types": ["order.status_changed"]}
    response = world.api("POST", "/v1/endpoints", json=endpoint)
    assert response.status_code == 201, response.text
    world.site.php("configure", hookpump_enabled_rules=["post_published", "comment_posted", "woocommerce_order_status"])
    # Without WooCommerce the rule is not on offer, so nothing is sent.
    world.site.php("order_status_changed", order_id=31, **{"from": "pending", "to": "processing"})
    world.site.php("order_status_changed", order_id=31, woocommerce=True, **{"from": "pending", "to": "processing"})
    hit = eventually(lambda: world.receiver.on("/orders"), what="the order event")[0]
    assert json.loads(hit.body) == {
        "type": "order.status_changed", "site": "http://wp.test",
        "data": {"id": 31, "from": "pending", "to": "processing"},
    }  # fmt: skip
    time.sleep(2)
    assert len(world.receiver.on("/orders")) == 1


def test_another_plugin_adds_an_event_rule_through_the_hookpump_events_filter(world: World) -> None:
    endpoint = {"url": world.receiver.url("/custom"), "event_types": ["harness.ping"]}
    assert world.api("POST", "/v1/endpoints", json=endpoint).status_code == 201
    offered = world.site.php("request", file="wp-admin/options-general.php", get={"page": "hookpump"},
                             cookies=world.site.cookies, extra_rule=True).output  # fmt: skip
    assert 'value="harness_ping"' in offered and "A harness ping (harness.ping)" in offered
    assert (
        'value="harness_ping"'
        not in world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
    )

    world.site.php("configure", hookpump_enabled_rules=["harness_ping"])
    world.site.php("ping", n=5, extra_rule=True)
    hit = eventually(lambda: world.receiver.on("/custom"), what="the other plugin's event")[0]
    assert json.loads(hit.body) == {"type": "harness.ping", "site": "http://wp.test", "data": {"n": 5}}
    world.site.php("configure", hookpump_enabled_rules=["post_published", "comment_posted"])


def test_the_comment_rule_skips_spam_and_comments_held_for_moderation(world: World) -> None:
    before = len(world.deliveries(endpoint_id=world.comments_endpoint["id"]))
    post_id = world.state["first_post"]
    world.site.php("comment", post_id=post_id, content="Buy pills", author="Spammer", approved="spam")
    world.site.php("comment", post_id=post_id, content="Held for moderation", approved=0)
    world.site.php("comment", post_id=post_id, content="Approved", author="Tom & Jerry", approved=1)
    [sent] = eventually(
        lambda: (newest_first := world.deliveries(endpoint_id=world.comments_endpoint["id"]))[
            : len(newest_first) - before
        ],
        what="the approved comment's delivery",
    )
    time.sleep(2)  # the other two would have been accepted by now
    assert len(world.deliveries(endpoint_id=world.comments_endpoint["id"])) == before + 1
    payload = world.api("GET", f"/v1/messages/{sent['message_id']}").json()["payload"]
    assert (payload["data"]["content"], payload["data"]["author"]) == ("Approved", "Tom & Jerry")


def test_an_http_url_to_another_machine_gets_a_warning_on_the_settings_page(world: World) -> None:
    def warned(url: str) -> bool:
        world.site.php("configure", hookpump_url=url)
        return (
            "hookpump-http-warning"
            in world.site.request("wp-admin/options-general.php", get={"page": "hookpump"}).output
        )

    try:
        assert warned("http://hooks.example.com")
        assert warned("http://10.0.0.5:8000")
        assert not warned("https://hooks.example.com")
        assert not warned("http://localhost:8000")
        assert not warned(world.hookpump.url)  # http://127.0.0.1:<port>
    finally:
        world.site.php("configure", hookpump_url=world.hookpump.url)


def test_the_outbox_is_bounded_by_rows_and_age_and_counts_what_it_dropped(world: World) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: each event is kept at once
    world.site.php("configure", hookpump_url=closed)
    try:
        for n in range(3):
            world.site.php("send", event_type="bounded.test", payload={"n": n})
        first, second, _ = world.site.php("outbox").result["outbox"]
        world.site.php("age_outbox_row", id=int(first["id"]), days=8)  # past the 7-day limit
        world.site.php("age_outbox_row", id=int(second["id"]), days=31, status="rejected")  # past retention
        limits = {"max_pending_rows": 3}
        for n in range(3, 6):
            world.site.php("send", event_type="bounded.test", payload={"n": n}, outbox_limits=limits)
        state = world.site.php("outbox", outbox_limits=limits).result
    finally:
        world.site.php("configure", hookpump_url=world.hookpump.url)
    # The 8-day-old row went by age, the refused one by retention; of the four pending left, the oldest
    # went by the cap of 3.
    assert [json.loads(row["message"])["payload"] for row in state["outbox"]] == [{"n": 3}, {"n": 4}, {"n": 5}]
    assert state["dropped"] == 2
    assert "2 events were dropped unsent" in state["health"]["description"]
    assert state["health"]["status"] == "recommended"
    world.site.php("run_cron")  # the three go to hookpump


def test_the_plugin_raised_no_php_warnings(world: World) -> None:
    log = world.site.debug_log.read_text(errors="replace") if world.site.debug_log.exists() else ""
    # The test harness's own redirect echo (mu-harness.php) makes WordPress warn about headers; that
    # is not the plugin's, and its path names the checkout, which may itself be called "hookpump".
    lines = [line for line in log.splitlines() if "mu-harness.php" not in line]
    ours = [line for line in lines if "integrations/wordpress" in line or "hookpump" in line.lower()]
    assert ours == []


def test_uninstall_removes_the_options_and_the_table(world: World) -> None:
    result = world.site.php("uninstall").result
    assert result == {"options": [], "table": None, "cron": False}


def test_uninstall_cleans_every_site_of_a_multisite_network(tmp_path: Path) -> None:
    require_the_parts()
    site = WordPressSite.create(tmp_path)
    try:
        site.php("install")
        assert site.php("make_network").result == {"error": None}
        activated = site.php("network_activate").result
        assert activated["error"] is None
        second = str(activated["blog_id"])
        before = site.php("network_state").result
        assert before[second]["table"] == "wp_2_hookpump_outbox" and "hookpump_send_key" in before[second]["options"]
        assert before["1"]["table"] == "wp_hookpump_outbox" and before["1"]["options"]
        site.php("uninstall")
        assert site.php("network_state").result == {
            "1": {"options": [], "table": None},
            second: {"options": [], "table": None},
        }
    finally:
        site.drop()
