"""The dispatcher when its store cannot be written (chaos review D1, D5; repro r09).

A real SQLite store on a small tmpfs the fixture mounts (and unmounts), filled up for real so
that writes fail with ``database or disk is full``; or a second connection holding the write
lock while the dispatcher's connection has a short busy timeout (``database is locked``). The
dispatcher, the receiver (``simulator/receiver.py``) and the store are the real ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts import lifecycle
from alerts.webhooks.dispatcher import Dispatcher
from alerts.webhooks.filters import route
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from liftwatch.store.sqlite import SqliteDatabase
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded, body_of

pytestmark = pytest.mark.integration


@dataclass
class SmallFs:
    """A tmpfs of a few MiB that can be filled to the last page and freed again."""

    root: Path

    def fill(self) -> None:
        fd = os.open(self.root / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (b"\0" * (1 << 16), b"\0" * (1 << 12), b"\0"):
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        (self.root / "filler").unlink(missing_ok=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallFs(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def seed(db: Database, unique: str) -> Seeded:
    reg.upsert_company(db, Company(company_id="co-a", name="Alpha"))
    reg.upsert_company(db, Company(company_id="co-b", name="Beta"))
    s = Seeded(db, f"LA-{unique}", f"LB-{unique}")
    reg.upsert_lift(db, Lift(lift_id=s.lift_a, company_id="co-a", name="A"))
    reg.upsert_lift(db, Lift(lift_id=s.lift_b, company_id="co-b", name="B"))
    return s


class QuickBusy(SqliteDatabase):
    """The real store, with a 100 ms busy timeout instead of 30 s (so that a held write lock
    makes a write fail within the test)."""

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.execute("PRAGMA busy_timeout=100")
        return conn


async def start(d: Dispatcher) -> asyncio.Task[None]:
    task = asyncio.create_task(d.run())
    await eventually(lambda: d._accepting, 5, what="dispatcher running")
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def statuses(db: Database, sub_id: str) -> list[str]:
    return [d.status for d in reversed(store.list_deliveries(db, sub_id))]


def warned(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        r.name == "liftwatch.webhooks" and r.levelno >= logging.WARNING for r in caplog.records
    )


async def test_outcome_recorded_after_disk_full_and_chain_continues(
    small_fs: SmallFs, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """r09 / D1 with a real full disk: the receiver answers 200 while the store's disk is
    full, so the attempt's result cannot be written. Once space returns, that outcome is
    recorded (the alarm is not sent twice) and the alarm's next event follows."""
    caplog.set_level(logging.WARNING, logger="liftwatch.webhooks")
    seeded = seed(Database(small_fs.root / "liftwatch.sqlite3"), unique)
    filled = threading.Event()

    def fill_then_ok(_: Received) -> tuple[int, dict[str, str], bytes]:
        if not filled.is_set():
            small_fs.fill()  # the disk fills while the request is out
            filled.set()
        return 200, {}, b"ok"

    recv = RecordingReceiver(fill_then_ok)
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
    task = await start(d)
    try:
        sub = seeded.subscribe(recv.url, company_id="co-a")
        alarm_id = seeded.raise_alarm(seeded.lift_a, "co-a")
        lifecycle.acknowledge(seeded.db, alarm_id, actor="api:t")
        d.notify()
        await asyncio.to_thread(recv.wait_for, 1, 10)
        await eventually(lambda: warned(caplog), 5, what="the store error")
        assert statuses(seeded.db, sub.id) == ["delivering", "pending"]
        small_fs.free()
        got = await asyncio.to_thread(recv.wait_for, 2, 10)
        assert [body_of(r)["type"] for r in got] == ["alarm.raised", "alarm.acknowledged"]
        await eventually(
            lambda: statuses(seeded.db, sub.id) == ["delivered", "delivered"],
            5,
            what="both deliveries recorded",
        )
        first = store.list_deliveries(seeded.db, sub.id)[-1]
        assert first.attempts == 1, "the concluded attempt was kept, not sent again"
        (attempt,) = store.attempts_of(seeded.db, [first.id])[first.id]
        assert attempt.status_code == 200
    finally:
        small_fs.free()
        await stop(task)
        recv.close()


