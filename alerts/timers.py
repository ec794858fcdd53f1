"""One scheduler for every alarm timer: a binary heap keyed by due time (epoch ms).

Each key (one per lift for its duration rules, and per alarm for escalation, arrival deadline
and auto-resolve) has at most one live entry; rescheduling pushes a new heap entry and the old
one is skipped when popped (lazy deletion, compacted when stale entries dominate). Arming,
moving and cancelling are O(log n); nothing ever scans all lifts. The worker sleeps until
:meth:`next_due` (asyncio), unit tests call :meth:`pop_due` with virtual time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Final

_COMPACT_MIN: Final = 4096


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Hashable]] = []
        self._due: dict[Hashable, int] = {}
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._due

    def due_of(self, key: Hashable) -> int | None:
        return self._due.get(key)

    def schedule(self, key: Hashable, due_ms: int) -> bool:
        """Arm or move ``key``. Returns True when it became the earliest timer (the caller
        wakes its sleeper)."""
        if self._due.get(key) == due_ms:
            return False
        self._due[key] = due_ms
        heapq.heappush(self._heap, (due_ms, next(self._counter), key))
        if len(self._heap) > _COMPACT_MIN and len(self._heap) > 3 * len(self._due):
            self._compact()
        return self._heap[0][2] == key and self._heap[0][0] == due_ms

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def next_due(self) -> int | None:
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            if self._due.get(key) == due:
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, now_ms: int, limit: int = 1_000_000) -> list[tuple[Hashable, int]]:
        """Remove and return ``(key, due)`` of every timer due at ``now_ms``, earliest first."""
        out: list[tuple[Hashable, int]] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms and len(out) < limit:
            due, _, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append((key, due))
        return out

    def _compact(self) -> None:
        live = self._due
        self._heap = [e for e in self._heap if live.get(e[2]) == e[0]]
        heapq.heapify(self._heap)
