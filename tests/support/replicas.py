"""What the alerts-replica end-to-end tests share: the processes' environment and a device
publisher (QoS 1, ``seq`` counted per lift)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as subs


def alerts_env(
    store_url: str, mqtt_url: str, prefix: str, data_dir: Path, thresholds: dict[str, Any]
) -> dict[str, str]:
    """Settings of every replica (each adds its own LIFTWATCH_ALERTS_REPLICA_ID)."""
    return {
        **os.environ,
        "LIFTWATCH_DATABASE_URL": store_url,
        "LIFTWATCH_DATA_DIR": str(data_dir),
        "LIFTWATCH_MQTT_URL": mqtt_url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
        "LIFTWATCH_ALERTS_CLIENT_ID": f"{prefix}-alerts",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_THRESHOLDS": json.dumps(thresholds),
        "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
        "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
    }


class Devices:
    """Publishes as the lifts do: ``v``, ``ts`` (now), ``seq`` (counted per lift), QoS 1,
    returning once the broker has the message."""

    def __init__(self, mqtt_url: str, prefix: str) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        self.prefix = prefix
        self.seq: Counter[str] = Counter()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-devices")
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish(self, lift: str, kind: str, body: dict[str, Any]) -> None:
        self.seq[lift] += 1
        msg = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": self.seq[lift], **body}
        info = self.client.publish(f"{self.prefix}/{lift}/{kind}", json.dumps(msg), qos=1)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def seed(db: Database, prefix: str, lifts: int, receiver_url: str, secret: str) -> list[str]:
    """Company ``co`` with ``lifts`` lifts ``<prefix>-L<i>``, and one subscription of every
    event to ``receiver_url``. Returns the lift ids."""
    reg.upsert_company(db, Company(company_id="co", name="Co"))
    ids = [f"{prefix}-L{i}" for i in range(lifts)]
    for lift in ids:
        reg.upsert_lift(db, Lift(lift_id=lift, company_id="co"))
    subs.add_subscription(
        db, company_id=None, url=receiver_url, secret=secret, filters={}, created_by="test"
    )
    return ids
