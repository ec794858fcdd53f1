"""Outages: InfluxDB down for 30 s, ingest SIGKILLed mid-stream, partial writes (real services)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.spool import Spool
from ingest.writer import INFLUX_REJECTED, InfluxWriter
from liftwatch.influx import InfluxClient
from liftwatch.store.deadletters import DeadLetter
from tests.support.harness import Service, Services, eventually
from tests.support.ingest import count, ingest_settings, now_ms, publish, running_ingest, telemetry

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0


def stream(
    prefix: str, start: int, n: int, base_ts: int, lifts: int = 10
) -> list[tuple[str, bytes]]:
    """Messages start..start+n; message i is lift i % lifts, seq i // lifts, ts base + i."""
    return [
        (f"{prefix}/L{i % lifts}/telemetry", telemetry(i // lifts, base_ts + i))
        for i in range(start, start + n)
    ]


def segments(data_dir: Path) -> list[Path]:
    spool = data_dir / "spool"
    return sorted(spool.glob("*.seg")) if spool.exists() else []


async def _seqs_in_time_order(client: InfluxClient, lift: str) -> list[int]:
    rows = await client.query('SELECT "seq" FROM "lift_state" WHERE "lift_id" = $l', {"l": lift})
    return [r[1] for r in rows[0]["values"]] if rows else []


async def test_influxdb_down_for_30s_loses_nothing(
    services: Services, mosquitto: Service, unique: str, tmp_path: Path
) -> None:
    influxdb = services.influxdb()
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    base = now_ms() - 600_000
    async with running_ingest(settings) as task:
        await asyncio.to_thread(publish, mosquitto.url, stream(unique, 0, 500, base))
        await eventually(lambda: _count_is(client, 500), timeout=20, what="phase A stored")

        await asyncio.to_thread(influxdb.stop)
        stopped = time.monotonic()
        await asyncio.to_thread(publish, mosquitto.url, stream(unique, 500, 1000, base))
        await eventually(lambda: bool(segments(tmp_path)), timeout=15, what="spooling")
        await asyncio.sleep(OUTAGE_S / 2)
        await asyncio.to_thread(publish, mosquitto.url, stream(unique, 1500, 1000, base))
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        assert not task.done()
        await asyncio.to_thread(influxdb.start)
        await asyncio.to_thread(publish, mosquitto.url, stream(unique, 2500, 500, base))

        await eventually(lambda: _count_is(client, 3000), timeout=60, what="all 3000 stored")
        await eventually(lambda: not segments(tmp_path), timeout=20, what="an empty spool")
    # Every lift's points are complete and in device-time order (seq grows with ts).
    for lift in ("L0", "L7"):
        assert await _seqs_in_time_order(client, lift) == list(range(300))
    await client.aclose()


async def _count_is(client: InfluxClient, n: int) -> bool:
    try:
        got = await count(client, "lift_state")
    except Exception:
        return False
    assert got <= n, f"{got} points stored, only {n} sent: duplicates"
    return got == n


def _start_ingest(settings_env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "ingest"],
        env={**os.environ, **settings_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    services: Services, mosquitto: Service, unique: str, tmp_path: Path
) -> None:
    influxdb = services.influxdb()
    env = {
        "LIFTWATCH_MQTT_URL": mosquitto.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": unique,
        "LIFTWATCH_INFLUX_URL": influxdb.url,
        "LIFTWATCH_INFLUX_DATABASE": f"kill_{unique}",
        "LIFTWATCH_DATA_DIR": str(tmp_path),
        "LIFTWATCH_INGEST_CLIENT_ID": f"ingest-{unique}",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
    }
    client = InfluxClient(influxdb.url, env["LIFTWATCH_INFLUX_DATABASE"])
    base = now_ms() - 600_000
    proc = _start_ingest(env)
    try:
        # Phase A proves the worker is subscribed (its persistent session exists from now on).
        async def a_stored() -> bool:
            await asyncio.to_thread(publish, mosquitto.url, stream(unique, 0, 100, base))
            return await _count_is(client, 100)

        await eventually(a_stored, timeout=30, interval=0.5, what="the worker to subscribe")
        # Phase B goes to the spool (InfluxDB down), phase C is in flight when we kill.
        await asyncio.to_thread(influxdb.stop)
        await asyncio.to_thread(publish, mosquitto.url, stream(unique, 100, 2000, base))
        await eventually(lambda: bool(segments(tmp_path)), timeout=15, what="spooling")
        publisher = threading.Thread(
            target=publish, args=(mosquitto.url, stream(unique, 2100, 3000, base))
        )
        publisher.start()
        await asyncio.sleep(0.05)  # let part of phase C reach the worker before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        publisher.join(60)
        await asyncio.to_thread(influxdb.start)
        proc = _start_ingest(env)
        await eventually(lambda: _count_is(client, 5100), timeout=60, what="all 5100 stored")
        await eventually(lambda: not segments(tmp_path), timeout=20, what="an empty spool")
        assert await count(client, "lift_state") == 5100
    finally:
        proc.terminate()
        proc.wait(20)
        await client.aclose()


async def test_partial_write_keeps_good_lines_and_dead_letters_bad_ones(
    influx: InfluxClient, tmp_path: Path
) -> None:
    await influx.write('m f="text" 1000')  # f is a string field from now on
    letters: list[DeadLetter] = []

    async def sink(batch: list[DeadLetter]) -> None:
        letters.extend(batch)

    writer = InfluxWriter(influx, Spool(tmp_path), dead_letter=sink, batch_size=100)
    await writer.start()
    lines = [b"m,t=good g=%di %d" % (i, 2000 + i) for i in range(20)]
    topics = [f"lifts/G{i}/telemetry" for i in range(20)]
    lines[5] = b"m,t=bad f=1i 3000"  # field type conflict
    lines[13] = b"this is not line protocol"
    topics[5], topics[13] = "lifts/B5/telemetry", "lifts/B13/telemetry"
    await writer.submit(lines, topics)
    await writer.close()
    rows = await influx.query('SELECT count("g") FROM "m"')
    assert rows[0]["values"][0][1] == 18
    assert sorted(d.topic for d in letters) == ["lifts/B13/telemetry", "lifts/B5/telemetry"]
    assert {d.reason for d in letters} == {INFLUX_REJECTED}
    assert {d.lift_id for d in letters} == {"B5", "B13"}
    assert letters[0].payload in (lines[5], lines[13])
    assert not segments(tmp_path.parent / tmp_path.name)  # nothing spooled: InfluxDB was up
