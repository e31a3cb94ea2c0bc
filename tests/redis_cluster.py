"""Real local Redis Clusters for the tests: `redis_cluster` (three primaries, three replicas, formed by
`redis-cli --cluster create`) and `redis_cluster_one` (one node holding all 16384 slots: cheap, and on
it a script that builds a key outside its slot fails with "do not hash to the same slot").

Nodes are Debian's redis-server in cluster mode on free loopback ports, each a child process of the
test session (never daemonized, so stopping them cannot miss one); their files live in a temporary
directory removed on stop.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from hookpump.embedded_redis import find_redis_server

SLOTS = 16384
FORM_TIMEOUT_SECONDS = 30.0
# How long a primary may be unreachable before its replica is promoted; short, for failover tests.
NODE_TIMEOUT_MS = 2000
# Redis listens for its cluster bus on the client port + 10000.
BUS_PORT_OFFSET = 10000


def free_cluster_port(taken: set[int]) -> int:
    """A loopback port that is free, and whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_PORT_OFFSET > 65535 or port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        try:
            with socket.socket() as bus:
                bus.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port pair (port, port + 10000) for a cluster node")


@dataclass(frozen=True, order=True)
class SlotRange:
    first: int
    last: int
    primary: str
    replicas: list[str]


@dataclass
class ClusterNode:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2)

    def info(self, section: str) -> dict[str, str]:
        with self.client() as client:
            raw = client.execute_command("INFO", section)
        # INFO's reply is parsed by redis-py already; keep only scalars, as text.
        return {str(k): str(v) for k, v in raw.items() if not isinstance(v, dict)}

    def slot_ranges(self) -> list[SlotRange]:
        """This node's view of who serves which slots (CLUSTER SLOTS)."""
        with self.client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        # Each row: first slot, last slot, then [host, port, node id, ...] of the primary and each replica.
        return sorted(
            SlotRange(int(row[0]), int(row[1]), f"{row[2][0]}:{row[2][1]}",
                      [f"{replica[0]}:{replica[1]}" for replica in row[3:]])
            for row in ranges
        )

    def cluster_info(self) -> dict[str, str]:
        with self.client() as client:
            text: str = client.execute_command("CLUSTER INFO")
        if isinstance(text, dict):  # some redis-py versions parse it
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


class LocalCluster:
    """A Redis Cluster of `primaries` primaries with `replicas` replicas each, on loopback."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        if primaries == 2 or primaries < 1:
            raise ValueError("redis-cli --cluster create needs 3 primaries or more (or 1: all slots on one node)")
        if primaries == 1 and replicas:
            raise ValueError("the one-node cluster has no replicas")
        self.primaries = primaries
        self.replicas = replicas
        self.nodes: list[ClusterNode] = []
        self.directory = Path(tempfile.mkdtemp(prefix="hookpump-test-cluster-"))

    @property
    def seed(self) -> str:
        """A node address any cluster client can start from (it learns the rest)."""
        return self.nodes[0].address

    @property
    def url(self) -> str:
        return f"redis://{self.seed}"

    def start(self) -> None:
        try:
            taken: set[int] = set()
            for _ in range(self.primaries * (1 + self.replicas)):
                port = free_cluster_port(taken)
                taken |= {port, port + BUS_PORT_OFFSET}
                self.nodes.append(self._start_node(port))
            for node in self.nodes:
                _wait_for_ping(node)
            self._form()
            self._wait_until_formed()
        except BaseException:
            self.stop()
            raise

    def _start_node(self, port: int) -> ClusterNode:
        directory = self.directory / str(port)
        directory.mkdir()
        process = subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
             "--maxmemory-policy", "noeviction", "--loglevel", "warning", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return ClusterNode(port, process)

    def _form(self) -> None:
        if self.primaries == 1:
            with self.nodes[0].client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", 0, SLOTS - 1)
            return
        redis_cli = shutil.which("redis-cli")
        if redis_cli is None:
            raise RuntimeError("redis-cli is not on PATH (Debian: apt install redis-tools)")
        done = subprocess.run(
            [redis_cli, "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=FORM_TIMEOUT_SECONDS, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _wait_until_formed(self) -> None:
        """Every node says cluster_state:ok and knows every other node, and every replica's link to
        its primary is up (so a failover test starts from a replicated cluster)."""
        deadline = time.monotonic() + FORM_TIMEOUT_SECONDS
        while True:
            states = [_formed(node, len(self.nodes), self.replicas) for node in self.nodes]
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form within {FORM_TIMEOUT_SECONDS:g} s (nodes ok: {states})")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s) and remove their files."""
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def primary_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.info("replication").get("role") == "master"]

    def replica_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.info("replication").get("role") == "slave"]


def _wait_for_ping(node: ClusterNode) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {node.port} exited with {node.process.returncode}")
        try:
            with node.client() as client:
                if client.ping():
                    return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {node.port}")


def _formed(node: ClusterNode, size: int, replicas: int) -> bool:
    try:
        info = node.cluster_info()
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != size:
            return False
        # Replica roles spread by gossip: wait until this node knows every primary's replicas.
        if any(len(slots.replicas) != replicas for slots in node.slot_ranges()):
            return False
        replication = node.info("replication")
        return replication.get("role") == "master" or replication.get("master_link_status") == "up"
    except redis.RedisError:
        return False


def run_cluster(primaries: int, replicas: int) -> Iterator[LocalCluster]:
    cluster = LocalCluster(primaries, replicas)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """Three primaries and three replicas; `.url` is a seed (redis://127.0.0.1:<port>)."""
    yield from run_cluster(3, 1)


@pytest.fixture(scope="session")
def redis_cluster_one() -> Iterator[LocalCluster]:
    """One node holding all 16384 slots."""
    yield from run_cluster(1, 0)
