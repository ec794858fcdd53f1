"""Time values in query strings: RFC 3339 with an offset, or integer epoch milliseconds; and
calendar months in the site's time zone (``LIFTWATCH_TIMEZONE``).

Accepted as people type them: ``2026-11-26T20:01:02Z``, ``2026-11-27T04:01:02+08:00``,
without seconds (``2026-11-27T04:01+08:00``), with a space for the ``T``, an offset without
its colon (``+0800``), and an offset whose ``+`` a URL turned into a space
(``?since=2026-12-01T00:00:00+08:00`` typed in a browser or an unquoted curl arrives as
``…00:00:00 08:00``: a time followed by a space and ``HH:MM`` can only mean ``+HH:MM``). A time
without an offset is refused: it would be a guess.

Accepted times lie in [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z): anything outside is a
client error (422 naming the parameter), not a question for InfluxDB, which refuses times
past 2262 and answered such queries with an error the API could only report as 503."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from api.errors import invalid
from liftwatch import clock
from liftwatch.protocol import parse_ts

EXAMPLE = "2026-11-26T20:01:02Z, 2026-11-27T04:01:02+08:00 or 1795723262000"
FORMATS: Final = (
    "use RFC 3339 with an offset (2026-11-26T20:01:02Z or 2026-11-27T04:01:02+08:00; in a "
    "URL write the + as %2B) or epoch milliseconds (1795723262000)"
)
now_ms = clock.now_ms  # the API modules take "now" from here
MIN_MS = 0  # 1970-01-01T00:00:00Z
MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)

_LOOSE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2})(:\d{2}(?:\.\d{1,20})?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})| (\d{2}):?(\d{2}))"
)
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def normalise(text: str) -> str | None:
    """``text`` as strict RFC 3339 (what :func:`liftwatch.protocol.parse_ts` reads), or None
    if it is none of the forms above."""
    m = _LOOSE.fullmatch(text)
    if m is None:
        return None
    date, hm, seconds, zulu, sign, oh, om, sh, sm = m.groups()
    if zulu:
        offset = "Z"
    elif sign:
        offset = f"{sign}{oh}:{om}"
    else:  # the "+" a URL decoded to a space
        offset = f"+{sh}:{sm}"
    return f"{date}T{hm}{seconds or ':00'}{offset}"


def parse_time(value: str | None, field: str, default: int) -> int:
    """Epoch ms for a query value; 422 naming ``field`` and the accepted forms otherwise."""
    if value is None or value == "":
        return default
    text = value.strip()
    if text.isascii() and text.isdigit():
        ms = int(text) if len(text) <= 15 else None
    else:
        strict = normalise(text)
        ms = parse_ts(strict) if strict is not None else None
    if ms is None:
        if _NAIVE.fullmatch(text):
            raise invalid(field, f"a time needs its offset (Z or +08:00): {FORMATS}")
        raise invalid(field, f"not a time: {FORMATS}")
    if not MIN_MS <= ms < MAX_MS:
        raise invalid(field, "out of range: times from 1970-01-01 to before 2100-01-01 (UTC)")
    return ms


def month_range(value: str, field: str, tz: ZoneInfo) -> tuple[int, int]:
    """``[first day 00:00, first day of the next month 00:00)`` of ``YYYY-MM`` in ``tz``, as
    epoch ms; 422 naming ``field`` when it is not a month."""
    m = _MONTH.fullmatch(value.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or not 1970 <= int(m.group(1)) < 2100:
        raise invalid(field, "not a month: use YYYY-MM, e.g. 2026-11")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return round(start.timestamp() * 1000), round(end.timestamp() * 1000)


def local_iso(ms: int, tz: ZoneInfo) -> str:
    """Epoch ms as RFC 3339 in ``tz`` with its offset, e.g. ``2026-11-01T00:00:00+08:00``
    (milliseconds only when there are any)."""
    dt = datetime.fromtimestamp(ms / 1000, tz)
    if ms % 1000:
        return dt.isoformat(timespec="milliseconds")
    return dt.isoformat(timespec="seconds")
