"""Helpers shared by the ingest tests: device payloads, a fast paho publisher, a worker runner."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ingest.worker import run_ingest
from liftwatch.influx import InfluxClient
from liftwatch.mqtt import ConsumerStats, connect_packet, encode_str, packet
from liftwatch.settings import Settings


def telemetry(seq: int, ts_ms: int, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "ts": ts_ms,
        "seq": seq,
        "service_mode": "normal",
        "car_status": "running" if seq % 2 else "stopped",
        "direction": "up",
        "floor": str(seq % 20),
        "floor_index": seq % 20,
        "door_zone": False,
        "doors_closed": True,
        "speed": 1,
        "load": 12.5,
    }
    body.update(extra)
    return json.dumps(body).encode()


def event(seq: int, ts_ms: int, type_: str, **extra: Any) -> bytes:
    return json.dumps({"v": 1, "ts": ts_ms, "seq": seq, "type": type_, **extra}).encode()


def publish(
    url: str, items: Iterable[tuple[str, bytes]], *, qos: int = 1, retain: bool = False
) -> int:
    """Publish QoS 0/1 over a raw socket (paho's threaded publisher managed ~1,300 msg/s
    here): all PUBLISH packets in a few large writes, then wait for every PUBACK."""
    host, port = url.removeprefix("mqtt://").split(":")
    packets = bytearray()
    n = 0
    for n, (topic, payload) in enumerate(items, 1):
        body = encode_str(topic) + ((n % 65535 + 1).to_bytes(2, "big") if qos else b"") + payload
        packets += packet(0x30 | (qos << 1) | int(retain), body)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            connect_packet(
                f"pub-{uuid.uuid4().hex[:8]}",
                protocol="3.1.1",
                keepalive_s=60,
                username=None,
                password=None,
                receive_maximum=65535,
            ).replace(b"\x04\x00", b"\x04\x02", 1)  # clean session: a throwaway publisher
        )
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("no CONNACK")
        sock.sendall(packets)
        want = 4 * n if qos else 0
        got = 0
        while got < want:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"broker closed after {got // 4} of {n} PUBACKs")
            got += len(chunk)
        sock.sendall(b"\xe0\x00")
    return n


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ingest_settings(
    mqtt_url: str, influx_url: str, prefix: str, data_dir: Path, **kw: Any
) -> Settings:
    return Settings(
        mqtt_url=mqtt_url,
        mqtt_topic_prefix=prefix,
        influx_url=influx_url,
        influx_database=f"ingest_{prefix}",
        data_dir=data_dir,
        ingest_client_id=f"ingest-{prefix}",
        **kw,
    )


@asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """Run the worker in this event loop; yields once it is subscribed."""
    stop = asyncio.Event()
    connected = asyncio.Event()
    task = asyncio.create_task(run_ingest(settings, stop, on_connect=connected.set))
    done, _ = await asyncio.wait(
        [task, asyncio.create_task(connected.wait())],
        timeout=20,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task in done:
        task.result()
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def count(client: InfluxClient, measurement: str, where: str = "") -> int:
    query = f'SELECT count("seq") FROM "{measurement}" {where}'  # noqa: S608 - test constants
    series = await client.query(query)
    return int(series[0]["values"][0][1]) if series else 0


__all__ = ["ConsumerStats"]
