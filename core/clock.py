"""Wall-clock time in milliseconds: the unit every Redis score and record uses."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
