"""openapi.yaml is the contract: a valid OpenAPI 3.1 document, naming exactly the app's routes, and
schemathesis finds no 5xx and no answer that disagrees with it, against the live app on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import yaml
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.applications import Starlette
from starlette.routing import Route

from core.settings import Settings
from core.store import create_store
from delivery.request import is_reserved
from service.app import create_app
from tests.api import ADMIN, ADMIN_KEY, api_client
from tests.conftest import RedisServer

CONTRACT = Path(__file__).resolve().parent.parent / "openapi.yaml"
METHODS = {"get", "put", "post", "patch", "delete", "options", "head", "trace"}
# Rules the schema cannot state (they need the server's state or a parser), so valid-looking data
# may still get a 422 naming one of these fields. openapi.yaml lists them under the 422 response.
# min_rate_per_minute and until are checked against another field (the ceiling, since).
SERVER_ONLY_FIELDS = ("url", "secret", "cursor", "endpoint_ids", "endpoint_id", "until", "min_rate_per_minute")
# Bounded so the file runs in well under two minutes on a 2-core machine (about 65 s for 31 operations).
EXAMPLES = 60
SCENARIOS = 60


def documented_operations() -> set[tuple[str, str]]:
    document = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_contract_is_a_valid_openapi_31_document() -> None:
    schema = schemathesis.openapi.from_path(CONTRACT)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert schema.raw_schema["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_documented_route_exists(settings: Settings) -> None:
    app = create_app(settings)
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette answers HEAD wherever GET is served
        and not route.path.startswith("/ui")  # the operator console's HTML pages are not the API
    }
    assert served == documented_operations()


async def test_contract_and_health_are_served_without_a_key(store: Any, settings: Settings) -> None:
    async with api_client(settings) as client:
        contract = await client.get("/openapi.yaml")
        health = await client.get("/healthz")
    assert contract.status_code == 200
    assert contract.headers["content-type"] == "application/yaml"
    assert contract.content == CONTRACT.read_bytes()
    assert health.status_code == 200 and health.json() == {"status": "ok"}


# --- schemathesis against the live app -------------------------------------------------------------


@pytest.fixture(scope="module")
def contract_app(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    # A long pump interval: /readyz stays ready on the one heartbeat _flush leaves, however slow the run.
    history = tmp_path_factory.mktemp("contract-history") / "history.db"
    settings = Settings(redis_url=redis_server.url, api_key=ADMIN_KEY, allow_private_targets=True,
                        log_format="text", pump_interval=3600, database_url=f"sqlite:///{history}",
                        # Schemathesis's valid batches can fan out past the default cap (its 413 has
                        # its own tests in test_fanout_cap): the contract is checked under a cap it
                        # does not reach.
                        max_deliveries_per_request=10_000_000)
    asyncio.run(_flush(settings))
    app = create_app(settings)
    late_app.app = app
    yield app
    # schemathesis keeps the app's lifespan running for the whole process; end it while Redis is up.
    asgi.shutdown_lifespans()


async def _flush(settings: Settings) -> None:
    store = await create_store(settings)
    try:
        await store.flush_all_for_tests()
        # As a worker's pump would: no worker runs beside this app, and /readyz asks whether one does.
        await store.pump.heartbeat("contract-test", {})
    finally:
        await store.close()


class LateApp:
    """An ASGI app that forwards to the app the fixture builds once Redis is up. schemathesis' lazy
    `from_fixture` loader fails on pytest 9 (it sets Function._nodeid), so the schema is loaded at
    import time and bound to this stand-in."""

    def __init__(self) -> None:
        self.app: Starlette | None = None
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the contract_app fixture has not run"
        # Each call from an address of its own: schemathesis' probes with wrong keys would otherwise
        # put the one test address past the guessing limit (service/guessing.py), and every later
        # answer would be a 429 with nothing left to check.
        self.calls += 1
        if scope["type"] == "http":
            scope = {**scope, "client": (f"198.18.{self.calls // 256 % 256}.{self.calls % 256}", 40000)}
        await self.app(scope, receive, send)


late_app = LateApp()
schema = schemathesis.openapi.from_path(CONTRACT)
schema.app = late_app  # what from_asgi does: every call, and every probe a check sends, goes in-process


def valid_data_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, except that a 422 is fine when every field it names
    carries a rule the schema cannot express (SERVER_ONLY_FIELDS, or a reserved or repeated extra
    header)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or 200 <= response.status_code < 300:
        return None
    if response.status_code in (401, 403, 404, 409):
        return None
    if response.status_code == 422:
        fields = [error["field"] for error in response.json()["errors"]]
        if all(_server_only(field, case.body) for field in fields):
            return None
    raise AssertionError(f"valid data was refused with {response.status_code}: {response.text}")


def _server_only(field: str, body: Any) -> bool:
    if field.rsplit(".", 1)[-1] in SERVER_ONLY_FIELDS:
        return True
    if field == "headers" and isinstance(body, dict) and isinstance(body.get("headers"), dict):
        names = list(body["headers"])
        return any(is_reserved(name) for name in names) or len({n.lower() for n in names}) < len(names)
    return False


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_api_matches_its_contract(case: Any, contract_app: Starlette) -> None:
    case.call_and_validate(
        headers=ADMIN,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[valid_data_is_accepted],
    )


@pytest.mark.slow
def test_api_holds_its_contract_across_linked_calls(contract_app: Starlette) -> None:
    """Stateful: follows the links (create an endpoint, then read, change, rotate, delete it; send a
    message, then read it), so answers about existing resources are checked too."""

    # Violations are collected, not raised: Hypothesis replays a failing scenario to report it, and a
    # replay against a server that mints fresh ids draws different link values, which it reports as
    # a flaky strategy instead of the violation. Collected, the violation itself is what fails.
    violations: list[str] = []
    checked = 0

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": ADMIN}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            nonlocal checked
            checked += 1
            try:
                case.validate_response(
                    response,
                    headers=ADMIN,
                    excluded_checks=[positive_data_acceptance],
                    additional_checks=[valid_data_is_accepted],
                    transport_kwargs=kwargs or None,
                    recorder=getattr(self, "recorder", None),
                )
            except Exception as exc:  # every check failure, whatever schemathesis calls it
                violations.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}")

    try:
        Scenario.run(settings=hypothesis.settings(
            max_examples=SCENARIOS, stateful_step_count=10, deadline=None, database=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        ))
    except hypothesis.errors.FlakyStrategyDefinition:
        # Which strategy a step draws depends on what earlier responses returned (ids the server
        # minted), and Hypothesis stops a run when it notices. That is its bookkeeping, not a broken
        # contract: every response up to there was checked and any violation collected above.
        pass
    assert not violations, "\n\n".join(violations[:5])
    assert checked >= 20, f"only {checked} responses were checked: the scenario barely ran"
