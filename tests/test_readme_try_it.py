"""README's "Try it" section, run as written: its shell blocks in order, in a fresh directory, against
a real `hookpump dev`. Blocks that start a server (`./scripts/dev`, `hookpump listen`) are started in
the background, as the README's extra terminals; a new `hookpump listen` replaces the previous one,
as the README says. Only the ports change (8080 and 9000 may be taken on this machine), and
`./scripts/dev` runs `python -m hookpump dev` directly (the venv is already set up)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RedisServer, free_port
from tests.dev_server import REPO, DevServer, clean_env, empty_database, stop_process, wait_until_ready

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def try_it_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in BLOCK.findall(section)]


def wait_for_text(path: Path, pattern: str, count: int = 1, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if len(re.findall(pattern, text)) >= count:
            return text
        assert time.monotonic() < deadline, f"{path.name} never had {count} x {pattern!r}:\n{text[-3000:]}"
        time.sleep(0.2)


def test_the_readme_try_it_section_runs_as_written(redis_server: RedisServer, tmp_path: Path) -> None:
    blocks = try_it_blocks()
    assert blocks[0] == "./scripts/dev" and any(b.startswith("hookpump listen") for b in blocks)
    api_port, receiver_port = free_port(), free_port()
    env = clean_env()
    env.update({"HOOKPUMP_PORT": str(api_port), "HOOKPUMP_REDIS_URL": empty_database(redis_server, 5)})
    servers: list[subprocess.Popen[bytes]] = []
    listener_logs: list[Path] = []
    listener: subprocess.Popen[bytes] | None = None
    outputs: list[str] = []

    def localise(block: str) -> str:
        return block.replace("8080", str(api_port)).replace("9000", str(receiver_port))

    try:
        for number, block in enumerate(blocks):
            if block == "./scripts/dev":
                with (tmp_path / "dev.log").open("wb") as log:
                    dev = subprocess.Popen([sys.executable, "-m", "hookpump", "dev"], cwd=tmp_path, env=env,
                                           stdout=log, stderr=log)  # fmt: skip
                servers.append(dev)
                where = DevServer(f"http://127.0.0.1:{api_port}", tmp_path / ".hookpump", tmp_path / "dev.log")
                wait_until_ready(where, dev)
            elif block.startswith("hookpump listen"):
                if listener is not None:
                    # The README: "stop it and start it again" (after the delivery it was waiting for).
                    wait_for_text(listener_logs[-1], r"-> 200")
                    listener.terminate()
                    listener.wait(10)
                listener_logs.append(tmp_path / f"listen-{len(listener_logs)}.log")
                with listener_logs[-1].open("wb") as out:
                    listener = subprocess.Popen(["bash", "-c", "exec " + localise(block)], cwd=tmp_path, env=env,
                                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
                servers.append(listener)
                wait_for_text(listener_logs[-1], "listening on", timeout=20)
            else:
                result = subprocess.run(["bash", "-euo", "pipefail", "-c", localise(block)], cwd=tmp_path, env=env,
                                        capture_output=True, text=True, timeout=120)  # fmt: skip
                assert result.returncode == 0, f"block {number} failed:\n{block}\n{result.stdout}\n{result.stderr}"
                assert "Traceback" not in result.stderr
                outputs.append(result.stdout)

        first = listener_logs[0].read_text()
        assert re.search(r"order\.paid  msg_\w+  attempt 1  signature ok  -> 200", first), first
        assert '{"id":1}' in first
        # The burst reached the stressed receiver: some refused with 429, then every one accepted.
        stressed = wait_for_text(listener_logs[1], r"-> 200", count=20, timeout=90)
        assert "-> 429" in stressed, stressed
        assert "queued again" in outputs[-2] and "done:" in outputs[-2]
        assert '"backlog"' in outputs[-1]  # the curl line
        assert "RATE / LIMIT" in outputs[1]  # hookpump top --once
    finally:
        for server in reversed(servers):
            stop_process(server)
