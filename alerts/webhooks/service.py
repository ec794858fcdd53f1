"""``liftwatch dispatch``: a webhook dispatcher on its own, beside the one inside ``liftwatch
alerts``, on the configured store (``LIFTWATCH_DATABASE_URL``).

Any number of them may share one PostgreSQL store, on any hosts (docs/webhooks.md § Several
dispatchers): they claim due chain heads with ``FOR UPDATE SKIP LOCKED``, so each attempt has
one sender, and a claim of a dispatcher that died expires and is sent again by another. This
process has no alerts engine, so no fast path: it polls the store every ``poll_interval_s``
(as the in-engine dispatcher does for rows other processes write) and wakes at once whenever
one of its own attempts ends (a chain's next event, a subscription's next slot).
"""

from __future__ import annotations

import asyncio
import logging

from alerts.webhooks import ssrf
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.settings import Settings
from liftwatch.store import Database, open_store

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
        await dispatcher.run(stop)
    finally:
        log.info("event=dispatcher_stopped sent=%d rounds=%d", dispatcher.sent, dispatcher.rounds)
        if own:
            await asyncio.to_thread(store.close)
    return dispatcher
