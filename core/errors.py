"""The one exception tree of hookpump.

HookpumpError
 ├── ConfigError            a HOOKPUMP_* variable is missing or malformed (raised at start-up)
 ├── NotFound               an id names nothing
 ├── Conflict               the request clashes with current state (idempotency key reuse, wrong status)
 ├── InvalidInput           a field is out of range or malformed; `field` names it
 │    └── ForbiddenTarget   an endpoint URL resolves to an address delivery may not reach
 ├── StoreError             Redis refused a command (translated from redis-py inside core/store/connection.py)
 │    ├── StoreUnavailable  Redis or its cluster cannot be reached or is failing over: retry shortly
 │    │    └── JobQueueUnavailable  arq's Redis (HOOKPUMP_ARQ_REDIS_URL) cannot be reached
 │    └── CrossSlotError    a command or script touched keys of more than one cluster slot: a bug in hookpump
 ├── HistoryError           the history store (core/history) failed; translated from asyncpg/sqlite3 at its adapters
 │    ├── HistoryUnavailable    the database cannot be reached or timed out: retry later, nothing is lost
 │    ├── HistoryRecordRejected the database refused a record for its content (too large, bad bytes)
 │    └── HistorySchemaTooNew   the database was migrated by a newer hookpump than this one
 └── EmbeddedRedisError     `hookpump dev` could not start its own redis-server (hookpump/embedded_redis.py)
"""

from __future__ import annotations


class HookpumpError(Exception):
    """Root of every error hookpump raises on purpose."""


class ConfigError(HookpumpError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class NotFound(HookpumpError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"no {kind} with id {ident!r}")
        self.kind = kind
        self.ident = ident


class Conflict(HookpumpError):
    pass


class InvalidInput(HookpumpError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ForbiddenTarget(InvalidInput):
    pass


class StoreError(HookpumpError):
    pass


class StoreUnavailable(StoreError):
    pass


class JobQueueUnavailable(StoreUnavailable):
    pass


class CrossSlotError(StoreError):
    pass


class HistoryError(HookpumpError):
    pass


class HistoryUnavailable(HistoryError):
    pass


class HistoryRecordRejected(HistoryError):
    pass


class HistorySchemaTooNew(HistoryError):
    pass
