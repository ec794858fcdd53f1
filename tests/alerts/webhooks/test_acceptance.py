"""Issue 6 acceptance: real Mosquitto, the real alerts worker (in-process, and the real
``liftwatch alerts`` process for SIGKILL), the real API app and real HTTP receivers."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from alerts.worker import build_engine, run
from api.app import create_app
from api.auth import new_token
from liftwatch.registry import Company, Lift
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import Service, Services, eventually
from tests.support.mqtt import TRAPPED, publish

pytestmark = pytest.mark.integration

ADMIN = "acceptance-admin-token-0123456789"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def trapped(seq: int) -> bytes:
    return json.dumps({"v": 1, "ts": _now_ms(), "seq": seq, **TRAPPED}).encode()


def button(seq: int) -> bytes:
    return json.dumps(
        {"v": 1, "ts": _now_ms(), "seq": seq, "type": "alarm_button", "pressed": True}
    ).encode()


def types(got: list[Received]) -> list[str]:
    return [json.loads(r.body)["type"] for r in got]


def seed(db: Database, lifts: dict[str, str]) -> str:
    """Companies and lifts (lift → company); returns a maintainer token for company ``acme``."""
    for company in sorted(set(lifts.values())):
        reg.upsert_company(db, Company(company_id=company, name=company.title()))
    for lift_id, company in lifts.items():
        reg.upsert_lift(db, Lift(lift_id=lift_id, company_id=company, name=f"Lift {lift_id}"))
    token_id, secret, digest = new_token()
    tok.add_token(
        db,
        token_id=token_id,
        token_hash=digest,
        name="acme ops",
        role="maintainer",
        company_id="acme",
        created_by="test",
    )
    return secret


@dataclass
class Stack:
    settings: Settings
    db: Database
    api: httpx.AsyncClient
    maintainer: dict[str, str]
    lifts: list[str]
    prefix: str

    async def subscribe(self, url: str, **extra: Any) -> dict[str, Any]:
        r = await self.api.post(
            "/api/v1/webhooks", json={"url": url, **extra}, headers=self.maintainer
        )
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    async def publish(self, lift: str, kind: str, payload: bytes) -> None:
        url = self.settings.mqtt_url
        await asyncio.to_thread(publish, url, [(f"{self.prefix}/{lift}/{kind}", payload)])


@pytest.fixture
async def stack(mosquitto: Service, unique: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """``liftwatch alerts`` (worker + dispatcher) and the API, in this process, as in
    ``liftwatch serve``."""
    prefix = f"t{unique}"
    lifts = [f"A1-{unique}", f"A2-{unique}"]
    settings = Settings(
        mqtt_url=mosquitto.url,
        mqtt_topic_prefix=prefix,
        alerts_client_id=f"alerts-{unique}",
        data_dir=tmp_path,
        alerts_thresholds={"entrapment_s": 0.3},
        admin_token=SecretStr(ADMIN),
        webhook_allow_private=True,  # (the API's create-time URL check looks at this flag)
        webhook_private_allow="127.0.0.1",  # acme's receivers are local: delivery needs this
        influx_url="http://127.0.0.1:9",  # down: alarms and webhooks must not care
    )
    db = Database(settings.sqlite_path)
    secret = seed(db, dict.fromkeys(lifts, "acme"))
    engine, _ = build_engine(settings, db)
    stop, connected = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        run(settings, stop=stop, engine=engine, sink=None, on_connect=connected.set)
    )
    app = create_app(settings, db=db, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        await asyncio.wait_for(connected.wait(), 10)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as api:
            yield Stack(settings, db, api, {"Authorization": f"Bearer {secret}"}, lifts, prefix)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)


async def _wait(receiver: RecordingReceiver, count: int, within: float = 10.0) -> list[Received]:
    return await asyncio.to_thread(receiver.wait_for, count, within)


async def test_entrapment_over_mqtt_then_api_steps_arrive_signed_in_order(
    stack: Stack, receiver: RecordingReceiver
) -> None:
    sub = await stack.subscribe(receiver.url)
    lift = stack.lifts[0]
    await stack.publish(lift, "telemetry", trapped(0))
    (raised,) = await _wait(receiver, 1)
    Webhook(sub["secret"]).verify(raised.body, raised.headers)
    body = json.loads(raised.body)
    assert body["type"] == "alarm.raised"
    data = body["data"]
    assert (data["lift_id"], data["code"], data["severity"]) == (lift, "entrapment", "critical")
    assert data["lift"]["company_id"] == "acme" and data["status"] == "open"
    alarm = f"/api/v1/alarms/{data['alarm_id']}"
    h = stack.maintainer
    assert (await stack.api.post(f"{alarm}/acknowledge", headers=h)).status_code == 200
    assert (await stack.api.post(f"{alarm}/on-site", headers=h)).status_code == 200
    r = await stack.api.post(f"{alarm}/resolve", json={"outcome": "rescued"}, headers=h)
    assert r.status_code == 200, r.text
    got = await _wait(receiver, 4)
    assert types(got) == ["alarm.raised", "alarm.acknowledged", "alarm.on_site", "alarm.resolved"]
    for each in got:
        Webhook(sub["secret"]).verify(each.body, each.headers)
    assert len({r.headers["webhook-id"] for r in got}) == 4
    last = json.loads(got[-1].body)["data"]
    assert last["status"] == "resolved" and last["outcome"] == "rescued"


async def test_500_for_about_20_s_then_200_delivers_in_order_without_holding_others(
    stack: Stack,
) -> None:
    # 500 until 18.5 s after the first request: the real schedule tries at 0, 1, 6 and 21 s
    # (each wait +-10 %, so the fourth attempt lands between 18.9 and 23.1 s) and the fourth
    # attempt is the first to succeed.
    first: list[float] = []

    def failing(_: Received) -> tuple[int, dict[str, str], bytes]:
        first.append(time.monotonic()) if not first else None
        return (500, {}, b"down") if time.monotonic() - first[0] < 18.5 else (200, {}, b"ok")

    down, healthy = RecordingReceiver(failing), RecordingReceiver()
    try:
        await stack.subscribe(down.url)
        await stack.subscribe(healthy.url)
        lift = stack.lifts[0]
        t0 = time.monotonic()
        await stack.publish(lift, "event", button(0))
        (raised,) = await _wait(healthy, 1)
        assert time.monotonic() - t0 < 2, "the healthy receiver got its alarm at once"
        alarm_id = json.loads(raised.body)["data"]["alarm_id"]
        ack = await stack.api.post(
            f"/api/v1/alarms/{alarm_id}/acknowledge", headers=stack.maintainer
        )
        assert ack.status_code == 200
        assert types(await _wait(healthy, 2)) == ["alarm.raised", "alarm.acknowledged"]
        got = await _wait(down, 5, within=40)
        assert types(got) == ["alarm.raised"] * 4 + ["alarm.acknowledged"]
        assert len({r.headers["webhook-id"] for r in got[:4]}) == 1
        gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(got[:4])]
        assert 0.85 < gaps[0] < 1.5 and 4.4 < gaps[1] < 6 and 13.4 < gaps[2] < 17
        assert got[4].arrived >= got[3].arrived
    finally:
        down.close()
        healthy.close()


def _alerts_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "alerts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_with_pending_deliveries_then_restart_loses_nothing(
    services: Services, unique: str, tmp_path: Path
) -> None:
    broker = services.mosquitto()
    lifts = {f"K{i}-{unique}": "acme" for i in range(3)}
    db = Database(tmp_path / "liftwatch.sqlite3")
    seed(db, lifts)
    release = threading.Event()

    def hang_then_ok(_: Received) -> tuple[int, dict[str, str], bytes]:
        # Hang until the test says so, however long the presses take on a loaded machine (a
        # fixed hold could expire before the third alarm is in flight and answer the first).
        # The bound only keeps a broken test from leaking the thread.
        release.wait(300)
        return 200, {}, b"ok"

    receiver = RecordingReceiver(hang_then_ok)
    sub = store.add_subscription(
        db,
        company_id="acme",
        url=receiver.url,
        secret="whsec_" + "Q" * 40,
        filters={},
        created_by="test",
    )
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": broker.url,
        "LIFTWATCH_DATA_DIR": str(tmp_path),
        "LIFTWATCH_ALERTS_CLIENT_ID": f"alerts-{unique}",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",  # acme's receiver is local
        "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
    }
    proc = _alerts_process(env)
    try:

        def delivering() -> list[store.Delivery]:
            return store.list_deliveries(db, sub.id, status="delivering")

        async def all_in_flight() -> bool:
            # Messages published before the process has its MQTT session are not queued for
            # it, so press again each lift's button whose alarm has not arrived yet.
            seen = {
                json.loads(d.payload)["data"]["lift_id"] for d in store.list_deliveries(db, sub.id)
            }
            missing = [(f"lifts/{lift}/event", button(0)) for lift in lifts if lift not in seen]
            if missing:
                await asyncio.to_thread(publish, broker.url, missing)
            return len(delivering()) == 3

        await eventually(all_in_flight, 40, interval=0.5, what="3 deliveries in flight")
        assert len(receiver.requests) == 0  # all three hang in the receiver
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert len(delivering()) == 3, "a killed process leaves its attempts in flight"
        release.set()
        await asyncio.to_thread(receiver.wait_for, 3, 30.0)
        proc = _alerts_process(env)

        def done() -> bool:
            return len(store.list_deliveries(db, sub.id, status="delivered")) == 3

        await eventually(done, 40, what="every pending delivery completed after restart")
        got = await asyncio.to_thread(receiver.wait_for, 6, 30.0)
        by_id: dict[str, int] = {}
        for r in got:
            by_id[r.headers["webhook-id"]] = by_id.get(r.headers["webhook-id"], 0) + 1
        delivered = store.list_deliveries(db, sub.id)
        assert set(by_id) == {d.webhook_id for d in delivered}, (by_id, delivered)
        assert all(n == 2 for n in by_id.values()), "re-sent with the same webhook-id"
        alarm_ids = {json.loads(r.body)["data"]["lift_id"] for r in got}
        assert alarm_ids == set(lifts)
    finally:
        release.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        receiver.close()
