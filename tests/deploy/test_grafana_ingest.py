"""The dashboard over data written the way ingest writes it: protocol payloads decoded by the
shared decoder and turned into points by ``ingest.points.to_line``."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ingest.points import PRECISION, to_line
from liftwatch.influx import InfluxClient
from liftwatch.protocol import Decoded, decode
from tests.deploy.test_grafana import dashboard, substitute

pytestmark = pytest.mark.integration

MEASUREMENTS = ("lift_state", "lift_event", "lift_status")


def device_messages(lift_a: str, lift_b: str, now: int) -> list[tuple[str, dict[str, Any], int]]:
    """(topic, payload, received_ms) as devices send them (PROTOCOL.md)."""
    msgs: list[tuple[str, dict[str, Any], int]] = []
    for lift in (lift_a, lift_b):
        msgs.append((f"lifts/{lift}/status", {"v": 1, "state": "online"}, now - 200_000))
        for seq in range(20):
            ts = now - 190_000 + seq * 9_000
            msgs.append(
                (
                    f"lifts/{lift}/telemetry",
                    {
                        "v": 1,
                        "ts": ts,
                        "seq": seq,
                        "service_mode": "normal",
                        "car_status": "running" if seq % 2 else "stopped",
                        "direction": "up" if seq % 2 else "none",
                        "floor": str(seq % 9),
                        "floor_index": seq % 9,
                        "door_zone": seq % 2 == 0,
                        "doors_closed": seq % 2 == 1,
                        "door_state": "locked" if seq % 2 else "open",
                        "speed": 1.0 if seq % 2 else 0,  # an int 0: ingest stores a float
                        "load": 30,
                        "safety_circuit": "closed",
                        "controller_faults": [],
                    },
                    ts + 50,
                )
            )
        msgs.append(
            (
                f"lifts/{lift}/event",
                {"v": 1, "ts": now - 5_000, "seq": 20, "type": "alarm_button", "pressed": True},
                now - 4_950,
            )
        )
    msgs.append((f"lifts/{lift_b}/status", {"v": 1, "state": "offline"}, now - 1_000))
    return msgs


async def test_dashboard_device_queries_over_ingest_points(
    influx: InfluxClient, unique: str
) -> None:
    lift_a, lift_b = f"A{unique}", f"B{unique}"
    lines = []
    for topic, payload, received in device_messages(lift_a, lift_b, int(time.time() * 1000)):
        decoded = decode(topic, json.dumps(payload).encode(), received_ms=received)
        assert isinstance(decoded, Decoded), decoded
        lines.append(to_line(decoded))
    await influx.write(b"\n".join(lines), precision=PRECISION)

    checked = 0
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            query = target["query"]
            if not any(f'FROM "{m}"' in query for m in MEASUREMENTS):
                continue  # the alarm panels: written by alerts, covered in test_grafana.py
            series = await influx.query(substitute(query, lift_a))
            assert any(s["values"] for s in series), f"{panel['title']!r}: no rows for {query}"
            checked += 1
    assert checked >= 14

    by_title = {p["title"]: p for p in dashboard()["panels"]}
    for title, expected in [("Lifts reporting", 2), ("Lifts online", 1), ("Lifts offline", 1)]:
        series = await influx.query(substitute(by_title[title]["targets"][0]["query"], lift_a))
        assert series[0]["values"][-1][1] == expected, title
