"""Ingest throughput against do-nothing subscribers, all measured in one run.

    .venv/bin/python bench/ingest_throughput.py [--messages 200000] [--lifts 1000]

Starts its own Mosquitto and InfluxDB 1.6 (liftwatch.localservices). Three persistent QoS 1
sessions subscribe ``bench/+/telemetry|event|status`` first, then N messages from L lifts are
published once (QoS 1, so the broker queues them for every session), then each consumer in
turn drains its queue and is timed from its first message to its last:

(a) a do-nothing aiomqtt 2.x subscriber (``async for message in client.messages``, uvloop);
(c) a do-nothing paho-mqtt 2.x subscriber (``loop_forever``, auto-ack);
(b) ``liftwatch ingest`` as a real subprocess, end to end: decoded, validated, written to
    InfluxDB and acknowledged only after InfluxDB accepted the batch; timed from its first
    received message to the moment its ``stored`` counter reaches N (read from its metrics
    endpoint), then checked with ``SELECT count(*)`` in InfluxDB.

Then (d) hostile input (issue 12, security review #3): the ingest worker's ``handle_batch``
in this process, with the same InfluxDB and a real SQLite dead-letter store, is timed on
5,000-message batches — clean, 1 % hostile and 20 % hostile — interleaved over several rounds
(mean of the fastest third of the rounds per variant; medians printed too). Half of the
hostile messages carry integers InfluxDB would refuse (a 10^30 ``seq``, ``run_count`` 2^63,
a nested fault ``code`` 10^20: before PROTOCOL 1.1 these made InfluxDB refuse the batch,
which was then bisected); the rest is other bad input (bad JSON, NaN, unknown enum, a topic
outside the scheme, an over-size payload, a missing field). Throughput counts every message
of the batch (stored or dead-lettered).

Progress on stderr. Last line:
``baseline_msgs_per_s=… paho_msgs_per_s=… ingest_msgs_per_s=… ratio=… lost=…
hostile_ratio_1pct=… hostile_ratio_20pct=… hostile_ratio=…`` with ratio = ingest /
baseline(aiomqtt), lost = N - points found in InfluxDB, hostile_ratio_* = hostile / clean batch
throughput, and hostile_ratio the lower of the two (the issue's key; target ≥ 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import uvloop
from paho.mqtt.enums import CallbackAPIVersion

from ingest.spool import Spool
from ingest.worker import Ingest
from ingest.writer import InfluxWriter
from liftwatch.influx import InfluxClient
from liftwatch.localservices import InfluxDB, Mosquitto, free_port
from liftwatch.mqtt import RawMessage, encode_str, packet
from liftwatch.settings import Settings
from liftwatch.store.db import Database

PREFIX = "bench"
FILTERS = [f"{PREFIX}/+/telemetry", f"{PREFIX}/+/event", f"{PREFIX}/+/status"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_messages(n: int, lifts: int) -> list[tuple[str, bytes]]:
    base = time.time_ns() // 1_000_000 - 3_600_000
    out = []
    for i in range(n):
        lift = f"3110120100201804{i % lifts:04d}"
        seq = i // lifts
        ts = base + seq * 10
        if i % 25 == 0:
            body = {"v": 1, "ts": ts, "seq": seq, "type": "alarm_button", "pressed": True}
            out.append((f"{PREFIX}/{lift}/event", json.dumps(body).encode()))
            continue
        body = {
            "v": 1,
            "ts": ts,
            "seq": seq,
            "service_mode": "normal",
            "car_status": "running",
            "direction": "up",
            "floor": str(seq % 30),
            "floor_index": seq % 30,
            "door_zone": False,
            "doors_closed": True,
            "door_state": "locked",
            "passenger_present": True,
            "speed": 1.5,
            "position": 21300,
            "load": 35.0,
            "safety_circuit": "closed",
            "power_source": "mains",
            "battery": 96,
            "run_count": 182733 + seq,
            "rssi": -71,
        }
        out.append((f"{PREFIX}/{lift}/telemetry", json.dumps(body).encode()))
    return out


def publish(port: int, items: list[tuple[str, bytes]]) -> None:
    """QoS 1 over a raw socket, all packets in large writes, then wait for every PUBACK."""
    packets = bytearray()
    for i, (topic, payload) in enumerate(items):
        packets += packet(0x32, encode_str(topic) + (i % 65535 + 1).to_bytes(2, "big") + payload)
    connect = packet(0x10, encode_str("MQTT") + b"\x04\x02\x00\x3c" + encode_str("bench-publisher"))
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(connect)
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("no CONNACK from the broker")
        sock.sendall(packets)
        got, want = 0, 4 * len(items)
        while got < want:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the broker closed the connection")
            got += len(chunk)
        sock.sendall(b"\xe0\x00")


# --- (a) aiomqtt -----------------------------------------------------------------------------


async def _aiomqtt(port: int, n: int | None) -> float:
    client = aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-aiomqtt", clean_session=False, keepalive=60
    )
    async with client:
        if n is None:
            for f in FILTERS:
                await client.subscribe(f, qos=1)
            return 0.0
        count = 0
        first = 0.0
        async for _message in client.messages:
            if count == 0:
                first = time.perf_counter()
            count += 1
            if count >= n:
                break
        return n / (time.perf_counter() - first)


def aiomqtt_rate(port: int, n: int | None) -> float:
    return uvloop.run(_aiomqtt(port, n))


# --- (c) paho --------------------------------------------------------------------------------


def paho_rate(port: int, n: int | None) -> float:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", clean_session=False)
    state = {"count": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if state["count"] == 0:
            state["first"] = time.perf_counter()
        state["count"] += 1
        if n is not None and state["count"] >= n:
            state["last"] = time.perf_counter()
            done.set()
            c.disconnect()

    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    if n is None:
        client.loop_start()
        for f in FILTERS:
            client.subscribe(f, qos=1)[1]
        time.sleep(0.5)  # let the SUBACKs arrive before we disconnect
        client.disconnect()
        client.loop_stop()
        return 0.0
    client.loop_forever()
    done.wait()
    return n / (state["last"] - state["first"])


# --- (b) liftwatch ingest --------------------------------------------------------------------


def _metric(port: int, name: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def ingest_rate(mqtt_port: int, influx_url: str, data_dir: Path, n: int | None) -> float:
    metrics_port = free_port()
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
        "LIFTWATCH_MQTT_PROTOCOL": "3.1.1",
        "LIFTWATCH_MQTT_TOPIC_PREFIX": PREFIX,
        "LIFTWATCH_INFLUX_URL": influx_url,
        "LIFTWATCH_INFLUX_DATABASE": "bench",
        "LIFTWATCH_DATA_DIR": str(data_dir),
        "LIFTWATCH_INGEST_CLIENT_ID": "bench-ingest",
        "LIFTWATCH_INGEST_METRICS_PORT": str(metrics_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "--log-level", "WARNING", "ingest"], env=env
    )
    try:
        deadline = time.monotonic() + 600
        first = 0.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"liftwatch ingest exited with {proc.returncode}")
            try:
                received = _metric(metrics_port, "liftwatch_ingest_received")
                stored = _metric(metrics_port, "liftwatch_ingest_stored")
            except OSError:
                time.sleep(0.05)
                continue
            if n is None:
                if _metric(metrics_port, "liftwatch_ingest_mqtt_connected"):
                    return 0.0  # the persistent session exists and is subscribed
                time.sleep(0.05)
                continue
            if received and not first:
                first = time.perf_counter()
            if stored >= n:
                return n / (time.perf_counter() - first)
            # Each scrape costs the worker ~1 ms of CPU: poll gently (≤ 1 % timing error).
            time.sleep(0.1)
        raise RuntimeError("liftwatch ingest did not store everything in 10 minutes")
    finally:
        proc.terminate()
        proc.wait(30)


async def influx_count(url: str) -> int:
    client = InfluxClient(url, "bench")
    try:
        total = 0
        for measurement in ("lift_state", "lift_event"):
            series = await client.query(f'SELECT count("seq") FROM "{measurement}"')  # noqa: S608
            total += int(series[0]["values"][0][1]) if series else 0
        return total
    finally:
        await client.aclose()


# --- (d) hostile input ----------------------------------------------------------------------

HOSTILE_BATCH = 5000


def _hostile(i: int, lift: str, seq: int, ts: int) -> tuple[str, bytes]:
    """One hostile message; even ``i``: an integer InfluxDB would refuse."""
    tel = {"v": 1, "ts": ts, "seq": seq, "service_mode": "normal", "car_status": "stopped",
           "direction": "none", "floor": "1", "door_zone": True, "doors_closed": True}  # fmt: skip
    topic = f"{PREFIX}/{lift}/telemetry"
    kind = i % 12
    if kind in (0, 6):
        return topic, json.dumps({**tel, "seq": 10**30}).encode()
    if kind in (2, 8):
        return topic, json.dumps({**tel, "run_count": 2**63}).encode()
    if kind in (4, 10):
        faults = [{"namespace": "gb24476", "code": 10**20}]
        return topic, json.dumps({**tel, "controller_faults": faults}).encode()
    if kind == 1:
        return topic, b'{"v":1,"ts":' + str(ts).encode() + b',"seq":'
    if kind == 3:
        return topic, json.dumps({**tel, "speed": 0.5}).encode().replace(b"0.5", b"NaN")
    if kind == 5:
        return topic, json.dumps({**tel, "direction": "sideways"}).encode()
    if kind == 7:
        return f"{PREFIX}/{'x' * 200}/telemetry", json.dumps(tel).encode()
    if kind == 9:
        return topic, json.dumps({**tel, "pad": "x" * 17_000}).encode()
    return topic, json.dumps({k: v for k, v in tel.items() if k != "door_zone"}).encode()


def hostile_batch(variant: str, rnd: int, lifts: int) -> list[RawMessage]:
    """5,000 messages; ``every`` k-th is hostile (1 % → every 100th, 20 % → every 5th)."""
    every = {"clean": 0, "1pct": 100, "20pct": 5}[variant]
    base = time.time_ns() // 1_000_000 - 1_800_000
    now = time.time_ns() // 1_000_000
    ordinal = ("clean", "1pct", "20pct").index(variant)
    out: list[RawMessage] = []
    for i, (topic, payload) in enumerate(make_messages(HOSTILE_BATCH, lifts)):
        # A distinct seq and ts per round and variant: not a duplicate of an earlier batch.
        seq = 1_000_000 + (rnd * 3 + ordinal) * HOSTILE_BATCH + i
        lift = topic.split("/")[1]
        if every and i % every == every - 1:
            topic, payload = _hostile(i // every, lift, seq, base + seq)
        else:
            body = json.loads(payload)
            body["seq"], body["ts"] = seq, base + seq
            payload = json.dumps(body).encode()
        out.append(RawMessage(topic, payload, now, 1, i % 65535 + 1))
    return out


async def _hostile_rates(
    influx_url: str, data_dir: Path, lifts: int, rounds: int
) -> dict[str, float]:
    settings = Settings(
        mqtt_url="mqtt://127.0.0.1:1",  # unused: batches are handed over directly
        mqtt_topic_prefix=PREFIX,
        influx_url=influx_url,
        influx_database="bench_hostile",
        data_dir=data_dir,
    )
    client = InfluxClient.from_settings(settings, timeout=30.0)
    db = Database(settings.sqlite_path)
    worker: Ingest
    writer = InfluxWriter(
        client,
        Spool(data_dir / "spool"),
        dead_letter=lambda letters: worker.store_dead_letters(letters),
        batch_size=HOSTILE_BATCH,
        # A hostile batch leaves fewer than 5,000 lines, which the writer would hold for the
        # next batch up to its age limit (200 ms): in a stream the next batch fills it, here
        # no next batch comes. Seal at once, for every variant alike: this times the work.
        batch_age_s=0.001,
        topic_prefix=PREFIX,
    )
    worker = Ingest(settings, writer, db)
    await writer.start()
    times: dict[str, list[float]] = {"clean": [], "1pct": [], "20pct": []}
    try:
        warm = hostile_batch("clean", rounds, lifts)  # warm-up: caches, connection, database
        await worker.handle_batch(warm)
        for rnd in range(rounds):
            order = list(times)
            for variant in order[rnd % 3 :] + order[: rnd % 3]:  # rotate: no order bias
                batch = hostile_batch(variant, rnd, lifts)
                started = time.perf_counter()
                await worker.handle_batch(batch)
                elapsed = time.perf_counter() - started
                times[variant].append(elapsed)
                say(f"    round {rnd + 1}/{rounds} {variant:>5}: {elapsed * 1000:7.1f} ms "
                    f"({HOSTILE_BATCH / elapsed:,.0f} msg/s)")  # fmt: skip
    finally:
        await writer.close()
        await client.aclose()
        db.close()
    for variant, t in times.items():
        say(f"    {variant:>5}: fastest third {HOSTILE_BATCH / _fastest_third(t):,.0f} msg/s, "
            f"median {HOSTILE_BATCH / statistics.median(t):,.0f} msg/s")  # fmt: skip
    # The fastest third of the rounds: on a shared machine a round's time is its cost plus
    # whatever else ran meanwhile (InfluxDB compactions, other processes), and one lucky
    # round alone would decide a plain minimum.
    return {v: HOSTILE_BATCH / _fastest_third(t) for v, t in times.items()}


def _fastest_third(times: list[float]) -> float:
    best = sorted(times)[: max(1, len(times) // 3)]
    return sum(best) / len(best)


def hostile_rates(influx_url: str, data_dir: Path, lifts: int, rounds: int) -> dict[str, float]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return uvloop.run(_hostile_rates(influx_url, data_dir, lifts, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--lifts", type=int, default=1000)
    parser.add_argument(
        "--hostile-rounds", type=int, default=15, help="rounds of the (d) hostile-input batches"
    )
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(prefix="liftwatch-bench-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto")
        influx = InfluxDB(root / "influxdb")
        broker.start()
        influx.start()
        try:
            say(f"broker {broker.url}, InfluxDB {influx.url}; creating the three sessions")
            aiomqtt_rate(broker.port, None)
            paho_rate(broker.port, None)
            ingest_rate(broker.port, influx.url, root / "data", None)
            say(f"publishing {n} messages from {args.lifts} lifts (QoS 1)")
            started = time.perf_counter()
            publish(broker.port, make_messages(n, args.lifts))
            say(f"published in {time.perf_counter() - started:.1f} s")
            say("(a) do-nothing aiomqtt subscriber …")
            baseline = aiomqtt_rate(broker.port, n)
            say(f"    {baseline:,.0f} msg/s")
            say("(c) do-nothing paho subscriber …")
            paho_msgs = paho_rate(broker.port, n)
            say(f"    {paho_msgs:,.0f} msg/s")
            say("(b) liftwatch ingest → InfluxDB …")
            ingest = ingest_rate(broker.port, influx.url, root / "data", n)
            say(f"    {ingest:,.0f} msg/s")
            stored = asyncio.run(influx_count(influx.url))
            say(f"(d) hostile input: {HOSTILE_BATCH}-message batches, clean / 1 % / 20 % …")
            hostile = hostile_rates(influx.url, root / "hostile", args.lifts, args.hostile_rounds)
        finally:
            broker.stop()
            influx.stop()
    print(
        f"baseline_msgs_per_s={baseline:.0f} paho_msgs_per_s={paho_msgs:.0f} "
        f"ingest_msgs_per_s={ingest:.0f} ratio={ingest / baseline:.2f} lost={n - stored} "
        f"hostile_ratio_1pct={hostile['1pct'] / hostile['clean']:.2f} "
        f"hostile_ratio_20pct={hostile['20pct'] / hostile['clean']:.2f} "
        f"hostile_ratio={min(hostile['1pct'], hostile['20pct']) / hostile['clean']:.2f}"
    )


if __name__ == "__main__":
    main()
