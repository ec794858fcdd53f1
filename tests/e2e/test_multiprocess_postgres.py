"""Many processes on one PostgreSQL (issue 14 § 5), real processes end to end: two ``liftwatch
api`` (A and B), one ``liftwatch alerts`` (its in-engine webhook dispatcher is dispatcher #1)
and one ``liftwatch dispatch`` (#2), on one private PostgreSQL database and the session's
Mosquitto. Alarms are raised over MQTT for several lifts, subscriptions created through API A,
alarms acknowledged and resolved through API B. The dispatcher that holds the first
acknowledgement's POST (found by the claim's owner in the store) is SIGKILLed while the
receiver holds that request; then every webhook must still arrive, signed, answered 2xx
exactly once per (subscription, webhook-id), in order per alarm."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from standardwebhooks import Webhook

from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import Service
from tests.support.processes import Child

pytestmark = pytest.mark.integration

ADMIN = "e2e-admin-token-0123456789abcdef"
LIFTS = 4
EVENTS = ("alarm.raised", "alarm.acknowledged", "alarm.resolved")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: object, within: float, what: str, children: list[Child]) -> None:
    """Poll ``check()`` (every 50 ms) until true; fail naming ``what`` and the processes'
    output (a child that exited fails at once)."""
    deadline = time.monotonic() + within
    while True:
        if check():  # type: ignore[operator]
            return
        dead = [c for c in children if c.proc.poll() is not None and not getattr(c, "killed", 0)]
        if dead or time.monotonic() > deadline:
            logs = "\n---\n".join(c.output[-3000:] for c in children)
            raise AssertionError(f"{what}: not within {within} s (exited: {len(dead)})\n{logs}")
        time.sleep(0.05)


class Hold:
    """The receiver's answer: 200, except from the first ``alarm.acknowledged`` POST until
    :meth:`release`: those requests are held, then answered 500 (the first one's dispatcher is
    dead by then). So no request the killed dispatcher sent was answered 2xx without its
    outcome recorded, and "exactly one 2xx per webhook-id" is what the store guarantees,
    not luck."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.held: Received | None = None
        self.answers: list[tuple[Received, int]] = []
        self._lock = threading.Lock()

    def __call__(self, r: Received) -> tuple[int, dict[str, str], bytes]:
        kind = json.loads(r.body)["type"] if r.body else ""
        with self._lock:
            if kind == "alarm.acknowledged" and self.held is None:
                self.held = r
            hold = self.held is not None and not self.released.is_set()
        status = 200
        if hold:
            self.arrived.set()
            self.released.wait(20)
            status = 500
        with self._lock:
            self.answers.append((r, status))
        return status, {}, b"ok" if status == 200 else b"no"

    def release(self) -> None:
        self.released.set()


