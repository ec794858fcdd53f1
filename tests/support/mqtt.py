"""Helpers of the MQTT consumer tests: settings for a private broker, a collecting handler
and a consumer runner with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.mqtt import RawMessage, consume
from liftwatch.settings import Settings


def settings_for(url: str, prefix: str, protocol: str = "5", **kw: object) -> Settings:
    return Settings(mqtt_url=url, mqtt_topic_prefix=prefix, mqtt_protocol=protocol, **kw)  # type: ignore[arg-type]


class Collector:
    def __init__(self, until: int, fail_on: Callable[[list[RawMessage]], bool] | None = None):
        self.messages: list[RawMessage] = []
        self.batches = 0
        self.until = until
        self.fail_on = fail_on
        self.stop = asyncio.Event()
        self.connected = asyncio.Event()

    async def handle(self, batch: list[RawMessage]) -> None:
        if self.fail_on is not None and self.fail_on(batch):
            raise RuntimeError("handler failed on purpose")
        self.batches += 1
        self.messages.extend(batch)
        if len(self.messages) >= self.until:
            self.stop.set()


async def run(settings: Settings, client_id: str, collector: Collector, **kw: object) -> None:
    await asyncio.wait_for(
        consume(
            settings,
            client_id=client_id,
            handle_batch=collector.handle,
            stop=collector.stop,
            on_connect=collector.connected.set,
            **kw,  # type: ignore[arg-type]
        ),
        60,
    )


# A lift whose passenger is trapped between floors (entrapment after 30 s).
TRAPPED: dict[str, Any] = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "7",
    "door_zone": False,
    "doors_closed": True,
    "passenger_present": True,
    "speed": 0.0,
}


def publish(url: str, items: list[tuple[str, bytes]]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect(host, int(port))
    client.loop_start()
    try:
        for info in [client.publish(t, p, qos=1) for t, p in items]:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
