"""The server-sent-events stream, served by a real uvicorn on a free port: events arrive in
order, scoped by role, and a reconnect with Last-Event-ID resumes without gaps; a stream
ends when its token is revoked or its company deactivated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from alerts import lifecycle
from api.app import create_app
from api.routes import alarms as alarm_routes
from api.timeparams import now_ms
from liftwatch.influx import InfluxClient
from liftwatch.localservices import free_port
from liftwatch.registry import Company
from liftwatch.settings import Settings
from liftwatch.store import Database, changes
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok
from liftwatch.store.outbox import last_outbox_id
from tests.support.api import ADMIN_TOKEN, World, raise_alarm
from tests.support.harness import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def base_url(settings: Settings, db: Database, influx: InfluxClient) -> AsyncIterator[str]:
    app = create_app(settings.model_copy(update={"api_sse_poll_ms": 20}), db=db, influx=influx)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def events(base: str, headers: dict[str, str], n: int, **params: str) -> list[dict[str, Any]]:
    """Read ``n`` events from the stream."""
    got: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as c,
        c.stream("GET", "/api/v1/alarms/stream", headers=headers, params=params) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                got.append(current)
                current = {}
                if len(got) == n:
                    break
    return got


async def test_stream_scoped_ordered_and_resumable(
    base_url: str, world: World, db: Database
) -> None:
    # Streams start from an explicit position, so it does not matter whether they attach
    # before or after the alarms below are written.
    start = str(last_outbox_id(db))
    mine = asyncio.create_task(events(base_url, world.h("maintainer_b"), 1, after=start))
    everything = asyncio.create_task(events(base_url, world.h("inspector"), 3, after=start))
    a = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    lifecycle.acknowledge(db, a, actor="test")
    b = raise_alarm(db, world.lift_b, "alarm_button", at=now_ms(), company_id="co-b")

    seen = await asyncio.wait_for(everything, 10)
    assert [(e["event"], e["data"]["data"]["alarm_id"]) for e in seen] == [
        ("alarm.raised", a),
        ("alarm.acknowledged", a),
        ("alarm.raised", b),
    ]
    assert seen[0]["id"] < seen[1]["id"] < seen[2]["id"]
    assert seen[0]["data"]["type"] == "alarm.raised"  # the webhook body, as WEBHOOKS.md
    only_b = await asyncio.wait_for(mine, 10)
    assert [e["data"]["data"]["alarm_id"] for e in only_b] == [b]

    # Resume after the first event: the next two come again, nothing is lost.
    resumed = await asyncio.wait_for(
        events(base_url, {**world.h("admin"), "Last-Event-ID": str(seen[0]["id"])}, 2), 10
    )
    assert [e["id"] for e in resumed] == [seen[1]["id"], seen[2]["id"]]


async def test_stream_needs_a_token(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        r = await c.get("/api/v1/alarms/stream")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def read_until_end(base: str, headers: dict[str, str], opened: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as c,
        c.stream("GET", "/api/v1/alarms/stream", headers=headers) as r,
    ):
        assert r.status_code == 200
        async for _ in r.aiter_lines():
            opened.set()


@pytest.mark.parametrize("how", ["company_deactivated", "token_revoked"])
async def test_open_stream_ends_when_its_token_stops_being_valid(
    base_url: str, world: World, db: Database, how: str
) -> None:
    # security review #7: a deactivated company's (or a revoked) token must not keep
    # receiving alarms through a stream it opened before.
    opened = asyncio.Event()
    reader = asyncio.create_task(read_until_end(base_url, world.h("maintainer_a"), opened))
    await asyncio.wait_for(opened.wait(), 10)
    if how == "company_deactivated":
        reg.upsert_company(db, Company(company_id="co-a", name="Alpha Lifts", active=False))
    else:
        tok.revoke_token(db, world.token_ids["maintainer_a"])
    await asyncio.wait_for(reader, 5)  # ended by the server (re-checked every second)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        r = await c.get("/api/v1/alarms/stream", headers=world.h("maintainer_a"))
    assert r.status_code == 401
    # Others' streams go on.
    other = asyncio.Event()
    task = asyncio.create_task(read_until_end(base_url, world.h("maintainer_b"), other))
    await asyncio.wait_for(other.wait(), 10)
    await asyncio.sleep(1.5)
    assert not task.done()
    task.cancel()


# --- several API processes on one store (issue 14 § 4): each stream carries what any commits --


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def other_db(db: Database) -> Iterator[Database]:
    """A second store object on the same store: what another API process has."""
    other = Database(db.target)
    yield other
    other.close()


async def test_stream_of_another_api_process_carries_a_commit_at_once(
    settings: Settings, db: Database, other_db: Database, influx: InfluxClient, world: World
) -> None:
    # The poll is 10 s: an event within ~1 s can only come from the change notification.
    slow = settings.model_copy(update={"api_sse_poll_ms": 10_000})
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # bootstrap: no 1 s token re-check
    async with (
        serving(create_app(slow, db=db, influx=influx)) as first,
        serving(create_app(slow, db=other_db, influx=influx)) as second,
    ):
        start = str(last_outbox_id(db))
        reader = asyncio.create_task(events(second, admin, 2, after=start))
        feed = changes.listener(other_db)
        await eventually(lambda: feed.wakes >= 1, what="the second API's listener connected")
        t0 = time.monotonic()
        a = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
        async with httpx.AsyncClient(base_url=first, timeout=10) as c:
            r = await c.post(f"/api/v1/alarms/{a}/acknowledge", headers=admin, json={})
            assert r.status_code == 200, r.text
        got = await asyncio.wait_for(reader, 8)
        elapsed = time.monotonic() - t0
    assert [(e["event"], e["data"]["data"]["alarm_id"]) for e in got] == [
        ("alarm.raised", a),
        ("alarm.acknowledged", a),
    ]
    assert elapsed < 2.0, f"took {elapsed:.2f} s: the stream waited for its poll"


async def test_revocation_through_another_api_process_ends_a_stream_at_once(
    settings: Settings,
    db: Database,
    other_db: Database,
    influx: InfluxClient,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alarm_routes, "RECHECK_S", 30.0)  # only the change feed can end it
    slow = settings.model_copy(update={"api_sse_poll_ms": 10_000})
    async with serving(create_app(slow, db=db, influx=influx)) as base:
        opened = asyncio.Event()
        reader = asyncio.create_task(read_until_end(base, world.h("maintainer_a"), opened))
        await asyncio.wait_for(opened.wait(), 10)
        await eventually(lambda: changes.listener(db).wakes >= 1, what="listener connected")
        t0 = time.monotonic()
        tok.revoke_token(other_db, world.token_ids["maintainer_a"])
        await asyncio.wait_for(reader, 5)
        assert time.monotonic() - t0 < 2.0
