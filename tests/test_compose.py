"""docker-compose.yml and the Dockerfile, checked without a Docker engine: structure, settings, commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import PREFIX, VARIABLES, Settings
from hookpump.commands import root

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
KNOWN_VARIABLES = {PREFIX + field.upper() for field in VARIABLES}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str) -> str:
    """Compose's `${NAME:?message}` / `${NAME:-default}` / `${NAME}`, with a stand-in for unset names (long
    enough to pass as HOOKPUMP_API_KEY, which must have 32 characters)."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda match: f"stand-in-{match.group(1).lower()}-0123456789",
                  value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {name: interpolate(str(value)) for name, value in raw.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_redis_persists_to_a_named_volume_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"] if isinstance(redis["command"], str) else " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))
    assert volume.split(":")[0] in compose["volumes"], "the /data volume must be a named volume"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


@pytest.mark.parametrize(("service_name", "command"), [("api", "serve"), ("worker", "worker")])
def test_api_and_worker_run_the_repo_image_against_the_compose_redis(
    compose: dict[str, Any], service_name: str, command: str
) -> None:
    service = compose["services"][service_name]
    build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()
    assert service["command"] == command
    assert command in root.commands, "compose runs a command hookpump has"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"

    env = environment(service)
    assert set(env) <= KNOWN_VARIABLES, f"unknown variables: {set(env) - KNOWN_VARIABLES}"
    settings = Settings.from_env(env)  # what the container would read; a bad value raises here
    assert settings.redis_url == "redis://redis:6379/0"


def test_the_api_listens_on_all_interfaces_and_demands_an_api_key(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    raw_env = api["environment"]
    assert raw_env["HOOKPUMP_HOST"] == "0.0.0.0"
    assert raw_env["HOOKPUMP_API_KEY"].startswith("${HOOKPUMP_API_KEY:?")
    assert "8080:8080" in api["ports"]
    assert Settings.from_env(environment(api)).port == 8080


def test_the_dockerfile_installs_hookpump_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    stages = [argument for name, argument in instructions if name == "FROM"]
    assert stages and all(stage.split()[0] == "python:3.11-slim" for stage in stages)
    entrypoint = [argument for name, argument in instructions if name == "ENTRYPOINT"]
    assert [json.loads(argument) for argument in entrypoint] == [["hookpump"]]
    users = [argument for name, argument in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    final_stage = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    assert any(name == "RUN" and "pip install" in argument for name, argument in final_stage)


def test_the_build_context_keeps_the_sources_and_drops_local_state() -> None:
    ignored = {
        line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    assert {".git", ".venv", ".hookpump"} <= ignored, "local state (and the dev admin key) stays out"
    needed = {
        "pyproject.toml",
        "README.md",
        "openapi.yaml",
        "core",
        "service",
        "delivery",
        "scheduler",
        "hookpump",
    }
    assert not needed & ignored


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin), else the standalone `docker-compose`; None when neither runs."""
    candidates = [[docker, "compose"] for docker in [shutil.which("docker")] if docker]
    candidates += [[standalone] for standalone in [shutil.which("docker-compose")] if standalone]
    for command in candidates:
        if subprocess.run([*command, "version"], capture_output=True, timeout=30).returncode == 0:
            return command
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    env = {**os.environ, "HOOKPUMP_API_KEY": "stand-in-key-0123456789abcdefghij"}
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_cluster_profile_has_three_primaries_three_replicas_and_arq_s_own_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    in_profile = {name for name, service in services.items() if "cluster" in service.get("profiles", [])}
    nodes = sorted(name for name in in_profile if name.startswith("redis-node-"))
    assert len(nodes) == 6
    for name in nodes:
        command = services[name]["command"]
        assert "--cluster-enabled yes" in command and "--maxmemory-policy noeviction" in command
    create = services["redis-cluster-create"]["command"]
    assert "--cluster create" in create and "--cluster-replicas 1" in create
    assert all(f"{name}:6379" in create for name in nodes)
    assert "arq-redis" in in_profile
    # The default `docker compose up` is unchanged: nothing of the profile starts without it.
    assert {"redis", "api", "worker", "postgres"}.isdisjoint(in_profile)
    for name in ("api-cluster", "worker-cluster"):
        settings = Settings.from_env(environment(services[name]))
        assert settings.redis_cluster and settings.redis_url == "redis://redis-node-1:6379"
        assert settings.job_queue_url == "redis://arq-redis:6379/0"
