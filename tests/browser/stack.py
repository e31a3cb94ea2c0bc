"""A real hookpump for browser tests: `hookpump serve` and `hookpump worker` as processes on a private
Redis database, a scripted loopback receiver in a thread, and Debian's chromium driven by Playwright
(never a downloaded browser: `playwright install` is not used anywhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from core.settings import Settings
from tests.conftest import free_port
from tests.workers import worker_env

CHROMIUM = os.environ.get("HOOKPUMP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-extensions", "--no-first-run", "--mute-audio"]
ADMIN_KEY = "browser-admin-key-0123456789abcdef"  # 32+ characters, as HOOKPUMP_API_KEY must be
HOSTILE_BODY = "<script>alert('receiver')</script><img src=x onerror=alert(2)>"


class Receiver:
    """Answers by path: /ok 200, /fail 400, /evil 400 with a script-laden body; /flaky answers
    `flaky_status` (tests switch it)."""

    def __init__(self) -> None:
        self.flaky_status = 400
        self.arrivals: list[tuple[float, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.arrivals.append((time.time(), self.path))
                status, body, headers = 200, "ok", {}
                if self.path == "/fail":
                    status, body = 400, "nope"
                elif self.path == "/evil":
                    status, body = 400, HOSTILE_BODY
                    headers = {"X-Evil": "\"><script>alert(3)</script>", "Set-Cookie": "rsession=s3cr3t"}
                elif self.path == "/flaky":
                    status = receiver.flaky_status
                payload = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    def __init__(self, base_url: str, receiver: Receiver, redis_url: str) -> None:
        self.base_url = base_url
        self.redis_url = redis_url
        self.receiver = receiver
        self.api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)

    def endpoint(self, path: str, **fields: Any) -> str:
        response = self.api.post("/v1/endpoints", json={"url": self.receiver.url(path), **fields})
        assert response.status_code == 201, response.text
        eid: str = response.json()["id"]
        return eid

    def send(self, eid: str, count: int, event_type: str = "order.paid") -> list[str]:
        messages = [{"event_type": event_type, "payload": {"n": n}, "endpoint_ids": [eid]} for n in range(count)]
        response = self.api.post("/v1/messages/batch", json={"messages": messages})
        assert response.status_code == 202, response.text
        return [d["id"] for m in response.json()["messages"] for d in m["deliveries"]]

    def wait_for_statuses(self, dids: list[str], wanted: set[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        pending = set(dids)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} deliveries never reached {wanted}"
            for did in list(pending):
                if self.api.get(f"/v1/deliveries/{did}").json()["delivery"]["status"] in wanted:
                    pending.discard(did)
            time.sleep(0.2)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "hookpump serve exited at start"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@contextmanager
def running_stack(redis_url: str) -> Iterator[Stack]:
    """serve + worker processes (logs printed if a test fails) against `redis_url`."""
    settings = Settings(redis_url=redis_url, api_key=ADMIN_KEY, allow_private_targets=True, pump_interval=1.0,
                        connect_timeout=1.0, request_timeout=2.0, lease_seconds=3.0, retry_base=0.2, retry_cap=1.0,
                        backoff_base=0.2, backoff_cap=1.0, log_format="text")
    port = free_port()
    history = tempfile.TemporaryDirectory(prefix="hookpump-browser-")
    # Both processes share one SQLite history file of the test's own, not one in the working directory.
    env = {**worker_env(settings, "browser-worker"), "HOOKPUMP_API_KEY": ADMIN_KEY,
           "HOOKPUMP_HOST": "127.0.0.1", "HOOKPUMP_PORT": str(port),
           "HOOKPUMP_DATABASE_URL": f"sqlite:///{history.name}/history.db", "HOOKPUMP_DATA_DIR": history.name}
    logs = tempfile.TemporaryFile()
    processes = []
    try:
        with Receiver() as receiver:
            # serve is up before the worker opens its connections: a free port picked here was once
            # taken by another process's outgoing connection before serve could bind it, so a serve
            # that cannot bind gets a fresh port (up to three times).
            for attempt in range(3):
                serve = subprocess.Popen([sys.executable, "-m", "hookpump", "serve"], env=env,
                                         stdout=logs, stderr=subprocess.STDOUT)
                base = f"http://127.0.0.1:{port}"
                try:
                    _wait_until_up(base + "/healthz", serve)
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
                    port = free_port()
                    env["HOOKPUMP_PORT"] = str(port)
            processes.append(serve)
            processes.append(subprocess.Popen([sys.executable, "-m", "hookpump", "worker"], env=env,
                                              stdout=logs, stderr=subprocess.STDOUT))
            running = Stack(base, receiver, redis_url)
            try:
                yield running
            finally:
                running.api.close()
    except BaseException:
        logs.seek(0)
        print("--- hookpump logs ---\n" + logs.read().decode(errors="replace")[-6000:])
        raise
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()
        history.cleanup()


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None
