"""The harness itself works against the real services."""

from __future__ import annotations

import json

import aiomqtt
import pytest

from liftwatch.influx import InfluxClient
from liftwatch.settings import MqttTarget
from simulator.receiver import RecordingReceiver
from tests.support.harness import Service, Services

pytestmark = pytest.mark.integration


async def test_mosquitto_delivers_a_published_message(mosquitto: Service, unique: str) -> None:
    target = MqttTarget.parse(mosquitto.url)
    topic = f"t{unique}/L1/telemetry"
    async with aiomqtt.Client(target.host, target.port, identifier=f"sub-{unique}") as sub:
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(target.host, target.port) as pub:
            await pub.publish(topic, b'{"hello":1}', qos=1)
        async for message in sub.messages:
            assert str(message.topic) == topic
            assert message.payload == b'{"hello":1}'
            break


async def test_influxdb_write_then_query_with_bound_parameters(influx: InfluxClient) -> None:
    await influx.write(
        b'lift_state,lift_id=L1 floor="7",speed=0.5 1795000000000\n'
        b'lift_state,lift_id=L2 floor="9",speed=1.5 1795000000000\n'
    )
    series = await influx.query(
        "SELECT floor, speed FROM lift_state WHERE lift_id = $lift", {"lift": "L1"}
    )
    assert series[0]["values"] == [[1795000000000, "7", 0.5]]
    # A bound parameter is a value, never InfluxQL: this matches nothing.
    injected = await influx.query(
        "SELECT floor FROM lift_state WHERE lift_id = $lift", {"lift": "L1' OR lift_id='L2"}
    )
    assert injected == []


async def test_private_services_restart(services: Services) -> None:
    broker = services.mosquitto()
    db = services.influxdb()
    client = InfluxClient(db.url, "restart")
    try:
        await client.create_database()
        await client.write("m v=1i 1000")
        db.stop()
        assert not await client.ping()
        db.start()
        assert await client.ping()
        series = await client.query("SELECT v FROM m")
        assert series[0]["values"] == [[1000, 1]]  # data survived the restart
        broker.restart()
        assert broker.running
    finally:
        await client.aclose()


def test_receiver_records_and_answers(receiver: RecordingReceiver) -> None:
    import httpx

    receiver.responder = lambda req: (503, {"retry-after": "1"}, b"busy")
    answer = httpx.post(receiver.url, content=json.dumps({"a": 1}), headers={"x-k": "v"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    (got,) = receiver.wait_for(1, timeout=2)
    assert got.body == b'{"a": 1}'
    assert got.headers["x-k"] == "v"
