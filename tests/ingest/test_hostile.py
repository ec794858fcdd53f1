"""Issue 12 hardening of ingest against hostile device input, with the real Mosquitto and
InfluxDB: values InfluxDB cannot hold are rejected by the decoder (PROTOCOL.md 1.1)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.writer import INFLUX_REJECTED
from liftwatch.influx import InfluxClient
from liftwatch.protocol import Reason
from liftwatch.store.db import Database
from liftwatch.store.deadletters import count_dead_letters, list_dead_letters
from tests.support.harness import Service, eventually
from tests.support.ingest import count, event, ingest_settings, now_ms, publish, running_ingest
from tests.support.ingest import telemetry as tel

pytestmark = pytest.mark.integration


def _refused() -> float:
    value = REGISTRY.get_sample_value(
        "liftwatch_ingest_rejected_total", {"reason": INFLUX_REJECTED}
    )
    return value or 0.0


async def test_int64_overflow_is_bad_value_and_never_reaches_influxdb(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    """Security review #3 / repro r16: a 10^30 seq (and other int fields, nested ones too)
    is a decoder ``bad_value`` dead-letter; InfluxDB never refuses a line, so no batch is
    bisected, and every valid message of the batch is stored."""
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    t = now_ms()
    hostile = [
        tel(10**30, t),
        tel(1, t, run_count=2**63),
        tel(2, t, position=-(2**63) - 1),
        tel(3, t, controller_faults=[{"namespace": "gb24476", "code": 10**20}]),
    ]
    hostile_ev = event(4, t, "fault", namespace="v", code=2**64, active=True)
    items = [(f"{unique}/G{i}/telemetry", tel(i, t + i)) for i in range(100)]
    items[10:10] = [(f"{unique}/H/telemetry", p) for p in hostile]
    items.append((f"{unique}/H/event", hostile_ev))
    refused_before = _refused()
    async with running_ingest(settings) as task:
        await asyncio.to_thread(publish, mosquitto.url, items)
        db = Database(settings.sqlite_path)
        await eventually(lambda: sum(count_dead_letters(db).values()) >= 5, what="dead-letters")
        await eventually(
            lambda: _at_least(client, 100), timeout=20, what="the 100 valid messages stored"
        )
        assert not task.done()
    assert count_dead_letters(db) == {Reason.BAD_VALUE.value: 5}
    assert all(d.lift_id == "H" for d in list_dead_letters(db))
    assert _refused() == refused_before  # InfluxDB refused nothing: no bisection
    assert await count(client, "lift_state") == 100
    db.close()
    await client.aclose()


async def _at_least(client: InfluxClient, n: int) -> bool:
    return await count(client, "lift_state") >= n


async def test_long_optional_strings_are_stored_truncated_and_flagged(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    """PROTOCOL.md 1.1 / repro r12 (M1): a 1,107-character fault text (3.3 KB UTF-8) is not a
    dead-letter: the snapshot is stored with the first 1,024 characters, flagged truncated."""
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    text = "安全回路断开：" + "门锁回路触点检测异常，" * 100
    t = now_ms()
    faults = [{"namespace": "gb24476", "code": 5, "text": text}]
    items = [
        (f"{unique}/T1/telemetry", tel(1, t, controller_faults=faults)),
        (f"{unique}/T1/telemetry", tel(2, t + 1)),
        (f"{unique}/T1/event", event(3, t + 2, "end_of_alarm", by="x" * 3000)),
    ]
    async with running_ingest(settings):
        await asyncio.to_thread(publish, mosquitto.url, items)

        async def stored() -> bool:
            return await count(client, "lift_state") + await count(client, "lift_event") >= 3

        await eventually(stored, timeout=20, what="3 points")
    db = Database(settings.sqlite_path)
    assert count_dead_letters(db) == {}
    db.close()
    rows = await client.query(
        'SELECT "seq", "truncated", "controller_faults" FROM "lift_state" ORDER BY time'
    )
    (_, seq1, flag1, faults1), (_, seq2, flag2, _) = rows[0]["values"]
    assert (seq1, flag1, seq2, flag2) == (1, True, 2, None)
    assert json.loads(faults1)[0]["text"] == text[:1024]
    ev = await client.query('SELECT "by", "truncated" FROM "lift_event"')
    assert ev[0]["values"][0][1:] == ["x" * 1024, True]
    await client.aclose()
