"""Webhook SQL on a real SQLite file: fan-out, chain heads, fairness, attempts, redelivery."""

from __future__ import annotations

import time

from alerts import lifecycle
from alerts.webhooks.filters import route
from liftwatch.store import webhooks as store
from tests.support.webhooks import Seeded


def _now() -> int:
    return time.time_ns() // 1_000_000


def test_fan_out_scopes_by_company_and_runs_once(seeded: Seeded) -> None:
    sub_a = seeded.subscribe("http://a.example/h", company_id="co-a")
    sub_b = seeded.subscribe("http://b.example/h", company_id="co-b")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    first = store.fan_out(seeded.db, route, now_ms=_now())
    assert first.rows == 1 and first.started == []
    assert len(store.list_deliveries(seeded.db, sub_a.id)) == 1
    assert store.list_deliveries(seeded.db, sub_b.id) == []
    assert store.fan_out(seeded.db, route, now_ms=_now()).rows == 0


def test_only_the_chain_head_is_due_and_claimed(seeded: Seeded) -> None:
    sub = seeded.subscribe("http://a.example/h")
    alarm_id = seeded.raise_alarm(seeded.lift_a, "co-a")
    lifecycle.acknowledge(seeded.db, alarm_id, actor="api:t")
    other = seeded.raise_alarm(seeded.lift_b, "co-b")
    now = _now()
    result = store.fan_out(seeded.db, route, now_ms=now, claim=lambda d: True)
    started = sorted((d.alarm_id, d.event_type) for d, _ in result.started)
    # The acknowledgement waits behind its alarm's raise; the other alarm is not held up.
    assert started == sorted([(alarm_id, "alarm.raised"), (other, "alarm.raised")])
    assert all(d.status == "delivering" and d.attempts == 1 for d, _ in result.started)
    assert store.due_heads(seeded.db, now) == []
    raised = next(d for d, _ in result.started if d.alarm_id == alarm_id)
    store.finish_attempt(
        seeded.db,
        raised.id,
        at=now,
        latency_ms=3,
        status_code=200,
        response="ok",
        error=None,
        outcome="delivered",
    )
    (head,) = store.due_heads(seeded.db, now)
    assert (head.alarm_id, head.event_type) == (alarm_id, "alarm.acknowledged")
    (d,) = [x for x in store.list_deliveries(seeded.db, sub.id) if x.id == raised.id]
    assert d.status == "delivered" and d.delivered_at == now + 3


def test_due_heads_are_fair_across_subscriptions(seeded: Seeded) -> None:
    busy = seeded.subscribe("http://busy.example/h", company_id="co-a")
    quiet = seeded.subscribe("http://quiet.example/h", company_id="co-b")
    # Raises more than an hour apart, so flood control collapses none of them.
    base = _now() - 21 * 3_700_000
    for i in range(20):
        at = base + i * 3_700_000
        seeded.raise_alarm(seeded.lift_a, "co-a", code="alarm_button", at=at)
        (alarm,) = _open(seeded)
        lifecycle.resolve(seeded.db, alarm, actor="api:t", outcome="test", at=at + 1)
    seeded.raise_alarm(seeded.lift_b, "co-b", at=base + 20 * 3_700_000)
    store.fan_out(seeded.db, route, now_ms=base)
    heads = store.due_heads(seeded.db, _now(), per_subscription=8, limit=10)
    subs = [h.subscription_id for h in heads]
    assert subs.count(busy.id) == 8 and subs.count(quiet.id) == 1


def _open(seeded: Seeded) -> list[str]:
    rows = seeded.db.conn.execute(
        "SELECT alarm_id FROM alarms WHERE status != 'resolved'"
    ).fetchall()
    return [r[0] for r in rows]


def test_redeliver_only_failed_and_keeps_id(seeded: Seeded) -> None:
    sub = seeded.subscribe("http://a.example/h")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    now = _now()
    (d, _), *_ = store.fan_out(seeded.db, route, now_ms=now, claim=lambda d: True).started
    assert store.redeliver(seeded.db, d.id, now) is None  # delivering, not failed
    store.finish_attempt(
        seeded.db,
        d.id,
        at=now,
        latency_ms=5,
        status_code=400,
        response="x" * 5000,
        error="HTTP 400",
        outcome="failed",
    )
    (attempt,) = store.attempts_of(seeded.db, [d.id])[d.id]
    assert len(attempt.response or "") == 1024 and attempt.status_code == 400
    again = store.redeliver(seeded.db, d.id, now + 1)
    assert again is not None and again.status == "pending" and again.webhook_id == d.webhook_id
    assert again.first_attempt_at is None and store.count_open(seeded.db) == 1
    assert store.delete_subscription(seeded.db, sub.id)
    assert store.get_delivery(seeded.db, d.id) is None
