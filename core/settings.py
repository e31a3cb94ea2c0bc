"""The one frozen Settings object, built from HOOKPUMP_* environment variables.

Every variable is listed in `VARIABLES`; an unknown HOOKPUMP_* name or a badly typed value fails at
start-up with a ConfigError naming the variable. Settings are passed in, never read from globals.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.durability import Durability, parse_durability
from core.errors import ConfigError

PREFIX = "HOOKPUMP_"
# Read by the API client and the `hookpump` client commands (hookpump/client/connection.py), not by
# the server, which must still start in a shell that has them set.
CLIENT_VARIABLES = frozenset({"HOOKPUMP_URL", "HOOKPUMP_KEY"})
# The bootstrap key is an admin key that cannot be deleted: short enough to guess, it would be worth guessing.
MIN_API_KEY_LENGTH = 32
ENDPOINT_ID = re.compile(r"ep_[0-9a-hjkmnp-tv-z]{26}")  # core/ids.py: a prefix and 26 base32 characters


@dataclass(frozen=True, slots=True)
class Settings:
    # Where Redis lives; None means "none given" (`hookpump dev` then starts an embedded one).
    redis_url: str | None = None
    # redis_url is the seed (any node) of a Redis Cluster, not one Redis.
    redis_cluster: bool = False
    # arq's Redis (the pump's cron, the bulk-retry jobs): redis_url when that is one Redis; required
    # with a cluster, where arq cannot run. Nothing on the per-delivery path goes through it.
    arq_redis_url: str | None = None
    # Where delivery history is kept: postgresql://... (production) or sqlite:///path; None means a
    # SQLite file in data_dir (one host only).
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # The bootstrap admin key; further keys are created through the API and stored hashed.
    api_key: str | None = None
    # Length of one pump window, in seconds: the arq cron fires this often.
    pump_interval: float = 60.0
    # Deliver to loopback/private/link-local addresses (on for `hookpump dev` and tests only).
    allow_private_targets: bool = False
    max_payload_bytes: int = 256 * 1024
    max_batch_messages: int = 1000
    # Deliveries one request may create (messages x the endpoints each goes to): ingest writes them in
    # one Lua call, and Redis serves no one else meanwhile.
    max_deliveries_per_request: int = 10_000
    connect_timeout: float = 5.0
    request_timeout: float = 15.0
    # Per-delivery retries (408, other 5xx, timeouts, connection errors): exponential with jitter,
    # from `retry_base` seconds doubling up to `retry_cap`, for at most `retry_horizon` seconds in all.
    retry_base: float = 5.0
    retry_cap: float = 10 * 3600.0
    retry_horizon: float = 3 * 24 * 3600.0
    # Whole-endpoint pause after 429/503 without Retry-After: exponential, full jitter.
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    # How long a rotated-out secret keeps signing.
    secret_grace: float = 24 * 3600.0
    # How long attempt records and terminal deliveries are kept.
    retention: float = 30 * 24 * 3600.0
    response_body_limit: int = 4096
    # How long an accepted Idempotency-Key is remembered.
    idempotency_ttl: float = 24 * 3600.0
    # A claimed delivery not completed within this many seconds after its send slot is
    # returned to its due set (crash recovery). Must exceed request_timeout.
    lease_seconds: float = 30.0
    # Concurrent requests one worker process keeps open, across all endpoints.
    worker_concurrency: int = 512
    # Unique per running worker: its pump lease, its history writer's stream consumer, and its solo
    # claims on an endpoint (core/store/lua/claim.lua) are known by it.
    worker_id: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    data_dir: str = ".hookpump"
    log_format: str = "json"
    log_level: str = "INFO"
    # GET /metrics answers without an API key (for a scraper on a private port or network).
    metrics_open: bool = False
    # Endpoints whose metrics carry an endpoint_id label; every other endpoint is counted unlabelled,
    # so the number of series stays bounded.
    metrics_endpoints: tuple[str, ...] = ()
    # `hookpump worker` serves its own /metrics on this port (0: not served), on this address: loopback
    # unless set, since it answers without a key, whatever address the API listens on.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Proxies (addresses or networks, or "*") whose X-Forwarded-For / X-Forwarded-Proto are believed: the
    # client address (the key-guessing limit counts by it) and the scheme (the console cookie is Secure
    # on https) come from them. None trusted unless set: a direct client could claim any address.
    trusted_proxies: tuple[str, ...] = ()
    # The address people reach hookpump at; an https one marks the console cookie Secure even when a
    # proxy that ends TLS is not trusted to say so.
    public_url: str | None = None
    # What a 202 promises about a machine crash (core/durability.py); production should say strict.
    durability: Durability = Durability.FAST
    # Check at start-up (CONFIG GET) that Redis keeps that promise; off for a Redis whose provider
    # disables CONFIG, where the operator vouches for its settings instead.
    durability_check: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every HOOKPUMP_* variable; `overrides` (field names) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        known = {PREFIX + name.upper() for name in VARIABLES}
        tolerated = known | CLIENT_VARIABLES
        for name in env:
            if name.startswith(PREFIX) and name not in tolerated and not name.startswith(PREFIX + "TEST_"):
                raise ConfigError(name, f"unknown setting (known: {', '.join(sorted(known))})")
        for field, parse in VARIABLES.items():
            variable = PREFIX + field.upper()
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise ConfigError(variable, f"{raw!r} is not valid: {exc}") from exc
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules; each failure names the variable to fix."""
        positive = (
            "pump_interval",
            "connect_timeout",
            "request_timeout",
            "retry_base",
            "retry_cap",
            "backoff_base",
            "backoff_cap",
            "lease_seconds",
        )
        for field in positive:
            if getattr(self, field) <= 0:
                raise ConfigError(PREFIX + field.upper(), "must be greater than 0")
        # Redis expiries written by the ingest script after the message itself: a zero one would fail
        # (or drop the message) only once the script had written, so they are refused here instead.
        expiries = {
            "idempotency_ttl": "an Idempotency-Key must be remembered for some time",
            "retention": "a message expiring at once would be dropped as it is accepted",
        }
        for field, why in expiries.items():
            if getattr(self, field) < 1:
                raise ConfigError(PREFIX + field.upper(), f"must be at least 1 (seconds): {why}")
        if not 1 <= self.port <= 65535:
            raise ConfigError("HOOKPUMP_PORT", "must be between 1 and 65535")
        if not 0 <= self.worker_metrics_port <= 65535:
            raise ConfigError("HOOKPUMP_WORKER_METRICS_PORT", "must be between 1 and 65535, or 0 for none")
        if self.lease_seconds <= self.request_timeout:
            raise ConfigError(
                "HOOKPUMP_LEASE_SECONDS", "must exceed HOOKPUMP_REQUEST_TIMEOUT, or a slow request would be sent twice"
            )
        if self.api_key is not None and len(self.api_key) < MIN_API_KEY_LENGTH:
            raise ConfigError(
                "HOOKPUMP_API_KEY",
                f"must be at least {MIN_API_KEY_LENGTH} characters (it is {len(self.api_key)}); make one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        if self.log_format not in ("json", "text"):
            raise ConfigError("HOOKPUMP_LOG_FORMAT", "must be 'json' or 'text'")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("HOOKPUMP_REDIS_URL", "must start with redis://, rediss:// or unix://")
        if self.arq_redis_url is not None and not self.arq_redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("HOOKPUMP_ARQ_REDIS_URL", "must start with redis://, rediss:// or unix://")
        if self.redis_cluster:
            check_cluster(self.redis_url, self.arq_redis_url)
        if self.database_url is not None:
            check_database_url(self.database_url)
        if self.public_url is not None and not self.public_url.lower().startswith(("http://", "https://")):
            raise ConfigError("HOOKPUMP_PUBLIC_URL", "must start with https:// or http://")

    @property
    def job_queue_url(self) -> str | None:
        """arq's Redis: HOOKPUMP_ARQ_REDIS_URL, else the one Redis of HOOKPUMP_REDIS_URL."""
        return self.arq_redis_url or (None if self.redis_cluster else self.redis_url)

    def replace(self, **changes: Any) -> Settings:
        settings = dataclasses.replace(self, **changes)
        settings.check()
        return settings


def check_cluster(redis_url: str | None, arq_redis_url: str | None) -> None:
    """With HOOKPUMP_REDIS_CLUSTER=true, HOOKPUMP_REDIS_URL seeds the cluster and arq needs a Redis of its own."""
    if redis_url is None:
        raise ConfigError("HOOKPUMP_REDIS_URL", "is required with HOOKPUMP_REDIS_CLUSTER=true: the address of "
                          "any node of the cluster, as redis://host:port")
    if redis_url.startswith("unix://"):
        raise ConfigError("HOOKPUMP_REDIS_URL", "must be redis:// or rediss:// with HOOKPUMP_REDIS_CLUSTER=true: "
                          "a cluster's nodes are reached over TCP")
    if arq_redis_url is None:
        raise ConfigError("HOOKPUMP_ARQ_REDIS_URL", "is required with HOOKPUMP_REDIS_CLUSTER=true: arq (the pump's "
                          "clock, bulk retries) cannot run on a cluster; give it a single Redis of its own")
    if arq_redis_url == redis_url:
        raise ConfigError("HOOKPUMP_ARQ_REDIS_URL", "must not be the cluster's seed: arq needs a single Redis")


def check_database_url(url: str) -> None:
    """HOOKPUMP_DATABASE_URL must name a backend hookpump has, with somewhere to connect."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError("HOOKPUMP_DATABASE_URL", f"is not a URL: {exc}") from exc
    if parts.scheme in ("postgresql", "postgres"):
        if not (parts.hostname or "host=" in parts.query) or not parts.path.strip("/"):
            raise ConfigError("HOOKPUMP_DATABASE_URL", "must name a host and a database: postgresql://user@host:5432/db")
    elif parts.scheme == "sqlite":
        if not parts.path or parts.netloc:
            raise ConfigError("HOOKPUMP_DATABASE_URL", "must be sqlite:///relative/path.db or sqlite:////absolute.db")
    else:
        raise ConfigError("HOOKPUMP_DATABASE_URL", "must start with postgresql:// or sqlite:///")


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a whole number greater than 0")
    return value


def _endpoint_ids(raw: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in raw.split(",") if part.strip())
    for eid in ids:
        if not ENDPOINT_ID.fullmatch(eid):
            raise ValueError(f"{eid!r} is not an endpoint id (ep_ followed by 26 characters); separate ids by commas")
    return ids


def _proxies(raw: str) -> tuple[str, ...]:
    """Comma-separated addresses and networks (CIDR), or "*" for any."""
    entries = tuple(part.strip() for part in raw.split(",") if part.strip())
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network; separate entries by commas") from None
    return entries


def _seconds(raw: str) -> float:
    value = float(raw)
    if value != value or value < 0:  # NaN or negative
        raise ValueError("must be a number of seconds, 0 or more")
    return value


# field name -> parser; the variable is PREFIX + field.upper().
VARIABLES: dict[str, Callable[[str], Any]] = {
    "redis_url": str,
    "redis_cluster": _bool,
    "arq_redis_url": str,
    "database_url": str,
    "host": str,
    "port": int,
    "api_key": str,
    "pump_interval": _seconds,
    "allow_private_targets": _bool,
    "max_payload_bytes": _positive_int,
    "max_batch_messages": _positive_int,
    "max_deliveries_per_request": _positive_int,
    "connect_timeout": _seconds,
    "request_timeout": _seconds,
    "retry_base": _seconds,
    "retry_cap": _seconds,
    "retry_horizon": _seconds,
    "backoff_base": _seconds,
    "backoff_cap": _seconds,
    "secret_grace": _seconds,
    "retention": _seconds,
    "response_body_limit": _positive_int,
    "idempotency_ttl": _seconds,
    "lease_seconds": _seconds,
    "worker_concurrency": _positive_int,
    "worker_id": str,
    "data_dir": str,
    "log_format": str,
    "log_level": str,
    "metrics_open": _bool,
    "metrics_endpoints": _endpoint_ids,
    "worker_metrics_port": int,
    "worker_metrics_host": str,
    "trusted_proxies": _proxies,
    "public_url": str,
    "durability": parse_durability,
    "durability_check": _bool,
}
