"""`hookpump listen`: a local webhook receiver that prints each delivery as it arrives, checks its
Standard Webhooks signature when given the secret, and can answer like a receiver under stress
(a fixed status, Retry-After, a delay, a capacity above which it answers 429)."""

from __future__ import annotations

import hmac
import math
import re
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click

from core.errors import InvalidInput
from delivery.signing import decode_secret, sign
from hookpump.client import ClientError, HookpumpClient, resolve_connection
from hookpump.commands.output import EXIT_USAGE, Output

TOLERANCE_SECONDS = 300  # Standard Webhooks: reject timestamps more than 5 minutes off
BODY_PRINT_LIMIT = 2000
SIGNATURE_MARKS = {"ok": "signature ok", "unchecked": "signature not checked"}
CAPACITY = re.compile(r"^(\d+(?:\.\d+)?)/(s|m|min)$")


@dataclass(frozen=True)
class Behaviour:
    status: int
    retry_after: str | None
    delay: float
    capacity_per_second: float | None


class CapacityWindow:
    """At most `per_second` answers a second over a sliding one-second window (thread-safe)."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.arrivals: deque[float] = deque()
        self.lock = threading.Lock()

    def admit(self, now: float) -> float | None:
        """None if this request fits; else the seconds until one would."""
        with self.lock:
            while self.arrivals and self.arrivals[0] <= now - 1.0:
                self.arrivals.popleft()
            if len(self.arrivals) < self.per_second:
                self.arrivals.append(now)
                return None
            return self.arrivals[0] + 1.0 - now


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> str:
    """`ok`, or why the request is not genuine."""
    msg_id, timestamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not a number"
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        return "webhook-timestamp is more than 5 minutes off"
    expected = sign([secret], msg_id, sent_at, body)
    if any(hmac.compare_digest(expected, entry) for entry in signatures.split()):
        return "ok"
    return "signature does not match the secret"


def parse_capacity(text: str) -> float:
    match = CAPACITY.match(text.strip())
    if match is None:
        raise ValueError
    amount = float(match.group(1))
    per_second = amount if match.group(2) == "s" else amount / 60
    if per_second <= 0:
        raise ValueError
    return per_second


class EventTypes:
    """The event type of a webhook-id (a message id), asked of the API once if it can be reached."""

    def __init__(self, client: HookpumpClient | None) -> None:
        self.client = client
        self.known: dict[str, str] = {}
        self.lock = threading.Lock()

    def of(self, msg_id: str) -> str:
        with self.lock:
            known = self.known.get(msg_id)
        if known is None:  # asked outside the lock: one slow answer must not hold up other requests
            known = self._ask(msg_id)
            with self.lock:
                self.known[msg_id] = known
        return known

    def _ask(self, msg_id: str) -> str:
        if self.client is None or not msg_id.startswith("msg_"):
            return "-"
        try:
            return self.client.get_message(msg_id)["event_type"]
        except ClientError:
            return "-"


class Listener:
    def __init__(self, behaviour: Behaviour, secret: str | None, output: Output, event_types: EventTypes) -> None:
        self.behaviour = behaviour
        self.secret = secret
        self.output = output
        self.event_types = event_types
        self.capacity = CapacityWindow(behaviour.capacity_per_second) if behaviour.capacity_per_second else None
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], str]:
        """The status, headers and body to answer with; prints the delivery."""
        arrived = time.time()
        if self.behaviour.delay:
            time.sleep(self.behaviour.delay)
        msg_id = headers.get("webhook-id", "")
        with self.lock:
            self.attempts[msg_id] += 1
            attempt = self.attempts[msg_id]
        signature = "unchecked" if self.secret is None else verify(self.secret, headers, body, arrived)
        status, extra, text = self.behaviour.status, {}, "ok"
        if self.behaviour.retry_after is not None:
            extra["Retry-After"] = self.behaviour.retry_after
        if signature not in ("ok", "unchecked"):
            status, extra, text = 401, {}, f"invalid signature: {signature}"
        elif self.capacity is not None and (wait := self.capacity.admit(time.monotonic())) is not None:
            status, extra, text = 429, {"Retry-After": str(max(1, math.ceil(wait)))}, "over capacity"
        self.report(arrived, headers, attempt, signature, status, body)
        return status, extra, text

    def report(
        self, arrived: float, headers: dict[str, str], attempt: int, signature: str, status: int, body: bytes
    ) -> None:
        msg_id = headers.get("webhook-id", "")
        event_type = self.event_types.of(msg_id)
        text = body.decode("utf-8", errors="replace")
        with self.lock:
            if self.output.as_json:
                self.output.json_line({
                    "at": arrived, "event_type": event_type, "webhook_id": msg_id, "attempt": attempt,
                    "signature": signature, "status": status, "body": text,
                    "headers": {name: value for name, value in headers.items() if name.startswith("webhook-")},
                })  # fmt: skip
            else:
                clock = datetime.fromtimestamp(arrived).strftime("%H:%M:%S.%f")[:-3]
                mark = SIGNATURE_MARKS.get(signature, f"FORGED: {signature}")
                self.output.line(f"{clock}  {event_type}  {msg_id}  attempt {attempt}  {mark}  -> {status}")
                self.output.line("  " + (text if len(text) <= BODY_PRINT_LIMIT else text[:BODY_PRINT_LIMIT] + " ..."))
            sys.stdout.flush()


def handler_for(listener: Listener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, extra, text = listener.answer(headers, body)
            payload = text.encode()
            self.send_response(status)
            for name, value in {**extra, "Content-Type": "text/plain", "Content-Length": str(len(payload))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # the listener prints its own lines
            return

    return Handler


@click.command(epilog="""\b
Examples:
  hookpump listen                                   # on 127.0.0.1:9000, any path, answers 200
  hookpump listen --port 9000 --secret whsec_...    # also checks each signature (forged: 401)
  hookpump listen --status 429 --retry-after 5      # watch hookpump pause and come back
  hookpump listen --status 503 --delay 2            # a slow, failing receiver
  hookpump listen --capacity 4/s                    # 429 above 4 requests a second""")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--secret", metavar="whsec_...", help="Verify Standard Webhooks signatures with this secret.")
