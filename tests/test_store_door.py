"""The store's one door to redis-py (core/store/connection.py): one Redis or a Redis Cluster behind
HOOKPUMP_REDIS_CLUSTER, and redis-py's exceptions turned into hookpump's inside it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
import redis

from core.errors import ConfigError, CrossSlotError, StoreError, StoreUnavailable
from core.settings import Settings
from core.store import create_store
from core.store.connection import Redis, create_redis
from service.app import create_app
from tests.api import ADMIN, assert_problem
from tests.conftest import RedisServer
from tests.redis_cluster import LocalCluster

ONE_KEY_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[1] .. ':n')"


def is_cluster_client(client: Redis) -> bool:
    return isinstance(client, redis.asyncio.RedisCluster)


async def test_the_cluster_flag_builds_a_cluster_client_that_routes_single_slot_commands(
    redis_cluster: LocalCluster,
) -> None:
    client = create_redis(redis_cluster.url, cluster=True)
    try:
        assert is_cluster_client(client)
        # Keys that land on every primary (their slots are spread over the whole range).
        names = [f"door:{i}" for i in range(30)]
        for name in names:
            await client.set(name, name.upper())
        assert [await client.get(name) for name in names] == [name.upper() for name in names]
        nodes = {redis_cluster_node(client, name) for name in names}
        assert len(nodes) == 3, "the keys should have reached all three primaries"
        for name in names:
            await client.delete(name)
    finally:
        await client.aclose()


def redis_cluster_node(client: Redis, key: str) -> str:
    node = client.get_node_from_key(key)  # type: ignore[attr-defined]
    return str(node.name)


async def test_a_one_key_script_round_trips_on_the_cluster_and_survives_a_script_flush(
    redis_cluster: LocalCluster,
) -> None:
    client = create_redis(redis_cluster.url, cluster=True)
    try:
        script = client.register_script(ONE_KEY_SCRIPT)
        assert await script(keys=["hp:{p3}:door"], args=["x"]) == 1
        assert await client.get("hp:{p3}:door") == "x"
        # After a flush (as after a failover to a replica that never saw SCRIPT LOAD) NOSCRIPT is
        # not translated: redis-py's Script catches it, loads the script, and runs it.
        await client.script_flush()  # redis-py sends it to every primary
        assert await client.script_exists(script.sha) == [False]
        assert await script(keys=["hp:{p3}:door"], args=["y"]) == 2
        await client.delete("hp:{p3}:door", "hp:{p3}:door:n")
    finally:
        await client.aclose()


async def test_the_store_opens_on_the_cluster_when_the_flag_is_set(
    redis_cluster: LocalCluster, settings: Settings
) -> None:
    cluster_settings = settings.replace(redis_url=redis_cluster.url, redis_cluster=True,
                                        arq_redis_url=settings.redis_url)
    store = await create_store(cluster_settings)
    try:
        assert is_cluster_client(store.redis)
        assert await store.ping()
    finally:
        await store.close()
    plain = await create_store(settings)  # the flag unset: one Redis, exactly as before
    try:
        assert not is_cluster_client(plain.redis)
    finally:
        await plain.close()


async def test_cross_slot_calls_become_a_cross_slot_error_that_is_logged(
    redis_cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_redis(redis_cluster.url, cluster=True)
    try:
        with caplog.at_level(logging.ERROR, logger="core.store.connection"):
            # redis-py's own check, before anything is sent
            with pytest.raises(CrossSlotError) as raised:
                await client.register_script(ONE_KEY_SCRIPT)(keys=["a", "b"], args=["1"])
            assert isinstance(raised.value.__cause__, redis.exceptions.RedisClusterException)
            with pytest.raises(CrossSlotError):
                await client.mget("a", "b")
        assert "more than one cluster slot" in caplog.text
        assert "hookpump" in caplog.text
    finally:
        await client.aclose()


async def test_the_server_s_crossslot_and_a_script_leaving_its_slot_are_translated(
    redis_cluster_one: LocalCluster,
) -> None:
    # One node holds every slot, so only the server's own checks can refuse these.
    client = create_redis(redis_cluster_one.url)  # a plain client: no client-side slot check
    try:
        with pytest.raises(CrossSlotError) as raised:
            await client.mget("a", "b")
        assert "CROSSSLOT" in str(raised.value.__cause__)
        leaving = client.register_script("#!lua\nreturn redis.call('GET', 'elsewhere')")
        with pytest.raises(CrossSlotError):
            await leaving(keys=["hp:{p0}:a"])
    finally:
        await client.aclose()


async def test_a_cross_slot_script_in_the_api_is_a_500_problem_naming_no_key(
    redis_cluster: LocalCluster, settings: Settings
) -> None:
    """Today's scripts pass no KEYS, so on a cluster redis-py sends them to a random node and most
    are refused as touching a non-local key: the caller sees a 500 problem, and no key name."""
    cluster_settings = settings.replace(redis_url=redis_cluster.url, redis_cluster=True,
                                        arq_redis_url=settings.redis_url)
    statuses = []
    app = create_app(cluster_settings)
    async with app.router.lifespan_context(app):
        # Starlette re-raises a 500's exception after answering (for the server's log); take the answer.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://hookpump.test")
        for _ in range(12):
            response = await client.post("/v1/endpoints", json={"url": "https://receiver.test/hook"},
                                         headers=ADMIN)
            statuses.append(response.status_code)
            if response.status_code == 500:
                problem = assert_problem(response, 500)
                assert "hp:" not in response.text and "slot" not in response.text
                assert "logged" in problem["detail"]
        await client.aclose()
    assert 500 in statuses, statuses
    assert set(statuses) <= {201, 500}


async def test_a_stopped_redis_is_store_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    client = create_redis(server.url, reconnect_retries=2)
    try:
        assert await client.ping()
        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            await client.set("k", "v")
        assert time.monotonic() - started < 5
        assert isinstance(raised.value.__cause__, redis.ConnectionError)
        assert isinstance(raised.value, StoreError)
    finally:
        await client.aclose()
        server.stop()


async def test_a_stopped_cluster_is_store_unavailable_promptly() -> None:
    cluster = LocalCluster(1, 0)
    cluster.start()
    client = create_redis(cluster.url, cluster=True)
    try:
        await client.set("k", "v")
        cluster.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await client.get("k")
        assert time.monotonic() - started < 10
    finally:
        await client.aclose()
        cluster.stop()


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"HOOKPUMP_REDIS_CLUSTER": "true", "HOOKPUMP_REDIS_URL": "redis://10.0.0.1:7000"}, "HOOKPUMP_ARQ_REDIS_URL"),
        ({"HOOKPUMP_REDIS_CLUSTER": "true", "HOOKPUMP_ARQ_REDIS_URL": "redis://arq:6379"}, "HOOKPUMP_REDIS_URL"),
        ({"HOOKPUMP_REDIS_CLUSTER": "true", "HOOKPUMP_REDIS_URL": "redis://a:7000",
          "HOOKPUMP_ARQ_REDIS_URL": "redis://a:7000"}, "HOOKPUMP_ARQ_REDIS_URL"),
        ({"HOOKPUMP_REDIS_CLUSTER": "maybe"}, "HOOKPUMP_REDIS_CLUSTER"),
        ({"HOOKPUMP_ARQ_REDIS_URL": "http://arq"}, "HOOKPUMP_ARQ_REDIS_URL"),
    ],
)
def test_cluster_settings_refuse_to_start_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(environ)
    assert raised.value.variable == variable


def test_arq_s_redis_defaults_to_the_one_redis_and_is_its_own_on_a_cluster() -> None:
    single = Settings.from_env({"HOOKPUMP_REDIS_URL": "redis://r:6379/0"})
    assert single.job_queue_url == "redis://r:6379/0" and not single.redis_cluster
    own = Settings.from_env({"HOOKPUMP_REDIS_URL": "redis://r:6379/0", "HOOKPUMP_ARQ_REDIS_URL": "redis://q:6379/1"})
    assert own.job_queue_url == "redis://q:6379/1"
    cluster = Settings.from_env({"HOOKPUMP_REDIS_CLUSTER": "true", "HOOKPUMP_REDIS_URL": "redis://n1:7000",
                                 "HOOKPUMP_ARQ_REDIS_URL": "redis://q:6379"})
    assert cluster.redis_cluster and cluster.job_queue_url == "redis://q:6379"
