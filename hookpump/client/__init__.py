"""A small typed client for hookpump's REST API, shared by the `hookpump` command line, the tests and
users' own Python code. It speaks only the API described in openapi.yaml.

    from hookpump.client import HookpumpClient, connect
    with connect() as client:          # HOOKPUMP_URL / HOOKPUMP_KEY, or beside `hookpump dev`
        client.send_message("order.paid", {"id": 1})
"""

from __future__ import annotations

from hookpump.client.api import HookpumpClient, connect
from hookpump.client.connection import Connection, resolve_connection
from hookpump.client.errors import ApiProblem, ClientError, MissingKey, ServerUnreachable

__all__ = [
    "ApiProblem",
    "ClientError",
    "Connection",
    "HookpumpClient",
    "MissingKey",
    "ServerUnreachable",
    "connect",
    "resolve_connection",
]
