"""liftwatch on NATS instead of Mosquitto, end to end (issue 15, broker independence): real
``liftwatch ingest`` and ``liftwatch alerts`` processes on a private nats-server 2.9 with MQTT
(``nats_mqtt``: JetStream sessions, ack_wait 2 s) and the session's InfluxDB. Simulated lifts'
telemetry is stored in InfluxDB; an entrapment and a reported fault are raised and recorded.
Then alerts is frozen (SIGSTOP) while more messages arrive — NATS delivers them to its socket,
where they stay unacknowledged — and SIGKILLed; restarted, it gets them again from its
persistent session and raises what they say: nothing lost (at-least-once, DESIGN.md), no
alarm twice (FAULTS.md § Lifecycle: one unresolved alarm per lift, code and subtype)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from liftwatch.influx import InfluxClient
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from tests.support.harness import Service
from tests.support.ingest import count, publish
from tests.support.mqtt import TRAPPED
from tests.support.processes import Child

pytestmark = pytest.mark.integration

LIFTS = 6  # lift 0 is trapped, lift 1 reports a fault, the others run normally
PER_LIFT = 30  # telemetry messages per lift before the kill


def _telemetry(seq: int, ts_ms: int, trapped: bool) -> bytes:
    state: dict[str, Any] = dict(TRAPPED) if trapped else {**TRAPPED, "passenger_present": False}
    return json.dumps({"v": 1, "ts": ts_ms, "seq": seq, **state}).encode()


def _fault(seq: int, ts_ms: int, code: int) -> bytes:
    body = {"v": 1, "ts": ts_ms, "seq": seq, "type": "fault", "namespace": "gb24476"}
    return json.dumps({**body, "code": code, "active": True}).encode()


def _ack_pending(monitor_url: str, prefix: str) -> int:
    """Messages NATS has delivered and not had acknowledged, over the JetStream consumers of
    our prefix's subscriptions (both liftwatch sessions: ingest's and alerts')."""
    url = f"{monitor_url}/jsz?accounts=true&consumers=true&config=true"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our private server
        info = json.load(resp)
    return sum(
        c["num_ack_pending"]
        for account in info.get("account_details", [])
        for stream in account.get("stream_detail", [])
        for c in stream.get("consumer_detail") or []
        if f".{prefix}." in c["config"].get("filter_subject", "")
    )


def _until(check: Any, within: float, what: str, children: list[Child]) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            logs = "\n---\n".join(c.output[-3000:] for c in children)
            raise AssertionError(f"{what}: not within {within} s\n{logs}")
        time.sleep(0.05)


