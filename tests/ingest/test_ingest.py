"""The ingest worker end to end against the real Mosquitto and InfluxDB (issue 3 acceptance)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from liftwatch.influx import InfluxClient
from liftwatch.protocol import Reason
from liftwatch.store.db import Database
from liftwatch.store.deadletters import count_dead_letters, list_dead_letters
from tests.support.harness import Service, eventually
from tests.support.ingest import (
    count,
    event,
    ingest_settings,
    now_ms,
    publish,
    running_ingest,
    telemetry,
)

pytestmark = pytest.mark.integration


async def test_20000_messages_from_50_lifts_stored_exactly_once(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    base = now_ms() - 60_000
    items: list[tuple[str, bytes]] = []
    for i in range(20_000):
        lift, seq = f"L{i % 50:02d}", i // 50
        ts = base + seq
        if seq % 10 == 0:
            items.append((f"{unique}/{lift}/event", event(seq, ts, "alarm_button", pressed=True)))
        else:
            items.append((f"{unique}/{lift}/telemetry", telemetry(seq, ts)))
    duplicates = items[:300]  # QoS 1 redeliveries: same lift, seq and ts
    async with running_ingest(settings):
        await asyncio.to_thread(publish, mosquitto.url, items + duplicates)

        async def all_stored() -> bool:
            return await count(client, "lift_state") + await count(client, "lift_event") >= 20_000

        await eventually(all_stored, timeout=60, what="20,000 points")
    assert await count(client, "lift_state") == 18_000
    assert await count(client, "lift_event") == 2_000
    per_lift = await client.query('SELECT count("seq") FROM "lift_state" GROUP BY "lift_id"')
    assert len(per_lift) == 50 and {s["values"][0][1] for s in per_lift} == {360}
    await client.aclose()


async def test_bad_messages_become_dead_letters_and_ingest_continues(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path, store_url: str
) -> None:
    """On either store (LIFTWATCH_DATABASE_URL: a SQLite file or PostgreSQL)."""
    database_url = store_url if store_url.startswith("postgresql") else None
    settings = ingest_settings(
        mosquitto.url, influxdb.url, unique, tmp_path, database_url=database_url
    )
    client = InfluxClient(influxdb.url, settings.influx_database)
    t = now_ms()
    good = [(f"{unique}/G{i}/telemetry", telemetry(i, t + i)) for i in range(40)]
    bad = {
        Reason.BAD_TOPIC: (f"{unique}/{'x' * 65}/telemetry", telemetry(1, t)),
        Reason.TOO_LARGE: (f"{unique}/B/telemetry", telemetry(1, t, pad="x" * 17_000)),
        Reason.BAD_JSON: (f"{unique}/B/telemetry", b'{"v":1,'),
        Reason.NOT_OBJECT: (f"{unique}/B/event", b"[1,2]"),
        Reason.UNSUPPORTED_VERSION: (f"{unique}/B/status", b'{"v":2,"state":"online"}'),
        Reason.MISSING_FIELD: (f"{unique}/B/event", b'{"v":1,"ts":1,"seq":1}'),
        Reason.BAD_TYPE: (f"{unique}/B/telemetry", telemetry(1, t, door_zone="yes")),
        Reason.BAD_VALUE: (f"{unique}/B/telemetry", telemetry(1, t, direction="sideways")),
    }
    # Topics outside the scheme but under the prefix are seen too (ingest subscribes to all of
    # it), so they are dead-lettered instead of silently ignored by the broker.
    off_scheme = [
        (f"{unique}/B/telemetry/extra", telemetry(1, t)),
        (f"{unique}/B/commands", telemetry(1, t)),
    ]
    stream = good[:20] + list(bad.values()) + off_scheme + good[20:]
    async with running_ingest(settings) as task:
        await asyncio.to_thread(publish, mosquitto.url, stream)
        await eventually(
            lambda: _has_count(client, 40), timeout=20, what="the 40 valid messages stored"
        )
        db = Database(settings.database)
        await eventually(lambda: sum(count_dead_letters(db).values()) >= 10, what="dead-letters")
        assert not task.done()  # the worker never stops
    counts = count_dead_letters(db)
    assert counts == {reason.value: 3 if reason is Reason.BAD_TOPIC else 1 for reason in bad}
    topics = {d.topic for d in list_dead_letters(db) if d.reason == Reason.BAD_TOPIC.value}
    assert {topic for topic, _ in off_scheme} <= topics
    letters = {d.reason: d for d in list_dead_letters(db)}
    big = letters[Reason.TOO_LARGE.value]
    assert len(big.payload) == 1024 and big.topic == f"{unique}/B/telemetry"
    assert letters[Reason.BAD_JSON.value].payload == b'{"v":1,'
    assert letters[Reason.BAD_TYPE.value].lift_id == "B"
    assert await count(client, "lift_state") == 40
    await client.aclose()
    db.close()


async def test_messages_in_the_same_millisecond_are_all_kept(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    """PROTOCOL.md: only the same seq *and* ts make a duplicate. A burst of one lift's
    messages sharing a ts (a coarse device clock) must all be stored; a redelivery must not."""
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    t = now_ms()
    items = [(f"{unique}/S1/telemetry", telemetry(seq, t)) for seq in range(200)]
    items += [(f"{unique}/S1/event", event(seq, t, "alarm_button", pressed=True))
              for seq in range(200, 250)]  # fmt: skip
    async with running_ingest(settings):
        await asyncio.to_thread(publish, mosquitto.url, items + items[:20])

        async def stored() -> bool:
            return await count(client, "lift_state") + await count(client, "lift_event") >= 250

        await eventually(stored, timeout=20, what="250 points")
    assert await count(client, "lift_state") == 200
    assert await count(client, "lift_event") == 50
    await client.aclose()


async def _has_count(client: InfluxClient, n: int) -> bool:
    return await count(client, "lift_state") >= n


INJECTIONS = [
    'x" ,lift_id=evil seq=1i 1\nlift_state,lift_id=evil seq=2i 2',
    "a,b c=d\\e\\",
    'quote" and \\" and \\\\',
    "line1\nline2\r\n\ttab",
    "电梯 ✓ \x7f",
]


async def test_injection_payloads_are_stored_verbatim(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    t = now_ms()
    items: list[tuple[str, bytes]] = []
    for i, text in enumerate(INJECTIONS):
        s = i * 10
        faults = [{"namespace": text, "code": text, "text": text}]
        items += [
            (
                f"{unique}/L/telemetry",
                telemetry(s, t + s, floor=text[:16], controller_faults=faults),
            ),
            (
                f"{unique}/L/event",
                event(s + 1, t + s + 1, "fault", namespace=text, code=text, active=True, text=text),
            ),
            (f"{unique}/L/event", event(s + 2, t + s + 2, "selftest", result="fail", detail=text)),
            (f"{unique}/L/event", event(s + 3, t + s + 3, "end_of_alarm", by=text)),
        ]
    async with running_ingest(settings):
        await asyncio.to_thread(publish, mosquitto.url, items)

        async def stored() -> bool:
            return await count(client, "lift_event") >= 3 * len(INJECTIONS)

        await eventually(stored, timeout=20, what="the hostile events")
        await eventually(lambda: _has_count(client, len(INJECTIONS)), what="telemetry")
    # Nothing was injected: one lift, exactly the points we sent.
    tags = await client.query('SHOW TAG VALUES WITH KEY = "lift_id"')
    assert {v[1] for s in tags for v in s["values"]} == {"L"}
    assert await count(client, "lift_state") == len(INJECTIONS)
    rows = await client.query('SELECT "floor", "controller_faults" FROM "lift_state"')
    got = rows[0]["values"]
    for (_, floor, faults), text in zip(got, INJECTIONS, strict=True):
        assert floor == text[:16]
        assert json.loads(faults) == [{"namespace": text, "code": text, "text": text}]
    events = await client.query(
        'SELECT "namespace", "code", "text", "detail", "by" FROM "lift_event"'
    )
    values = events[0]["values"]
    for i, text in enumerate(INJECTIONS):
        fault, selftest, end = values[3 * i : 3 * i + 3]
        assert fault[1:4] == [text, text, text]
        assert selftest[4] == text
        assert end[5] == text
    await client.aclose()


async def test_status_and_schema_types(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    settings = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, settings.influx_database)
    t = now_ms()
    items = [
        (f"{unique}/S/status", b'{"v":1,"state":"offline"}'),
        (f"{unique}/S/telemetry", telemetry(1, t, speed=2, battery=80, passenger_present=None)),
        (f"{unique}/S/telemetry", telemetry(2, t - 30 * 86_400_000)),  # ts corrected
        (f"{unique}/S/event", event(3, t, "fault", namespace="gb24476", code=3, active=True)),
    ]
    async with running_ingest(settings):
        await asyncio.to_thread(publish, mosquitto.url, items)

        async def all_there() -> bool:
            status = await client.query('SELECT count("state") FROM "lift_status"')
            return (
                bool(status)
                and await count(client, "lift_state") == 2
                and (await count(client, "lift_event") == 1)
            )

        await eventually(all_there, what="status, telemetry and event")
    keys = await client.query("SHOW FIELD KEYS")
    types = {s["name"]: dict(map(tuple, s["values"])) for s in keys}
    assert types["lift_status"] == {"state": "string", "online": "boolean"}
    state = types["lift_state"]
    assert state["speed"] == "float" and state["load"] == "float"
    assert state["floor_index"] == "integer" and state["battery"] == "integer"
    assert state["seq"] == "integer" and state["floor"] == "string"
    assert state["ts_corrected"] == "boolean" and "passenger_present" not in state
    assert types["lift_event"]["code"] == "string"
    corrected = await client.query('SELECT "seq" FROM "lift_state" WHERE "ts_corrected" = true')
    assert [row[1] for row in corrected[0]["values"]] == [2]
    await client.aclose()
