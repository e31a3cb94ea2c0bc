"""What an HTTP answer means for a delivery (`classify`), and how long the receiver asked us to wait
(`parse_retry_after`). Pure."""

from __future__ import annotations

import datetime
import email.utils
import math
import re
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from delivery.client import HttpResult


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # 2xx
    RETRY = "retry"  # this delivery failed for now: 408, 5xx other than 503, no answer at all
    FAILED = "failed"  # will not get better by resending: 3xx, 4xx other than 408/410/429, a refused address
    OVERLOADED = "overloaded"  # 429/503: the whole endpoint should slow down, not just this delivery
    GONE = "gone"  # 410: the receiver asks us to stop (Standard Webhooks: disable the endpoint)


# Receivers that send absurd Retry-After values (a year, a date in 2099) would otherwise park an
# endpoint forever; a day is longer than any honest overload and still short of the retry horizon.
MAX_RETRY_AFTER = 24 * 3600.0

_DELAY_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


def classify(result: HttpResult) -> Outcome:
    status = result.status
    if status is None:
        if result.error_kind == "forbidden_address":
            # The address guard refused the target (its name now resolves to a private address): no
            # retry can change that, so the delivery fails now rather than retrying for the horizon.
            return Outcome.FAILED
        return Outcome.RETRY  # timeout, refused, reset, DNS: the receiver never answered
    if 200 <= status < 300:
        return Outcome.SUCCEEDED
    if status in (429, 503):
        return Outcome.OVERLOADED
    if status == 410:
        return Outcome.GONE
    if status == 408 or status >= 500:
        return Outcome.RETRY
    # 3xx included: redirects are never followed (they could point anywhere, including inside our
    # network), and a moved endpoint does not move back by itself, so retrying only burns attempts.
    return Outcome.FAILED


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or an HTTP-date, `now` in unix seconds),
    at least 0 and at most MAX_RETRY_AFTER; None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" means UTC with no claim about local time (RFC 5322)
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
