"""Admission control for webhook attempts (the dispatcher's second stage).

At most ``concurrency`` attempts in all, ``per_subscription`` per subscription and one per
chain (subscription, alarm) are in flight. A slot is reserved when a delivery is claimed, from
whichever thread claims it (the alerts engine's, inside its transaction, or the dispatcher's
store thread), and released when the attempt's task ends or the claiming transaction rolls
back; hence the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from liftwatch.store.webhooks import Delivery


class Admission:
    def __init__(self, *, concurrency: int, per_subscription: int) -> None:
        self.concurrency = concurrency
        self.per_subscription = per_subscription
        self._lock = threading.Lock()
        self._busy = 0
        self._ids: set[int] = set()
        self._chains: set[tuple[str, str]] = set()
        self._per_sub: dict[str, int] = {}

    @property
    def busy(self) -> int:
        """Attempts reserved now."""
        return self._busy

    @property
    def chains(self) -> frozenset[tuple[str, str]]:
        """The chains with an attempt reserved now."""
        with self._lock:
            return frozenset(self._chains)

    def reserved_ids(self) -> frozenset[int]:
        """The deliveries reserved now (a task, or its claim, owns them)."""
        with self._lock:
            return frozenset(self._ids)

    def room(self, subscription_id: str) -> int:
        """How many more attempts ``subscription_id`` may have in flight now (any thread)."""
        with self._lock:
            free = self.concurrency - self._busy
            return max(0, min(free, self.per_subscription - self._per_sub.get(subscription_id, 0)))

    def reserve(self, d: Delivery) -> bool:
        """Admit ``d`` within the limits and count it as in flight (any thread)."""
        with self._lock:
            if self._busy >= self.concurrency:
                return False
            if d.id in self._ids or d.chain in self._chains:
                return False
            if self._per_sub.get(d.subscription_id, 0) >= self.per_subscription:
                return False
            self._busy += 1
            self._ids.add(d.id)
            self._chains.add(d.chain)
            self._per_sub[d.subscription_id] = self._per_sub.get(d.subscription_id, 0) + 1
            return True

    def release(self, d: Delivery) -> None:
        with self._lock:
            if d.id not in self._ids:
                return
            self._busy -= 1
            self._ids.discard(d.id)
            self._chains.discard(d.chain)
            left = self._per_sub.get(d.subscription_id, 1) - 1
            if left:
                self._per_sub[d.subscription_id] = left
            else:
                self._per_sub.pop(d.subscription_id, None)

    def release_all(self, claimed: Sequence[Delivery]) -> None:
        for d in claimed:
            self.release(d)

    def claimer(self, claimed: list[Delivery]) -> Callable[[Delivery], bool]:
        """For ``store.fan_out``/``fan_out_in``: reserve each claim, remembering it in
        ``claimed`` so that a rolled-back transaction can give the reservations back."""

        def claim(d: Delivery) -> bool:
            if not self.reserve(d):
                return False
            claimed.append(d)
            return True

        return claim
