"""Time values in query strings: RFC 3339 with offset, or integer epoch milliseconds.

Accepted times lie in [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z): anything outside is a
client error (422 naming the parameter), not a question for InfluxDB, which refuses times
past 2262 and answered such queries with an error the API could only report as 503."""

from __future__ import annotations

from api.errors import invalid
from liftwatch import clock
from liftwatch.protocol import parse_ts

EXAMPLE = "2026-11-26T20:01:02Z or 1795723262000"
now_ms = clock.now_ms  # the API modules take "now" from here
MIN_MS = 0  # 1970-01-01T00:00:00Z
MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)


def parse_time(value: str | None, field: str, default: int) -> int:
    """Epoch ms for a query value; 422 naming ``field`` when it is not a time."""
    if value is None or value == "":
        return default
    text = value.strip()
    if text.isascii() and text.isdigit():
        ms = int(text) if len(text) <= 15 else None
    else:
        ms = parse_ts(text)
    if ms is None:
        raise invalid(field, f"not a time: use RFC 3339 with offset or epoch ms ({EXAMPLE})")
    if not MIN_MS <= ms < MAX_MS:
        raise invalid(field, "out of range: times from 1970-01-01 to before 2100-01-01 (UTC)")
    return ms
