"""The API's answers as TypedDicts, named after openapi.yaml's schemas (a test validates every answer
the client receives against those schemas, so these and the contract stay in step). Fields the
server adds later still arrive; these list what the command line relies on."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

DeliveryStatus = Literal["pending", "delivering", "retrying", "succeeded", "failed", "cancelled"]
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "delivering", "retrying", "succeeded", "failed", "cancelled")
RETRYABLE_STATUSES: tuple[str, ...] = ("failed", "succeeded", "cancelled")
CANCELLABLE_STATUSES: tuple[str, ...] = ("pending", "retrying")
API_KEY_SCOPES: tuple[str, ...] = ("admin", "send", "read")


class Endpoint(TypedDict):
    id: str
    url: str
    rate_limit_per_minute: int
    min_rate_per_minute: int
    max_in_flight: int
    event_types: list[str] | None
    headers: dict[str, str]  # write-only values read "[redacted]"
    secret_headers: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    trace_propagation: bool
    created_at: str
    updated_at: str


class EndpointCreated(Endpoint):
    secret: str


class EndpointFlow(TypedDict):
    paused: bool
    paused_until: str | None
    pause_reason: str | None
    paused_at: str | None
    effective_rate_per_minute: float
    backoff_level: int


class EndpointWithFlow(Endpoint):
    flow: EndpointFlow


class SecretRotated(TypedDict):
    secret: str
    previous_secrets_valid_until: str


class DeliverySummary(TypedDict):
    id: str
    endpoint_id: str
    status: DeliveryStatus


class MessageAccepted(TypedDict):
    id: str
    event_type: str
    created_at: str
    deliveries: list[DeliverySummary]


class BatchAccepted(TypedDict):
    messages: list[MessageAccepted]


class Delivery(TypedDict):
    id: str
    message_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None


class Message(TypedDict):
    id: str
    event_type: str
    payload: Any
    created_at: str
    deliveries: list[Delivery]


class Attempt(TypedDict):
    id: str
    delivery_id: str
    number: int
    trigger: str
    started_at: str | None
    duration_ms: float | None
    request: dict[str, Any] | None
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    outcome: str


class OperatorAction(TypedDict):
    action: str
    by: str
    at: str


class DeliveryDetail(TypedDict):
    delivery: Delivery
    message: dict[str, Any]
    attempts: list[Attempt]
    next_attempt_at: str | None
    actions: list[OperatorAction]


class OutcomeCounts(TypedDict):
    succeeded: int
    failed: int
    retrying: int
    overloaded: int


class Pacing(TypedDict):
    state: Literal["steady", "probing", "backing_off", "retry_after", "paused", "disabled"]
    effective_rate_per_minute: float
    min_rate_per_minute: int
    last_failed_rate_per_minute: float | None
    accepted_rate_per_minute: float | None
    refused_whatever_the_rate: float
    last_cut_at: str | None
    overloads_since_success: int


class EndpointStats(TypedDict):
    endpoint_id: str
    backlog: int
    due_now: int
    in_flight: int
    counts: dict[str, int]
    last_minute: OutcomeCounts
    last_hour: OutcomeCounts
    success_ratio: float | None
    rate_limit_per_minute: int
    effective_rate_per_minute: float
    paused: bool
    paused_until: str | None
    pause_reason: str | None
    oldest_pending_at: str | None
    oldest_pending_age_seconds: float | None
    estimated_drain_seconds: float | None
    pacing: Pacing
    recent_actions: list[OperatorAction]


class BacklogEntry(TypedDict):
    endpoint_id: str
    backlog: int


class QueueOverview(TypedDict):
    counts: dict[str, int]
    backlog: int
    endpoints_ready: int
    oldest_pending_at: str | None
    oldest_pending_age_seconds: float | None
    largest_backlogs: list[BacklogEntry]
    pump: dict[str, Any]
    workers: list[dict[str, Any]]


class BulkRetryAccepted(TypedDict):
    id: str
    state: str
    matched_estimate: int | None
    progress_url: str


class BulkRetry(TypedDict):
    id: str
    state: Literal["queued", "running", "done"]
    filter: dict[str, Any]
    matched: int
    queued: int
    skipped: int
    by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class EndpointPage(TypedDict):
    data: list[Endpoint]
    next_cursor: str | None


class DeliveryPage(TypedDict):
    data: list[Delivery]
    next_cursor: str | None


class KeyIdentity(TypedDict):
    id: str
    name: str
    scopes: list[str]
    created_at: str | None
    bootstrap: bool


class CurrentApiKey(TypedDict):
    service: Literal["hookpump"]
    version: str
    key: KeyIdentity
class ApiKey(TypedDict):
    id: str
    name: str
    scopes: list[str]
    created_at: str


class ApiKeyCreated(ApiKey):
    key: str


class ApiKeyPage(TypedDict):
    data: list[ApiKey]
    next_cursor: str | None
