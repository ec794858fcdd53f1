"""Several dispatchers on one store (docs/webhooks.md § Several dispatchers), on both backends:
claims that two dispatchers never share, per-alarm order across dispatchers, claims that expire
when their dispatcher dies, and a start-up that leaves other dispatchers' claims alone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

import psycopg
import pytest

from alerts import lifecycle
from alerts.webhooks.dispatcher import Dispatcher, owner_alive
from alerts.webhooks.filters import route
from liftwatch.store import Database
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Claimant
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded, body_of


def _now() -> int:
    return time.time_ns() // 1_000_000


async def _start(d: Dispatcher) -> asyncio.Task[None]:
    task = asyncio.create_task(d.run())
    await eventually(lambda: d._accepting, 5, what="dispatcher running")
    return task


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _elsewhere(tag: str) -> Claimant:
    """A dispatcher on another host: this process cannot tell whether it runs."""
    return Claimant(f"other-host~0000/4242/{tag}", ttl_ms=60_000)


def test_a_claimed_head_is_claimed_once(seeded: Seeded) -> None:
    """Two dispatchers claiming the same due heads: each head goes to exactly one, and its
    chain's later events stay pending behind it for both."""
    seeded.subscribe("http://a.example/h")
    first = seeded.raise_alarm(seeded.lift_a, "co-a")
    lifecycle.acknowledge(seeded.db, first, actor="api:t")
    seeded.raise_alarm(seeded.lift_b, "co-b")
    now = _now()
    store.fan_out(seeded.db, route, now_ms=now)
    other = Database(seeded.db.target)
    try:
        a = store.claim_due(seeded.db, now, claim=lambda _: True, claimant=_elsewhere("a"))
        b = store.claim_due(other, now, claim=lambda _: True, claimant=_elsewhere("b"))
    finally:
        other.close()
    assert sorted(d.event_type for d in a) == ["alarm.raised", "alarm.raised"]
    assert b == [], "a head claimed by one dispatcher is not a head the other may claim"
    assert all(d.status == "delivering" and d.claimed_by == _elsewhere("a").owner for d in a)
    assert all(d.claim_expires_at == now + 60_000 for d in a)


# PostgreSQL only (SQLite has one writer: no row locks to skip), so not generated for SQLite.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_head_being_claimed_elsewhere_is_skipped_not_waited_for(
    seeded: Seeded, store_url: str
) -> None:
    """PostgreSQL: a head row locked by another dispatcher's open claim transaction is
    skipped (FOR UPDATE SKIP LOCKED): the second dispatcher takes the other heads at once."""
    seeded.subscribe("http://a.example/h")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    seeded.raise_alarm(seeded.lift_b, "co-b")
    now = _now()
    store.fan_out(seeded.db, route, now_ms=now)
    heads = store.due_heads(seeded.db, now)
    assert len(heads) == 2
    with psycopg.connect(store_url, autocommit=False) as holder:
        holder.execute("SELECT id FROM webhook_deliveries WHERE id = %s FOR UPDATE", (heads[0].id,))
        began = time.monotonic()
        got = store.claim_due(seeded.db, now, claim=lambda _: True, claimant=_elsewhere("b"))
        took = time.monotonic() - began
        holder.rollback()
    assert [d.id for d in got] == [heads[1].id]
    assert took < 2.0, f"claim waited {took:.1f} s for a locked row"


def test_an_outcome_after_the_claim_was_taken_over_is_dropped(seeded: Seeded) -> None:
    seeded.subscribe("http://a.example/h")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    now = _now()
    store.fan_out(seeded.db, route, now_ms=now)
    dead = Claimant("other-host~0000/1/dead", ttl_ms=1_000)
    (d,) = store.claim_due(seeded.db, now, claim=lambda _: True, claimant=dead)
    # Its claim expires; a live dispatcher's sweep puts it back and claims it again.
    later = now + 1_001
    assert store.reset_stale(seeded.db, before_ms=0, keep=(), now_ms=later, owner="me") == 1
    live = Claimant("other-host~0000/2/live", ttl_ms=60_000)
    (again,) = store.claim_due(seeded.db, later, claim=lambda _: True, claimant=live)
    assert again.webhook_id == d.webhook_id and again.attempts == 2

    def finish(owner: str) -> None:
        store.finish_attempt(
            seeded.db,
            d.id,
            at=later,
            latency_ms=5,
            status_code=200,
            response="",
            error=None,
            outcome="delivered",
            owner=owner,
        )

    finish(dead.owner)
    assert store.get_delivery(seeded.db, d.id).status == "delivering"  # type: ignore[union-attr]
    finish(live.owner)
    found = store.get_delivery(seeded.db, d.id)
    assert found is not None and found.status == "delivered" and found.claimed_by is None
    assert len(store.attempts_of(seeded.db, [d.id])[d.id]) == 1


