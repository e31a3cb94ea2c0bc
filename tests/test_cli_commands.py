"""Every `hookpump` client command run as a subprocess against a real `hookpump dev` (real Redis, real
worker), with `hookpump listen` as the receiver: sending, the delivery log and its filters, retries
one by one and in bulk, endpoint management, signatures, capacity and pacing, and bad input."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from standardwebhooks import Webhook

from hookpump.client import HookpumpClient
from tests.conftest import RedisServer, free_port
from tests.dev_server import (
    DEV_SETTINGS,
    DevServer,
    Listening,
    clean_env,
    dev_server,
    empty_database,
    stop_process,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev(redis_server: RedisServer) -> Iterator[DevServer]:
    with dev_server(empty_database(redis_server, 4)) as server:
        yield server


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def create_endpoint(dev: DevServer, url: str, *options: str) -> tuple[str, str]:
    """The new endpoint's id and (from stderr, shown once) its secret."""
    result = dev.hookpump("endpoints", "create", url, "-q", *options)
    endpoint_id = ok(result).strip()
    secret = result.stderr.split("secret: ", 1)[1].split()[0]
    return endpoint_id, secret


def wait_for_statuses(dev: DevServer, endpoint_id: str, status: str, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = as_json(dev.hookpump("deliveries", "list", "--endpoint", endpoint_id, "--status", status, "--json"))
        if len(found) >= count:
            return list(found)
        assert time.monotonic() < deadline, f"{len(found)} {status} deliveries, not {count}"
        time.sleep(0.3)


def test_send_in_every_form_then_find_the_deliveries_by_each_filter(dev: DevServer, tmp_path: Path) -> None:
    with Listening(dev) as listener:
        endpoint_id, _ = create_endpoint(dev, listener.url, "--rate-limit", "600", "--event-type", "order.paid",
                                         "--event-type", "order.refunded")  # fmt: skip
        sent = as_json(dev.hookpump("send", "order.paid", '{"id": 1}', "--json"))
        assert [d["endpoint_id"] for d in sent["deliveries"]] == [endpoint_id]
        ok(dev.hookpump("send", "order.refunded", "-", "--endpoint", endpoint_id, input='{"id": 2}'))
        batch = tmp_path / "events.jsonl"
        batch.write_text('{"event_type": "order.paid", "payload": {"id": 3}}\n\n{"event_type": "order.paid", '
                         '"payload": {"id": 4}}\n')  # fmt: skip
        assert len(ok(dev.hookpump("send", "--batch", str(batch), "-q")).split()) == 2
        ok(dev.hookpump("send", "order.paid", "--batch", "-", input='{"id": 5}\n'))
        bodies = sorted(json.loads(r["body"])["id"] for r in listener.wait_for(5))
        assert bodies == [1, 2, 3, 4, 5]
        assert {r["event_type"] for r in listener.received} == {"order.paid", "order.refunded"}

        delivered = wait_for_statuses(dev, endpoint_id, "succeeded", 5)
        assert len(delivered) == 5
        by_type = as_json(dev.hookpump("deliveries", "list", "--endpoint", endpoint_id, "--event-type",
                                       "order.refunded", "--json"))  # fmt: skip
        assert [d["event_type"] for d in by_type] == ["order.refunded"]
        by_message = as_json(dev.hookpump("deliveries", "list", "--message", sent["id"], "--json"))
        assert [d["id"] for d in by_message] == [sent["deliveries"][0]["id"]]
        def listed(*filters: str) -> list[Any]:
            return list(as_json(dev.hookpump("deliveries", "list", "--endpoint", endpoint_id, *filters, "--json")))

        assert listed("--status", "failed") == []
        assert len(listed("--since", "10m")) == 5
        assert listed("--until", "1h") == []
        assert len(listed("--limit", "2")) == 2

        table = ok(dev.hookpump("deliveries", "list", "--endpoint", endpoint_id)).splitlines()
        assert table[0].split() == ["ID", "STATUS", "EVENT", "TYPE", "ENDPOINT", "ATTEMPTS", "LAST", "ANSWER",
                                    "CREATED", "NEXT"]  # fmt: skip
        assert table[1].index("succeeded") == table[0].index("STATUS")  # aligned columns
        assert "\x1b[" not in "\n".join(table)  # no colours off a terminal ...
        code, screen = run_in_terminal(dev, "deliveries", "list", "--endpoint", endpoint_id, raw=True)
        assert code == 0 and "\x1b[32msucceeded" in screen  # ... and green on one

        detail = as_json(dev.hookpump("deliveries", "show", sent["deliveries"][0]["id"], "--json"))
        assert detail["attempts"][0]["response"]["status"] == 200
        shown = ok(dev.hookpump("deliveries", "show", sent["deliveries"][0]["id"]))
        assert "succeeded" in shown and "scheduled" in shown


def test_follow_prints_new_deliveries_as_they_arrive(dev: DevServer) -> None:
    endpoint_id, _ = create_endpoint(dev, "http://127.0.0.1:9/unused", "--event-type", "follow.me")
    ok(dev.hookpump("endpoints", "pause", endpoint_id))
    follower = subprocess.Popen(
        [sys.executable, "-m", "hookpump", "deliveries", "list", "--endpoint", endpoint_id, "--follow", "-q"],
        env=dev.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        sent = as_json(dev.hookpump("send", "follow.me", "{}", "--json"))
        assert follower.stdout is not None
        assert follower.stdout.readline().strip() == sent["deliveries"][0]["id"]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=10)
    assert follower.returncode == 0


def test_follow_prints_a_row_again_when_its_status_changes(dev: DevServer) -> None:
    with Listening(dev) as listener:
        endpoint_id, _ = create_endpoint(dev, listener.url, "--event-type", "follow.change")
        ok(dev.hookpump("endpoints", "pause", endpoint_id))
        follower = subprocess.Popen(
            [sys.executable, "-m", "hookpump", "deliveries", "list", "--endpoint", endpoint_id, "--follow"],
            env=dev.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline().split()[:2] == ["ID", "STATUS"]
            delivery_id = as_json(dev.hookpump("send", "follow.change", "{}", "--json"))["deliveries"][0]["id"]
            assert follower.stdout.readline().split()[:2] == [delivery_id, "pending"]
            ok(dev.hookpump("endpoints", "resume", endpoint_id))
            listener.wait_for(1)
            assert follower.stdout.readline().split()[:2] == [delivery_id, "succeeded"]
        finally:
            follower.send_signal(signal.SIGINT)
            follower.communicate(timeout=10)


def test_cancel_stops_a_queued_delivery_and_refuses_an_ended_one_in_one_line(dev: DevServer) -> None:
    endpoint_id, _ = create_endpoint(dev, "http://127.0.0.1:9/cancel", "--event-type", "cancel.me")
    ok(dev.hookpump("endpoints", "pause", endpoint_id))
    sent = ok(dev.hookpump("send", "cancel.me", "{}"))
    assert ": 1 delivery: " in sent, sent  # not "1 deliveries"
    delivery_id = sent.split(": 1 delivery: ")[1].split(" -> ")[0]
    assert ok(dev.hookpump("cancel", delivery_id)).strip() == f"{delivery_id} cancelled (cancelled)"
    assert as_json(dev.hookpump("deliveries", "show", delivery_id, "--json"))["delivery"]["status"] == "cancelled"
    one_line_failure(dev.hookpump("cancel", delivery_id), 1, delivery_id, "409")
    assert dev.hookpump("cancel").returncode == 2  # no id: a usage error


def test_api_keys_are_made_listed_and_deleted_through_the_api_with_no_redis_address(dev: DevServer) -> None:
    assert not any(name.startswith("HOOKPUMP_REDIS") for name in dev.cli_env())
    made = dev.hookpump("api-key", "create", "--name", "billing", "--scope", "send", "--scope", "read")
    key = ok(made).strip()
    assert key.startswith("hp_") and "\n" not in key
    key_id = made.stderr.split("created API key ")[1].split()[0]
    assert "billing" in made.stderr and "read, send" in made.stderr and key not in made.stderr
    listed = ok(dev.hookpump("api-key", "list"))
    assert re.search(rf"^{key_id}\s+billing\s+read,send\s", listed, re.MULTILINE), listed
    assert key not in listed
    ok(dev.hookpump("deliveries", "list", "--key", key))  # it works, with its scopes only
    one_line_failure(dev.hookpump("api-key", "list", "--key", key), 1, "403")
    assert ok(dev.hookpump("api-key", "delete", key_id)).strip() == f"deleted {key_id}"
    assert key_id not in ok(dev.hookpump("api-key", "list", "-q"))
    one_line_failure(dev.hookpump("deliveries", "list", "--key", key), 1, "401")
    one_line_failure(dev.hookpump("api-key", "delete", key_id), 1, "404")


def test_listen_verifies_a_real_signature_and_refuses_a_forged_one(dev: DevServer) -> None:
    with Listening(dev, "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=") as listener:
        create_endpoint(dev, listener.url, "--event-type", "sig.check", "--secret",
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")  # fmt: skip
        sent = as_json(dev.hookpump("send", "sig.check", '{"n": 1}', "--json"))
        (real,) = listener.wait_for(1)
        assert (real["signature"], real["status"], real["attempt"]) == ("ok", 200, 1)
        assert (real["event_type"], real["webhook_id"]) == ("sig.check", sent["id"])
        # The independent check: the Standard Webhooks library accepts what the listener accepted.
        Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=").verify(real["body"], real["headers"])

        forged_headers = {**real["headers"], "webhook-signature": "v1,bm90IHRoZSByaWdodCBzaWduYXR1cmUgYXQgYWxs"}
        answer = httpx.post(listener.url, content=real["body"], headers=forged_headers)
        assert answer.status_code == 401
        tampered = httpx.post(listener.url, content=b'{"n": 2}', headers=real["headers"])
        assert tampered.status_code == 401
        _, forged, changed = listener.wait_for(3)
        assert forged["signature"] == changed["signature"] == "signature does not match the secret"
        assert forged["attempt"] == 2  # the same webhook-id seen again


def test_retry_one_then_the_rest_in_bulk_until_the_receiver_has_them(dev: DevServer) -> None:
    refusing = Listening(dev, "--status", "400")
    endpoint_id, _ = create_endpoint(dev, refusing.url, "--rate-limit", "600", "--event-type", "retry.me")
    try:
        for n in range(3):
            ok(dev.hookpump("send", "retry.me", json.dumps({"n": n})))
        failed = wait_for_statuses(dev, endpoint_id, "failed", 3)
    finally:
        refusing.stop()
    # On the same port: the endpoint's URL now reaches a receiver that accepts.
    accepting = subprocess.Popen(
        [sys.executable, "-m", "hookpump", "listen", "--port", str(refusing.port), "--json"],
        env=dev.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert accepting.stderr is not None and "listening on" in accepting.stderr.readline()
        first = failed[-1]["id"]
        assert f"{first} queued again" in ok(dev.hookpump("retry", first))
        assert accepting.stdout is not None
        got = [json.loads(accepting.stdout.readline())]
        assert got[0]["webhook_id"] == first.rsplit("_", 1)[0].replace("dlv_", "msg_")
        # On a terminal, as an operator would run it: a progress bar until the job is done.
        code, screen = run_in_terminal(dev, "retry", "--status", "failed", "--endpoint", endpoint_id)
        assert code == 0, screen
        assert re.search(r"retrying \(blk_\w+\).*2/2", screen), screen
        assert "done: 2 matched, 2 queued again, 0 skipped" in screen
        got += [json.loads(accepting.stdout.readline()) for _ in range(2)]
        assert sorted(json.loads(r["body"])["n"] for r in got) == [0, 1, 2]
        wait_for_statuses(dev, endpoint_id, "succeeded", 3)
    finally:
        accepting.terminate()
        accepting.communicate(timeout=10)


def test_listen_capacity_answers_429_and_hookpump_paces_to_it(dev: DevServer) -> None:
    seen: list[dict[str, Any]] = []  # the endpoint's stats, polled while the burst drains
    with Listening(dev, "--capacity", "2/s") as listener:
        endpoint_id, _ = create_endpoint(dev, listener.url, "--rate-limit", "600", "--event-type", "cap.test")
        done = threading.Event()

        def watch() -> None:
            with HookpumpClient(dev.url, dev.key) as client:
                while not done.is_set():
                    seen.append(dict(client.endpoint_stats(endpoint_id)))
                    time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            lines = "".join(json.dumps({"n": n}) + "\n" for n in range(12))
            ok(dev.hookpump("send", "cap.test", "--batch", "-", input=lines))
            accepted = listener.wait_for(12, timeout=60, accepted_only=True)
        finally:
            done.set()
            watcher.join(10)
        refused = [r for r in listener.received if r["status"] == 429]
        stats = as_json(dev.hookpump("endpoints", "show", endpoint_id, "--json"))["stats"]
    assert sorted(json.loads(r["body"])["n"] for r in accepted) == list(range(12))
    assert refused, "the listener never answered 429 above its capacity"
    assert all(r["headers"]["webhook-id"] for r in refused)
    assert stats["last_hour"]["overloaded"] == len(refused)  # hookpump took each 429 as "slow down"
    # ... and slowed down: it paused on the listener's Retry-After, and its pace fell below the
    # 10/s limit (it halves on a 429 and climbs back a tenth of the limit per success).
    assert any(s["paused"] and s["pause_reason"] == "retry_after" for s in seen), seen
    assert min(s["effective_rate_per_minute"] for s in seen) <= 300
    assert len(refused) < 12


@pytest.mark.parametrize("status", ["429", "503"])
def test_listen_acts_out_an_overloaded_receiver_and_hookpump_honours_its_retry_after(
    dev: DevServer, status: str
) -> None:
    with Listening(dev, "--status", status, "--retry-after", "2", "--delay", "0.5") as listener:
        endpoint_id, _ = create_endpoint(dev, listener.url, "--event-type", f"stress.{status}")
        sent = as_json(dev.hookpump("send", f"stress.{status}", "{}", "--json"))
        first, second = listener.wait_for(2, timeout=30)
        stats = as_json(dev.hookpump("endpoints", "show", endpoint_id, "--json"))["stats"]
    detail = as_json(dev.hookpump("deliveries", "show", sent["deliveries"][0]["id"], "--json"))
    attempt = detail["attempts"][0]
    assert attempt["response"]["status"] == int(status) and attempt["response"]["headers"]["retry-after"] == "2"
    assert attempt["outcome"] == "overloaded"
    assert attempt["duration_ms"] >= 500  # --delay, as hookpump measured it
    # The second attempt waited for Retry-After (2 s after the answer, which came 0.5 s after the
    # request); receiver-side clocks, so 0.3 s of tolerance.
    assert second["at"] - first["at"] >= 2.5 - 0.3, (first["at"], second["at"])
    assert second["attempt"] == 2 and stats["last_hour"]["overloaded"] >= 1


def test_endpoint_commands_change_what_they_say(dev: DevServer) -> None:
    endpoint_id, secret = create_endpoint(dev, "http://127.0.0.1:9/a", "--header", "X-Team: billing",
                                          "--description", "first")  # fmt: skip
    assert secret.startswith("whsec_")
    listed = as_json(dev.hookpump("endpoints", "list", "--json"))
    assert endpoint_id in {e["id"] for e in listed}
    updated = as_json(dev.hookpump("endpoints", "update", endpoint_id, "--url", "http://127.0.0.1:9/b",
                                   "--rate-limit", "30", "--event-type", "a.b", "--json"))  # fmt: skip
    assert (updated["url"], updated["rate_limit_per_minute"], updated["event_types"]) == (
        "http://127.0.0.1:9/b", 30, ["a.b"],
    )  # fmt: skip
    every_type = as_json(dev.hookpump("endpoints", "update", endpoint_id, "--all-event-types", "--json"))
    assert every_type["event_types"] is None
    assert as_json(dev.hookpump("endpoints", "pause", endpoint_id, "--for", "1h", "--json"))["flow"]["paused"]
    shown = as_json(dev.hookpump("endpoints", "show", endpoint_id, "--json"))
    assert shown["stats"]["pause_reason"] == "operator" and shown["endpoint"]["headers"] == {"X-Team": "billing"}
    assert not as_json(dev.hookpump("endpoints", "resume", endpoint_id, "--json"))["flow"]["paused"]
    rotated = as_json(dev.hookpump("endpoints", "rotate-secret", endpoint_id, "--json"))
    assert rotated["secret"] != secret
    assert "secret" not in shown["endpoint"] and "whsec_" not in json.dumps(shown["endpoint"])
    ok(dev.hookpump("endpoints", "delete", endpoint_id))
    gone = dev.hookpump("endpoints", "show", endpoint_id)
    assert gone.returncode == 1 and "404" in gone.stderr


# --- bad input: one line naming the problem and the fix, never a traceback -------------------------


def one_line_failure(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hookpump: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_a_wrong_key_is_exit_1_and_says_which_key_to_use(dev: DevServer) -> None:
    one_line_failure(dev.hookpump("deliveries", "list", "--key", "hp_wrong"), 1, "401", "HOOKPUMP_KEY")
    problem = json.loads(dev.hookpump("deliveries", "list", "--json", HOOKPUMP_KEY="hp_wrong").stdout)
    assert problem["status"] == 401 and problem["type"].startswith("https://hookpump.dev/problems/")


def test_no_server_is_exit_3(dev: DevServer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    one_line_failure(dev.hookpump("top", "--once", "--api-url", nowhere), 3, "cannot reach hookpump", "hookpump dev")
    problem = json.loads(dev.hookpump("send", "a.b", "{}", "--json", HOOKPUMP_URL=nowhere).stdout)
    assert problem["title"] == "Cannot reach the server"


def test_no_key_anywhere_is_a_usage_error(dev: DevServer, tmp_path: Path) -> None:
    one_line_failure(dev.hookpump("endpoints", "list", HOOKPUMP_DATA_DIR=str(tmp_path)), 2, "--key", "HOOKPUMP_KEY")


def test_an_unknown_id_is_exit_1_with_the_apis_detail(dev: DevServer) -> None:
    one_line_failure(dev.hookpump("deliveries", "show", "dlv_00000000000000000000000000_1"), 1, "404", "no delivery")
    one_line_failure(dev.hookpump("retry", "dlv_00000000000000000000000000_1"), 1, "404")


def test_malformed_payloads_are_usage_errors_naming_the_line(dev: DevServer, tmp_path: Path) -> None:
    one_line_failure(dev.hookpump("send", "a.b", "{id: 1}"), 2, "PAYLOAD is not JSON", "quote it")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "a.b", "payload": 1}\n{"event_type": \n')
    one_line_failure(dev.hookpump("send", "--batch", str(bad)), 2, f"line 2 of {bad} is not JSON")
    one_line_failure(dev.hookpump("send", "--batch", str(tmp_path / "missing.jsonl")), 2, "cannot read --batch")
    refused = dev.hookpump("send", "a b", "{}", "--json")  # the API refuses the event type
    assert refused.returncode == 1 and json.loads(refused.stdout)["errors"][0]["field"] == "event_type"


def test_a_filter_the_api_rejects_is_exit_1_with_its_detail(dev: DevServer) -> None:
    one_line_failure(dev.hookpump("deliveries", "list", "--since", "yesterday"), 1, "422", "since", "RFC 3339")
    one_line_failure(dev.hookpump("retry", "--endpoint", "ep_nope"), 1, "422", "endpoint_id")


def test_usage_mistakes_exit_2(dev: DevServer) -> None:
    one_line_failure(dev.hookpump("retry"), 2, "give delivery IDs")
    one_line_failure(dev.hookpump("listen", "--capacity", "lots"), 2, "N/s")
    one_line_failure(dev.hookpump("listen", "--secret", "whsec_short"), 2, "--secret")
    assert dev.hookpump("deliveries", "list", "--status", "lost").returncode == 2


# --- top, help and completion -------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def test_top_shows_each_busy_endpoint_and_its_rate_in_a_fixed_size_terminal_and_quits_on_q(dev: DevServer) -> None:
    endpoint_id, _ = create_endpoint(dev, "http://127.0.0.1:9/top", "--rate-limit", "90", "--event-type", "top.x")
    ok(dev.hookpump("endpoints", "pause", endpoint_id))
    for n in range(3):
        ok(dev.hookpump("send", "top.x", json.dumps({"n": n})))
    rows, columns = 30, 150
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    top = subprocess.Popen(
        [sys.executable, "-m", "hookpump", "top"], env=dev.cli_env(TERM="xterm-256color"), stdin=follower,
        stdout=follower, stderr=follower, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    screen = ""
    try:
        deadline = time.monotonic() + 20
        while endpoint_id not in ANSI.sub("", screen) or "operator" not in screen:
            assert time.monotonic() < deadline, f"top never showed {endpoint_id}:\n{ANSI.sub('', screen)}"
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                screen += os.read(leader, 65536).decode(errors="replace")
        text = ANSI.sub("", screen)
        (row,) = {line for line in text.splitlines() if endpoint_id in line}
        assert len(row.rstrip()) <= columns
        cells = row.split()
        assert cells[cells.index(endpoint_id) + 2] == "3"  # backlog, after the URL
        assert "1.5/min / 1.5/min" not in row and "90/min / 90/min" in row
        assert "operator" in row
        os.write(leader, b"q")
        assert top.wait(10) == 0
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
        os.close(leader)


def run_in_terminal(
    dev: DevServer, *args: str, rows: int = 24, columns: int = 120, raw: bool = False
) -> tuple[int, str]:
    """Run a command on a pseudo-terminal of a fixed size; its exit status and what it showed
    (without escape sequences unless `raw`)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "hookpump", *args], env=dev.cli_env(TERM="xterm-256color"), stdin=follower,
        stdout=follower, stderr=follower, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no output for 30 s:\n{screen.decode(errors='replace')}"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        text = screen.decode(errors="replace")
        return process.wait(10), text if raw else ANSI.sub("", text)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help_with_an_example() -> None:
    from hookpump.commands import root

    commands = list(leaf_commands(root))
    assert len(commands) == 21, commands
    for words in commands:
        result = CliRunner().invoke(root, [*words, "--help"], prog_name="hookpump")
        assert result.exit_code == 0, (words, result.output)
        assert "Example" in result.output, f"hookpump {' '.join(words)} --help has no example"


def test_shell_completion_completes_commands(dev: DevServer) -> None:
    script = ok(dev.hookpump(_HOOKPUMP_COMPLETE="bash_source"))
    assert "complete" in script and "_hookpump_completion" in script
    words = ok(dev.hookpump(_HOOKPUMP_COMPLETE="bash_complete", COMP_WORDS="hookpump deliveries l", COMP_CWORD="2"))
    assert "plain,list" in words.split()


def test_dev_takes_its_port_host_and_data_dir_as_flags_over_the_variables(redis_server: RedisServer,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    helped = subprocess.run([sys.executable, "-m", "hookpump", "dev", "--help"], capture_output=True, text=True,
                            env=clean_env(), timeout=60)  # fmt: skip
    assert all(option in helped.stdout for option in ("--port", "--host", "--data-dir")), helped.stdout
    port = free_port()
    env = clean_env()
    env.update(DEV_SETTINGS)
    env.update({"HOOKPUMP_REDIS_URL": empty_database(redis_server, 6), "HOOKPUMP_PORT": "1",
                "HOOKPUMP_DATA_DIR": str(tmp_path / "ignored")})  # fmt: skip
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "hookpump", "dev", "--port", str(port), "--host", "127.0.0.1",
             "--data-dir", str(tmp_path / "chosen")],
            env=env, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        server = DevServer(f"http://127.0.0.1:{port}", tmp_path / "chosen", log)
        deadline = time.monotonic() + 30
        while not ready(server.url):
            assert process.poll() is None and time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        assert server.key.startswith("hp_") and not (tmp_path / "ignored").exists()
        ok(server.hookpump("endpoints", "list"))
    finally:
        stop_process(process)


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
