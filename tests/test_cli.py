"""The `hookpump` command: start-up errors name the variable, `api-key create`, dev defaults, log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.logs import NOISY_LOGGERS, configure_logging
from core.models import Scope
from core.settings import Settings
from core.store import Store
from hookpump.dev import banner, dev_settings, load_or_create_admin_key, redacted

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
        (["api-key", "create", "--name", "ci", "--scope", "send"], {}, "HOOKPUMP_REDIS_URL"),
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


async def test_api_key_create_prints_a_key_once_and_stores_it_hashed(store: Store, redis_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hookpump", "api-key", "create", "--name", "billing", "--scope", "send",
        "--scope", "read", env=hookpump_env(HOOKPUMP_REDIS_URL=redis_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    key = stdout.decode().strip()
    assert "\n" not in key and key
    record = await store.api_keys.lookup(key)
    assert record is not None
    assert (record.name, record.scopes) == ("billing", frozenset({Scope.SEND, Scope.READ}))
    assert record.id in stderr.decode()
    assert key.encode() not in stderr


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
