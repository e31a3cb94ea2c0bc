"""Rate limiters as receivers have them, for the pacing tests, the pacing model and bench/adaptive.py:
nginx's `limit_req` arithmetic, a token bucket, and Debian's nginx itself on loopback."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin")


@dataclass
class Strict:
    """nginx's limit_req (ngx_http_limit_req_module.c) with `burst` (0: none): a request is taken when
    the ones taken before it, drained at the rate, leave room for it; refused ones do not count."""

    burst: int = 0
    excess: float = 0.0
    last: float | None = None

    def take(self, now: float, rate: float) -> bool:
        if math.isinf(rate):
            return True
        if self.last is not None:
            elapsed_ms = math.floor((now - self.last) * 1000)  # nginx's clock is whole milliseconds
            excess = max(0.0, self.excess - rate * elapsed_ms / 1000 + 1)
            if excess > self.burst:
                return False
            self.excess = excess
        self.last = now
        return True


@dataclass
class Bucket:
    """A token bucket of `rate`/s holding `burst_seconds` of it (at least one token)."""

    burst_seconds: float = 0.5
    tokens: float | None = None
    at: float = 0.0

    def take(self, now: float, rate: float) -> bool:
        if math.isinf(rate):
            return True
        burst = max(1.0, rate * self.burst_seconds)
        self.tokens = burst if self.tokens is None else min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class Limit:
    """One nginx location: requests per second and limit_req's burst (with nodelay when there is one)."""

    rate: float
    burst: int = 0


class Nginx:
    """Debian's nginx with its own config in `directory`, on a free loopback port: one location per
    name, each with its own limit_req zone, proxying to `upstream_port`; `$msec $uri $status` per
    request in its access log (its own count of what it refused and passed on)."""

    def __init__(self, directory: Path) -> None:
        if NGINX is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
        self.directory = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self, upstream_port: int, locations: dict[str, Limit]) -> Nginx:
        d = self.directory
        zones, blocks = [], []
        for i, (name, limit) in enumerate(locations.items()):
            zones.append(f"limit_req_zone $server_port zone=z{i}:1m rate={limit.rate:g}r/s;")
            burst = f" burst={limit.burst} nodelay" if limit.burst else ""
            blocks.append(f"location = /{name} {{ limit_req zone=z{i}{burst}; "
                          f"proxy_pass http://127.0.0.1:{upstream_port}; }}")
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp = " ".join(f"{kind}_temp_path {d}/{kind};" for kind in kinds)
        conf = "\n".join([
            f"user root; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;",
            "events { worker_connections 1024; }",
            f"http {{ log_format hp '$msec $uri $status'; access_log {d}/access.log hp; {temp}",
            f"  keepalive_requests 100000; {' '.join(zones)}",
            f"  server {{ listen 127.0.0.1:{self.port}; {' '.join(blocks)} }}",
            "}",
        ])
        (d / "nginx.conf").write_text(conf + "\n")
        assert NGINX is not None
        self.process = subprocess.Popen([NGINX, "-c", str(d / "nginx.conf"), "-g", "daemon off;"])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {(d / 'error.log').read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def answers(self) -> dict[str, list[tuple[float, int]]]:
        """(time, status) per request, by location name, from nginx's access log."""
        out: dict[str, list[tuple[float, int]]] = {}
        log = self.directory / "access.log"
        for line in log.read_text().splitlines() if log.exists() else []:
            at, uri, status = line.split()
            out.setdefault(uri.lstrip("/"), []).append((float(at), int(status)))
        return out


def require_nginx() -> str:
    """nginx's path; skipped loudly without it, failed under CI=true (.ci/run installs it)."""
    if NGINX is None:
        message = "nginx is not installed (apt-get install nginx-light): the limit_req pacing test did not run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print("\n*** SKIPPING " + message + " ***")
        pytest.skip(message)
    return NGINX
