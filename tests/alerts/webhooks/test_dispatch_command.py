"""``liftwatch dispatch`` (alerts/webhooks/service.py): a dispatcher alone wakes when another
process commits outbox rows, not at its next poll — on both backends."""

from __future__ import annotations

import asyncio
import time

from alerts.webhooks import service
from liftwatch.settings import load_settings
from liftwatch.store import Database
from simulator.receiver import RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded


async def test_a_lone_dispatcher_sends_an_alarm_committed_elsewhere_at_once(
    seeded: Seeded, receiver: RecordingReceiver
) -> None:
    settings = load_settings(webhook_allow_private=True)
    own = Database(seeded.db.target)  # the dispatcher's store: another process's connection
    seeded.subscribe(receiver.url, company_id="co-a")
    dispatcher = service.build(settings, own, poll_interval_s=30.0)  # the poll never helps
    stop = asyncio.Event()
    task = asyncio.create_task(service.serve(dispatcher, own, stop))
    try:
        # Its first round is over (nothing to send): from here only a wake-up can send.
        await eventually(lambda: dispatcher.rounds >= 1, 5, what="the first round")
        began = time.monotonic()
        seeded.raise_alarm(seeded.lift_a, "co-a")  # committed through another store object
        got = await asyncio.to_thread(receiver.wait_for, 1, 5)
        took = time.monotonic() - began
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        own.close()
    assert got[0].headers["webhook-id"]
    assert took < 2.0, f"sent {took:.2f} s after the commit (the poll is 30 s)"
