"""Domain types: endpoints, messages, deliveries, attempts, API keys, and their statuses.

Frozen dataclasses; `to_json()` gives the wire shape that `openapi.yaml` documents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.credentials import redact


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting in its endpoint's due set, never attempted (or released by an operator)
    DELIVERING = "delivering"  # claimed by a worker under a lease
    RETRYING = "retrying"  # attempted, waiting in the due set for its next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Invariant: a delivery whose status is in QUEUED is in its endpoint's due set and nowhere else;
# DELIVERING is in the in-flight set and the lease set; TERMINAL is in neither.
QUEUED = frozenset({DeliveryStatus.PENDING, DeliveryStatus.RETRYING})
TERMINAL = frozenset({DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED})


class Scope(StrEnum):
    ADMIN = "admin"  # everything
    SEND = "send"  # send messages (and read them back)
    READ = "read"  # monitoring only


class PauseReason(StrEnum):
    RETRY_AFTER = "retry_after"  # the receiver answered 429/503 with Retry-After
    BACKOFF = "backoff"  # the receiver answered 429/503 without Retry-After
    GONE = "gone"  # the receiver answered 410: the endpoint was disabled
    OPERATOR = "operator"  # paused through the API


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Secret:
    """A signing secret (`whsec_<base64>`); `expires_at_ms` is set once it has been rotated out."""

    value: str
    created_at_ms: int
    expires_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    rate_limit_per_minute: int
    max_in_flight: int
    event_types: tuple[str, ...] | None  # None: every event type
    headers: dict[str, str]
    description: str
    enabled: bool
    created_at_ms: int
    updated_at_ms: int
    disabled_reason: str | None = None
    # The pace the adaptive loop never goes below, however often the receiver refuses.
    min_rate_per_minute: int = 1
    # Carry W3C `traceparent` on outgoing requests.
    trace_propagation: bool = True
    secrets: tuple[Secret, ...] = field(default=(), repr=False)  # never in to_json()
    # Header names (lower case) whose values the owner marked write-only, beyond those whose names say
    # they carry credentials (core/credentials.py); to_json() shows neither kind's values.
    secret_headers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "min_rate_per_minute": self.min_rate_per_minute,
            "max_in_flight": self.max_in_flight,
            "event_types": list(self.event_types) if self.event_types is not None else None,
            "headers": redact(self.headers, self.secret_headers),
            "secret_headers": list(self.secret_headers),
            "description": self.description,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "trace_propagation": self.trace_propagation,
            "created_at": iso(self.created_at_ms),
            "updated_at": iso(self.updated_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    message_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at_ms: int
    updated_at_ms: int
    next_attempt_at_ms: int | None
    last_status_code: int | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": iso(self.created_at_ms),
            "updated_at": iso(self.updated_at_ms),
            "next_attempt_at": iso(self.next_attempt_at_ms) if self.next_attempt_at_ms is not None else None,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """What GET /v1/deliveries asks for; every field that is set must hold."""

    endpoint_id: str | None = None
    statuses: frozenset[DeliveryStatus] = frozenset()  # empty: any status
    event_type: str | None = None
    message_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    event_type: str
    payload_json: str  # the payload exactly as it is sent (compact JSON)
    created_at_ms: int
    delivery_ids: tuple[str, ...]
    trace: str = ""  # W3C traceparent of the ingest request, or ""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[Scope]
    created_at_ms: int


def iso(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with millisecond precision (on every attempt's hot
    path: gmtime + strftime costs a third of a datetime round trip)."""
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"
