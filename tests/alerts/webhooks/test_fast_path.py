"""The engine's fast path: outbox rows fanned out (and the first attempt claimed) inside the
engine's own transaction, the claimed attempts handed to the running dispatcher in memory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alerts.engine import Engine
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.clock import SystemClock
from liftwatch.registry import Company, Lift
from liftwatch.store import Connection, Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually

pytestmark = pytest.mark.integration

LIFTS = ("F1", "F2", "F3")


def press(lift: str, seq: int = 1) -> tuple[str, bytes]:
    body = {"v": 1, "ts": SystemClock().now_ms(), "seq": seq, "type": "alarm_button"}
    return f"lifts/{lift}/event", json.dumps({**body, "pressed": True}).encode()


def outbox_undispatched(db: Database) -> int:
    row = db.conn.execute("SELECT COUNT(*) FROM outbox WHERE dispatched_at IS NULL").fetchone()
    return int(row[0])


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "liftwatch.sqlite3")
    reg.upsert_company(db, Company(company_id="acme", name="Acme"))
    for lift in LIFTS:
        reg.upsert_lift(db, Lift(lift_id=lift, company_id="acme"))
    return db


async def running(dispatcher: Dispatcher) -> asyncio.Task[None]:
    task = asyncio.create_task(dispatcher.run())
    await eventually(lambda: dispatcher._accepting, 5, what="dispatcher accepting claims")
    return task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_alarm_commits_with_its_delivery_claimed_and_is_sent_without_a_round(
    db: Database, receiver: RecordingReceiver
) -> None:
    sub = store.add_subscription(
        db,
        company_id="acme",
        url=receiver.url,
        secret="whsec_" + "A" * 40,
        filters={},
        created_by="test",
    )
    engine = Engine(db)
    engine.start()
    # A poll far beyond the test: only the hand-over can send the alarm in time.
    dispatcher = Dispatcher(db, allow_private=True, poll_interval_s=3600)
    engine.outbox = dispatcher
    task = await running(dispatcher)
    try:
        # On the loop's own thread: no dispatcher round can run until handle() has returned.
        engine.handle_raw([press("F1")])
        assert outbox_undispatched(db) == 0, "fanned out in the engine's transaction"
        (d,) = store.list_deliveries(db, sub.id)
        assert d.status == "delivering" and d.attempts == 1, "first attempt claimed there too"
        (got,) = await asyncio.to_thread(receiver.wait_for, 1, 10.0)
        assert got.headers["webhook-id"] == d.webhook_id
        assert json.loads(got.body)["data"]["lift_id"] == "F1"
        await eventually(
            lambda: store.list_deliveries(db, sub.id)[0].status == "delivered",
            5,
            what="delivered",
        )
        # The store says delivered before the task's done-callback gives the slot back.
        await eventually(
            lambda: dispatcher.admission.busy == 0 and not dispatcher.admission.chains,
            5,
            what="slot released",
        )
    finally:
        await stopped(task)


async def test_limits_hold_on_the_fast_path_and_the_rest_follows(
    db: Database,
) -> None:
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    arrived: list[str] = []

    def hold(r: Received) -> tuple[int, dict[str, str], bytes]:
        arrived.append(json.loads(r.body)["data"]["lift_id"])
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(20)
        return 200, {}, b"ok"

    receiver = RecordingReceiver(hold)
    try:
        sub = store.add_subscription(
            db,
            company_id="acme",
            url=receiver.url,
            secret="whsec_" + "B" * 40,
            filters={},
            created_by="test",
        )
        engine = Engine(db)
        engine.start()
        dispatcher = Dispatcher(db, allow_private=True, per_subscription=1, poll_interval_s=3600)
        engine.outbox = dispatcher
        task = await running(dispatcher)
        try:
            engine.handle_raw([press("F1"), press("F2")])
            states = sorted(d.status for d in store.list_deliveries(db, sub.id))
            assert states == ["delivering", "pending"], "one claimed, one waits its turn"
            await eventually(lambda: len(arrived) == 1, 10, what="first request out")
            assert dispatcher.admission.busy == 1
            release.set()
            await eventually(
                lambda: {d.status for d in store.list_deliveries(db, sub.id)} == {"delivered"},
                10,
                what="the waiting delivery sent once the first finished",
            )
            assert sorted(arrived) == ["F1", "F2"]
        finally:
            await stopped(task)
    finally:
        release.set()
        receiver.close()


async def test_rolled_back_transaction_gives_its_claims_back(
    db: Database, receiver: RecordingReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = store.add_subscription(
        db,
        company_id="acme",
        url=receiver.url,
        secret="whsec_" + "C" * 40,
        filters={},
        created_by="test",
    )
    engine = Engine(db)
    engine.start()
    dispatcher = Dispatcher(db, allow_private=True, poll_interval_s=3600)
    task = await running(dispatcher)
    engine.outbox = dispatcher
    real = db.transaction
    seen: list[int] = []

    @contextmanager
    def commit_fails_once(**_: object) -> Iterator[Connection]:
        """The first transaction that writes an alarm fails at COMMIT (and rolls back)."""
        with real() as conn:
            yield conn
            alarms = conn.execute("SELECT COUNT(*) FROM alarms").fetchone()[0]
            if alarms and not seen:
                seen.append(dispatcher.admission.busy)
                raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "transaction", commit_fails_once)
    try:
        await asyncio.to_thread(engine.handle_raw, [press("F3")])
        assert seen == [1], "the failed transaction had claimed the first attempt"
        # The engine retried the whole transaction: the first claim was given back (or the
        # retry could not claim the same chain), and exactly one delivery exists, sent once.
        (d,) = store.list_deliveries(db, sub.id)
        assert d.status in ("delivering", "delivered") and d.attempts == 1
        (got,) = await asyncio.to_thread(receiver.wait_for, 1, 10.0)
        assert got.headers["webhook-id"] == d.webhook_id
        await eventually(lambda: dispatcher.admission.busy == 0, 5, what="reservation released")
        assert len(receiver.requests) == 1 and outbox_undispatched(db) == 0
    finally:
        await stopped(task)
