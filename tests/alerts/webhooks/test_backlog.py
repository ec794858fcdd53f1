"""A recovered receiver gets its backlog at once (issue 12 item 6; chaos review O1).

Real dispatcher, real SQLite, real receivers. The retry waits are stretched a hundredfold
through the dispatcher's jitter function (``uniform``: 1 s becomes 30 s, 5 s becomes 150 s), so
that a delivery left to its schedule could not arrive within the test: only the pull-forward
(set off by a 2xx) can deliver it in time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from alerts import lifecycle
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.registry import Lift
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded, body_of

pytestmark = pytest.mark.integration

BACKLOG = 12
RATE = 20.0  # drained deliveries per second, for the test (production: 30)


def stretched(lo: float, hi: float) -> float:
    return 30.0  # every retry wait x30 (the jitter factor, normally 0.9..1.1)


class Switch:
    """A receiver that answers 500 while ``down`` is set."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.down.set()
        self.receiver = RecordingReceiver(self.answer)

    def answer(self, _: Received) -> tuple[int, dict[str, str], bytes]:
        return (500, {}, b"down") if self.down.is_set() else (204, {}, b"")


@pytest.fixture
async def switch() -> AsyncIterator[Switch]:
    s = Switch()
    yield s
    s.receiver.close()


def lifts(seeded: Seeded, n: int) -> list[str]:
    out = [f"{seeded.lift_a}-{i}" for i in range(n)]
    for lift in out:
        reg.upsert_lift(seeded.db, Lift(lift_id=lift, company_id="co-a"))
    return out


async def backlog(seeded: Seeded, switch: Switch, d: Dispatcher) -> tuple[str, list[str]]:
    """BACKLOG alarms, each tried once against the dead receiver and now waiting ~30 s; the
    first alarm also has an acknowledgement queued behind its raise."""
    sub = seeded.subscribe(switch.receiver.url, company_id="co-a")
    alarms = [seeded.raise_alarm(lift, "co-a") for lift in lifts(seeded, BACKLOG)]
    lifecycle.acknowledge(seeded.db, alarms[0], actor="api:t")
    d.notify()
    await asyncio.to_thread(switch.receiver.wait_for, BACKLOG, 10)

    def all_waiting() -> bool:
        ds = store.list_deliveries(seeded.db, sub.id, status="pending")
        later = time.time_ns() // 1_000_000 + 20_000
        waiting = [x for x in ds if x.attempts == 1 and (x.next_attempt_at or 0) > later]
        return len(waiting) == BACKLOG

    await eventually(all_waiting, 5, what="the backlog waiting for its retries")
    return sub.id, alarms


def raised_alarm(r: Received) -> str:
    return str(body_of(r)["data"]["alarm_id"])


def check_drained(
    seeded: Seeded, switch: Switch, alarms: list[str], recovered: float, sub_id: str
) -> list[Received]:
    after = [r for r in switch.receiver.requests if r.arrived >= recovered]
    retried = [r for r in after if body_of(r)["type"] == "alarm.raised"]
    retried = [r for r in retried if raised_alarm(r) in alarms]
    assert sorted(raised_alarm(r) for r in retried) == sorted(alarms), "each exactly once"
    # Per-alarm order: the acknowledgement came after its raise.
    kinds = [body_of(r)["type"] for r in after if body_of(r)["data"]["alarm_id"] == alarms[0]]
    assert kinds == ["alarm.raised", "alarm.acknowledged"]
    # Oldest first and rate-limited: the store spaced the due times 1/RATE s apart in
    # delivery order (the arrival order may be shuffled by the in-flight cap of 8).
    firsts = sorted(min(r.arrived for r in retried if raised_alarm(r) == a) for a in alarms)
    assert firsts[-1] - firsts[0] >= 0.8 * (BACKLOG - 1) / RATE, "not all at once"
    assert store.count_open(seeded.db) == 0
    return retried


async def test_a_2xx_pulls_the_waiting_backlog_forward(seeded: Seeded, switch: Switch) -> None:
    d = Dispatcher(
        seeded.db,
        allow_private=True,
        poll_interval_s=0.2,
        uniform=stretched,
        drain_rate_per_s=RATE,
    )
    task = asyncio.create_task(d.run())
    try:
        sub_id, alarms = await backlog(seeded, switch, d)
        switch.down.clear()
        recovered = time.time()
        lifecycle.acknowledge(seeded.db, alarms[1], actor="api:t")  # queued behind its raise
        seeded.raise_alarm(lifts(seeded, BACKLOG + 1)[-1], "co-a")  # a new alarm: 2xx
        d.notify()
        await eventually(lambda: store.count_open(seeded.db) == 0, 10, what="the backlog delivered")
        drained_s = max(r.arrived for r in switch.receiver.requests) - recovered
        assert drained_s < 5, f"backlog drained {drained_s:.1f} s after recovery"
        check_drained(seeded, switch, alarms, recovered, sub_id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_scheduled_retry_that_succeeds_pulls_the_others_forward(
    seeded: Seeded, switch: Switch
) -> None:
    """No new alarm after the outage: the next scheduled retry of any waiting delivery is the
    probe. Here the newest delivery's retry is due in ~1 s, all the others' in ~30 s; once
    that one gets its 2xx the others follow at once. While the receiver keeps failing it gets
    nothing beyond the schedule (no extra probes)."""
    calls = 0

    def newest_soon(lo: float, hi: float) -> float:
        nonlocal calls
        calls += 1
        return 1.0 if calls == BACKLOG else 30.0  # the last first attempt to fail: 1 s

    d = Dispatcher(
        seeded.db,
        allow_private=True,
        poll_interval_s=0.1,
        uniform=newest_soon,
        drain_rate_per_s=RATE,
    )
    task = asyncio.create_task(d.run())
    try:
        sub = seeded.subscribe(switch.receiver.url, company_id="co-a")
        alarms = [seeded.raise_alarm(lift, "co-a") for lift in lifts(seeded, BACKLOG)]
        lifecycle.acknowledge(seeded.db, alarms[0], actor="api:t")
        d.notify()
        await asyncio.to_thread(switch.receiver.wait_for, BACKLOG, 10)
        switch.down.clear()
        recovered = time.time()
        await eventually(lambda: store.count_open(seeded.db) == 0, 10, what="the backlog delivered")
        drained_s = max(r.arrived for r in switch.receiver.requests) - recovered
        assert drained_s < 5, f"backlog drained {drained_s:.1f} s after recovery"
        # Each raise was tried once while down and once after: nothing beyond the schedule.
        raises = [r for r in switch.receiver.requests if body_of(r)["type"] == "alarm.raised"]
        assert len(raises) == 2 * BACKLOG
        check_drained(seeded, switch, alarms, recovered, sub.id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
