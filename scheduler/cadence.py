"""Turn the pump interval into arq cron fields (pure)."""

from __future__ import annotations

from typing import NamedTuple

from core.errors import ConfigError


class CronFields(NamedTuple):
    minute: set[int] | None  # None: every minute
    second: set[int] | int | None  # None: every second


def cron_fields(interval_seconds: float) -> CronFields:
    """The `minute`/`second` arguments of arq's `cron()` that fire every `interval_seconds`.

    arq cron has no "every N seconds"; it matches sets of seconds and minutes, so the interval must
    divide a minute (1..60 s) or an hour (whole minutes).
    """
    if interval_seconds != int(interval_seconds) or interval_seconds <= 0:
        raise ConfigError("HOOKPUMP_PUMP_INTERVAL", "must be a whole number of seconds")
    seconds = int(interval_seconds)
    if seconds == 1:
        return CronFields(minute=None, second=None)
    if seconds <= 60 and 60 % seconds == 0:
        return CronFields(minute=None, second=set(range(0, 60, seconds)) if seconds < 60 else 0)
    if seconds % 60 == 0 and 3600 % seconds == 0:
        return CronFields(minute=set(range(0, 60, seconds // 60)), second=0)
    raise ConfigError(
        "HOOKPUMP_PUMP_INTERVAL",
        f"{seconds} s does not divide a minute or an hour (use e.g. 1, 5, 10, 15, 30, 60, 120, 300 or 600)",
    )
