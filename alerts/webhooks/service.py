"""``liftwatch dispatch``: a webhook dispatcher on its own, beside the one inside ``liftwatch
alerts``, on the configured store (``LIFTWATCH_DATABASE_URL``).

Any number of them may share one PostgreSQL store, on any hosts (docs/webhooks.md § Several
dispatchers): they claim due chain heads with ``FOR UPDATE SKIP LOCKED``, so each attempt has
one sender, and a claim of a dispatcher that died expires and is sent again by another. This
process has no alerts engine, so no fast path: it wakes when any process commits outbox rows
(the store's change listener: PostgreSQL ``NOTIFY``, SQLite ``data_version``; docs/storage.md
§ Change notifications), when one of its own attempts ends (a chain's next event, a
subscription's next slot), and polls every ``poll_interval_s`` as a fallback.
"""

from __future__ import annotations

import asyncio
import logging

from alerts.webhooks import ssrf
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.settings import Settings
from liftwatch.store import Database, open_store
from liftwatch.store.changes import Waker

log = logging.getLogger("liftwatch.webhooks")


def build(
    settings: Settings,
    db: Database,
    *,
    concurrency: int = 64,
    per_subscription: int = 8,
    poll_interval_s: float = 1.0,
) -> Dispatcher:
    """A dispatcher on ``db`` with the settings' private-target policy."""
    return Dispatcher(
        db,
        allow_private=ssrf.PrivateTargets.from_settings(settings),
        concurrency=concurrency,
        per_subscription=per_subscription,
        poll_interval_s=poll_interval_s,
    )


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event,
    db: Database | None = None,
    concurrency: int = 64,
    per_subscription: int = 8,
    poll_interval_s: float = 1.0,
) -> Dispatcher:
    """Deliver until ``stop`` is set; attempts still in flight then stay claimed and are sent
    again (same webhook-id) by whichever dispatcher sweeps their claim first."""
    own = db is None
    store = db if db is not None else await asyncio.to_thread(open_store, settings)
    dispatcher = build(
        settings,
        store,
        concurrency=concurrency,
        per_subscription=per_subscription,
        poll_interval_s=poll_interval_s,
    )
    log.info(
        "event=dispatcher_starting store=%s owner=%s concurrency=%d per_subscription=%d",
        store.display,
        dispatcher.owner,
        dispatcher.concurrency,
        dispatcher.per_subscription,
    )
    try:
        await serve(dispatcher, store, stop)
    finally:
        log.info("event=dispatcher_stopped sent=%d rounds=%d", dispatcher.sent, dispatcher.rounds)
        if own:
            await asyncio.to_thread(store.close)
    return dispatcher


async def serve(dispatcher: Dispatcher, store: Database, stop: asyncio.Event) -> None:
    """Run ``dispatcher`` until ``stop``, woken by every outbox commit of any process."""
    waking = asyncio.create_task(_wake_on_outbox(store, dispatcher, stop))
    try:
        await dispatcher.run(stop)
    finally:
        waking.cancel()
        await asyncio.gather(waking, return_exceptions=True)


async def _wake_on_outbox(store: Database, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Wake the dispatcher as soon as any process commits outbox rows, not at its next poll."""
    with Waker(store, kinds=(), outbox=True) as waker:
        while not stop.is_set():
            if await waker.wait(1.0):
                dispatcher.notify()
