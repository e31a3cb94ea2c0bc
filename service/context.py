"""What every handler needs, built once by the app's lifespan: settings, the store, the authenticator,
the job queue that hands background work (bulk retries) to the workers, the API's telemetry, and
the history store that answers the delivery log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

from core.history import HistoryStore
from core.history.log import DeliveryLog
from core.settings import Settings
from core.store import Store
from scheduler.job_queue import JobQueue
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
    history: HistoryStore  # the delivery log on disk (core/history); Redis holds only live state
    log: DeliveryLog  # what the monitoring routes (and the console) read the delivery log through


def context(request: Request) -> Context:
    return cast(Context, request.app.state.context)
