from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from alerts.webhooks import backoff

T0 = 1_800_000_000_000


def _no_jitter(lo: float, hi: float) -> float:
    return 1.0


def _fixed(factor: float) -> Callable[[float, float], float]:
    return lambda lo, hi: factor


def test_schedule_steps_then_hourly() -> None:
    waits = [backoff.base_delay(n) for n in range(1, 11)]
    assert waits == [1, 5, 15, 60, 300, 900, 3600, 3600, 3600, 3600]


def test_attempt_times_follow_schedule_and_stop_after_24h() -> None:
    now, failed, times = T0, 0, [T0]
    while True:
        failed += 1
        nxt = backoff.next_attempt_ms(
            first_attempt_ms=T0, failed_attempts=failed, now_ms=now, uniform=_no_jitter
        )
        if nxt is None:
            break
        times.append(nxt)
        now = nxt
    offsets = [(t - T0) / 1000 for t in times]
    assert offsets[:8] == [0, 1, 6, 21, 81, 381, 1281, 4881]
    assert offsets[-1] <= 24 * 3600 < offsets[-1] + 3600
    assert all(b - a == 3600 for a, b in itertools.pairwise(offsets[7:]))


@pytest.mark.parametrize("failed", [1, 2, 3, 4, 8])
def test_jitter_stays_within_ten_percent(failed: int) -> None:
    base = backoff.base_delay(failed) * 1000
    for factor in (0.9, 1.1):
        at = backoff.next_attempt_ms(
            first_attempt_ms=T0,
            failed_attempts=failed,
            now_ms=T0,
            uniform=_fixed(factor),
        )
        assert at is not None and at - T0 == round(base * factor)
    for _ in range(200):
        at = backoff.next_attempt_ms(first_attempt_ms=T0, failed_attempts=failed, now_ms=T0)
        assert at is not None and 0.9 * base <= at - T0 <= 1.1 * base


def test_retry_after_lengthens_never_shortens_and_is_capped() -> None:
    def at(failed: int, retry_after: float) -> int | None:
        return backoff.next_attempt_ms(
            first_attempt_ms=T0,
            failed_attempts=failed,
            now_ms=T0,
            retry_after_s=retry_after,
            uniform=_no_jitter,
        )

    assert at(1, 7) == T0 + 7000
    assert at(3, 2) == T0 + 15_000
    assert at(1, 10**6) == T0 + 3_600_000


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert backoff.parse_retry_after("120", T0) == 120
    when = datetime.fromtimestamp(T0 / 1000 + 30, UTC)
    assert backoff.parse_retry_after(format_datetime(when, usegmt=True), T0) == 30
    past = datetime.fromtimestamp(T0 / 1000 - 30, UTC)
    assert backoff.parse_retry_after(format_datetime(past, usegmt=True), T0) == 0
    assert backoff.parse_retry_after("soon", T0) is None
    assert backoff.parse_retry_after(None, T0) is None


@pytest.mark.parametrize(
    "value",
    ["²", "¹²", "①", "٣", "３０", "1²", " ² ", "-5", "+5", "1.5", "1e3", "0x10", "", "²³"],
)
def test_retry_after_only_ascii_digits_else_ignored(value: str) -> None:
    # security review #8: "²".isdigit() is true and float("²") raised out of the dispatcher.
    assert backoff.parse_retry_after(value, T0) is None


def test_retry_after_huge_is_capped_not_raised() -> None:
    for value in ("9" * 5000, "9" * 400, "99999999999"):
        seconds = backoff.parse_retry_after(value, T0)
        assert seconds is not None and seconds >= 3600
        at = backoff.next_attempt_ms(
            first_attempt_ms=T0,
            failed_attempts=1,
            now_ms=T0,
            retry_after_s=seconds,
            uniform=_no_jitter,
        )
        assert at == T0 + 3_600_000  # capped at the longest step
    assert backoff.parse_retry_after(" 7 ", T0) == 7


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Wed, 32 Foo 2026 99:99:99 GMT",
        "x" * 5000,
        "Fri, ３１ Dec 2026 23:59:59 GMT",
    ],
)
def test_retry_after_bad_dates_are_ignored(value: str) -> None:
    assert backoff.parse_retry_after(value, T0) is None