def test_two_apis_two_dispatchers_one_killed_mid_delivery(
    store_url: str, mosquitto: Service, tmp_path: Path
) -> None:
    prefix = f"mp{os.getpid()}x{int(time.time() * 1000) % 100000}"
    lifts = [f"{prefix}-L{i}" for i in range(LIFTS)]
    db = Database(store_url)
    hold = Hold()
    receiver = RecordingReceiver(hold)
    children: list[Child] = []
    try:
        reg.upsert_company(db, Company(company_id="co-a", name="Alpha"))
        reg.upsert_company(db, Company(company_id="co-b", name="Beta"))
        for i, lift in enumerate(lifts):
            reg.upsert_lift(db, Lift(lift_id=lift, company_id="co-a" if i % 2 else "co-b"))
        env = {
            **os.environ,
            "LIFTWATCH_DATABASE_URL": store_url,
            "LIFTWATCH_DATA_DIR": str(tmp_path / "data"),
            "LIFTWATCH_MQTT_URL": mosquitto.url,
            "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
            "LIFTWATCH_ALERTS_CLIENT_ID": f"{prefix}-alerts",
            "LIFTWATCH_ALERTS_METRICS_PORT": "0",
            "LIFTWATCH_ADMIN_TOKEN": ADMIN,
            "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
            "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
        }
        ports = [_free_port(), _free_port()]
        api_a = Child(["api", "--port", str(ports[0])], env)
        api_b = Child(["api", "--port", str(ports[1])], env)
        alerts = Child(["alerts"], env)
        dispatch = Child(["dispatch", "--poll-interval", "0.5"], env)
        children += [api_a, api_b, alerts, dispatch]
        dispatchers = {alerts.proc.pid: alerts, dispatch.proc.pid: dispatch}
        a = httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}/api/v1", timeout=10)
        b = httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}/api/v1", timeout=10)
        auth = {"Authorization": f"Bearer {ADMIN}"}

        def up(port: int) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        _until(lambda: up(ports[0]) and up(ports[1]), 30, "both APIs answering", children)
        alerts.wait_for(r"event=mqtt_connected", 30)  # subscribed (after the SUBACK)
        dispatch.wait_for(r"event=webhook_dispatcher_started", 30)

        # Subscriptions through API A: an administrator's (every alarm) and co-a's own.
        secrets: dict[str, str] = {}
        for company in (None, "co-a"):
            body = {"url": receiver.url, "company_id": company}
            resp = a.post("/webhooks", json=body, headers=auth)
            assert resp.status_code == 201, resp.text
            secrets[resp.json()["id"]] = resp.json()["secret"]
        wanted = {
            sub: (len(lifts) if c is None else len(lifts) // 2)
            for sub, c in zip(secrets, (None, "co-a"), strict=True)
        }

        # Alarms over MQTT: each lift's car alarm button (PROTOCOL.md event alarm_button).
        mqtt_host, mqtt_port = mosquitto.url.removeprefix("mqtt://").split(":")
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
        pub.connect(mqtt_host, int(mqtt_port))
        pub.loop_start()
        try:
            for lift in lifts:
                event = {
                    "v": 1,
                    "ts": time.time_ns() // 1_000_000,
                    "seq": 1,
                    "type": "alarm_button",
                    "pressed": True,
                }
                pub.publish(f"{prefix}/{lift}/event", json.dumps(event), qos=1).wait_for_publish(5)
        finally:
            pub.loop_stop()
            pub.disconnect()

        def raised() -> list[Received]:
            return [r for r in receiver.requests if json.loads(r.body)["type"] == EVENTS[0]]

        total_raised = sum(wanted.values())
        _until(lambda: len(raised()) >= total_raised, 20, "every alarm.raised", children)
        alarm_ids = sorted({json.loads(r.body)["data"]["alarm_id"] for r in raised()})
        assert len(alarm_ids) == len(lifts)

        def nothing_open() -> bool:
            (n,) = db.conn.execute(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'"
            ).fetchone()
            return int(n) == 0

        _until(nothing_open, 10, "every alarm.raised recorded delivered", children)
        # An acknowledgement through API B, of a co-a lift's alarm (both subscriptions get
        # it); its first POST is held at the receiver.
        first = next(
            json.loads(r.body)["data"]["alarm_id"]
            for r in raised()
            if json.loads(r.body)["data"]["lift_id"] == lifts[1]
        )
        resp = b.post(f"/alarms/{first}/acknowledge", headers=auth)
        assert resp.status_code == 200, resp.text
        assert hold.arrived.wait(15), "no acknowledgement reached the receiver"
        assert hold.held is not None
        webhook_id = hold.held.headers["webhook-id"]
        (owner,) = db.conn.execute(
            "SELECT claimed_by FROM webhook_deliveries WHERE webhook_id = ? AND status ="
            " 'delivering'",
            (webhook_id,),
        ).fetchone()
        pid = int(owner.split("/")[1])
        assert pid in dispatchers, f"claimed by {owner}, not one of our dispatchers"
        victim = dispatchers[pid]
        os.kill(pid, signal.SIGKILL)  # mid-POST: the receiver has the request, no answer yet
        victim.proc.wait(10)
        killed_at = time.monotonic()
        victim.killed = 1  # type: ignore[attr-defined]
        hold.release()

        for alarm_id in alarm_ids:
            if alarm_id != first:
                resp = b.post(f"/alarms/{alarm_id}/acknowledge", headers=auth)
                assert resp.status_code == 200, resp.text
        for alarm_id in alarm_ids:
            resp = b.post(f"/alarms/{alarm_id}/resolve", json={"outcome": "test"}, headers=auth)
            assert resp.status_code == 200, resp.text

        def every_one_answered() -> bool:
            ok = [r for r, status in list(hold.answers) if status == 200]
            return len(ok) >= total_raised * len(EVENTS)

        _until(every_one_answered, 30, "every webhook answered 2xx", children)
        name = "liftwatch alerts" if victim is alerts else "liftwatch dispatch"
        print(f"killed {name} mid-POST; all answered {time.monotonic() - killed_at:.1f} s later")

        # Which subscription each webhook-id belongs to, from the store.
        sub_of = dict(
            db.conn.execute("SELECT webhook_id, subscription_id FROM webhook_deliveries").fetchall()
        )
        answered = list(hold.answers)
        ok_count: dict[str, int] = defaultdict(int)
        per_chain: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        for r, status in answered:
            sub = sub_of[r.headers["webhook-id"]]
            Webhook(secrets[sub]).verify(r.body, r.headers)  # raises if the signature is bad
            if status != 200:
                continue
            ok_count[r.headers["webhook-id"]] += 1
            body = json.loads(r.body)
            per_chain[(sub, body["data"]["alarm_id"])].append((r.arrived, body["type"]))
        assert set(ok_count.values()) == {1}, "a webhook-id answered 2xx more than once"
        assert len(ok_count) == total_raised * len(EVENTS) == len(sub_of)
        assert ok_count[webhook_id] == 1, "the killed dispatcher's delivery was sent again"
        retried = [r for r, _ in answered if r.headers["webhook-id"] == webhook_id]
        assert len(retried) == 2, "held once, then sent again with the same webhook-id"
        assert len(per_chain) == total_raised
        for chain, got in per_chain.items():
            assert tuple(kind for _, kind in sorted(got)) == EVENTS, chain
        _until(nothing_open, 10, "every delivery recorded delivered", children)

        # The surviving dispatcher stops cleanly on SIGTERM (uvicorn, in the APIs, ends by
        # re-raising the signal: their exit status is not this test's business).
        survivors = [c for c in children if c is not victim]
        for c in survivors:
            c.proc.send_signal(signal.SIGTERM)
        for c in survivors:
            code = c.proc.wait(20)
            if c in dispatchers.values():
                assert code == 0, c.output[-3000:]
                assert "event=dispatcher_stopped" in c.output or c is alerts
        assert "Traceback" not in "".join(c.output for c in survivors)
    finally:
        hold.release()
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        receiver.close()
        db.close()
