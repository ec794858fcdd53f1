"""Changes made through a separate ``liftwatch api`` reach a separate ``liftwatch alerts`` at
once (issue 14 § 4; ../shared/repros r06b and r13), real processes on one store, on both
backends (SQLite: two processes on one host).

- r13: an alarm-button alarm resolved through the API puts the engine's button filter back
  at once: a short press while the car runs normally, right after, is ignored;
- r06b: a lift registered through the API is known to the engine at once: its alarm-button
  alarm raised right after carries the lift's company from its very first notification.

"At once" is checked against the engine's own log (``event=changes_applied``, written when it
applied the change feed) within 2 s of the API's answer: the engine's safety re-read runs
every 60 s and its timers re-read button alarms every 10 s, so neither can pass this.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.localservices import free_port
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, outbox
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from tests.support.api import raise_alarm
from tests.support.harness import Service
from tests.support.processes import Child

pytestmark = pytest.mark.integration

ADMIN = "xp-admin-token-0123456789abcdef"
STOPPED_BETWEEN_FLOORS: dict[str, Any] = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "3",
    "door_zone": False,
    "doors_closed": True,
}
RUNNING = {**STOPPED_BETWEEN_FLOORS, "car_status": "running", "direction": "up", "speed": 1.0}


def _until(check: Any, within: float, what: str, children: list[Child]) -> None:
    deadline = time.monotonic() + within
    while not check():
        dead = [c for c in children if c.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n---\n".join(c.output[-3000:] for c in children)
            raise AssertionError(f"{what}: not within {within} s (exited: {len(dead)})\n{logs}")
        time.sleep(0.02)


class Device:
    """Publishes PROTOCOL.md messages for lifts, one seq counter each."""

    def __init__(self, url: str, prefix: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.prefix = prefix
        self.seq: dict[str, int] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-dev")
        self.client.connect(host, int(port))
        self.client.loop_start()

    def send(self, lift: str, kind: str, body: dict[str, Any]) -> None:
        seq = self.seq[lift] = self.seq.get(lift, 0) + 1
        msg = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": seq, **body}
        topic = f"{self.prefix}/{lift}/{kind}"
        self.client.publish(topic, json.dumps(msg), qos=1).wait_for_publish(5)

    def press(self, lift: str) -> None:
        self.send(lift, "event", {"type": "alarm_button", "pressed": True})
        self.send(lift, "event", {"type": "alarm_button", "pressed": False})

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def buttons(db: Database, lift_id: str) -> list[store.Alarm]:
    return store.list_alarms(db, lift_id=lift_id, code="alarm_button")


@pytest.fixture
def target(store_url: str) -> str:
    """``LIFTWATCH_DATABASE_URL`` of the test's store (SQLite: the URL of its file)."""
    return store_url if "://" in store_url else f"sqlite:///{Path(store_url).resolve()}"


def test_api_changes_reach_a_separate_alerts_process_at_once(
    target: str, mosquitto: Service, tmp_path: Path
) -> None:
    prefix = f"xp{os.getpid()}x{int(time.time() * 1000) % 100000}"
    old, new, marker = f"{prefix}-L1", f"{prefix}-L2", f"{prefix}-L3"
    db = Database(target)
    children: list[Child] = []
    device: Device | None = None
    try:
        reg.upsert_company(db, Company(company_id="acme", name="Acme"))
        reg.upsert_lift(db, Lift(lift_id=old, company_id="acme", rated_speed=1.0))
        reg.upsert_lift(db, Lift(lift_id=marker, company_id="acme"))
        # An unresolved alarm-button alarm when the engine starts: its filter is bypassed.
        standing = raise_alarm(
            db, old, "alarm_button", at=time.time_ns() // 1_000_000, company_id="acme"
        )
        env = {
            **os.environ,
            "LIFTWATCH_DATABASE_URL": target,
            "LIFTWATCH_DATA_DIR": str(tmp_path / "data"),
            "LIFTWATCH_MQTT_URL": mosquitto.url,
            "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
            "LIFTWATCH_ALERTS_CLIENT_ID": f"{prefix}-alerts",
            "LIFTWATCH_ALERTS_METRICS_PORT": "0",
            "LIFTWATCH_ADMIN_TOKEN": ADMIN,
            "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
        }
        port = free_port()
        api = Child(["api", "--port", str(port)], env)
        alerts = Child(["alerts"], env)
        children += [api, alerts]
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        _until(up, 30, "the API answering", children)
        alerts.wait_for(r"event=mqtt_connected", 30)
        device = Device(mosquitto.url, prefix)

        # r13: resolved through the API ...
        r = http.post(f"/alarms/{standing}/resolve", json={"outcome": "test"})
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        alerts.wait_for(r"event=changes_applied rows=\d+ registry=0 alarms=1", 10)
        assert time.monotonic() - t0 < 2.0, "the engine did not apply the resolution at once"

        # ... then one short press while the car runs normally (filtered, FAULTS.md), and a
        # marker: another lift's button pressed while stopped between floors (an alarm). The
        # consumer handles messages in order: once the marker's alarm is in, the press was
        # evaluated.
        device.send(old, "telemetry", RUNNING)
        device.press(old)
        device.send(marker, "telemetry", STOPPED_BETWEEN_FLOORS)
        device.press(marker)
        _until(lambda: len(buttons(db, marker)) == 1, 20, "the marker's alarm", children)
        statuses = [a.status for a in buttons(db, old)]
        assert statuses == ["resolved"], "the short press while running was not filtered"

        # r06b: a lift registered through the API ...
        r = http.post("/lifts", json={"lift_id": new, "company_id": "acme"})
        assert r.status_code == 201, r.text
        t0 = time.monotonic()
        alerts.wait_for(r"event=changes_applied rows=\d+ registry=1", 10)
        assert time.monotonic() - t0 < 2.0, "the engine did not refresh the registry at once"
        # ... and its alarm button tested right away: the company's from the first notification.
        device.send(new, "telemetry", STOPPED_BETWEEN_FLOORS)
        device.press(new)
        _until(lambda: len(buttons(db, new)) == 1, 20, "the new lift's alarm", children)
        (fresh,) = buttons(db, new)
        assert fresh.company_id == "acme" and not fresh.unregistered
        first = outbox.outbox_rows(db, alarm_id=fresh.alarm_id)[0]
        assert (first.event_type, first.company_id) == ("alarm.raised", "acme")
    finally:
        if device is not None:
            device.close()
        for child in children:
            child.proc.terminate()
        for child in children:
            try:
                child.proc.wait(10)
            except Exception:
                child.proc.kill()
        db.close()
