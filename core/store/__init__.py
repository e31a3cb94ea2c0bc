"""The Redis data layer: the only package that imports redis. `Store` groups one object per concept."""

from __future__ import annotations

from collections.abc import Callable

from core import keys
from core.models import DeliveryFilter
from core.settings import Settings
from core.store.api_keys import ApiKeyStore
from core.store.auth_failures import AuthFailureStore
from core.store.connection import Redis, create_redis
from core.store.deliveries import DeliveryStore
from core.store.endpoints import EndpointFlow, EndpointStore
from core.store.messages import Accepted, Idempotency, MessageStore, NewMessage
from core.store.monitoring import MonitoringStore
from core.store.operations import Actor, OperationsStore
from core.store.outbox import OutboxBacklog, OutboxStore
from core.store.pump import Claim, ClaimedDelivery, ClaimedEndpoint, Completion, PermitAsk, PermitGrant, PumpStore
from core.store.sessions import Session, SessionStore
from core.store.timeline import TimelineStore

__all__ = [
    "Accepted",
    "Actor",
    "ApiKeyStore",
    "AuthFailureStore",
    "Claim",
    "ClaimedDelivery",
    "ClaimedEndpoint",
    "Completion",
    "DeliveryFilter",
    "DeliveryStore",
    "EndpointFlow",
    "EndpointStore",
    "Idempotency",
    "MessageStore",
    "MonitoringStore",
    "NewMessage",
    "OperationsStore",
    "OutboxBacklog",
    "OutboxStore",
    "PermitAsk",
    "PermitGrant",
    "PumpStore",
    "Session",
    "SessionStore",
    "Store",
    "TimelineStore",
    "create_store",
]


class Store:
    def __init__(self, client: Redis, settings: Settings) -> None:
        self.redis = client
        self._settings = settings
        self.endpoints = EndpointStore(client)
        self.messages = MessageStore(client, idempotency_ttl=settings.idempotency_ttl, retention=settings.retention)
        self.api_keys = ApiKeyStore(client)
        self.deliveries = DeliveryStore(client)
        self.pump = PumpStore(client, lease_seconds=settings.lease_seconds)
        self.monitoring = MonitoringStore(client, self.deliveries)
        self.operations = OperationsStore(client, retention=settings.retention)
        self.timeline = TimelineStore(client)
        self.sessions = SessionStore(client)
        self.auth_failures = AuthFailureStore(client)
        self.outbox = OutboxStore(client)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()

    async def flush_all_for_tests(self) -> None:
        """Empty the current database. Only test fixtures call this."""
        await self.redis.flushdb()

    async def listen_for_wake(self, on_wake: Callable[[], None]) -> None:
        """Call `on_wake` for every publish on the wake channel (ingest, re-enable, manual retry).

        Runs until cancelled; raises on a lost connection (the caller reconnects with backoff).
        Pub/sub is best effort: the pump also polls, so a missed wake only costs latency.
        """
        # A cluster forwards every PUBLISH to every node, so one node's subscription hears them all;
        # redis-py 5's asyncio cluster client has no pub/sub, so a plain client listens on the seed.
        subscriber = self.redis
        if self._settings.redis_cluster:
            assert self._settings.redis_url is not None
            subscriber = create_redis(self._settings.redis_url, max_connections=2)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.WAKE_CHANNEL)
            on_wake()  # anything published while we were not subscribed is not lost work, but look now
            async for _message in pubsub.listen():
                on_wake()
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py 5 leaves it unannotated
            if subscriber is not self.redis:
                await subscriber.aclose()


async def create_store(settings: Settings) -> Store:
    if settings.redis_url is None:
        raise ValueError("settings.redis_url is required to open the store")
    return Store(create_redis(settings.redis_url, cluster=settings.redis_cluster), settings)