@click.option("--status", type=click.IntRange(100, 599), default=200, show_default=True, help="Answer this status.")
@click.option("--retry-after", metavar="SECONDS", help="Send this Retry-After header with each answer.")
@click.option("--delay", type=click.FloatRange(0, 600), default=0.0, help="Wait this many seconds before answering.")
@click.option("--capacity", metavar="N/s", help="Answer 429 (with Retry-After) above this rate: 4/s or 120/m.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per delivery.")
@click.option("--api-url", metavar="URL", help="hookpump's address, to show event types [default: as other commands].")
@click.option("--key", metavar="KEY", help="API key, to show event types [default: as other commands].")
def listen(
    port: int, host: str, secret: str | None, status: int, retry_after: str | None, delay: float,
    capacity: str | None, as_json: bool, api_url: str | None, key: str | None,
) -> None:  # fmt: skip
    """A local receiver that prints each delivery: time, event type, webhook-id, attempt, body."""
    output = Output(as_json)
    if secret is not None:
        try:
            decode_secret(secret)
        except InvalidInput as exc:
            output.usage(f"--secret {exc}; copy it from `hookpump endpoints create`")
    per_second = None
    if capacity is not None:
        try:
            per_second = parse_capacity(capacity)
        except ValueError:
            output.usage(f"--capacity {capacity!r} is not a rate: write N/s or N/m, e.g. 4/s")
    try:
        connection = resolve_connection(api_url, key)
        client: HookpumpClient | None = HookpumpClient(connection.url, connection.key, timeout=2)
    except ClientError:
        client = None  # event types shown as "-"; receiving works without the API
    listener = Listener(Behaviour(status, retry_after, delay, per_second), secret, output, EventTypes(client))
    try:
        server = ThreadingHTTPServer((host, port), handler_for(listener))
    except OSError as exc:
        output.errors.print(f"hookpump: cannot listen on {host}:{port} ({exc.strerror}); try another --port",
                            markup=False)  # fmt: skip
        raise SystemExit(EXIT_USAGE) from None
    server.daemon_threads = True
    answers = f"answers {status}" + (f" with Retry-After {retry_after}" if retry_after else "")
    if per_second:
        answers += f", 429 above {capacity}"
    output.note(f"listening on http://{host}:{server.server_address[1]}/ (any path), {answers}"
                + (", checking signatures" if secret else "") + "; Ctrl-C stops")  # fmt: skip
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if client is not None:
            client.close()
