"""``/api/v1/webhooks`` through the real app (httpx ASGITransport), a real SQLite store, a
running dispatcher and real HTTP receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from alerts.webhooks.dispatcher import Dispatcher
from api.app import create_app
from liftwatch.settings import load_settings
from liftwatch.store import Database
from simulator.receiver import Received, RecordingReceiver
from tests.support.api import ADMIN_TOKEN, World, assert_error, seed_world
from tests.support.harness import eventually

pytestmark = pytest.mark.integration

API = "/api/v1/webhooks"


@pytest.fixture
def world(tmp_path: Path, unique: str) -> World:
    db = Database(tmp_path / "liftwatch.sqlite3")
    return seed_world(
        World(
            db=db,
            lift_a=f"LA1-{unique}",
            lift_a2=f"LA2-{unique}",
            lift_b=f"LB1-{unique}",
            lift_none=f"LX1-{unique}",
        )
    )


def _app(world: World, tmp_path: Path, allow_private: bool) -> FastAPI:
    settings = load_settings(
        data_dir=tmp_path, admin_token=ADMIN_TOKEN, webhook_allow_private=allow_private
    )
    return create_app(settings, db=world.db)


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
def app(world: World, tmp_path: Path) -> FastAPI:
    return _app(world, tmp_path, allow_private=True)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as c:
        yield c


@pytest.fixture
async def running(world: World, app: FastAPI) -> AsyncIterator[Dispatcher]:
    """A dispatcher polling only every 5 s, handed to the app as ``liftwatch serve`` hands its
    engine's: the API's test events and redeliveries must wake it."""
    d = Dispatcher(world.db, allow_private=True, poll_interval_s=5.0)
    app.state.dispatcher = d
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    yield d
    stop.set()
    await asyncio.wait_for(task, 5)


async def _wait(receiver: RecordingReceiver, count: int) -> list[Received]:
    return await asyncio.to_thread(receiver.wait_for, count, 10.0)


async def test_create_shows_secret_once_and_scopes_by_company(
    api: httpx.AsyncClient, world: World, receiver: RecordingReceiver
) -> None:
    r = await api.post(API, json={"url": receiver.url}, headers=world.h("maintainer_a"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["company_id"] == "co-a"
    wid = created["id"]
    got = await api.get(f"{API}/{wid}", headers=world.h("maintainer_a"))
    assert got.status_code == 200 and "secret" not in got.json()
    listed = await api.get(API, headers=world.h("maintainer_a"))
    assert [w["id"] for w in listed.json()] == [wid]
    assert created["secret"] not in listed.text
    # Another company: 404 on every route, nothing listed.
    other = world.h("maintainer_b")
    assert (await api.get(API, headers=other)).json() == []
    assert_error(await api.get(f"{API}/{wid}", headers=other), 404, "not_found")
    assert_error(await api.patch(f"{API}/{wid}", json={"description": "x"}, headers=other), 404)
    assert_error(await api.delete(f"{API}/{wid}", headers=other), 404)
    assert_error(await api.post(f"{API}/{wid}/rotate-secret", headers=other), 404)
    assert_error(await api.post(f"{API}/{wid}/test", headers=other), 404)
    assert_error(await api.get(f"{API}/{wid}/deliveries", headers=other), 404)
    # A maintainer cannot make a subscription for another company.
    assert_error(
        await api.post(API, json={"url": receiver.url, "company_id": "co-a"}, headers=other),
        422,
    )
    # Inspectors read everything and change nothing; admins see everything.
    insp = world.h("inspector")
    assert (await api.get(f"{API}/{wid}", headers=insp)).status_code == 200
    assert_error(await api.post(API, json={"url": receiver.url}, headers=insp), 403)
    assert_error(await api.delete(f"{API}/{wid}", headers=insp), 403)
    assert_error(await api.post(f"{API}/{wid}/test", headers=insp), 403)
    admin = await api.post(API, json={"url": receiver.url}, headers=world.h("admin"))
    assert admin.status_code == 201 and admin.json()["company_id"] is None
    assert len((await api.get(API, headers=world.h("admin"))).json()) == 2
    assert len((await api.get(API, headers=world.h("maintainer_a"))).json()) == 1
    assert_error(await api.post(API, json={"url": receiver.url}), 401)


async def test_private_and_bad_urls_refused_by_default(
    world: World, tmp_path: Path, receiver: RecordingReceiver
) -> None:
    async with _client(_app(world, tmp_path, allow_private=False)) as api:
        h = world.h("admin")
        for url, word in [
            (receiver.url, "loopback"),
            ("http://10.0.0.8/hook", "private"),
            ("http://169.254.169.254/latest", "link-local"),
            ("http://[::1]:8080/x", "loopback"),
            ("ftp://example.com/x", "http"),
            ("http://user:pw@example.com/", "credentials"),
        ]:
            r = await api.post(API, json={"url": url}, headers=h)
            assert_error(r, 422, "validation_error")
            assert word in r.json()["error"]["message"], (url, r.text)
        assert (await api.get(API, headers=h)).json() == []


async def test_filters_validated_and_updated(
    api: httpx.AsyncClient, world: World, receiver: RecordingReceiver
) -> None:
    h = world.h("maintainer_a")
    bad_code = {"url": receiver.url, "filters": {"codes": ["entrapmnet"]}}
    assert_error(await api.post(API, json=bad_code, headers=h), 422)
    bad_type = {"url": receiver.url, "filters": {"event_types": ["alarm.exploded"]}}
    assert_error(await api.post(API, json=bad_type, headers=h), 422)
    foreign = {"url": receiver.url, "filters": {"lift_ids": [world.lift_b]}}
    assert_error(await api.post(API, json=foreign, headers=h), 422)
    ok = {
        "url": receiver.url,
        "filters": {"codes": ["entrapment"], "min_severity": "major", "lift_ids": [world.lift_a]},
    }
    r = await api.post(API, json=ok, headers=h)
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    assert r.json()["filters"]["codes"] == ["entrapment"]
    r = await api.patch(
        f"{API}/{wid}",
        json={"filters": {"event_types": ["alarm.raised", "alarm.resolved"]}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["filters"] == {
        "event_types": ["alarm.raised", "alarm.resolved"],
        "codes": [],
        "min_severity": None,
        "lift_ids": [],
    }
    assert_error(await api.patch(f"{API}/{wid}", json={"url": "gopher://x"}, headers=h), 422)
    assert (await api.delete(f"{API}/{wid}", headers=h)).status_code == 204
    assert_error(await api.get(f"{API}/{wid}", headers=h), 404)


async def test_test_event_deliveries_and_attempts(
    api: httpx.AsyncClient, world: World, receiver: RecordingReceiver, running: Dispatcher
) -> None:
    h = world.h("maintainer_a")
    created = (await api.post(API, json={"url": receiver.url}, headers=h)).json()
    r = await api.post(f"{API}/{created['id']}/test", headers=h)
    assert r.status_code == 202, r.text
    (got,) = await _wait(receiver, 1)
    Webhook(created["secret"]).verify(got.body, got.headers)
    assert got.headers["webhook-id"] == r.json()["webhook_id"]

    async def delivered() -> bool:
        listed = await api.get(f"{API}/{created['id']}/deliveries", headers=h)
        return bool(listed.json()[0]["status"] == "delivered")

    await eventually(delivered, 5, what="test delivery recorded")
    (d,) = (await api.get(f"{API}/{created['id']}/deliveries", headers=h)).json()
    assert d["event_type"] == "webhook.test" and d["payload"]["type"] == "webhook.test"
    (attempt,) = d["attempts"]
    assert attempt["status_code"] == 200 and attempt["response"] == "ok"
    assert attempt["latency_ms"] >= 0 and attempt["error"] is None and attempt["at"]
    one = await api.get(f"{API}/{created['id']}/deliveries/{d['id']}", headers=world.h("inspector"))
    assert one.json()["id"] == d["id"]


async def test_rotation_then_redeliver_failed(
    api: httpx.AsyncClient, world: World, running: Dispatcher
) -> None:
    answer = {"status": 400}
    recv = RecordingReceiver(lambda _: (answer["status"], {}, b"nope"))
    try:
        h = world.h("admin")
        created = (await api.post(API, json={"url": recv.url}, headers=h)).json()
        wid = created["id"]
        rotated = await api.post(f"{API}/{wid}/rotate-secret", headers=h)
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret != created["secret"] and rotated.json()["previous_secret_valid_until"]
        info = (await api.get(f"{API}/{wid}", headers=h)).json()
        assert info["previous_secret_valid_until"] and "secret" not in info
        await api.post(f"{API}/{wid}/test", headers=h)
        (first,) = await _wait(recv, 1)
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        Webhook(created["secret"]).verify(first.body, first.headers)
        Webhook(new_secret).verify(first.body, first.headers)

        async def failed() -> bool:
            d = (await api.get(f"{API}/{wid}/deliveries", headers=h)).json()[0]
            return bool(d["status"] == "failed")

        await eventually(failed, 5, what="400 fails the delivery at once")
        (d,) = (await api.get(f"{API}/{wid}/deliveries?status=failed", headers=h)).json()
        assert d["attempt_count"] == 1 and d["last_status_code"] == 400
        answer["status"] = 200
        r = await api.post(f"{API}/{wid}/deliveries/{d['id']}/redeliver", headers=h)
        assert r.status_code == 202, r.text
        second = (await _wait(recv, 2))[1]
        assert second.headers["webhook-id"] == first.headers["webhook-id"]

        async def delivered() -> bool:
            one = (await api.get(f"{API}/{wid}/deliveries/{d['id']}", headers=h)).json()
            return bool(one["status"] == "delivered")

        await eventually(delivered, 5, what="redelivered")
        again = await api.post(f"{API}/{wid}/deliveries/{d['id']}/redeliver", headers=h)
        assert_error(again, 409, "conflict")
        assert_error(await api.post(f"{API}/{wid}/deliveries/999999/redeliver", headers=h), 404)
    finally:
        recv.close()


async def test_410_disables_and_patch_reenables(
    api: httpx.AsyncClient, world: World, running: Dispatcher
) -> None:
    recv = RecordingReceiver(lambda _: (410, {}, b"gone"))
    try:
        h = world.h("maintainer_a")
        wid = (await api.post(API, json={"url": recv.url}, headers=h)).json()["id"]
        await api.post(f"{API}/{wid}/test", headers=h)

        async def disabled() -> bool:
            return (await api.get(f"{API}/{wid}", headers=h)).json()["enabled"] is False

        await eventually(disabled, 5, what="410 disables the subscription")
        info = (await api.get(f"{API}/{wid}", headers=h)).json()
        assert "410" in info["disabled_reason"]
        assert_error(await api.post(f"{API}/{wid}/test", headers=h), 409)
        r = await api.patch(f"{API}/{wid}", json={"enabled": True}, headers=h)
        assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    finally:
        recv.close()


@pytest.mark.parametrize("handle", ["create_app", "engine"])
async def test_a_test_event_wakes_the_dispatcher_handed_to_the_app(
    world: World, tmp_path: Path, receiver: RecordingReceiver, handle: str
) -> None:
    """The dispatcher polls only every 5 s; the API wakes the one handed to ``create_app`` or
    registered on the in-process engine (its ``outbox`` hook, as in ``liftwatch serve``)."""
    d = Dispatcher(world.db, allow_private=True, poll_interval_s=5.0)
    settings = load_settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN, webhook_allow_private=True)
    if handle == "engine":
        app = create_app(settings, db=world.db, engine=SimpleNamespace(outbox=d))
    else:
        app = create_app(settings, db=world.db, dispatcher=d)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        async with _client(app) as api:
            h = world.h("admin")
            created = (await api.post(API, json={"url": receiver.url}, headers=h)).json()
            await eventually(lambda: d.rounds >= 1, 5, what="the dispatcher's first round")
            t0 = time.monotonic()
            r = await api.post(f"{API}/{created['id']}/test", headers=h)
            assert r.status_code == 202, r.text
            await _wait(receiver, 1)
            assert time.monotonic() - t0 < 2.5, "woken, not found by the 5 s poll"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