def test_start_up_leaves_live_claims_alone(seeded: Seeded) -> None:
    """A dispatcher starting while another (on another host) is mid-attempt must not reset
    that claim (the old start-up reset every 'delivering' row: two POSTs at once). Claims of a
    dispatcher known to be gone (this host, no such process) and expired ones are reset."""
    seeded.subscribe("http://a.example/h")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    seeded.raise_alarm(seeded.lift_b, "co-b")
    now = _now()
    store.fan_out(seeded.db, route, now_ms=now)
    live, gone = store.due_heads(seeded.db, now)
    store.start_attempt(seeded.db, live.id, now, claimant=_elsewhere("alive"))
    from alerts.webhooks.dispatcher import NODE

    # pid 2**22 + 1 is above Linux's pid_max limit: no such process on this host.
    dead_here = Claimant(f"{NODE}/{2**22 + 1}/gone", ttl_ms=60_000)
    assert not owner_alive(dead_here.owner)
    store.start_attempt(seeded.db, gone.id, now, claimant=dead_here)
    assert store.reset_in_flight(seeded.db, alive=owner_alive, now_ms=now + 1) == 1
    assert store.get_delivery(seeded.db, live.id).status == "delivering"  # type: ignore[union-attr]
    assert store.get_delivery(seeded.db, gone.id).status == "pending"  # type: ignore[union-attr]
    # Once the live claim's expiry has passed, it is reset as well.
    assert store.reset_in_flight(seeded.db, alive=owner_alive, now_ms=now + 60_001) == 1


async def test_two_dispatchers_deliver_each_event_once_in_order(seeded: Seeded) -> None:
    """Two dispatchers (own connections, as two processes have) drain one outbox: every
    delivery answered 2xx exactly once, in order per alarm, and both take part."""
    slow = threading.Event()

    def answer(_: Received) -> tuple[int, dict[str, str], bytes]:
        slow.wait(0.02)  # a receiver that takes a moment, so both dispatchers get work
        return 200, {}, b"ok"

    recv = RecordingReceiver(answer)
    second = Database(seeded.db.target)
    # Few attempts each, so that neither can take every chain: both must share the work.
    d1 = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2, concurrency=4)
    d2 = Dispatcher(second, allow_private=True, poll_interval_s=0.2, concurrency=4)
    tasks: list[asyncio.Task[None]] = []
    try:
        subs = [seeded.subscribe(recv.url) for _ in range(3)]
        alarms = []
        for i in range(8):
            lift, company = (seeded.lift_a, "co-a") if i % 2 else (seeded.lift_b, "co-b")
            alarm = seeded.raise_alarm(lift, company, at=_now() - (8 - i) * 4_000_000)
            lifecycle.acknowledge(seeded.db, alarm, actor="api:t")
            lifecycle.resolve(seeded.db, alarm, actor="api:t", outcome="repaired")
            alarms.append(alarm)
        tasks = [await _start(d1), await _start(d2)]
        d1.notify()
        d2.notify()

        def all_done() -> bool:
            return store.count_open(seeded.db) == 0 and len(recv.requests) >= len(alarms) * 9

        await eventually(all_done, 30, what="every delivery sent")
        # Each dispatcher counts a delivery once its outcome's commit is back on the loop (the
        # row reads 'delivered' a moment earlier): wait for the counts, do not race them.
        expected = len(subs) * len(alarms) * 3
        await eventually(lambda: d1.sent + d2.sent >= expected, 5, what="the counts")
        await _stop(*tasks)
        tasks = []
        seen: dict[str, int] = defaultdict(int)
        for r in recv.requests:
            seen[r.headers["webhook-id"]] += 1
        assert all(n == 1 for n in seen.values()), "a webhook-id answered 2xx twice"
        for s in subs:
            assert {d.status for d in store.list_deliveries(seeded.db, s.id)} == {"delivered"}
        received: dict[str, list[tuple[float, str]]] = defaultdict(list)
        ids_to_sub = {
            d.webhook_id: d.subscription_id
            for s in subs
            for d in store.list_deliveries(seeded.db, s.id)
        }
        for r in recv.requests:
            body = body_of(r)
            key = f"{ids_to_sub[r.headers['webhook-id']]}|{body['data']['alarm_id']}"
            received[key].append((r.arrived, body["type"]))
        assert len(received) == len(subs) * len(alarms)
        for key, events in received.items():
            kinds = [k for _, k in sorted(events)]
            assert kinds == ["alarm.raised", "alarm.acknowledged", "alarm.resolved"], key
        assert d1.sent > 0 and d2.sent > 0, (d1.sent, d2.sent)
        assert d1.sent + d2.sent == len(recv.requests) == expected
    finally:
        await _stop(*tasks)
        recv.close()
        second.close()


async def test_a_dead_dispatchers_claim_is_sent_again_by_another(seeded: Seeded) -> None:
    """A dispatcher on another host claimed a delivery and died mid-POST: its claim expires
    and a running dispatcher sends it again, same webhook-id, and records it delivered."""
    recv = RecordingReceiver()
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.1)
    task: asyncio.Task[None] | None = None
    try:
        sub = seeded.subscribe(recv.url)
        seeded.raise_alarm(seeded.lift_a, "co-a")
        now = _now()
        store.fan_out(seeded.db, route, now_ms=now)
        (claimed,) = store.claim_due(
            seeded.db,
            now,
            claim=lambda _: True,
            claimant=Claimant("other-host~0000/77/dead", ttl_ms=1_500),
        )
        task = await _start(d)
        began = time.monotonic()
        (got,) = await asyncio.to_thread(recv.wait_for, 1, 10)
        waited = time.monotonic() - began
        assert got.headers["webhook-id"] == claimed.webhook_id
        assert waited >= 1.0, "a claim is not taken over before it expires"
        await eventually(
            lambda: store.list_deliveries(seeded.db, sub.id)[0].status == "delivered",
            5,
            what="delivered",
        )
        (done,) = store.list_deliveries(seeded.db, sub.id)
        assert done.attempts == 2 and done.claimed_by is None
    finally:
        if task is not None:
            await _stop(task)
        recv.close()
