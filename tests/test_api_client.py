"""The typed API client (`hookpump.client`) against a real `hookpump dev`: every request it sends and
every answer it receives is checked against openapi.yaml, refusals become `ApiProblem` carrying the
problem document, and a missing server is `ServerUnreachable`."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import yaml

from hookpump.client import ApiProblem, HookpumpClient, MissingKey, ServerUnreachable, resolve_connection
from hookpump.client.types import DeliveryDetail
from tests.conftest import free_port
from tests.dev_server import DevServer, dev_server, empty_database
from tests.receiver import Receiver

CONTRACT = yaml.safe_load((Path(__file__).resolve().parents[1] / "openapi.yaml").read_text(encoding="utf-8"))


class ContractChecker:
    """httpx event hooks that validate each JSON request body and answer against the operation's
    schemas in openapi.yaml; `checked` lists the operations seen, `violations` what did not match."""

    def __init__(self) -> None:
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path, item)
            for path, item in CONTRACT["paths"].items()
        ]
        # Literal paths before templated ones (/v1/deliveries/retry is not /v1/deliveries/{id}).
        self.routes.sort(key=lambda route: "{" in route[1])
        self.checked: list[str] = []
        self.violations: list[str] = []  # answers that do not match, and requests (unless refused on purpose)
        self.request_violations: list[str] = []

    def operation(self, request: httpx.Request) -> dict[str, Any]:
        for pattern, _path, item in self.routes:
            if pattern.match(request.url.path) and request.method.lower() in item:
                return dict(item[request.method.lower()])
        raise AssertionError(f"{request.method} {request.url.path} is not in openapi.yaml")

    def validate(self, value: Any, schema: dict[str, Any], where: str) -> list[str]:
        validator = jsonschema_rs.Draft202012Validator(
            {**schema, "components": CONTRACT["components"]}, validate_formats=True
        )
        return [f"{where} {list(e.instance_path)}: {e.message}" for e in validator.iter_errors(value)]

    def on_request(self, request: httpx.Request) -> None:
        operation = self.operation(request)
        if request.content:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            where = f"request of {operation['operationId']}"
            self.request_violations += self.validate(json.loads(request.content), schema, where)

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        operation = self.operation(response.request)
        answers = operation["responses"]
        answer = answers.get(str(response.status_code))
        name = operation["operationId"]
        if answer is None:
            self.violations.append(f"{name} answered {response.status_code}, which it does not declare")
            return
        if "$ref" in answer:
            answer = CONTRACT["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        self.checked.append(f"{name} {response.status_code}")
        content = answer.get("content")
        if content is None:
            assert not response.content, f"{name} {response.status_code} declares no body"
            return
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in content, f"{name} {response.status_code}: {media_type} not declared"
        where = f"answer {response.status_code} of {name}"
        self.violations += self.validate(response.json(), content[media_type]["schema"], where)
        if response.status_code < 400:  # a request the API took must be one the contract describes
            self.violations += self.request_violations
        self.request_violations = []

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.on_request], "response": [self.on_response]}


@pytest.fixture(scope="module")
def dev(redis_server: Any) -> Iterator[DevServer]:
    with dev_server(empty_database(redis_server, 3)) as server:
        yield server


@pytest.fixture
def checker() -> ContractChecker:
    return ContractChecker()


@pytest.fixture
def client(dev: DevServer, checker: ContractChecker) -> Iterator[HookpumpClient]:
    with HookpumpClient(dev.url, dev.key, event_hooks=checker.hooks()) as client:
        yield client


async def test_every_call_of_a_delivery_round_trip_matches_the_contract(
    client: HookpumpClient, checker: ContractChecker
) -> None:
    receiver = await Receiver().start()
    try:
        endpoint = client.create_endpoint(receiver.url(), rate_limit_per_minute=600, event_types=["order.paid"])
        assert endpoint["secret"].startswith("whsec_")
        accepted = client.send_message("order.paid", {"id": 1}, idempotency_key="k-1")
        batch = client.send_batch([{"event_type": "order.paid", "payload": {"id": n}} for n in (2, 3)])
        assert [m["event_type"] for m in batch["messages"]] == ["order.paid", "order.paid"]
        await receiver.wait_for(3, timeout=20)
        delivery_id = accepted["deliveries"][0]["id"]
        deadline = time.monotonic() + 10
        # The status is Redis's at once; the attempt is the history's once the writer has committed it.
        while not _succeeded_with_its_attempt(detail := client.get_delivery(delivery_id)):
            assert time.monotonic() < deadline, f"the delivery did not succeed with its attempt logged: {detail}"
            await asyncio.sleep(0.2)
        assert detail["attempts"][0]["response"]["status"] == 200
        page = client.list_deliveries(endpoint_id=endpoint["id"], status=["succeeded"], event_type="order.paid")
        assert {d["id"] for d in page["data"]} >= {delivery_id}
        assert client.get_message(accepted["id"])["payload"] == {"id": 1}
        assert client.retry_delivery(delivery_id)["status"] == "pending"
        job = client.start_bulk_retry(endpoint_id=endpoint["id"], status=["succeeded"])
        assert client.get_bulk_retry(job["id"])["id"] == job["id"]
        assert client.endpoint_stats(endpoint["id"])["endpoint_id"] == endpoint["id"]
        assert client.pause_endpoint(endpoint["id"])["flow"]["paused"] is True
        held = client.send_message("order.paid", {"id": 9})  # queued behind the pause
        assert client.cancel_delivery(held["deliveries"][0]["id"])["status"] == "cancelled"
        assert client.resume_endpoint(endpoint["id"])["flow"]["paused"] is False
        assert client.update_endpoint(endpoint["id"], description="billing")["description"] == "billing"
        assert client.rotate_secret(endpoint["id"])["secret"] != endpoint["secret"]
        assert endpoint["id"] in {e["id"] for e in client.iter_endpoints()}
        assert "secret" not in client.get_endpoint(endpoint["id"])
        client.queue_overview()
        assert client.current_api_key()["key"]["scopes"] == ["admin"]
        client.delete_endpoint(endpoint["id"])
        made = client.create_api_key("contract", ["read"])
        assert made["id"] in {k["id"] for k in client.iter_api_keys()}
        client.delete_api_key(made["id"])
    finally:
        await receiver.stop()
    assert not checker.violations, checker.violations
    assert len({entry.split()[0] for entry in checker.checked}) == 23, checker.checked


def test_a_refusal_is_an_api_problem_carrying_the_document(client: HookpumpClient, checker: ContractChecker) -> None:
    with pytest.raises(ApiProblem) as refused:
        client.create_endpoint("ftp://nowhere")
    assert refused.value.status == 422
    assert refused.value.document["errors"][0]["field"] == "url"
    assert "url" in str(refused.value)
    with pytest.raises(ApiProblem) as missing:
        client.get_delivery("dlv_00000000000000000000000000_1")
    assert missing.value.status == 404 and missing.value.document["status"] == 404
    assert not checker.violations, checker.violations


def test_a_wrong_key_is_a_401_problem(dev: DevServer) -> None:
    with HookpumpClient(dev.url, "hp_wrong") as client, pytest.raises(ApiProblem) as refused:
        client.queue_overview()
    assert refused.value.status == 401


def test_no_server_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with HookpumpClient(url, "hp_any") as client, pytest.raises(ServerUnreachable, match="cannot reach hookpump"):
        client.queue_overview()


def test_the_connection_comes_from_flags_then_environment_then_the_dev_data_dir(tmp_path: Path) -> None:
    (tmp_path / "admin-key").write_text("hp_from_file\n")
    env = {"HOOKPUMP_DATA_DIR": str(tmp_path), "HOOKPUMP_PORT": "8181"}
    assert resolve_connection(environ=env) == resolve_connection("http://127.0.0.1:8181", "hp_from_file", environ={})
    with_env = {**env, "HOOKPUMP_URL": "http://api:1/", "HOOKPUMP_KEY": "hp_env"}
    assert (resolve_connection(environ=with_env).url, resolve_connection(environ=with_env).key) == (
        "http://api:1", "hp_env",
    )  # fmt: skip
    assert resolve_connection("http://flag", "hp_flag", environ=with_env).key == "hp_flag"
    with pytest.raises(MissingKey, match="HOOKPUMP_KEY"):
        resolve_connection(environ={"HOOKPUMP_DATA_DIR": str(tmp_path / "none")})


def test_the_server_starts_in_a_shell_that_has_the_client_variables_set() -> None:
    from core.settings import Settings

    assert Settings.from_env({"HOOKPUMP_URL": "http://x", "HOOKPUMP_KEY": "hp_k", "HOOKPUMP_PORT": "9"}).port == 9


def _succeeded_with_its_attempt(detail: DeliveryDetail) -> bool:
    return bool(detail["delivery"]["status"] == "succeeded" and detail["attempts"])
