"""The retry schedule of WEBHOOKS.md § Delivery, as pure functions.

Attempt 1 goes out at once; after a failed attempt ``n`` the next waits ``STEPS[n-1]``
(1 s, 5 s, 15 s, 1 min, 5 min, 15 min, 1 h) and then an hour each time, for as long as the next
attempt still falls within 24 h of the first. Every wait gets ±10 % jitter, so that receivers
coming back after an outage are not hit by every queued delivery in the same second.
``Retry-After`` lengthens a wait, never shortens it; it is capped at the longest step (1 h) so
that one receiver's header cannot park a life-safety alarm for a day.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

STEPS_S: Final = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
HOURLY_S: Final = 3600.0
WINDOW_S: Final = 24 * 3600.0
JITTER: Final = 0.10
MAX_RETRY_AFTER_S: Final = 3600.0


def base_delay(failed_attempts: int) -> float:
    """The un-jittered wait after ``failed_attempts`` failed attempts (>= 1)."""
    if failed_attempts < 1:
        return 0.0
    if failed_attempts <= len(STEPS_S):
        return STEPS_S[failed_attempts - 1]
    return HOURLY_S


def jittered(delay: float, uniform: Callable[[float, float], float] = random.uniform) -> float:
    return delay * uniform(1.0 - JITTER, 1.0 + JITTER)


def next_attempt_ms(
    *,
    first_attempt_ms: int,
    failed_attempts: int,
    now_ms: int,
    retry_after_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> int | None:
    """When to try again, in epoch ms, or None when the 24 h window is used up."""
    delay = jittered(base_delay(failed_attempts), uniform)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    at = now_ms + round(delay * 1000)
    if at > first_attempt_ms + WINDOW_S * 1000:
        return None
    return at


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None
    for anything else (the header is then ignored). Only ASCII digits are delta-seconds
    (``"²".isdigit()`` is true, and ``int("²")`` raises); a huge number is just "long"."""
    if value is None:
        return None
    value = value.strip(" \t")
    if value.isascii() and value.isdigit():
        # Beyond 10 digits (317 years) the exact figure does not matter, and int() of a few
        # thousand digits would raise.
        return float(value) if len(value) <= 10 else float(10**10)
    if not value.isascii() or len(value) > 64:
        return None  # an HTTP date is short ASCII
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    try:
        return max(0.0, (when - now).total_seconds())
    except (OverflowError, TypeError):
        return None
