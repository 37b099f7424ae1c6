"""HQ's one clock and its time formats: Unix milliseconds inside, ISO 8601 UTC with a `Z` outside.

Pure apart from `now_ms`; tests pass their own clock where time matters.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from devices.records import format_time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_from_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return format_time(datetime.fromtimestamp(ms / 1000, UTC))


def ms_from_datetime(t: datetime) -> int:
    return int(t.timestamp() * 1000)
