"""Three ``liftwatch alerts`` replicas on one private PostgreSQL and the session's Mosquitto
(issue 15, docs/ha.md), real processes end to end. Five times: a lift owned by the replica
holding the most partitions starts an entrapment (its timer armed in every replica), another
of its lifts presses the alarm button, and that owner is SIGKILLed before the entrapment's
threshold; the survivors take its partitions, the killed replica is started again. Then:
alarms expected = raised = delivered (signed), no alarm twice (by lift and code), no webhook
answered 2xx twice, each entrapment raised at most 15 s after its threshold."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from liftwatch.store import Database, leases
from simulator.receiver import RecordingReceiver
from tests.support.harness import Service, until
from tests.support.processes import Child
from tests.support.replicas import Devices, alerts_env, seed

pytestmark = pytest.mark.integration

REPLICAS = ("r1", "r2", "r3")
KILLS = 5
ENTRAPMENT_S = 8  # shortened threshold (LIFTWATCH_ALERTS_THRESHOLDS) to keep the test short
SECRET = "whsec_" + "R" * 40
TRAPPED = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "4",
    "door_zone": False,
    "doors_closed": True,
    "passenger_present": True,
    "speed": 0.0,
}


def test_three_replicas_owner_killed_five_times(
    store_url: str, mosquitto: Service, tmp_path: Path
) -> None:
    prefix = f"ha{os.getpid()}x{int(time.time() * 1000) % 100000}"
    db = Database(store_url)
    receiver = RecordingReceiver()
    children: dict[str, Child] = {}
    dead: list[Child] = []
    lifts = seed(db, prefix, 60, receiver.url, SECRET)
    env = alerts_env(
        store_url,
        mosquitto.url,
        prefix,
        tmp_path / "data",
        {"entrapment_s": ENTRAPMENT_S, "stopped_outside_zone_s": 3600},
    )

    def start(name: str) -> Child:
        child = Child(["alerts"], {**env, "LIFTWATCH_ALERTS_REPLICA_ID": name})
        children[name] = child
        child.wait_for(r"event=mqtt_connected", 30)
        return child

    def owners() -> dict[str, str | None]:
        return {str(p.partition): p.owner for p in leases.leases(db)}

    def owner_of(lift: str) -> str | None:
        return owners()[str(leases.partition_of(lift))]

    devices = Devices(mosquitto.url, prefix)
    publish = devices.publish

    trapped_at: dict[str, float] = {}  # lift -> wall time (ms) of the first trapped snapshot
    pressed: list[str] = []
    failovers: list[float] = []
    try:
        for name in REPLICAS:
            start(name)
        until(lambda: None not in owners().values(), 20, what="every partition owned")
        free = list(lifts)
        for kill in range(KILLS):
            held = Counter(o for o in owners().values() if o)
            victim = held.most_common(1)[0][0]
            trap = next(lift for lift in free if owner_of(lift) == victim)
            free.remove(trap)
            press = next(lift for lift in free if owner_of(lift) == victim)
            free.remove(press)
            trapped_at[trap] = time.time() * 1000
            publish(trap, "telemetry", TRAPPED)
            publish(press, "event", {"type": "alarm_button", "pressed": True})
            pressed.append(press)
            # No wait: the kill may land while the replicas are still evaluating them.
            child = children[victim]
            os.kill(child.proc.pid, signal.SIGKILL)
            child.proc.wait(10)
            killed = time.monotonic()
            dead.append(child)
            moved = {p for p, o in owners().items() if o == victim}

            def moved_on(moved: set[str] = moved, victim: str = victim) -> bool:
                now = owners()
                return all(now[p] not in (None, victim) for p in moved)

            until(moved_on, 20, what=f"kill {kill + 1}: {victim}'s partitions taken")
            failovers.append(time.monotonic() - killed)
            start(victim)  # the same replica again, as systemd would

        def all_raised() -> bool:
            (n,) = db.conn.execute("SELECT COUNT(*) FROM alarms").fetchone()
            return int(n) >= 2 * KILLS

        with contextlib.suppress(AssertionError):  # the comparison below names what is missing
            until(all_raised, 40, what="every alarm raised")
        rows = db.conn.execute(
            "SELECT alarm_id, lift_id, code, raised_at FROM alarms ORDER BY raised_at"
        ).fetchall()
        by_key = Counter((r[1], r[2]) for r in rows)
        expected = {(lift, "entrapment") for lift in trapped_at} | {
            (lift, "alarm_button") for lift in pressed
        }
        assert set(by_key) == expected, sorted(set(by_key) ^ expected)
        assert set(by_key.values()) == {1}, "an alarm raised twice"
        for _alarm_id, lift, code, raised_at in rows:
            if code == "entrapment":
                late_s = (int(raised_at) - trapped_at[lift] - ENTRAPMENT_S * 1000) / 1000
                assert late_s <= 15, f"{lift}'s entrapment raised {late_s:.1f} s late"

        alarm_ids = {r[0] for r in rows}

        def delivered() -> set[str]:
            got = set()
            for r in list(receiver.requests):
                body = json.loads(r.body)
                if body["type"] == "alarm.raised":
                    got.add(body["data"]["alarm_id"])
            return got

        until(lambda: delivered() >= alarm_ids, 30, what="every alarm.raised delivered")
        ids: Counter[str] = Counter()
        for r in list(receiver.requests):
            Webhook(SECRET).verify(r.body, r.headers)  # raises if unsigned or altered
            ids[r.headers["webhook-id"]] += 1
        assert max(ids.values()) == 1, "a webhook answered 2xx more than once"
        assert delivered() == alarm_ids
        taken = [
            line
            for c in [*children.values(), *dead]
            for line in c.out
            if "event=partitions_taken" in line
        ]
        took = [int(m.group(1)) for line in taken if (m := re.search(r"took_ms=(\d+)", line))]
        print(
            f"failover_s max={max(failovers):.1f} p50={sorted(failovers)[len(failovers) // 2]:.1f}"
            f" takeover_ms max={max(took)}"
        )
        assert max(failovers) <= 15
        for c in children.values():
            c.proc.send_signal(signal.SIGTERM)
        for c in children.values():
            assert c.proc.wait(20) == 0, c.output[-3000:]
        everything = "".join(c.output for c in [*children.values(), *dead])
        assert "Traceback" not in everything, everything[-5000:]
    finally:
        devices.close()
        for c in [*children.values(), *dead]:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        receiver.close()
        db.close()
