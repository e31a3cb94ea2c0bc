"""What every handler needs, built once by the app's lifespan: settings, the store, the authenticator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from core.settings import Settings
from core.store import Store
from service.auth import Authenticator


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    store: Store
    auth: Authenticator


def context(request: Request) -> Context:
    return cast(Context, request.app.state.context)
