"""Retained status (PROTOCOL.md § Value ranges, 1.1, last bullet) against the real Mosquitto and
InfluxDB: the broker's replay of a retained ``status`` on (re)subscription is flagged
``RawMessage.retain`` and not stored again when it equals the lift's last stored status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.worker import LastStatus
from liftwatch.influx import InfluxClient
from liftwatch.mqtt import ConsumerStats
from tests.support.harness import Service, eventually
from tests.support.ingest import ingest_settings, publish, running_ingest
from tests.support.mqtt import Collector, run, settings_for

pytestmark = pytest.mark.integration


def _status(state: str) -> bytes:
    return json.dumps({"v": 1, "state": state}).encode()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_retain_flag_is_parsed(mosquitto: Service, unique: str, protocol: str) -> None:
    """Set on the retained message the broker replays at subscription; clear on a message
    forwarded live (even one published with retain), and on a plain one."""
    await asyncio.to_thread(
        publish, mosquitto.url, [(f"{unique}/R1/status", _status("online"))], retain=True
    )
    settings = settings_for(mosquitto.url, unique, protocol)
    c = Collector(until=3)
    task = asyncio.create_task(run(settings, f"c-{unique}", c, stats=ConsumerStats()))
    await c.connected.wait()
    await eventually(lambda: len(c.messages) == 1, what="the retained status")
    await asyncio.to_thread(
        publish,
        mosquitto.url,
        [(f"{unique}/R2/status", _status("online")), (f"{unique}/R3/status", _status("x"))],
        retain=True,
    )
    await task
    assert [(m.topic, m.retain) for m in c.messages] == [
        (f"{unique}/R1/status", True),
        (f"{unique}/R2/status", False),
        (f"{unique}/R3/status", False),
    ]
    await asyncio.to_thread(  # clear the retained messages
        publish, mosquitto.url, [(f"{unique}/R{i}/status", b"") for i in (1, 2, 3)], retain=True
    )


def test_last_status_only_a_retained_repeat_is_not_news() -> None:
    last = LastStatus(capacity=2)
    assert last.is_news("A", "online", retained=True)  # nothing known yet
    assert not last.is_news("A", "online", retained=True)
    assert last.is_news("A", "online", retained=False)  # live: always news
    assert last.is_news("A", "offline", retained=True)  # differs: news
    assert not last.is_news("A", "offline", retained=True)
    last.remember("B", "online")
    last.remember("C", "online")  # over capacity: A (oldest) forgotten
    assert len(last) == 2 and last.is_news("A", "offline", retained=True)


async def _status_points(client: InfluxClient, lift: str) -> list[str]:
    series = await client.query(
        'SELECT "state" FROM "lift_status" WHERE "lift_id" = $lift', {"lift": lift}
    )
    return [row[1] for row in series[0]["values"]] if series else []


def _skipped() -> float:
    return REGISTRY.get_sample_value("liftwatch_ingest_retained_status_skipped_total") or 0.0


async def test_retained_status_replayed_on_resubscription_is_not_stored_again(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    """Two ingest runs with new sessions (so the broker replays retained statuses to each):
    the second stores R1's unchanged retained ``online`` no second time (its last stored
    status comes from InfluxDB), but stores R2's retained ``offline`` that differs, and a live
    ``online`` that repeats the last one (live messages are news)."""
    base = ingest_settings(mosquitto.url, influxdb.url, unique, tmp_path)
    client = InfluxClient(influxdb.url, base.influx_database)
    await asyncio.to_thread(
        publish,
        mosquitto.url,
        [(f"{unique}/R1/status", _status("online")), (f"{unique}/R2/status", _status("online"))],
        retain=True,
    )
    first = base.model_copy(update={"ingest_client_id": f"ingest-a-{unique}"})
    async with running_ingest(first):

        async def both_stored() -> bool:
            return bool(await _status_points(client, "R1") and await _status_points(client, "R2"))

        await eventually(both_stored, what="the two retained statuses stored")
    await asyncio.to_thread(  # R2 changes while no ingest runs (retained: the last will)
        publish, mosquitto.url, [(f"{unique}/R2/status", _status("offline"))], retain=True
    )
    skipped_before = _skipped()
    second = base.model_copy(update={"ingest_client_id": f"ingest-b-{unique}"})
    async with running_ingest(second):
        await eventually(
            lambda: _skipped() >= skipped_before + 1, what="R1's retained replay skipped"
        )

        async def r2_offline() -> bool:
            return await _status_points(client, "R2") == ["online", "offline"]

        await eventually(r2_offline, what="R2's changed retained status stored")
        await asyncio.to_thread(
            publish, mosquitto.url, [(f"{unique}/R1/status", _status("online"))]
        )

        async def r1_live() -> bool:
            return len(await _status_points(client, "R1")) == 2

        await eventually(r1_live, what="R1's live status stored")
    assert await _status_points(client, "R1") == [
        "online",
        "online",
    ]  # the live one, not the replay
    assert _skipped() == skipped_before + 1
    await asyncio.to_thread(
        publish, mosquitto.url, [(f"{unique}/R{i}/status", b"") for i in (1, 2)], retain=True
    )
    await client.aclose()
