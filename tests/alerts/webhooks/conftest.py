"""Fixtures for webhook tests: a real store (each test on SQLite and on PostgreSQL) seeded
with two companies, alarms raised
through the real lifecycle (so outbox rows are exactly what the engine writes), and a running
:class:`Dispatcher` posting to real HTTP receivers (``simulator/receiver.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from tests.support.webhooks import Seeded


@pytest.fixture
def seeded(store_url: str, unique: str) -> Iterator[Seeded]:
    """Two companies with a lift each, once per backend (SQLite file, private PostgreSQL)."""
    db = Database(store_url)
    reg.upsert_company(db, Company(company_id="co-a", name="Alpha"))
    reg.upsert_company(db, Company(company_id="co-b", name="Beta"))
    s = Seeded(db, f"LA-{unique}", f"LB-{unique}")
    reg.upsert_lift(db, Lift(lift_id=s.lift_a, company_id="co-a", name="A"))
    reg.upsert_lift(db, Lift(lift_id=s.lift_b, company_id="co-b", name="B"))
    yield s
    db.close()


@pytest.fixture
async def dispatcher(seeded: Seeded) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
    task = asyncio.create_task(d.run())
    yield d
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
