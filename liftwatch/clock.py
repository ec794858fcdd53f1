"""One clock abstraction for every timer and timestamp in liftwatch.

Rules and schedulers take a :class:`Clock` so unit tests can drive them in virtual time
(:class:`ManualClock`) without sleeping, while production uses the monotonic and wall
clocks of :class:`SystemClock`. Code that only needs "now" for a record calls
:func:`now_ms` (the system clock), never its own ``time.time_ns() // 1_000_000``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in epoch milliseconds (for records and timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations and timers)."""
        ...


def now_ms() -> int:
    """The system's wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class SystemClock:
    def now_ms(self) -> int:
        return now_ms()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """Virtual time for tests: advances only when told to."""

    def __init__(self, start_ms: int = 1_795_000_000_000) -> None:
        self._ms = start_ms
        self._start_ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return (self._ms - self._start_ms) / 1000.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._ms += round(seconds * 1000)

    def set_ms(self, ms: int) -> None:
        if ms < self._ms:
            raise ValueError("a clock does not go backwards")
        self._ms = ms