async def test_outcome_recorded_after_database_locked(
    tmp_path: Path, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """r09 / D1 with ``database is locked``: another connection holds the write lock while the
    receiver answers 503, so neither the failed attempt nor the fallback can be recorded. The
    retry is recorded when the lock goes, and it is retried and delivered in this process."""
    caplog.set_level(logging.WARNING, logger="liftwatch.webhooks")
    path = tmp_path / "liftwatch.sqlite3"
    seeded = seed(QuickBusy(path), unique)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locked = threading.Event()
    answers = iter([503])

    def lock_then_answer(_: Received) -> tuple[int, dict[str, str], bytes]:
        status = next(answers, 200)
        if status == 503:
            holder.execute("BEGIN IMMEDIATE")
            locked.set()
        return status, {}, b""

    recv = RecordingReceiver(lock_then_answer)
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
    task = await start(d)
    try:
        sub = seeded.subscribe(recv.url, company_id="co-a")
        seeded.raise_alarm(seeded.lift_a, "co-a")
        d.notify()
        await asyncio.to_thread(recv.wait_for, 1, 10)
        await eventually(lambda: warned(caplog), 5, what="the store error")
        await asyncio.sleep(0.5)  # let several writes fail (no wait is being synchronised)
        holder.execute("ROLLBACK")
        got = await asyncio.to_thread(recv.wait_for, 2, 10)
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
        await eventually(lambda: statuses(seeded.db, sub.id) == ["delivered"], 5, what="delivered")
        (dl,) = store.list_deliveries(seeded.db, sub.id)
        codes = [a.status_code for a in store.attempts_of(seeded.db, [dl.id])[dl.id]]
        assert codes == [503, 200] and dl.attempts == 2
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        await stop(task)
        recv.close()


async def test_stale_claim_without_a_task_is_retried(
    seeded: Seeded, receiver: RecordingReceiver
) -> None:
    """A delivery left 'delivering' in the store with no attempt in flight in this process
    (here: claimed in a committed transaction that nobody started, as an abandoned hand-over
    leaves it) is sent again once it is older than the attempt timeout, without a restart."""
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.1, attempt_timeout_s=1.0)
    task = await start(d)
    try:
        sub = seeded.subscribe(receiver.url, company_id="co-a")
        seeded.raise_alarm(seeded.lift_a, "co-a")
        claimed_at = time.time()
        with seeded.db.transaction() as conn:
            out = store.fan_out_in(
                conn, route, now_ms=time.time_ns() // 1_000_000, claim=lambda _: True
            )
        assert len(out.started) == 1
        assert statuses(seeded.db, sub.id) == ["delivering"]
        (got,) = await asyncio.to_thread(receiver.wait_for, 1, 5)
        assert got.arrived - claimed_at >= 0.9, (
            "a claim younger than the attempt timeout is left alone"
        )
        await eventually(lambda: statuses(seeded.db, sub.id) == ["delivered"], 5, what="delivered")
    finally:
        await stop(task)


async def test_no_busy_loop_while_the_disk_is_full(
    small_fs: SmallFs, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """D5: a due head whose attempt cannot even be started (its 'delivering' mark cannot be
    written) used to be spawned again at once, ~2,000 times and log lines a second. Now the
    dispatcher rests (doubling, capped at 2 s) and logs at most once per 10 s; once space
    returns the delivery goes out within that cap."""
    caplog.set_level(logging.INFO, logger="liftwatch.webhooks")
    seeded = seed(Database(small_fs.root / "liftwatch.sqlite3"), unique)
    recv = RecordingReceiver()
    task: asyncio.Task[None] | None = None
    try:
        sub = seeded.subscribe(recv.url, company_id="co-a")
        seeded.raise_alarm(seeded.lift_a, "co-a")
        # Fanned out, not claimed: a pending head, due now.
        store.fan_out(seeded.db, route, now_ms=time.time_ns() // 1_000_000)
        small_fs.fill()
        d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
        task = await start(d)
        window = 3.0
        cpu0, rounds0 = time.process_time(), getattr(d, "rounds", 0)  # (678cc9a had no counter)
        await asyncio.sleep(window)  # the failure window being measured, not a synchronisation
        cpu, rounds = time.process_time() - cpu0, getattr(d, "rounds", 0) - rounds0
        lines = [r for r in caplog.records if r.name == "liftwatch.webhooks" and r.levelno >= 30]
        assert recv.requests == []
        assert 1 <= len(lines) <= 2, f"{len(lines)} warnings in {window} s"
        # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of rests: about 5 rounds, never thousands.
        assert rounds <= 10, f"{rounds} rounds in {window} s"
        assert cpu < 0.5 * window, f"{cpu:.2f} s CPU in {window} s"
        small_fs.free()
        freed = time.monotonic()
        await asyncio.to_thread(recv.wait_for, 1, 5)
        assert time.monotonic() - freed < 3.5, "resumed within the pause cap"
        await eventually(lambda: statuses(seeded.db, sub.id) == ["delivered"], 5, what="delivered")
        # Logged once the outcome's commit returns to the loop (the row is visible a moment
        # before the dispatcher resumes): wait for it rather than race it.
        await eventually(
            lambda: any("event=webhook_store_recovered" in r.getMessage() for r in caplog.records),
            5,
            what="the recovery logged",
        )
    finally:
        small_fs.free()
        if task is not None:
            await stop(task)
        recv.close()
