"""Issue 15: PostgreSQL unreachable while alarms happen, with two alerts replicas. During the
outage nothing is notified (nothing can be recorded); once the store is back every alarm whose
condition held is raised once and delivered, whoever owns its lift by then.

A private PostgreSQL of this test's own (it is stopped and started again; the session's is
shared by other tests), the session's Mosquitto, two real ``liftwatch alerts`` replicas."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from liftwatch.localservices import PostgreSQL
from liftwatch.store import Database, leases
from simulator.receiver import RecordingReceiver
from tests.support.harness import Service, until
from tests.support.processes import Child
from tests.support.replicas import Devices, alerts_env, seed

pytestmark = pytest.mark.integration

OUTAGE_S = 6  # the issue says 30 s: the same path (measured at 30 s by hand, docs/ha.md)
SECRET = "whsec_" + "S" * 40
TRAPPED = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "2",
    "door_zone": False,
    "doors_closed": True,
    "passenger_present": True,
    "speed": 0.0,
}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgreSQL]:
    pg = PostgreSQL(tmp_path / "pg")
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def test_store_unreachable_then_every_alarm_raised_once(
    own_postgres: PostgreSQL, mosquitto: Service, tmp_path: Path
) -> None:
    prefix = f"so{os.getpid()}x{int(time.time() * 1000) % 100000}"
    url = own_postgres.url
    db = Database(url)
    receiver = RecordingReceiver()
    children: list[Child] = []
    lifts = seed(db, prefix, 12, receiver.url, SECRET)
    env = alerts_env(
        url,
        mosquitto.url,
        prefix,
        tmp_path / "data",
        {"entrapment_s": 5, "stopped_outside_zone_s": 3600},
    )
    devices = Devices(mosquitto.url, prefix)
    publish = devices.publish

    try:
        for name in ("a", "b"):
            child = Child(["alerts"], {**env, "LIFTWATCH_ALERTS_REPLICA_ID": name})
            children.append(child)
            child.wait_for(r"event=mqtt_connected", 30)

        def shared() -> bool:
            owners = Counter(row.owner for row in leases.leases(db))
            return set(owners) == {"a", "b"}

        until(shared, 20, what="both replicas holding partitions")
        db.close()
        own_postgres.stop()
        outage_began = time.monotonic()
        pressed, trapped = lifts[:6], lifts[6:8]
        for lift in pressed:
            publish(lift, "event", {"type": "alarm_button", "pressed": True})
        for lift in trapped:
            publish(lift, "telemetry", TRAPPED)  # the entrapment's 5 s run out in the outage
        # The outage lasts what the scenario says; meanwhile nothing may be notified.
        while time.monotonic() - outage_began < OUTAGE_S:
            assert receiver.requests == [], "a webhook without a recorded alarm"
            time.sleep(0.2)
        own_postgres.start()
        db = Database(url)
        expected = {(lift, "alarm_button") for lift in pressed} | {
            (lift, "entrapment") for lift in trapped
        }

        def raised() -> list[tuple[str, str, str]]:
            rows = db.conn.execute("SELECT alarm_id, lift_id, code FROM alarms").fetchall()
            return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

        until(lambda: {(r[1], r[2]) for r in raised()} >= expected, 40, what="every alarm")
        rows = raised()
        assert Counter((r[1], r[2]) for r in rows) == Counter(expected), rows
        alarm_ids = {r[0] for r in rows}

        def delivered() -> set[str]:
            return {
                json.loads(r.body)["data"]["alarm_id"]
                for r in list(receiver.requests)
                if json.loads(r.body)["type"] == "alarm.raised"
            }

        until(lambda: delivered() >= alarm_ids, 30, what="every alarm.raised delivered")
        assert delivered() == alarm_ids
        for r in list(receiver.requests):
            Webhook(SECRET).verify(r.body, r.headers)
        for c in children:
            c.proc.send_signal(signal.SIGTERM)
        for c in children:
            assert c.proc.wait(30) == 0, c.output[-3000:]
        assert "Traceback" not in "".join(c.output for c in children)
    finally:
        devices.close()
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        receiver.close()
        db.close()
