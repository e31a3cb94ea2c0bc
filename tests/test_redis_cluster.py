"""The local Redis Cluster fixtures themselves: they form, cover every slot, attach replicas, and leave
nothing running behind them."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest
import redis

from tests.redis_cluster import SLOTS, LocalCluster


def slot_owners(cluster: LocalCluster) -> list[tuple[int, int, str, list[str]]]:
    """(first slot, last slot, primary address, replica addresses) per range, as the seed sees it."""
    return [(r.first, r.last, r.primary, r.replicas) for r in cluster.nodes[0].slot_ranges()]


def test_the_cluster_forms_with_every_node_agreeing(redis_cluster: LocalCluster) -> None:
    assert len(redis_cluster.nodes) == 6
    for node in redis_cluster.nodes:
        info = node.cluster_info()
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "6"
        assert info["cluster_size"] == "3"  # primaries that serve slots


def test_the_three_primaries_cover_every_slot_once(redis_cluster: LocalCluster) -> None:
    owners = slot_owners(redis_cluster)
    covered = sorted((first, last) for first, last, _, _ in owners)
    assert covered[0][0] == 0 and covered[-1][1] == SLOTS - 1
    assert all(previous[1] + 1 == current[0] for previous, current in itertools.pairwise(covered))
    assert sum(last - first + 1 for first, last in covered) == SLOTS
    assert len({primary for _, _, primary, _ in owners}) == 3


def test_each_primary_has_one_replica_that_receives_its_writes(redis_cluster: LocalCluster) -> None:
    primaries = {node.address for node in redis_cluster.primary_nodes()}
    replicas = {node.address for node in redis_cluster.replica_nodes()}
    assert len(primaries) == 3 and len(replicas) == 3
    for _, _, primary, its_replicas in slot_owners(redis_cluster):
        assert primary in primaries
        assert len(its_replicas) == 1 and its_replicas[0] in replicas
    for node in redis_cluster.replica_nodes():
        assert node.info("replication")["master_link_status"] == "up"
    # A write on a primary reaches its replica (WAIT counts the replicas that acknowledged it).
    cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port, decode_responses=True)
    try:
        cluster.set("fixture:replicated", "yes")
        primary = cluster.get_node_from_key("fixture:replicated")
        assert cluster.execute_command("WAIT", 1, 2000, target_nodes=primary) == 1
    finally:
        cluster.delete("fixture:replicated")
        cluster.close()


def test_the_one_node_cluster_holds_every_slot_and_refuses_a_script_leaving_its_slot(
    redis_cluster_one: LocalCluster,
) -> None:
    (node,) = redis_cluster_one.nodes
    assert node.cluster_info()["cluster_state"] == "ok"
    assert [(first, last) for first, last, _, _ in slot_owners(redis_cluster_one)] == [(0, SLOTS - 1)]
    with node.client() as client:
        # A script with flags (the `#!lua` line) may touch only its declared keys' slot, even on one node.
        same_slot = "#!lua\nredis.call('SET', KEYS[1] .. ':b', 1)\nreturn 1"
        other_slot = "#!lua\nredis.call('SET', 'elsewhere', 1)\nreturn 1"
        assert client.eval(same_slot, 1, "hp:{p0}:a") == 1
        with pytest.raises(redis.ResponseError, match="same slot"):
            client.eval(other_slot, 1, "hp:{p0}:a")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stopping_a_cluster_leaves_no_process_port_or_file() -> None:
    cluster = LocalCluster(3, 0)
    cluster.start()
    ports = [node.port for node in cluster.nodes]
    processes = [node.process for node in cluster.nodes]
    directory = Path(cluster.directory)
    assert all(listening(port) for port in ports)
    assert any(directory.iterdir())

    cluster.stop()

    assert all(process.poll() is not None for process in processes)
    for process in processes:
        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)
    assert not any(listening(port) for port in ports)
    assert not directory.exists()