def _influx_count(url: str, database: str, measurement: str) -> int:
    async def go() -> int:
        client = InfluxClient(url, database)
        try:
            return await count(client, measurement)
        except Exception:
            return 0  # the database does not exist yet
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_ingest_and_alerts_on_nats_alerts_killed_with_unacked_messages(
    nats_mqtt: Service, influxdb: Service, tmp_path: Path
) -> None:
    if not hasattr(nats_mqtt, "monitor_url"):
        pytest.skip("needs the private nats-server (its monitoring port counts unacked messages)")
    monitor_url: str = nats_mqtt.monitor_url
    prefix = f"nats{os.getpid()}x{int(time.time() * 1000) % 100000}"
    lifts = [f"{prefix}-L{i}" for i in range(LIFTS)]
    database = f"e2e_{prefix}"
    alerts_dir = tmp_path / "alerts"
    alerts_dir.mkdir()
    db = Database(alerts_dir / "liftwatch.sqlite3")
    reg.upsert_company(db, Company(company_id="acme", name="Acme"))
    for lift in lifts:
        reg.upsert_lift(db, Lift(lift_id=lift, company_id="acme", rescue_code="123456"))
    common = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": nats_mqtt.url,
        "LIFTWATCH_MQTT_PROTOCOL": "3.1.1",  # NATS 2.9 has no MQTT 5
        "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
        "LIFTWATCH_INFLUX_URL": influxdb.url,
        "LIFTWATCH_INFLUX_DATABASE": database,
    }
    alerts_env = {
        **common,
        "LIFTWATCH_DATA_DIR": str(alerts_dir),
        "LIFTWATCH_ALERTS_CLIENT_ID": f"{prefix}-alerts",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_THRESHOLDS": json.dumps({"entrapment_s": 1}),
    }
    ingest_env = {
        **common,
        "LIFTWATCH_DATA_DIR": str(tmp_path / "ingest"),
        "LIFTWATCH_INGEST_CLIENT_ID": f"{prefix}-ingest",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
    }
    started = time.monotonic()
    ingest = Child(["ingest"], ingest_env)
    alerts = Child(["alerts"], alerts_env)
    children = [ingest, alerts]
    try:
        ingest.wait_for(r"event=mqtt_connected", 30)
        alerts.wait_for(r"event=mqtt_connected", 30)

        # Phase 1: telemetry of every lift; lift 0 trapped, lift 1's controller reports a
        # door-close fault (gb24476 code 2).
        t0 = time.time_ns() // 1_000_000
        items = [
            (f"{prefix}/{lift}/telemetry", _telemetry(seq, t0 + seq * 50, trapped=i == 0))
            for seq in range(PER_LIFT)
            for i, lift in enumerate(lifts)
        ]
        items.append((f"{prefix}/{lifts[1]}/event", _fault(PER_LIFT, t0 + PER_LIFT * 50, 2)))
        publish(nats_mqtt.url, items)
        published = LIFTS * PER_LIFT  # telemetry messages so far

        def codes(lift: str) -> list[str]:
            return sorted(a.code for a in store.list_alarms(db, lift_id=lift))

        _until(
            lambda: _influx_count(influxdb.url, database, "lift_state") == published,
            20,
            f"{published} telemetry points in InfluxDB",
            children,
        )

        # The entrapment needs its 1 s on alerts' clock: keep lift 0 reporting until raised.
        seq = PER_LIFT + 1

        def entrapment_raised() -> bool:
            nonlocal seq, published
            if codes(lifts[0]) == ["entrapment"]:
                return True
            ts = time.time_ns() // 1_000_000
            publish(nats_mqtt.url, [(f"{prefix}/{lifts[0]}/telemetry", _telemetry(seq, ts, True))])
            seq += 1
            published += 1
            return False

        _until(entrapment_raised, 15, "the entrapment alarm", children)
        _until(lambda: codes(lifts[1]) == ["door_close_fault"], 10, "the fault alarm", children)
        assert all(codes(lift) == [] for lift in lifts[2:])
        _until(lambda: _ack_pending(monitor_url, prefix) == 0, 10, "everything acked", children)

        # Phase 2: alerts frozen; NATS delivers to its socket what comes now, unacknowledged.
        alerts.proc.send_signal(signal.SIGSTOP)
        t1 = time.time_ns() // 1_000_000
        late = [
            (f"{prefix}/{lifts[2]}/event", _fault(10_000, t1, 3)),  # door_open_fault
            (f"{prefix}/{lifts[3]}/event", _fault(10_000, t1, 6)),  # motor_runtime_limiter
            (f"{prefix}/{lifts[4]}/event", _fault(10_000, t1, 8)),  # restart_prevented
            (f"{prefix}/{lifts[5]}/event", _fault(10_000, t1, 2)),  # door_close_fault
        ]
        late += [
            (f"{prefix}/{lift}/telemetry", _telemetry(10_001 + k, t1 + 1 + k, i == 0))
            for k in range(5)
            for i, lift in enumerate(lifts)
        ]
        publish(nats_mqtt.url, late)

        def ingest_stored_the_late_messages() -> bool:
            return (
                _influx_count(influxdb.url, database, "lift_state") == published + 5 * LIFTS
                and _influx_count(influxdb.url, database, "lift_event") == 1 + 4
            )

        _until(ingest_stored_the_late_messages, 20, "ingest stored the late messages", children)
        # ingest has acknowledged all of it: what is pending was delivered to frozen alerts.
        _until(
            lambda: _ack_pending(monitor_url, prefix) == len(late),
            10,
            f"{len(late)} messages delivered to alerts and unacknowledged",
            children,
        )
        alerts.proc.send_signal(signal.SIGKILL)
        alerts.proc.wait(10)
        alerts.killed = 1  # type: ignore[attr-defined]
        assert all(codes(lift) == [] for lift in lifts[2:]), "alerts raised while frozen"

        restarted_at = time.monotonic()
        restarted = Child(["alerts"], alerts_env)
        children.append(restarted)
        restarted.wait_for(r"event=mqtt_connected.*session_present=True", 30)
        wanted = {
            lifts[0]: ["entrapment"],
            lifts[1]: ["door_close_fault"],
            lifts[2]: ["door_open_fault"],
            lifts[3]: ["motor_runtime_limiter"],
            lifts[4]: ["restart_prevented"],
            lifts[5]: ["door_close_fault"],
        }
        _until(
            lambda: {lift: codes(lift) for lift in lifts} == wanted,
            15,  # NATS resends after its ack_wait (2 s here), not on reconnect
            "the frozen batch's alarms after the restart",
            children,
        )
        recovered_s = time.monotonic() - restarted_at
        _until(lambda: _ack_pending(monitor_url, prefix) == 0, 10, "redelivery acked", children)
        # Still one alarm each: the redelivered telemetry did not raise lift 0's again.
        assert {lift: codes(lift) for lift in lifts} == wanted
        print(
            f"nats e2e: {len(late)} unacked at the kill, all alarms {recovered_s:.1f} s after"
            f" the restart; {time.monotonic() - started:.1f} s in all"
        )

        for child in (ingest, restarted):
            child.proc.send_signal(signal.SIGTERM)
        for child in (ingest, restarted):
            assert child.proc.wait(20) == 0, child.output[-3000:]
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        db.close()
