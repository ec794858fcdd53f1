"""The simulator on a real Mosquitto: every message arrives, status and Last Will behave."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import aiomqtt
import pytest

from liftwatch.protocol import Rejection, decode
from liftwatch.settings import MqttTarget
from simulator.load import LoadOptions, run_load
from simulator.model import Message, Output
from simulator.publisher import OFFLINE, ONLINE, Publisher
from simulator.runner import Simulation, run_realtime
from simulator.scenario import load_scenario
from tests.support.harness import Service, eventually

pytestmark = pytest.mark.integration


async def _subscribe(
    target: MqttTarget, prefix: str, got: list[aiomqtt.Message], ready: asyncio.Event
) -> None:
    async with aiomqtt.Client(target.host, target.port, identifier=f"sub-{prefix}") as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        ready.set()
        async for message in sub.messages:
            got.append(message)


async def test_all_faults_scenario_arrives_complete_and_decodes(
    mosquitto: Service, unique: str
) -> None:
    target = MqttTarget.parse(mosquitto.url)
    prefix = f"sim{unique}"
    got: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    sub = asyncio.create_task(_subscribe(target, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)

    scn = load_scenario("all_faults")
    sim = Simulation(scn, 1_795_000_000_000)
    sent: list[Output] = []
    pub = Publisher(target, prefix, per_lift=True, client_id_prefix=f"t{unique}")

    def run() -> None:
        pub.start([lift.id for lift in scn.lifts])
        try:
            # ×25: 140 s of scenario in under 6 s. Timestamps are virtual; we only check
            # delivery here, not detection.
            run_realtime(sim, pub, time_scale=25, on_output=sent.append)
        finally:
            pub.close()

    await asyncio.to_thread(run)
    published = [m for m in sent if isinstance(m, Message)]
    expected = Counter((f"{prefix}/{m.lift_id}/{m.kind}", m.payload) for m in published)
    statuses = len(scn.lifts) + 2  # online per lift; the Will and online again for one

    def arrived() -> bool:
        return len(got) >= sum(expected.values()) + statuses

    try:
        await eventually(arrived, timeout=20, what="every published message")
    finally:
        sub.cancel()
    data = [(str(m.topic), bytes(m.payload)) for m in got]
    received = Counter(d for d in data if not d[0].endswith("/status"))
    assert not expected - received  # nothing lost
    # The only extra copies allowed are QoS 1 redeliveries by the lift whose link was cut
    # with a message in flight (at-least-once, as from a real device).
    assert {t for t, _ in received - expected} <= {f"{prefix}/SIM-OFF-WILL/telemetry"}
    assert pub.stats.errors == 0 and pub.stats.dropped == 0

    # Every message passes the shared decoder, except the injected malformed ones.
    rejections = 0
    for topic, payload in data:
        result = decode(topic, payload, prefix=prefix, received_ms=sim.start_ms)
        if isinstance(result, Rejection):
            rejections += 1
    assert rejections == sum(1 for m in published if m.malformed) > 0

    # Status: online for every lift after connect; the broker's Will when the link dropped.
    status = [(t.split("/")[1], p) for t, p in data if t.endswith("/status")]
    assert {lift for lift, p in status if p == ONLINE} == {lift.id for lift in scn.lifts}
    assert [p for lift, p in status if lift == "SIM-OFF-WILL"] == [ONLINE, OFFLINE, ONLINE]


async def test_status_is_retained_and_the_will_is_the_brokers(
    mosquitto: Service, unique: str
) -> None:
    target = MqttTarget.parse(mosquitto.url)
    prefix = f"sim{unique}"
    pub = Publisher(target, prefix, per_lift=True, client_id_prefix=f"r{unique}")
    await asyncio.to_thread(pub.start, ["R1"])
    await asyncio.to_thread(pub.flush)
    # A subscriber arriving later still learns the state: the status is retained.
    async with aiomqtt.Client(target.host, target.port) as late:
        await late.subscribe(f"{prefix}/R1/status", qos=1)
        async for message in late.messages:
            assert message.retain and message.payload == ONLINE
            break
    from simulator.model import LinkChange

    pub.send(LinkChange("R1", 0, up=False))
    async with aiomqtt.Client(target.host, target.port) as later:
        await later.subscribe(f"{prefix}/R1/status", qos=1)

        async def offline() -> None:
            async for message in later.messages:
                if message.payload == OFFLINE:
                    return

        await asyncio.wait_for(offline(), 10)
    pub.close()


async def test_load_mode_delivers_what_it_counts(mosquitto: Service, unique: str) -> None:
    target = MqttTarget.parse(mosquitto.url)
    prefix = f"load{unique}"
    got: list[aiomqtt.Message] = []
    ready = asyncio.Event()
    sub = asyncio.create_task(_subscribe(target, prefix, got, ready))
    await asyncio.wait_for(ready.wait(), 10)
    opts = LoadOptions(lifts=200, rate=200, duration_s=2.0, seed=1, id_prefix=f"L{unique}-")
    pub = Publisher(target, prefix, per_lift=False, connections=3, client_id_prefix=f"l{unique}")
    progress = io.StringIO()

    def run() -> int:
        pub.start([opts.lift_id(i) for i in range(opts.lifts)])
        try:
            result = run_load(
                opts,
                pub,
                connected=lambda: pub.lifts_connected,
                errors=lambda: pub.stats.errors,
                out=progress,
            )
        finally:
            pub.close()
        return result.sent

    sent = await asyncio.to_thread(run)
    assert 300 <= sent <= 1200  # ~200 msg/s of heartbeats for 2 s, plus runs and doors

    def arrived() -> bool:
        return sum(1 for m in got if not str(m.topic).endswith("/status")) >= sent

    try:
        await eventually(arrived, timeout=15, what="the load messages")
    finally:
        sub.cancel()
    assert sum(1 for m in got if not str(m.topic).endswith("/status")) == sent
    assert sum(1 for m in got if str(m.topic).endswith("/status")) == opts.lifts
    assert "lifts connected 200/200" in progress.getvalue()
    assert pub.stats.errors == 0
