"""Time values in query strings: RFC 3339 with offset, or integer epoch milliseconds."""

from __future__ import annotations

import time

from api.errors import invalid
from liftwatch.protocol import parse_ts

EXAMPLE = "2026-11-26T20:01:02Z or 1795723262000"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_time(value: str | None, field: str, default: int) -> int:
    """Epoch ms for a query value; 422 naming ``field`` when it is not a time."""
    if value is None or value == "":
        return default
    text = value.strip()
    if text.isascii() and text.isdigit():
        ms = int(text) if len(text) <= 15 else None
    else:
        ms = parse_ts(text)
    if ms is None or not 0 <= ms < 10**14:
        raise invalid(field, f"not a time: use RFC 3339 with offset or epoch ms ({EXAMPLE})")
    return ms
