"""What every handler needs, built once by the app's lifespan: settings, the store, the authenticator,
the job queue that hands background work (bulk retries) to the workers, and the API's telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

from core.settings import Settings
from core.store import Store
from scheduler.worker import JobQueue
from service.auth import Authenticator

if TYPE_CHECKING:  # service.telemetry imports this module
    from service.telemetry import ApiTelemetry


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    store: Store
    auth: Authenticator
    jobs: JobQueue
    telemetry: ApiTelemetry


def context(request: Request) -> Context:
    return cast(Context, request.app.state.context)
