"""`HookpumpClient`: one method per API operation, synchronous (httpx), answers typed as in
`types.py`. Every refusal becomes `ApiProblem`, every failure to get an answer `ServerUnreachable`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import httpx

from hookpump.client import types as t
from hookpump.client.connection import resolve_connection
from hookpump.client.errors import ApiProblem, ServerUnreachable

USER_AGENT = "hookpump-cli"
RequestHook = Callable[[httpx.Request], None]
ResponseHook = Callable[[httpx.Response], None]


class HookpumpClient:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 15.0,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, event_hooks=dict(event_hooks or {}),
            headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT},
        )  # fmt: skip

    def __enter__(self) -> HookpumpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(
                method, path, json=json, params=tuple(_query(params)), headers=dict(headers or {})
            )
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, _reason(exc)) from exc
        if response.status_code >= 400:
            raise ApiProblem(response.status_code, _problem_document(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --- messages -----------------------------------------------------------------------------

    def send_message(
        self,
        event_type: str,
        payload: Any,
        *,
        endpoint_ids: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> t.MessageAccepted:
        body: dict[str, Any] = {"event_type": event_type, "payload": payload}
        if endpoint_ids:
            body["endpoint_ids"] = list(endpoint_ids)
        return cast(t.MessageAccepted, self._call("POST", "/v1/messages", json=body, headers=_idem(idempotency_key)))

    def send_batch(
        self, messages: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> t.BatchAccepted:
        """Each message is a MessageCreate object: event_type, payload, optional endpoint_ids."""
        body = {"messages": [dict(message) for message in messages]}
        answer = self._call("POST", "/v1/messages/batch", json=body, headers=_idem(idempotency_key))
        return cast(t.BatchAccepted, answer)

    def get_message(self, message_id: str) -> t.Message:
        return cast(t.Message, self._call("GET", f"/v1/messages/{message_id}"))

    # --- endpoints ----------------------------------------------------------------------------

    def list_endpoints(self, *, limit: int | None = None, cursor: str | None = None) -> t.EndpointPage:
        return cast(t.EndpointPage, self._call("GET", "/v1/endpoints", params={"limit": limit, "cursor": cursor}))

    def iter_endpoints(self, *, page_size: int = 250) -> Iterator[t.Endpoint]:
        cursor: str | None = None
        while True:
            page = self.list_endpoints(limit=page_size, cursor=cursor)
            yield from page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def get_endpoint(self, endpoint_id: str) -> t.Endpoint:
        return cast(t.Endpoint, self._call("GET", f"/v1/endpoints/{endpoint_id}"))

    def create_endpoint(self, url: str, **fields: Any) -> t.EndpointCreated:
        """`fields` are EndpointCreate's other fields (rate_limit_per_minute, event_types, ...)."""
        body = {"url": url, **{name: value for name, value in fields.items() if value is not None}}
        return cast(t.EndpointCreated, self._call("POST", "/v1/endpoints", json=body))

    def update_endpoint(self, endpoint_id: str, **fields: Any) -> t.Endpoint:
        """Only the given fields change; pass `event_types=None` explicitly to mean "every type"."""
        return cast(t.Endpoint, self._call("PATCH", f"/v1/endpoints/{endpoint_id}", json=fields))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._call("DELETE", f"/v1/endpoints/{endpoint_id}")

    def rotate_secret(self, endpoint_id: str, secret: str | None = None) -> t.SecretRotated:
        body = {"secret": secret} if secret else None
        return cast(t.SecretRotated, self._call("POST", f"/v1/endpoints/{endpoint_id}/secret/rotate", json=body))

    def pause_endpoint(self, endpoint_id: str, *, until: str | None = None) -> t.EndpointWithFlow:
        body = {"until": until} if until else None
        return cast(t.EndpointWithFlow, self._call("POST", f"/v1/endpoints/{endpoint_id}/pause", json=body))

    def resume_endpoint(self, endpoint_id: str) -> t.EndpointWithFlow:
        return cast(t.EndpointWithFlow, self._call("POST", f"/v1/endpoints/{endpoint_id}/resume"))

    def endpoint_stats(self, endpoint_id: str) -> t.EndpointStats:
        return cast(t.EndpointStats, self._call("GET", f"/v1/endpoints/{endpoint_id}/stats"))

    # --- deliveries ---------------------------------------------------------------------------

    def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: Sequence[str] = (),
        event_type: str | None = None,
        message_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> t.DeliveryPage:
        """Newest first; filters combine. A page may be short while `next_cursor` is set."""
        params = {
            "endpoint_id": endpoint_id, "status": list(status) or None, "event_type": event_type,
            "message_id": message_id, "since": since, "until": until, "limit": limit, "cursor": cursor,
        }  # fmt: skip
        return cast(t.DeliveryPage, self._call("GET", "/v1/deliveries", params=params))

    def get_delivery(self, delivery_id: str) -> t.DeliveryDetail:
        return cast(t.DeliveryDetail, self._call("GET", f"/v1/deliveries/{delivery_id}"))

    def retry_delivery(self, delivery_id: str) -> t.Delivery:
        return cast(t.Delivery, self._call("POST", f"/v1/deliveries/{delivery_id}/retry"))

    def cancel_delivery(self, delivery_id: str) -> t.Delivery:
        return cast(t.Delivery, self._call("POST", f"/v1/deliveries/{delivery_id}/cancel"))

    def start_bulk_retry(
        self,
        *,
        endpoint_id: str | None = None,
        status: Sequence[str] = (),
        event_type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> t.BulkRetryAccepted:
        fields = {"endpoint_id": endpoint_id, "status": list(status) or None, "event_type": event_type,
                  "since": since, "until": until}  # fmt: skip
        body = {name: value for name, value in fields.items() if value is not None}
        return cast(t.BulkRetryAccepted, self._call("POST", "/v1/deliveries/retry", json=body))

    def get_bulk_retry(self, job_id: str) -> t.BulkRetry:
        return cast(t.BulkRetry, self._call("GET", f"/v1/deliveries/retry/{job_id}"))

    def queue_overview(self) -> t.QueueOverview:
        return cast(t.QueueOverview, self._call("GET", "/v1/queue"))

    # --- api keys -----------------------------------------------------------------------------

    def current_api_key(self) -> t.CurrentApiKey:
        """Which key this client holds and its scopes: any valid key may ask."""
        return cast(t.CurrentApiKey, self._call("GET", "/v1/api-keys/me"))
    # --- API keys (admin) ---------------------------------------------------------------------

    def create_api_key(self, name: str, scopes: Sequence[str]) -> t.ApiKeyCreated:
        """The answer holds the key itself; the server keeps only its hash, so it is never shown again."""
        body = {"name": name, "scopes": list(scopes)}
        return cast(t.ApiKeyCreated, self._call("POST", "/v1/api-keys", json=body))

    def list_api_keys(self, *, limit: int | None = None, cursor: str | None = None) -> t.ApiKeyPage:
        return cast(t.ApiKeyPage, self._call("GET", "/v1/api-keys", params={"limit": limit, "cursor": cursor}))

    def iter_api_keys(self, *, page_size: int = 250) -> Iterator[t.ApiKey]:
        cursor: str | None = None
        while True:
            page = self.list_api_keys(limit=page_size, cursor=cursor)
            yield from page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def delete_api_key(self, key_id: str) -> None:
        self._call("DELETE", f"/v1/api-keys/{key_id}")


def connect(url: str | None = None, key: str | None = None, **options: Any) -> HookpumpClient:
    """A client for the API found by `resolve_connection` (flags, environment, `hookpump dev`)."""
    connection = resolve_connection(url, key)
    return HookpumpClient(connection.url, connection.key, **options)


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in (params or {}).items():
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, str(item)))
    return pairs


def _idem(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _problem_document(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and "detail" in document:
        return document
    # Not hookpump answering (a proxy, another service on that port): say what came back.
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return {
        "type": "about:blank", "title": response.reason_phrase or "Error", "status": response.status_code,
        "detail": f"HTTP {response.status_code} from {response.request.url} is not hookpump's answer"
                  + (f": {text}" if text else ""),
    }  # fmt: skip


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else f"cannot connect: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
