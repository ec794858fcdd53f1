"""The alerts worker against the real Mosquitto (and InfluxDB for the transition copy)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from alerts.worker import build_engine, run
from liftwatch.influx import InfluxClient
from liftwatch.registry import Company, Lift
from liftwatch.settings import Settings
from liftwatch.store import Database, outbox
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from tests.support.harness import Service, Services, eventually
from tests.support.mqtt import TRAPPED, publish

pytestmark = pytest.mark.integration


def telemetry(seq: int, **changes: Any) -> bytes:
    body = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": seq, **TRAPPED, **changes}
    return json.dumps(body).encode()


def registered(path: Path, lift_id: str) -> Database:
    db = Database(path)
    reg.upsert_company(db, Company(company_id="acme", name="Acme"))
    reg.upsert_lift(
        db, Lift(lift_id=lift_id, company_id="acme", name="Tower", rescue_code="123456")
    )
    return db


async def test_scripted_entrapment_over_mqtt_is_one_alarm_with_evidence(
    mosquitto: Service, influx: InfluxClient, unique: str, tmp_path: Path
) -> None:
    prefix, lift = f"t{unique}", f"lift-{unique}"
    settings = Settings(
        mqtt_url=mosquitto.url,
        mqtt_topic_prefix=prefix,
        alerts_client_id=f"alerts-{unique}",
        data_dir=tmp_path,
        alerts_thresholds={"entrapment_s": 1.0},
    )
    db = registered(settings.sqlite_path, lift)
    engine, sink = build_engine(settings, db)
    stop, connected = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        run(settings, stop=stop, engine=engine, sink=sink, influx=influx, on_connect=connected.set)
    )
    try:
        await asyncio.wait_for(connected.wait(), 10)
        topic = f"{prefix}/{lift}/telemetry"
        first = telemetry(0)
        await asyncio.to_thread(publish, mosquitto.url, [(topic, first), (topic, first)])
        await eventually(lambda: bool(store.list_alarms(db, lift_id=lift)), 5, what="entrapment")
        raised = store.list_alarms(db, lift_id=lift)[0]
        assert engine.counts["duplicates"] == 1
        # More of the same state, and a late message: still one alarm.
        # Late = older than the accepted state but within 7 days (ts=1 would be "more than
        # 7 days in the past", replaced by the receive time per PROTOCOL.md: not late at all).
        # Late (PROTOCOL.md 1.1 § Order): a lower seq than the latest, an older ts.
        late_ts = json.loads(first)["ts"] - 60_000
        late = telemetry(1, door_zone=True, doors_closed=False, ts=late_ts)
        items = [(topic, telemetry(1)), (topic, telemetry(2)), (topic, late)]
        await asyncio.to_thread(publish, mosquitto.url, items)
        await eventually(lambda: engine.counts["messages"] >= 5, 5, what="all messages")
        assert engine.counts["late"] == 1
        alarms = store.list_alarms(db, lift_id=lift)
        assert [a.alarm_id for a in alarms] == [raised.alarm_id]
        alarm = alarms[0]
        assert (alarm.code, alarm.subtype, alarm.condition) == (
            "entrapment",
            "outside_zone",
            "active",
        )
        assert alarm.evidence["floor"] == "7" and alarm.evidence["passenger_present"] is True
        assert alarm.evidence["seq"] == 0 and alarm.company_id == "acme"
        [row] = outbox.outbox_rows(db, alarm_id=alarm.alarm_id)
        body = json.loads(row.payload)
        assert body["type"] == "alarm.raised"
        assert body["data"]["lift"]["rescue_code"] == "123456"

        async def in_influx() -> bool:
            series = await influx.query(
                "SELECT event, alarm_id FROM alarm WHERE lift_id = $lift", {"lift": lift}
            )
            return bool(series) and series[0]["values"][0][1:] == ["raised", alarm.alarm_id]

        await eventually(in_influx, 10, what="alarm transition in InfluxDB")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)


def _liftwatch_alerts(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "alerts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_after_raise_then_restart_no_duplicate_and_escalation_rearmed(
    services: Services, unique: str, tmp_path: Path
) -> None:
    broker = services.mosquitto()
    lift = f"lift-{unique}"
    db = registered(tmp_path / "liftwatch.sqlite3", lift)
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": broker.url,
        "LIFTWATCH_DATA_DIR": str(tmp_path),
        "LIFTWATCH_ALERTS_CLIENT_ID": f"alerts-{unique}",
        "LIFTWATCH_ALERTS_THRESHOLDS": json.dumps({"entrapment_s": 0.5, "escalation_s": 3}),
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",  # down: alarms must not care
    }
    topic = f"lifts/{lift}/telemetry"
    proc = _liftwatch_alerts(env)
    try:
        seq = 0

        async def raised() -> bool:
            nonlocal seq
            if store.list_alarms(db, lift_id=lift):
                return True
            await asyncio.to_thread(publish, broker.url, [(topic, telemetry(seq))])
            seq += 1
            return False

        await eventually(raised, 20, interval=0.3, what="the first entrapment alarm")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        [alarm] = store.list_alarms(db, lift_id=lift)
        assert alarm.escalations == 0
        # The next message arrives while alerts is down: the broker keeps it for our session.
        await asyncio.to_thread(publish, broker.url, [(topic, telemetry(seq + 1))])
        proc = _liftwatch_alerts(env)

        def escalated() -> bool:
            found = store.get_alarm(db, alarm.alarm_id)
            return found is not None and found.escalations >= 1

        await eventually(escalated, 20, what="escalation re-armed after restart")
        alarms = store.list_alarms(db, lift_id=lift)
        assert [a.alarm_id for a in alarms] == [alarm.alarm_id]
        events = [r.event_type for r in outbox.outbox_rows(db, alarm_id=alarm.alarm_id)]
        assert events.count("alarm.raised") == 1 and "alarm.escalated" in events
    finally:
        proc.kill()
        proc.wait(10)
