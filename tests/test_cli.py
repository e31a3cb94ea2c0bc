"""The `hookpump` command: start-up errors name the variable, one line for an unreachable server or Redis,
dev defaults, log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.logs import NOISY_LOGGERS, configure_logging
from core.settings import Settings
from hookpump.dev import banner, dev_settings, load_or_create_admin_key, redacted
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
# Never contacted: every case below must fail before any connection is made.
SOME_REDIS = {"HOOKPUMP_REDIS_URL": "redis://127.0.0.1:1/0"}


def hookpump_env(**variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HOOKPUMP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(variables)
    return env


def run_hookpump(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookpump", *args], env=hookpump_env(**variables), capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "variables", "named"),
    [
        (["serve"], {**SOME_REDIS, "HOOKPUMP_PORT": "notanumber"}, "HOOKPUMP_PORT"),
        (["serve"], {**SOME_REDIS, "HOOKPUMP_FOO": "1"}, "HOOKPUMP_FOO"),
        (["serve"], {}, "HOOKPUMP_REDIS_URL"),
        (["worker"], {}, "HOOKPUMP_REDIS_URL"),
        (["worker"], {**SOME_REDIS, "HOOKPUMP_LOG_LEVEL": "loud"}, "HOOKPUMP_LOG_LEVEL"),
        (["dev"], {"HOOKPUMP_ALLOW_PRIVATE_TARGETS": "maybe"}, "HOOKPUMP_ALLOW_PRIVATE_TARGETS"),
        (["serve"], {**SOME_REDIS, "HOOKPUMP_DATABASE_URL": "mysql://db/hookpump"}, "HOOKPUMP_DATABASE_URL"),
        (["worker"], {**SOME_REDIS, "HOOKPUMP_DATABASE_URL": "postgresql://db:port/x"}, "HOOKPUMP_DATABASE_URL"),
        (["worker"], {**SOME_REDIS, "HOOKPUMP_DATABASE_URL": "postgresql://db:5432"}, "HOOKPUMP_DATABASE_URL"),
        (["dev"], {"HOOKPUMP_DATABASE_URL": "sqlite://relative.db"}, "HOOKPUMP_DATABASE_URL"),
        # A script would fail (or drop the message) after writing with these: refused at start-up.
        (["serve"], {**SOME_REDIS, "HOOKPUMP_IDEMPOTENCY_TTL": "0"}, "HOOKPUMP_IDEMPOTENCY_TTL"),
        (["worker"], {**SOME_REDIS, "HOOKPUMP_IDEMPOTENCY_TTL": "0.0001"}, "HOOKPUMP_IDEMPOTENCY_TTL"),
        (["serve"], {**SOME_REDIS, "HOOKPUMP_RETENTION": "0"}, "HOOKPUMP_RETENTION"),
        (["serve"], {**SOME_REDIS, "HOOKPUMP_API_KEY": "short-key"}, "HOOKPUMP_API_KEY"),
    ],
)  # fmt: skip
def test_a_bad_setting_exits_2_naming_the_variable(
    command: list[str], variables: dict[str, str], named: str
) -> None:
    result = run_hookpump(*command, **variables)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("hookpump: "), result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    result = run_hookpump("launch")
    assert result.returncode == 2
    assert "usage: hookpump" in result.stderr.lower()
    assert "No such command 'launch'" in result.stderr


# --- no traceback, whatever is unreachable -------------------------------------------------------------

# Every command that talks to the API, with arguments it accepts; `listen` is a receiver and the
# server commands are walked against a stale Redis below.
API_COMMANDS = [
    ["api-key", "create", "--name", "ci", "--scope", "read"],
    ["api-key", "list"],
    ["api-key", "delete", "key_00000000000000000000000000"],
    ["send", "order.paid", "{}"],
    ["endpoints", "list"],
    ["endpoints", "show", "ep_x"],
    ["endpoints", "create", "http://127.0.0.1:9/hook"],
    ["endpoints", "update", "ep_x", "--rate-limit", "5"],
    ["endpoints", "pause", "ep_x"],
    ["endpoints", "resume", "ep_x"],
    ["endpoints", "delete", "ep_x"],
    ["endpoints", "rotate-secret", "ep_x"],
    ["deliveries", "list"],
    ["deliveries", "show", "dlv_x"],
    ["retry", "dlv_x"],
    ["cancel", "dlv_x"],
    ["top", "--once"],
]
SERVER_COMMANDS = [["serve"], ["worker"], ["dev"]]


def run_all(commands: list[list[str]], **variables: str) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands side by side (each is a Python start-up; a few of them wait out a timeout)."""
    processes = [
        subprocess.Popen([sys.executable, "-m", "hookpump", *command], env=hookpump_env(**variables),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for command in commands
    ]  # fmt: skip
    results = []
    try:
        for command, process in zip(commands, processes, strict=True):
            stdout, stderr = process.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    finally:
        for process in processes:  # one that hangs must not outlive the test
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def test_the_walks_cover_every_command() -> None:
    from hookpump.commands import root
    from tests.test_cli_commands import leaf_commands

    walked = {tuple(command[: 2 if command[0] in ("api-key", "endpoints", "deliveries") else 1])
              for command in API_COMMANDS + SERVER_COMMANDS}  # fmt: skip
    assert set(leaf_commands(root)) - walked == {("listen",)}


def test_every_api_command_says_in_one_line_that_the_server_is_unreachable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for result in run_all(API_COMMANDS, HOOKPUMP_URL=closed, HOOKPUMP_KEY="hp_anything"):
        assert result.returncode == 3, (result.args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, result.args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (result.args, result.stderr)
        assert lines[0].startswith(f"hookpump: cannot reach hookpump at {closed} (connection refused)"), lines


def test_every_server_command_says_in_one_line_that_redis_is_unreachable(tmp_path: Path) -> None:
    stale = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    results = run_all(
        SERVER_COMMANDS, HOOKPUMP_REDIS_URL=stale, HOOKPUMP_PORT=str(free_port()), HOOKPUMP_DATA_DIR=str(tmp_path),
        HOOKPUMP_LOG_FORMAT="text",
    )  # fmt: skip
    assert time.monotonic() - started < 30
    for result in results:
        assert result.returncode == 1, (result.args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, result.args
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"hookpump: cannot reach Redis at {stale} (HOOKPUMP_REDIS_URL): no answer within 5 s; start it or fix "
            "the URL (`hookpump dev` starts its own Redis when the variable is unset)"
        ], (result.args, result.stderr)


# --- `hookpump dev` defaults and its admin key ------------------------------------------------------


def test_dev_defaults_suit_a_laptop_but_an_explicit_variable_wins() -> None:
    laptop = dev_settings({})
    assert (laptop.allow_private_targets, laptop.log_format, laptop.redis_url) == (True, "text", None)
    chosen = dev_settings({"HOOKPUMP_ALLOW_PRIVATE_TARGETS": "false", "HOOKPUMP_LOG_FORMAT": "json"})
    assert (chosen.allow_private_targets, chosen.log_format) == (False, "json")


def test_the_dev_admin_key_is_created_private_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_admin_key(tmp_path / "data")
    assert (tmp_path / "data" / "admin-key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_admin_key(tmp_path / "data") == first
    assert load_or_create_admin_key(tmp_path / "other") != first


def test_the_banner_shows_where_things_are_and_hides_redis_passwords() -> None:
    settings = Settings(redis_url="redis://:s3cret@redis.internal:6379/0", api_key="hp_k", host="0.0.0.0")
    text = banner(settings, None)
    assert "http://127.0.0.1:8080" in text
    assert "console:   http://127.0.0.1:8080/ui/" in text
    assert "admin key: hp_k" in text
    assert "s3cret" not in text and "redis.internal:6379" in text
    assert redacted("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"


# --- log lines ---------------------------------------------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """A stream to log into; the logging set-up that pytest had is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in noisy.items():
        logging.getLogger(name).setLevel(saved)


def test_json_logs_are_one_object_per_line_with_ids_from_extra(log_stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json"), stream=log_stream)
    logging.getLogger("scheduler.worker").info(
        "delivered %s", "dlv_1", extra={"delivery_id": "dlv_1", "endpoint_id": "ep_1", "colour": "red"}
    )
    line = json.loads(log_stream.getvalue())
    assert line == {
        "ts": line["ts"], "level": "info", "logger": "scheduler.worker", "message": "delivered dlv_1",
        "delivery_id": "dlv_1", "endpoint_id": "ep_1",
    }  # fmt: skip
    assert len(line["ts"]) == len("2024-05-01T12:00:00.123Z") and line["ts"].endswith("Z")


def test_text_logs_are_one_readable_line(log_stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="text"), stream=log_stream)
    logging.getLogger("scheduler.pump").warning("paused", extra={"endpoint_id": "ep_9"})
    assert log_stream.getvalue().rstrip("\n").endswith("WARNING scheduler.pump: paused  endpoint_id=ep_9")


@pytest.mark.parametrize(("level", "access_level"), [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG)])
def test_access_logs_are_quiet_unless_debugging(
    log_stream: io.StringIO, level: str, access_level: int
) -> None:
    configure_logging(Settings(log_level=level), stream=log_stream)
    assert logging.getLogger("uvicorn.access").level == access_level


def test_an_unknown_log_level_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="HOOKPUMP_LOG_LEVEL"):
        configure_logging(Settings(log_level="loud"), stream=io.StringIO())
