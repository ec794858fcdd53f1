"""The server-sent-events stream, served by a real uvicorn on a free port: events arrive in
order, scoped by role, and a reconnect with Last-Event-ID resumes without gaps; a stream
ends when its token is revoked or its company deactivated."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from alerts import lifecycle
from api.app import create_app
from api.timeparams import now_ms
from liftwatch.influx import InfluxClient
from liftwatch.localservices import free_port
from liftwatch.registry import Company
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok
from liftwatch.store.outbox import last_outbox_id
from tests.support.api import World, raise_alarm
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
