"""Helpers of the webhook tests: a seeded store and ways to read what a receiver got.
Fixtures live in tests/alerts/webhooks/conftest.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alerts import lifecycle
from alerts.webhooks import signing
from liftwatch.store import Database
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Subscription
from simulator.receiver import Received


@dataclass
class Seeded:
    db: Database
    lift_a: str
    lift_b: str

    def subscribe(
        self, url: str, company_id: str | None = None, filters: dict[str, Any] | None = None
    ) -> Subscription:
        return store.add_subscription(
            self.db,
            company_id=company_id,
            url=url,
            secret=signing.new_secret(),
            filters=filters or {},
            created_by="test",
        )

    def raise_alarm(
        self, lift_id: str, company_id: str, code: str = "alarm_button", at: int | None = None
    ) -> str:
        req = lifecycle.Raise(
            lift_id=lift_id,
            code=code,
            subtype=None,
            severity="critical",
            source="device",
            at=at or time.time_ns() // 1_000_000,
            evidence={"seq": 1},
            company_id=company_id,
        )
        out: list[lifecycle.Change] = []
        with self.db.transaction() as conn:
            alarm = lifecycle.raise_condition(conn, req, lifecycle.Policy(), out)
        return alarm.alarm_id


def body_of(r: Received) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(r.body)
    return parsed


def of_type(kind: str) -> Callable[[Received], bool]:
    return lambda r: body_of(r)["type"] == kind
