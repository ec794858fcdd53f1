"""Issue 15: "broker restart, and a replica restarted with a backlog: unchanged guarantees".
Two real ``liftwatch alerts`` replicas on a fresh PostgreSQL database and a private Mosquitto
of this test (it is restarted). (1) Replica a is SIGKILLed, buttons are pressed on lifts of
both replicas while it is down (its persistent session queues them), a is started again before
its leases expire: it takes its partitions back and evaluates its backlog. (2) The broker is
restarted; both reconnect; more buttons. Every press raises exactly one alarm, delivered once,
signed."""

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

from liftwatch.localservices import Mosquitto
from liftwatch.store import Database, leases
from simulator.receiver import RecordingReceiver
from tests.support.harness import until
from tests.support.processes import Child
from tests.support.replicas import Devices, alerts_env, seed

pytestmark = pytest.mark.integration

SECRET = "whsec_" + "T" * 40
PRESS = {"type": "alarm_button", "pressed": True}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "mosquitto")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_replica_restarted_with_a_backlog_then_broker_restarted(
    store_url: str, broker: Mosquitto, tmp_path: Path
) -> None:
    prefix = f"rr{os.getpid()}x{int(time.time() * 1000) % 100000}"
    db = Database(store_url)
    receiver = RecordingReceiver()
    children: dict[str, Child] = {}
    dead: list[Child] = []
    lifts = seed(db, prefix, 40, receiver.url, SECRET)
    env = alerts_env(store_url, broker.url, prefix, tmp_path / "data", {})
    devices = Devices(broker.url, prefix)

    def start(name: str) -> Child:
        child = children[name] = Child(["alerts"], {**env, "LIFTWATCH_ALERTS_REPLICA_ID": name})
        child.wait_for(r"event=mqtt_connected", 30)
        return child

    def owner_of(lift: str) -> str | None:
        return {row.partition: row.owner for row in leases.leases(db)}[leases.partition_of(lift)]

    pressed: list[str] = []
    try:
        start("a")
        start("b")
        until(lambda: {owner_of(lift) for lift in lifts} == {"a", "b"}, 20, what="shared")
        free = list(lifts)
        of_a = [lift for lift in free if owner_of(lift) == "a"][:3]
        of_b = [lift for lift in free if owner_of(lift) == "b"][:3]
        for lift in of_a + of_b:
            free.remove(lift)

        # (1) a dies; presses while it is down; a back before its leases expire.
        victim = children["a"]
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        dead.append(victim)
        for lift in of_a + of_b:
            devices.publish(lift, "event", PRESS)
            pressed.append(lift)
        start("a")
        until(lambda: all(owner_of(lift) == "a" for lift in of_a), 10, what="a's own back")

        # (2) the broker restarts; both replicas reconnect; more presses.
        devices.close()
        broker.restart()
        for child in children.values():
            child.wait_for(r"event=mqtt_connected", 30)
        devices = Devices(broker.url, prefix)
        for lift in free[:6]:
            devices.publish(lift, "event", PRESS)
            pressed.append(lift)

        def raised() -> list[tuple[str, str]]:
            rows = db.conn.execute("SELECT alarm_id, lift_id FROM alarms").fetchall()
            return [(str(r[0]), str(r[1])) for r in rows]

        until(lambda: {lift for _, lift in raised()} >= set(pressed), 30, what="every press")
        rows = raised()
        assert Counter(lift for _, lift in rows) == Counter(pressed), sorted(rows)
        alarm_ids = {alarm_id for alarm_id, _ in rows}

        def delivered() -> Counter[str]:
            return Counter(
                json.loads(r.body)["data"]["alarm_id"]
                for r in list(receiver.requests)
                if json.loads(r.body)["type"] == "alarm.raised"
            )

        until(lambda: set(delivered()) >= alarm_ids, 30, what="every alarm.raised delivered")
        assert set(delivered()) == alarm_ids and set(delivered().values()) == {1}
        for r in list(receiver.requests):
            Webhook(SECRET).verify(r.body, r.headers)
        for c in children.values():
            c.proc.send_signal(signal.SIGTERM)
        for c in children.values():
            assert c.proc.wait(30) == 0, c.output[-3000:]
        assert "Traceback" not in "".join(c.output for c in [*children.values(), *dead])
    finally:
        devices.close()
        for c in [*children.values(), *dead]:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        receiver.close()
        db.close()
