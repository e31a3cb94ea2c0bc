"""Turning the command line's time filters into what the API takes: RFC 3339 passes through, a
duration such as `10m` means that long ago; anything else is sent as written for the API to judge."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_HELP = "RFC 3339 time, or a duration ago (30s, 10m, 2h, 7d)."


def time_filter(value: str | None, now: datetime | None = None) -> str | None:
    if value is None:
        return None
    match = AGO.match(value.strip())
    if match is None:
        return value
    ago = timedelta(seconds=float(match.group(1)) * UNIT_SECONDS[match.group(2)])
    return ((now or datetime.now(UTC)) - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")
