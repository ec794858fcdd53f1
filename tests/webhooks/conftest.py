"""Fixtures for webhook tests: a real SQLite store seeded with two companies, alarms raised
through the real lifecycle (so outbox rows are exactly what the engine writes), and a running
:class:`Dispatcher` posting to real HTTP receivers (``tests/receiver.py``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alerts import lifecycle
from alerts.webhooks import signing
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Subscription
from tests.receiver import Received


@dataclass
class Seeded:
    db: Database
    lift_a: str
    lift_b: str

    def subscribe(
        self, url: str, company_id: str | None = None, filters: dict[str, Any] | None = None
    ) -> Subscription:
        return store.add_subscription(
            self.db,
            company_id=company_id,
            url=url,
            secret=signing.new_secret(),
            filters=filters or {},
            created_by="test",
        )

    def raise_alarm(
        self, lift_id: str, company_id: str, code: str = "alarm_button", at: int | None = None
    ) -> str:
        req = lifecycle.Raise(
            lift_id=lift_id,
            code=code,
            subtype=None,
            severity="critical",
            source="device",
            at=at or time.time_ns() // 1_000_000,
            evidence={"seq": 1},
            company_id=company_id,
        )
        out: list[lifecycle.Change] = []
        with self.db.transaction() as conn:
            alarm = lifecycle.raise_condition(conn, req, lifecycle.Policy(), out)
        return alarm.alarm_id


@pytest.fixture
def seeded(tmp_path: Path, unique: str) -> Seeded:
    db = Database(tmp_path / "liftwatch.sqlite3")
    reg.upsert_company(db, Company(company_id="co-a", name="Alpha"))
    reg.upsert_company(db, Company(company_id="co-b", name="Beta"))
    s = Seeded(db, f"LA-{unique}", f"LB-{unique}")
    reg.upsert_lift(db, Lift(lift_id=s.lift_a, company_id="co-a", name="A"))
    reg.upsert_lift(db, Lift(lift_id=s.lift_b, company_id="co-b", name="B"))
    return s


@pytest.fixture
async def dispatcher(seeded: Seeded) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2)
    task = asyncio.create_task(d.run())
    yield d
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def body_of(r: Received) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(r.body)
    return parsed


def of_type(kind: str) -> Callable[[Received], bool]:
    return lambda r: body_of(r)["type"] == kind
