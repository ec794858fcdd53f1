"""The shared MQTT consumer against real brokers: ordering, ack-after-work, persistent
sessions, redelivery after a failed batch, backpressure, shared subscriptions, reconnects.

Every at-least-once test runs against two brokers: the private Mosquitto 2.x and a private
nats-server 2.9 with MQTT enabled (``nats_mqtt``; sessions in JetStream). A combination the
broker cannot do is not generated (``NATS_LACKS`` says why: no skipped test stands for
coverage), and the tests at the end pin what NATS 2.9 does instead, as docs/deploy.md § Brokers
reports it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from liftwatch.localservices import Mosquitto, NatsServer
from liftwatch.mqtt import (
    ConsumerStats,
    RawMessage,
    connect_packet,
    puback_bytes,
    subscribe_packet,
)
from liftwatch.settings import Settings
from tests.support.harness import Service, Services, eventually
from tests.support.ingest import publish
from tests.support.mqtt import Collector, run, settings_for

pytestmark = pytest.mark.integration

BROKERS = ("mosquitto", "nats_mqtt")  # fixture names (tests/conftest.py)

# What nats-server 2.9's MQTT does not have, measured by the tests at the end of this file.
NATS_LACKS = {
    "5": "nats-server 2.9 speaks MQTT 3.1.1 only: a protocol level 5 CONNECT gets CONNACK 0x01"
    " (unacceptable protocol version), see test_nats_refuses_mqtt5",
    "share": "nats-server 2.9 has no shared subscriptions: $share/<group>/<filter> is granted as"
    " a literal topic filter and receives nothing, see test_nats_ignores_share_prefix",
    "dot": "nats-server 2.9 refuses a topic with '.' (allowed in a lift id) and closes the"
    " publisher's connection, see test_nats_refuses_a_dot_in_a_topic",
}


def brokers(*protocols: str, needs: str = "") -> pytest.MarkDecorator:
    """Parametrise ``broker`` (the fixture's Service) and ``protocol`` over both brokers; the
    combinations NATS lacks (the protocol, or the feature the test ``needs``: ``NATS_LACKS``)
    are left out."""
    params = []
    for name in BROKERS:
        for protocol in protocols:
            if name == "nats_mqtt" and (NATS_LACKS.get(protocol) or NATS_LACKS.get(needs)):
                continue
            params.append(pytest.param(name, protocol, id=f"{name}-{protocol}"))
    return pytest.mark.parametrize(("broker", "protocol"), params, indirect=["broker"])


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Service:
    service: Service = request.getfixturevalue(request.param)
    return service


async def subscribe_then_stop(settings: Settings, client_id: str) -> None:
    """Create the persistent session (subscription) without consuming anything."""
    c = Collector(until=10**9)
    c.connected_then_stop = True  # type: ignore[attr-defined]
    task = asyncio.create_task(run(settings, client_id, c))
    await asyncio.wait_for(c.connected.wait(), 10)
    c.stop.set()
    await task


@brokers("3.1.1", "5")
async def test_receives_in_order_and_acks_after_the_batch(
    broker: Service, unique: str, protocol: str
) -> None:
    settings = settings_for(broker.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    items = [(f"{unique}/lift{i % 7}/telemetry", f'{{"n":{i}}}'.encode()) for i in range(3000)]
    items.append((f"{unique}/liftx/other", b"not subscribed"))
    await asyncio.to_thread(publish, broker.url, items)

    first = Collector(until=3000)
    await run(settings, f"c-{unique}", first)
    assert [m.payload for m in first.messages] == [p for _, p in items[:3000]]
    assert all(m.qos == 1 and m.mid > 0 for m in first.messages)
    assert first.messages[0].topic == f"{unique}/lift0/telemetry"
    assert first.batches < 3000  # handed over in batches, not one call per message

    # Everything was acknowledged: the next session gets only the new message.
    await asyncio.to_thread(publish, broker.url, [(f"{unique}/a/event", b"after")])
    second = Collector(until=1)
    await run(settings, f"c-{unique}", second)
    assert [m.payload for m in second.messages] == [b"after"]


@brokers("3.1.1", "5")
async def test_failed_batch_is_not_acked_and_comes_back(
    broker: Service, unique: str, protocol: str
) -> None:
    """The connection drops before any PUBACK of the batch (as when the process dies): the
    broker sends every message again to the next session of the same client id. Mosquitto
    resends them at once on reconnect; NATS when its ack_wait runs out (the fixture's 2 s)."""
    settings = settings_for(broker.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    items = [(f"{unique}/l1/event", f"m{i}".encode()) for i in range(50)]
    await asyncio.to_thread(publish, broker.url, items)

    failing = Collector(until=10**9, fail_on=lambda batch: True)
    with pytest.raises(RuntimeError, match="on purpose"):
        await run(settings, f"c-{unique}", failing)
    assert failing.messages == []

    again = Collector(until=50)
    await run(settings, f"c-{unique}", again)
    assert [m.payload for m in again.messages] == [p for _, p in items]


@brokers("3.1.1")
async def test_queued_while_offline_and_max_batch(
    broker: Service, unique: str, protocol: str
) -> None:
    settings = settings_for(broker.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    await asyncio.to_thread(
        publish, broker.url, [(f"{unique}/l/telemetry", b"x") for _ in range(500)]
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


@brokers("3.1.1", "5")
async def test_backpressure_bounds_unacked(broker: Service, unique: str, protocol: str) -> None:
    settings = settings_for(broker.url, unique, protocol)
    await subscribe_then_stop(settings, f"c-{unique}")
    await asyncio.to_thread(
        publish, broker.url, [(f"{unique}/l/telemetry", b"y" * 200) for _ in range(4000)]
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
    # resends a session's queue on reconnect without heeding MQTT 5's Receive Maximum, and
    # with 3.1.1 (NATS: max_ack_pending 1024 per subscription) only the paused socket bounds it.
    assert peak <= 100 + 256 * 1024 // 200


@brokers("3.1.1", "5", needs="share")
async def test_shared_subscription_splits_the_load(
    broker: Service, unique: str, protocol: str
) -> None:
    settings = settings_for(broker.url, unique, protocol, mqtt_share_group=f"g{unique}")
    await subscribe_then_stop(settings, f"a-{unique}")
    await subscribe_then_stop(settings, f"b-{unique}")
    items = [(f"{unique}/l{i}/telemetry", str(i).encode()) for i in range(400)]
    a, b = Collector(until=10**9), Collector(until=10**9)
    ta = asyncio.create_task(run(settings, f"a-{unique}", a))
    tb = asyncio.create_task(run(settings, f"b-{unique}", b))
    await a.connected.wait()
    await b.connected.wait()
    await asyncio.to_thread(publish, broker.url, items)
    await eventually(lambda: len(a.messages) + len(b.messages) >= 400, what="all messages")
    a.stop.set()
    b.stop.set()
    await asyncio.gather(ta, tb)
    got = sorted(int(m.payload) for m in a.messages + b.messages)
    assert got == list(range(400))
    assert a.messages and b.messages


@pytest.mark.parametrize("kind", ["mosquitto", "nats"])
async def test_reconnects_after_broker_restart(
    services: Services, tmp_path: Path, unique: str, kind: str
) -> None:
    """A private broker restarted under the consumer: it reconnects, its persistent session
    (NATS: in JetStream, on disk) is still there, nothing is lost or repeated."""
    broker: Mosquitto | NatsServer
    if kind == "nats":
        broker = NatsServer(tmp_path / "nats", ack_wait="2s")
        broker.start()
        protocol = "3.1.1"
    else:
        broker = services.mosquitto()
        protocol = "5"
    try:
        await _reconnects_after_restart(broker, settings_for(broker.url, unique, protocol), unique)
    finally:
        broker.stop()


async def _reconnects_after_restart(
    broker: Mosquitto | NatsServer, settings: Settings, unique: str
) -> None:
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


@brokers("3.1.1")
async def test_qos0_messages_are_delivered_without_ack(
    broker: Service, unique: str, protocol: str
) -> None:
    settings = settings_for(broker.url, unique, protocol)
    c = Collector(until=5)
    task = asyncio.create_task(run(settings, f"c-{unique}", c))
    await c.connected.wait()
    await asyncio.to_thread(publish, broker.url, [(f"{unique}/l/telemetry", b"q0")] * 5, qos=0)
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


# --- what differs on nats-server 2.9 (docs/deploy.md § Brokers) ----------------------------


async def test_nats_refuses_mqtt5(
    nats_mqtt: Service, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 (liftwatch's default protocol) is refused at CONNECT: liftwatch keeps retrying
    and never connects, so a NATS deployment must set LIFTWATCH_MQTT_PROTOCOL=3.1.1."""
    settings = settings_for(nats_mqtt.url, unique, "5")
    c = Collector(until=1)
    stats = ConsumerStats()
    with caplog.at_level("WARNING", logger="liftwatch.mqtt"):
        task = asyncio.create_task(run(settings, f"c-{unique}", c, stats=stats))

        def refusals() -> int:
            return sum("broker refused the connection" in r.getMessage() for r in caplog.records)

        await eventually(lambda: refusals() >= 2, what="two refused CONNECTs")
        c.stop.set()
        await task
    assert stats.connects == 0
    # The 3.1.1 return code 1 (unacceptable protocol version), read as an MQTT 5 reason code.
    assert "0x01" in caplog.text


async def test_nats_ignores_share_prefix(nats_mqtt: Service, unique: str) -> None:
    """$share/<group>/... is granted (SUBACK without failure) but is a literal topic to NATS
    2.9: the group's members receive nothing while a plain subscriber gets everything."""
    shared = settings_for(nats_mqtt.url, unique, "3.1.1", mqtt_share_group=f"g{unique}")
    plain = settings_for(nats_mqtt.url, unique, "3.1.1")
    a, b, p = Collector(until=10**9), Collector(until=10**9), Collector(until=100)
    ta = asyncio.create_task(run(shared, f"a-{unique}", a))
    tb = asyncio.create_task(run(shared, f"b-{unique}", b))
    tp = asyncio.create_task(run(plain, f"p-{unique}", p))
    await asyncio.gather(a.connected.wait(), b.connected.wait(), p.connected.wait())
    items = [(f"{unique}/l{i}/telemetry", str(i).encode()) for i in range(100)]
    await asyncio.to_thread(publish, nats_mqtt.url, items)
    await tp  # the plain subscriber has all 100 (NATS fans out to every match at once)
    a.stop.set()
    b.stop.set()
    await asyncio.gather(ta, tb)
    assert len(p.messages) == 100
    assert a.messages == [] and b.messages == []


async def test_nats_redelivers_after_ack_wait_behind_newer_messages(
    tmp_path: Path, unique: str
) -> None:
    """Unacknowledged messages come back to the resumed session only when NATS's ack_wait runs
    out, not on reconnect as with Mosquitto; messages published meanwhile overtake them. Still
    at-least-once: every message arrives (alerts orders by seq, PROTOCOL.md 1.1 § Order)."""
    nats = NatsServer(tmp_path / "nats", ack_wait="3s")
    nats.start()
    try:
        settings = settings_for(nats.url, unique, "3.1.1")
        await subscribe_then_stop(settings, f"c-{unique}")
        old = [(f"{unique}/l1/event", f"m{i}".encode()) for i in range(20)]
        await asyncio.to_thread(publish, nats.url, old)
        failing = Collector(until=10**9, fail_on=lambda batch: True)
        with pytest.raises(RuntimeError, match="on purpose"):
            await run(settings, f"c-{unique}", failing)
        dropped = time.monotonic()

        again = Collector(until=30)
        task = asyncio.create_task(run(settings, f"c-{unique}", again))
        await again.connected.wait()
        new = [(f"{unique}/l1/event", f"n{i}".encode()) for i in range(10)]
        await asyncio.to_thread(publish, nats.url, new)
        await eventually(lambda: len(again.messages) >= 10, what="the new messages")
        first_ten = [m.payload for m in again.messages[:10]]
        await task
        waited = time.monotonic() - dropped
    finally:
        nats.stop()
    assert first_ten == [p for _, p in new]  # the newer ones first
    assert [m.payload for m in again.messages[10:]] == [p for _, p in old]
    assert 2.5 <= waited < 10, f"redelivered {waited:.1f} s after the drop (ack_wait 3 s)"


@brokers("3.1.1")
async def test_retained_status_is_flagged_as_replayed(
    broker: Service, unique: str, protocol: str
) -> None:
    """A retained status reaches a new subscription flagged retain=True (QoS 1); a message
    forwarded live to an existing subscription has the flag cleared (MQTT 3.1.1 § 3.3.1.3),
    which is how alerts tells an old status from news (PROTOCOL.md 1.1)."""
    settings = settings_for(broker.url, unique, protocol)
    topic = f"{unique}/l1/status"
    await asyncio.to_thread(publish, broker.url, [(topic, b'{"state":"online"}')], retain=True)
    first = Collector(until=1)
    await run(settings, f"c-{unique}", first, kinds=("status",))
    assert [(m.topic, m.retain, m.qos) for m in first.messages] == [(topic, True, 1)]

    resumed = Collector(until=10**9)
    task = asyncio.create_task(run(settings, f"c-{unique}", resumed, kinds=("status",)))
    await resumed.connected.wait()
    live = f"{unique}/l2/status"
    await asyncio.to_thread(publish, broker.url, [(live, b"live")], retain=True)
    await eventually(lambda: any(m.topic == live for m in resumed.messages), what="the live one")
    resumed.stop.set()
    await task
    assert [m.retain for m in resumed.messages if m.topic == live] == [False]
    assert all(m.retain for m in resumed.messages if m.topic == topic)  # replayed, if at all
    await asyncio.to_thread(publish, broker.url, [(topic, b""), (live, b"")], retain=True)


@brokers("3.1.1")
async def test_last_will_reaches_the_consumer(broker: Service, unique: str, protocol: str) -> None:
    """A device's Last Will (QoS 1, retained, PROTOCOL.md status offline) is published by the
    broker when the device's connection ends without DISCONNECT."""
    settings = settings_for(broker.url, unique, protocol)
    c = Collector(until=1)
    task = asyncio.create_task(run(settings, f"c-{unique}", c, kinds=("status",)))
    await c.connected.wait()
    will_topic = f"{unique}/dev1/status"
    await asyncio.to_thread(_connect_with_will_then_vanish, broker.url, will_topic, b"offline")
    await task
    assert [(m.topic, m.payload, m.qos) for m in c.messages] == [(will_topic, b"offline", 1)]
    await asyncio.to_thread(publish, broker.url, [(will_topic, b"")], retain=True)


def _connect_with_will_then_vanish(url: str, topic: str, message: bytes) -> None:
    """CONNECT (3.1.1, clean session) with a QoS 1 retained will, then close the socket
    without DISCONNECT, as a device that loses power."""
    import socket

    from liftwatch.mqtt import encode_str, packet

    host, port = url.removeprefix("mqtt://").split(":")
    flags = 0x02 | 0x04 | (1 << 3) | 0x20  # clean session, will, will QoS 1, will retain
    body = (
        encode_str("MQTT")
        + bytes((4, flags))
        + (30).to_bytes(2, "big")
        + encode_str(f"dev-{topic.replace('/', '-')}")
        + encode_str(topic)
        + len(message).to_bytes(2, "big")
        + message
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(packet(0x10, body))
        connack = sock.recv(4)
        assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack


async def test_nats_refuses_a_dot_in_a_topic(nats_mqtt: Service, unique: str) -> None:
    """PROTOCOL.md allows ``.`` in a lift id; nats-server 2.9 refuses a topic with a ``.`` (or
    a space) and closes the publisher's connection, so such a lift cannot report through it.
    Mosquitto delivers it (test_a_dot_in_a_lift_id); a plain lift id on NATS still arrives."""
    settings = settings_for(nats_mqtt.url, unique, "3.1.1")
    c = Collector(until=1)
    task = asyncio.create_task(run(settings, f"c-{unique}", c))
    await c.connected.wait()
    with pytest.raises(RuntimeError, match="broker closed after 0 of 1 PUBACKs"):
        await asyncio.to_thread(publish, nats_mqtt.url, [(f"{unique}/lift.7/event", b"dot")])
    await asyncio.to_thread(publish, nats_mqtt.url, [(f"{unique}/lift-7/event", b"plain")])
    await task
    assert [(m.topic, m.payload) for m in c.messages] == [(f"{unique}/lift-7/event", b"plain")]


@brokers("3.1.1", needs="dot")
async def test_a_dot_in_a_lift_id(broker: Service, unique: str, protocol: str) -> None:
    settings = settings_for(broker.url, unique, protocol)
    c = Collector(until=1)
    task = asyncio.create_task(run(settings, f"c-{unique}", c))
    await c.connected.wait()
    await asyncio.to_thread(publish, broker.url, [(f"{unique}/lift.7/event", b"dot")])
    await task
    assert [m.topic for m in c.messages] == [f"{unique}/lift.7/event"]


async def test_partly_refused_subscription_is_never_used(
    tmp_path: Path, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NATS refuses a subscription (SUBACK 0x80) that would take the session's total
    max_ack_pending above 65535: 3 × 30000 refuses liftwatch's third filter (``status``). The
    consumer must keep refusing to run rather than consume without the device statuses."""
    nats = NatsServer(tmp_path / "nats", max_ack_pending=30000)
    nats.start()
    try:
        settings = settings_for(nats.url, unique, "3.1.1")
        stats = ConsumerStats()
        c = Collector(until=10**9)

        def refusals() -> int:
            return sum("refused the subscription" in r.getMessage() for r in caplog.records)

        with caplog.at_level("WARNING", logger="liftwatch.mqtt"):
            task = asyncio.create_task(run(settings, f"c-{unique}", c, stats=stats))
            await eventually(
                lambda: refusals() >= 2 or stats.connects > 0,
                timeout=5,
                what="a second refusal (or a connection)",
            )
            c.stop.set()
            await task
    finally:
        nats.stop()
    assert stats.connects == 0, "consumed with a subscription the broker refused"
