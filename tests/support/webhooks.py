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
from liftwatch.store.webhooks import Delivery, Subscription
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


def a_delivery(delivery_id: int = 1, sub: str = "wh_1", alarm: str | None = "al_1") -> Delivery:
    """A delivery as the store would hand it over, for the stages tested without a store."""
    return Delivery(
        id=delivery_id,
        webhook_id=f"msg_{delivery_id}",
        subscription_id=sub,
        outbox_id=None,
        alarm_id=alarm,
        event_type="alarm.raised" if alarm else "webhook.test",
        payload="{}",
        status="pending",
        attempts=0,
        next_attempt_at=0,
        first_attempt_at=None,
        last_attempt_at=None,
        last_status_code=None,
        last_error=None,
        created_at=0,
        delivered_at=None,
    )


def a_subscription(
    sub_id: str = "wh_1",
    company_id: str | None = None,
    *,
    url: str = "https://example.com/hook",
    filters: dict[str, Any] | None = None,
) -> Subscription:
    """A subscription as the store would hand it over (enabled, a fixed secret)."""
    return Subscription(
        id=sub_id,
        company_id=company_id,
        url=url,
        description="",
        secret="whsec_" + "A" * 32,
        previous_secret=None,
        previous_until=None,
        secret_rotated_at=None,
        filters=filters or {},
        enabled=True,
        disabled_reason=None,
        created_by="t",
        created_at=0,
        updated_at=0,
    )
