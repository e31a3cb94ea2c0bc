"""HOOKPUMP_DURABILITY: the setting, the Redis each promise needs, and the start-up check against a real
Redis (refused for strict, a warning for fast). The crash itself is tests/test_crash_durability.py."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml

import core.store.durability as store_durability
from core.durability import Durability, parse_durability, redis_server_arguments, unkept_promise
from core.errors import ConfigError, StoreUnavailable
from core.settings import Settings
from core.store.durability import check_durability
from hookpump.dev import dev_settings
from hookpump.embedded_redis import EmbeddedRedis, find_redis_server, free_port, ping

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("raw", "expected"), [("strict", Durability.STRICT), ("fast", Durability.FAST), (" STRICT ", Durability.STRICT)]
)
def test_durability_reads_strict_or_fast(raw: str, expected: Durability) -> None:
    assert parse_durability(raw) is expected


def test_an_unknown_durability_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"HOOKPUMP_DURABILITY: 'always' is not valid: must be 'strict'"):
        Settings.from_env({"HOOKPUMP_DURABILITY": "always"})


def test_serve_defaults_to_fast_and_dev_keeps_fast_unless_told() -> None:
    assert Settings.from_env({}).durability is Durability.FAST
    assert dev_settings({}).durability is Durability.FAST
    assert dev_settings({"HOOKPUMP_DURABILITY": "strict"}).durability is Durability.STRICT


@pytest.mark.parametrize(
    ("durability", "appendonly", "appendfsync", "problem"),
    [
        (Durability.STRICT, "yes", "always", None),
        (Durability.STRICT, "yes", "everysec", "appendfsync is 'everysec', and strict needs 'always'"),
        (Durability.STRICT, "yes", "no", "appendfsync is 'no'"),
        (Durability.STRICT, "no", "always", "appendonly is 'no'"),
        (Durability.FAST, "yes", "everysec", None),
        (Durability.FAST, "yes", "always", None),  # a stricter Redis keeps the weaker promise
        (Durability.FAST, "yes", "no", "appendfsync is 'no', and fast needs 'always' or 'everysec'"),
        (Durability.FAST, "no", "everysec", "appendonly is 'no'"),
    ],
)
def test_which_redis_persistence_keeps_which_promise(
    durability: Durability, appendonly: str, appendfsync: str, problem: str | None
) -> None:
    found = unkept_promise(durability, {"appendonly": appendonly, "appendfsync": appendfsync})
    assert found == problem if problem is None else problem in (found or "")


def test_the_arguments_hookpump_gives_redis_keep_each_promise() -> None:
    for durability in Durability:
        arguments = redis_server_arguments(durability)
        config = dict(zip(arguments[::2], arguments[1::2], strict=True))
        assert unkept_promise(durability, {name.removeprefix("--"): v for name, v in config.items()}) is None
    assert redis_server_arguments(Durability.STRICT) == ["--appendonly", "yes", "--appendfsync", "always"]


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`start_redis(*arguments)` runs a redis-server with them; the URL. All stop at the end of the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> str:
        port = free_port()
        directory = tmp_path / f"redis-{port}"
        directory.mkdir()
        processes.append(subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
             "--loglevel", "warning", *arguments],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not ping(url):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return url

    yield start
    for process in processes:
        process.kill()
        process.wait()


def settings_for(url: str, durability: Durability, **changes: object) -> Settings:
    return Settings(redis_url=url, durability=durability, **changes)  # type: ignore[arg-type]


async def test_strict_is_refused_on_a_redis_that_fsyncs_once_a_second(start_redis: Callable[..., str]) -> None:
    url = start_redis("--appendonly", "yes", "--appendfsync", "everysec")
    with pytest.raises(ConfigError) as refused:
        await check_durability(settings_for(url, Durability.STRICT))
    assert refused.value.variable == "HOOKPUMP_DURABILITY"
    assert "appendfsync is 'everysec'" in str(refused.value) and "appendfsync always" in str(refused.value)
    await check_durability(settings_for(url, Durability.FAST))  # what fast promises, this Redis keeps


async def test_strict_is_refused_on_a_redis_without_an_append_only_file(start_redis: Callable[..., str]) -> None:
    url = start_redis("--appendonly", "no", "--appendfsync", "always")
    with pytest.raises(ConfigError, match="appendonly is 'no'"):
        await check_durability(settings_for(url, Durability.STRICT))


async def test_strict_starts_on_a_redis_that_fsyncs_every_write(start_redis: Callable[..., str]) -> None:
    url = start_redis("--appendonly", "yes", "--appendfsync", "always")
    await check_durability(settings_for(url, Durability.STRICT))


async def test_fast_warns_but_starts_on_a_redis_that_keeps_nothing(
    start_redis: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    url = start_redis("--appendonly", "no")
    with caplog.at_level(logging.WARNING, logger="core.store.durability"):
        await check_durability(settings_for(url, Durability.FAST))
    assert any("appendonly is 'no'" in record.getMessage() for record in caplog.records)


async def test_a_redis_that_hides_config_is_refused_for_strict_with_the_way_out(
    start_redis: Callable[..., str],
) -> None:
    url = start_redis("--appendonly", "yes", "--appendfsync", "always", "--rename-command", "CONFIG", "")
    with pytest.raises(ConfigError) as refused:
        await check_durability(settings_for(url, Durability.STRICT))
    assert "refuses CONFIG GET" in str(refused.value) and "HOOKPUMP_DURABILITY_CHECK=false" in str(refused.value)
    # The way out the message names: the operator vouches for the provider's settings.
    await check_durability(settings_for(url, Durability.STRICT, durability_check=False))
    assert Settings.from_env({"HOOKPUMP_DURABILITY_CHECK": "false"}).durability_check is False


async def test_strict_cannot_start_without_reaching_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(store_durability.REACH_TIMEOUT, Durability.STRICT, 1.0)
    with pytest.raises(StoreUnavailable, match="HOOKPUMP_DURABILITY=strict: could not reach Redis"):
        await check_durability(settings_for(f"redis://127.0.0.1:{free_port()}/0", Durability.STRICT))


def test_serve_with_strict_on_an_everysec_redis_exits_naming_the_setting_and_the_redis_value(
    start_redis: Callable[..., str], tmp_path: Path
) -> None:
    url = start_redis("--appendonly", "yes", "--appendfsync", "everysec")
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("HOOKPUMP_")},
        "HOOKPUMP_REDIS_URL": url, "HOOKPUMP_DURABILITY": "strict", "HOOKPUMP_API_KEY": "k" * 40,
        "HOOKPUMP_PORT": str(free_port()), "HOOKPUMP_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "hookpump", "serve"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hookpump: HOOKPUMP_DURABILITY: strict needs Redis") and "'everysec'" in last


@pytest.mark.parametrize(("durability", "appendfsync"), [(Durability.FAST, "everysec"), (Durability.STRICT, "always")])
def test_the_embedded_redis_fsyncs_as_the_setting_asks(
    tmp_path: Path, durability: Durability, appendfsync: str
) -> None:
    with EmbeddedRedis(durability=durability) as server:
        client = redis.Redis.from_url(server.start(tmp_path), decode_responses=True)
        config = client.config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", appendfsync)
        client.close()


def test_docker_compose_runs_strict_on_a_redis_that_keeps_it() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"].split()
    config = {name.removeprefix("--"): value for name, value in itertools.pairwise(command)}
    for service in ("api", "worker"):
        assert compose["services"][service]["environment"]["HOOKPUMP_DURABILITY"] == "strict"
    assert unkept_promise(Durability.STRICT, config) is None
