"""The shared MQTT consumer against a real Mosquitto: ordering, ack-after-work, persistent
sessions, redelivery after a failed batch, backpressure, shared subscriptions, reconnects."""

from __future__ import annotations

import asyncio

import pytest

from liftwatch.mqtt import (
    ConsumerStats,
    RawMessage,
    connect_packet,
    puback_bytes,
    subscribe_packet,
)
from liftwatch.settings import Settings
from tests.support.harness import Service, eventually
from tests.support.ingest import publish
from tests.support.mqtt import Collector, run, settings_for

pytestmark = pytest.mark.integration


async def subscribe_then_stop(settings: Settings, client_id: str) -> None:
    """Create the persistent session (subscription) without consuming anything."""
    c = Collector(until=10**9)
    c.connected_then_stop = True  # type: ignore[attr-defined]
    task = asyncio.create_task(run(settings, client_id, c))
    await asyncio.wait_for(c.connected.wait(), 10)
    c.stop.set()
    await task


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_receives_in_order_and_acks_after_the_batch(
    mosquitto: Service, unique: str, protocol: str
) -> None:
    settings = settings_for(mosquitto.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    items = [(f"{unique}/lift{i % 7}/telemetry", f'{{"n":{i}}}'.encode()) for i in range(3000)]
    items.append((f"{unique}/liftx/other", b"not subscribed"))
    await asyncio.to_thread(publish, mosquitto.url, items)

    first = Collector(until=3000)
    await run(settings, f"c-{unique}", first)
    assert [m.payload for m in first.messages] == [p for _, p in items[:3000]]
    assert all(m.qos == 1 and m.mid > 0 for m in first.messages)
    assert first.messages[0].topic == f"{unique}/lift0/telemetry"
    assert first.batches < 3000  # handed over in batches, not one call per message

    # Everything was acknowledged: the next session gets only the new message.
    await asyncio.to_thread(publish, mosquitto.url, [(f"{unique}/a/event", b"after")])
    second = Collector(until=1)
    await run(settings, f"c-{unique}", second)
    assert [m.payload for m in second.messages] == [b"after"]


async def test_failed_batch_is_not_acked_and_comes_back(mosquitto: Service, unique: str) -> None:
    settings = settings_for(mosquitto.url, unique)
    await subscribe_then_stop(settings, f"c-{unique}")
    items = [(f"{unique}/l1/event", f"m{i}".encode()) for i in range(50)]
    await asyncio.to_thread(publish, mosquitto.url, items)

    failing = Collector(until=10**9, fail_on=lambda batch: True)
    with pytest.raises(RuntimeError, match="on purpose"):
        await run(settings, f"c-{unique}", failing)
    assert failing.messages == []

    again = Collector(until=50)
    await run(settings, f"c-{unique}", again)
    assert [m.payload for m in again.messages] == [p for _, p in items]


async def test_queued_while_offline_and_max_batch(mosquitto: Service, unique: str) -> None:
    settings = settings_for(mosquitto.url, unique, "3.1.1")
    await subscribe_then_stop(settings, f"c-{unique}")
    await asyncio.to_thread(
        publish, mosquitto.url, [(f"{unique}/l/telemetry", b"x") for _ in range(500)]
    )
    sizes: list[int] = []
    c = Collector(until=500)
    handle = c.handle

    async def record(batch: list[RawMessage]) -> None:
        sizes.append(len(batch))
        await handle(batch)

    c.handle = record  # type: ignore[method-assign]
    await run(settings, f"c-{unique}", c, max_batch=64)
    assert len(c.messages) == 500 and max(sizes) <= 64


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_backpressure_bounds_unacked(mosquitto: Service, unique: str, protocol: str) -> None:
    settings = settings_for(mosquitto.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    await asyncio.to_thread(
        publish, mosquitto.url, [(f"{unique}/l/telemetry", b"y" * 200) for _ in range(4000)]
    )
    stats = ConsumerStats()
    peak = 0
    gate = asyncio.Event()
    c = Collector(until=4000)
    handle = c.handle

    async def slow(batch: list[RawMessage]) -> None:
        nonlocal peak
        await gate.wait()  # the first batch blocks until the reader has had time to overrun
        peak = max(peak, stats.held)
        await handle(batch)

    c.handle = slow  # type: ignore[method-assign]
    task = asyncio.create_task(run(settings, f"c-{unique}", c, max_unacked=100, stats=stats))
    await eventually(lambda: stats.held >= 100, what="the window to fill")
    held_when_full = stats.held
    # The socket is paused: however long we wait, nothing more is read.
    await asyncio.sleep(0.3)
    assert stats.held == held_when_full
    gate.set()
    await task
    assert len(c.messages) == 4000
    # One socket read (asyncio reads up to 256 KiB) may land past the limit: Mosquitto
    # resends a session's queue on reconnect without heeding MQTT 5's Receive Maximum.
    assert peak <= 100 + 256 * 1024 // 200


async def test_shared_subscription_splits_the_load(mosquitto: Service, unique: str) -> None:
    settings = settings_for(mosquitto.url, unique, mqtt_share_group=f"g{unique}")
    await subscribe_then_stop(settings, f"a-{unique}")
    await subscribe_then_stop(settings, f"b-{unique}")
    items = [(f"{unique}/l{i}/telemetry", str(i).encode()) for i in range(400)]
    a, b = Collector(until=10**9), Collector(until=10**9)
    ta = asyncio.create_task(run(settings, f"a-{unique}", a))
    tb = asyncio.create_task(run(settings, f"b-{unique}", b))
    await a.connected.wait()
    await b.connected.wait()
    await asyncio.to_thread(publish, mosquitto.url, items)
    await eventually(lambda: len(a.messages) + len(b.messages) >= 400, what="all messages")
    a.stop.set()
    b.stop.set()
    await asyncio.gather(ta, tb)
    got = sorted(int(m.payload) for m in a.messages + b.messages)
    assert got == list(range(400))
    assert a.messages and b.messages


async def test_reconnects_after_broker_restart(services: object, unique: str) -> None:
    broker = services.mosquitto()  # type: ignore[attr-defined]
    settings = settings_for(broker.url, unique)
    c = Collector(until=20)
    stats = ConsumerStats()
    task = asyncio.create_task(run(settings, f"c-{unique}", c, stats=stats))
    await c.connected.wait()
    await asyncio.to_thread(
        publish, broker.url, [(f"{unique}/l/event", b"%d" % i) for i in range(10)]
    )
    await eventually(lambda: len(c.messages) == 10, what="first half")
    await asyncio.to_thread(broker.restart)
    await eventually(lambda: stats.connects == 2, what="the reconnect")
    await asyncio.to_thread(
        publish, broker.url, [(f"{unique}/l/event", b"%d" % i) for i in range(10, 20)]
    )
    await task
    assert [int(m.payload) for m in c.messages] == list(range(20))
    assert stats.connects == 2


async def test_qos0_messages_are_delivered_without_ack(mosquitto: Service, unique: str) -> None:
    settings = settings_for(mosquitto.url, unique)
    c = Collector(until=5)
    task = asyncio.create_task(run(settings, f"c-{unique}", c))
    await c.connected.wait()
    await asyncio.to_thread(publish, mosquitto.url, [(f"{unique}/l/telemetry", b"q0")] * 5, qos=0)
    await task
    assert [m.qos for m in c.messages] == [0] * 5


async def test_unreachable_broker_retries_until_stopped(unique: str) -> None:
    from liftwatch.localservices import free_port

    settings = settings_for(f"mqtt://127.0.0.1:{free_port()}", unique)
    c = Collector(until=1)
    task = asyncio.create_task(run(settings, f"c-{unique}", c))
    await asyncio.sleep(0.5)  # let it fail a few times
    assert not task.done()
    c.stop.set()
    await asyncio.wait_for(task, 5)


def test_packets_are_well_formed() -> None:
    pkt = connect_packet(
        "cid", protocol="3.1.1", keepalive_s=30, username="u", password="p", receive_maximum=10
    )
    assert pkt[0] == 0x10 and pkt[2:8] == b"\x00\x04MQTT" and pkt[8] == 4
    assert pkt[9] == 0xC0  # user + password, clean session off
    v5 = connect_packet(
        "cid", protocol="5", keepalive_s=30, username=None, password=None, receive_maximum=70000
    )
    assert v5[8] == 5 and v5[9] == 0x00
    assert b"\x21\xff\xff" in v5  # receive maximum capped at 65535
    sub = subscribe_packet(["a/+/b"], protocol="5")
    assert sub[0] == 0x82 and sub.endswith(b"a/+/b\x11")
    acks = puback_bytes(
        [
            RawMessage("t", b"", 0, 1, 258),
            RawMessage("t", b"", 0, 0, 0),
            RawMessage("t", b"", 0, 1, 1),
        ]
    )
    assert acks == b"\x40\x02\x01\x02\x40\x02\x00\x01"
