"""The dispatcher against real HTTP receivers and a real SQLite store."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from alerts import lifecycle
from alerts.webhooks.attempt import USER_AGENT
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded, body_of, of_type

pytestmark = pytest.mark.integration


async def wait_for(receiver: RecordingReceiver, count: int, within: float = 10.0) -> list[Received]:
    """``receiver.wait_for`` blocks: run it off the loop the dispatcher needs."""
    return await asyncio.to_thread(receiver.wait_for, count, within)


def settled(seeded: Seeded, sub_ids: list[str]) -> bool:
    """Every subscription has its deliveries and none is open."""
    have = all(store.list_deliveries(seeded.db, s) for s in sub_ids)
    return have and store.count_open(seeded.db) == 0


def _verify(secret: str, r: Received) -> None:
    Webhook(secret).verify(r.body, r.headers)


async def test_alarm_is_signed_and_delivered(
    seeded: Seeded, dispatcher: Dispatcher, receiver: RecordingReceiver
) -> None:
    sub = seeded.subscribe(receiver.url, company_id="co-a")
    alarm_id = seeded.raise_alarm(seeded.lift_a, "co-a")
    dispatcher.notify()
    (got,) = await wait_for(receiver, 1)
    _verify(sub.secret, got)
    assert got.method == "POST" and got.path == "/hook"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    body = body_of(got)
    assert body["type"] == "alarm.raised" and body["data"]["alarm_id"] == alarm_id
    assert body["data"]["lift"]["company_id"] == "co-a"

    def delivered() -> bool:
        (d,) = store.list_deliveries(seeded.db, sub.id)
        return d.status == "delivered"

    await eventually(delivered, 5, what="delivery marked delivered")
    (d,) = store.list_deliveries(seeded.db, sub.id)
    (attempt,) = store.attempts_of(seeded.db, [d.id])[d.id]
    assert attempt.status_code == 200 and attempt.response == "ok" and attempt.latency_ms >= 0
    assert d.webhook_id == got.headers["webhook-id"] and d.attempts == 1


async def test_company_scope_and_filters(
    seeded: Seeded, dispatcher: Dispatcher, receiver: RecordingReceiver
) -> None:
    seeded.subscribe(receiver.url + "?who=a", company_id="co-a")
    seeded.subscribe(receiver.url + "?who=admin")
    seeded.subscribe(receiver.url + "?who=minor", filters={"codes": ["door_open_too_long"]})
    seeded.raise_alarm(seeded.lift_b, "co-b")
    dispatcher.notify()
    (first,) = await wait_for(receiver, 1)
    assert first.path.endswith("who=admin")
    seeded.raise_alarm(seeded.lift_a, "co-a")
    dispatcher.notify()
    got = await wait_for(receiver, 3)
    assert sorted(r.path.rsplit("=", 1)[1] for r in got) == ["a", "admin", "admin"]


async def test_retry_keeps_id_and_order_and_other_subscriber_unaffected(
    seeded: Seeded, dispatcher: Dispatcher
) -> None:
    calls = 0

    def flaky(_: Received) -> tuple[int, dict[str, str], bytes]:
        nonlocal calls
        calls += 1
        return (503, {}, b"busy") if calls <= 1 else (200, {}, b"ok")

    slow, healthy = RecordingReceiver(flaky), RecordingReceiver()
    try:
        sub_slow = seeded.subscribe(slow.url, company_id="co-a")
        sub_ok = seeded.subscribe(healthy.url)
        alarm_id = seeded.raise_alarm(seeded.lift_a, "co-a")
        lifecycle.acknowledge(seeded.db, alarm_id, actor="api:t")
        lifecycle.mark_on_site(seeded.db, alarm_id, actor="api:t")
        lifecycle.resolve(seeded.db, alarm_id, actor="api:t", outcome="rescued")
        t0 = time.monotonic()
        dispatcher.notify()
        fast = await wait_for(healthy, 4, within=3)
        assert time.monotonic() - t0 < 1.0, "a healthy receiver must not wait for a failing one"
        order = ["alarm.raised", "alarm.acknowledged", "alarm.on_site", "alarm.resolved"]
        assert [body_of(r)["type"] for r in fast] == order
        got = await wait_for(slow, 5, within=10)
        assert [body_of(r)["type"] for r in got] == ["alarm.raised", *order]
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
        # The retry waited the first step of the schedule (1 s, +-10 %) and held the rest back.
        assert got[1].arrived - got[0].arrived >= 0.85
        assert got[2].arrived >= got[1].arrived
        for r in got:
            _verify(sub_slow.secret, r)
        for r in fast:
            _verify(sub_ok.secret, r)
    finally:
        slow.close()
        healthy.close()


async def test_status_handling_410_4xx_redirect(seeded: Seeded, dispatcher: Dispatcher) -> None:
    target = RecordingReceiver()
    gone = RecordingReceiver(lambda _: (410, {}, b"gone"))
    bad = RecordingReceiver(lambda _: (400, {}, b"x" * 3000))
    redirect = RecordingReceiver(lambda _: (307, {"location": target.url}, b""))
    try:
        s_gone = seeded.subscribe(gone.url)
        s_bad = seeded.subscribe(bad.url)
        s_redirect = seeded.subscribe(redirect.url)
        seeded.raise_alarm(seeded.lift_a, "co-a")
        dispatcher.notify()
        subs = [s_gone.id, s_bad.id, s_redirect.id]
        await eventually(lambda: settled(seeded, subs), 5, what="all deliveries settled")
        for sub in (s_gone, s_bad, s_redirect):
            (d,) = store.list_deliveries(seeded.db, sub.id)
            assert d.status == "failed" and d.attempts == 1, (sub.url, d)
        (d_bad,) = store.list_deliveries(seeded.db, s_bad.id)
        (attempt,) = store.attempts_of(seeded.db, [d_bad.id])[d_bad.id]
        # A loopback (private) receiver's answer is kept as a short excerpt only (security
        # review #5); a public one's first 1 KiB (store.RESPONSE_KEEP, webhooks/test_store).
        assert attempt.status_code == 400 and attempt.response == "x" * 64 + "…"
        assert target.requests == [], "redirects are not followed"
        after = store.get_subscription(seeded.db, s_gone.id)
        assert after is not None and not after.enabled and "410" in (after.disabled_reason or "")
        assert store.get_subscription(seeded.db, s_bad.id).enabled  # type: ignore[union-attr]
        # A disabled subscription gets nothing more.
        seeded.raise_alarm(seeded.lift_b, "co-b")
        dispatcher.notify()
        await wait_for(bad, 2)
        assert len(gone.requests) == 1
    finally:
        for r in (target, gone, bad, redirect):
            r.close()


async def test_429_retry_after_is_honoured(seeded: Seeded, dispatcher: Dispatcher) -> None:
    calls = 0

    def limited(_: Received) -> tuple[int, dict[str, str], bytes]:
        nonlocal calls
        calls += 1
        return (429, {"retry-after": "2"}, b"") if calls == 1 else (200, {}, b"")

    recv = RecordingReceiver(limited)
    try:
        seeded.subscribe(recv.url)
        seeded.raise_alarm(seeded.lift_a, "co-a")
        dispatcher.notify()
        got = await wait_for(recv, 2, within=6)
        assert got[1].arrived - got[0].arrived >= 1.9
    finally:
        recv.close()


async def test_private_address_refused_at_delivery_time(
    seeded: Seeded, receiver: RecordingReceiver
) -> None:
    # The subscription passed the check when made (say DNS then gave a public address);
    # at delivery the address is loopback, and the guard refuses it again.
    sub = seeded.subscribe(receiver.url)
    d = Dispatcher(seeded.db, allow_private=False, poll_interval_s=0.2)
    task = asyncio.create_task(d.run())
    try:
        seeded.raise_alarm(seeded.lift_a, "co-a")
        d.notify()
        await eventually(lambda: settled(seeded, [sub.id]), 5, what="delivery settled")
        (delivery,) = store.list_deliveries(seeded.db, sub.id)
        assert delivery.status == "failed" and "loopback" in (delivery.last_error or "")
        assert receiver.requests == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_hung_receiver_times_out_and_restart_resumes(seeded: Seeded) -> None:
    release = threading.Event()

    def hang(_: Received) -> tuple[int, dict[str, str], bytes]:
        release.wait(10)
        return 200, {}, b""

    hung, other = RecordingReceiver(hang), RecordingReceiver()
    d1 = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
    task = asyncio.create_task(d1.run())
    try:
        sub = seeded.subscribe(hung.url, company_id="co-a")
        seeded.subscribe(other.url, company_id="co-b")
        seeded.raise_alarm(seeded.lift_a, "co-a")
        d1.notify()

        def delivering() -> bool:
            ds = store.list_deliveries(seeded.db, sub.id)
            return bool(ds) and ds[0].status == "delivering"

        await eventually(delivering, 5, what="attempt in flight")
        # Another company's alarm is not held up by the hung receiver.
        seeded.raise_alarm(seeded.lift_b, "co-b")
        d1.notify()
        await wait_for(other, 1, within=2)
        # Stop mid-attempt (as a crash would): the delivery stays 'delivering' in the store.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert delivering()
        release.set()
        hung.responder = lambda _: (200, {}, b"")
        d2 = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
        task = asyncio.create_task(d2.run())
        await eventually(
            lambda: not delivering() and store.count_open(seeded.db) == 0,
            10,
            what="resumed delivery",
        )
        (d,) = store.list_deliveries(seeded.db, sub.id)
        assert d.status == "delivered" and d.attempts == 2
        ids = {r.headers["webhook-id"] for r in hung.requests if body_of(r)}
        assert ids == {d.webhook_id}
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        hung.close()
        other.close()


async def test_attempt_timeout_is_retryable(seeded: Seeded) -> None:
    release = threading.Event()

    def hang(_: Received) -> tuple[int, dict[str, str], bytes]:
        release.wait(5)
        return 200, {}, b""

    recv = RecordingReceiver(hang)
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2, attempt_timeout_s=0.3)
    task = asyncio.create_task(d.run())
    try:
        sub = seeded.subscribe(recv.url)
        seeded.raise_alarm(seeded.lift_a, "co-a")
        d.notify()

        def retried() -> bool:
            ds = store.list_deliveries(seeded.db, sub.id)
            return bool(ds) and ds[0].status == "pending" and ds[0].attempts == 1

        await eventually(retried, 5, what="timed-out attempt rescheduled")
        (dl,) = store.list_deliveries(seeded.db, sub.id)
        (attempt,) = store.attempts_of(seeded.db, [dl.id])[dl.id]
        assert attempt.status_code is None and "timeout" in (attempt.error or "")
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        recv.close()


async def test_rotation_sends_two_signatures(
    seeded: Seeded, dispatcher: Dispatcher, receiver: RecordingReceiver
) -> None:
    sub = seeded.subscribe(receiver.url)
    new_secret = "whsec_" + "A" * 40
    rotated = store.rotate_secret(seeded.db, sub.id, new_secret, grace_ms=86_400_000)
    assert rotated is not None
    seeded.raise_alarm(seeded.lift_a, "co-a")
    dispatcher.notify()
    (got,) = await wait_for(receiver, 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    _verify(sub.secret, got)
    _verify(new_secret, got)


async def test_summary_is_delivered(
    seeded: Seeded, dispatcher: Dispatcher, receiver: RecordingReceiver
) -> None:
    """Flood control (FAULTS.md 1.1 #4): major/minor raises beyond 3 an hour are collapsed
    into one summary, sent at the end of the hour (lifecycle.send_summary, which the engine
    runs from a timer)."""
    seeded.subscribe(receiver.url, filters={"event_types": ["alarm.raised"]})
    now = time.time_ns() // 1_000_000
    policy = lifecycle.Policy()
    for i in range(5):
        req = lifecycle.Raise(
            lift_id=seeded.lift_a,
            code="door_cycling",
            subtype=None,
            severity="minor",
            source="rule",
            at=now + i,
            evidence={"seq": i},
            company_id="co-a",
        )
        with seeded.db.transaction() as conn:
            alarm = lifecycle.raise_condition(conn, req, policy, [])
        lifecycle.resolve(seeded.db, alarm.alarm_id, actor="api:t", outcome="test", at=now + i)
    with seeded.db.transaction() as conn:
        assert lifecycle.send_summary(conn, seeded.lift_a, "door_cycling", now + 10, policy)
    dispatcher.notify()
    got = await wait_for(receiver, 4)
    kinds = [body_of(r)["type"] for r in got]
    assert kinds.count("alarm.raised") == 3 and kinds.count("alarm.summary") == 1
    (summary,) = [r for r in got if of_type("alarm.summary")(r)]
    assert body_of(summary)["data"]["summary"]["collapsed"] == 2


async def test_non_ascii_retry_after_is_ignored(
    seeded: Seeded, dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """security review #8: a receiver's ``Retry-After: ²`` made backoff.py raise (an
    'unexpected error' traceback and an 'internal error' attempt). Now the header is ignored
    and the 429 is retried on the schedule."""
    calls = 0

    def odd(_: Received) -> tuple[int, dict[str, str], bytes]:
        nonlocal calls
        calls += 1
        return (429, {"retry-after": "²"}, b"") if calls == 1 else (200, {}, b"")

    recv = RecordingReceiver(odd)
    try:
        sub = seeded.subscribe(recv.url)
        seeded.raise_alarm(seeded.lift_a, "co-a")
        dispatcher.notify()
        got = await wait_for(recv, 2, within=5)
        assert 0.85 <= got[1].arrived - got[0].arrived < 3, "the schedule's 1 s wait"
        await eventually(lambda: settled(seeded, [sub.id]), 5, what="delivered")
        (d,) = store.list_deliveries(seeded.db, sub.id)
        errors = [a.error for a in store.attempts_of(seeded.db, [d.id])[d.id]]
        assert errors == ["HTTP 429", None]
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        recv.close()
