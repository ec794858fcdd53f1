"""Acceptance (issue 8): every query of the provisioned Grafana dashboard is valid InfluxQL
against the documented schema, run on the real InfluxDB over data written in that schema.

A query naming a field or measurement that does not exist is not an error in InfluxQL, just
an empty answer; so each query must also return data, and a few must return the right count.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from liftwatch.influx import InfluxClient
from liftwatch.lineprotocol import FieldValue, line
from tests.deploy.broker import DEPLOY

pytestmark = pytest.mark.integration

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "liftwatch.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "liftwatch.yaml"

INTERVAL_MS = 10_000


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> Iterator[tuple[str, str]]:
    """(where, query) for every panel target, template variable and annotation."""
    dash = dashboard()
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["query"]
    for var in dash["templating"]["list"]:
        yield f"variable ${var['name']}", var["query"]
    for ann in dash["annotations"]["list"]:
        yield f"annotation {ann['name']!r}", ann["query"]


def substitute(query: str, lift: str) -> str:
    """What Grafana sends for the dashboard's macros and variable."""
    out = (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval_ms", str(INTERVAL_MS))
        .replace("$__interval", f"{INTERVAL_MS // 1000}s")
        .replace("$lift", lift)
    )
    leftover = re.findall(r"\$[A-Za-z_]\w*", out)
    assert not leftover, f"unknown Grafana variable(s) {leftover} in {query}"
    return out


def state(seq: int, **over: FieldValue) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {
        "service_mode": "normal",
        "car_status": "running",
        "direction": "up",
        "floor": "3",
        "floor_index": 3,
        "door_zone": False,
        "doors_closed": True,
        "door_state": "locked",
        "passenger_present": True,
        "speed": 1.0,
        "position": 9000,
        "load": 40.0,
        "safety_circuit": "closed",
        "door_lock_circuit": "closed",
        "up_limit": False,
        "down_limit": False,
        "power_source": "mains",
        "alarm_button": False,
        "battery": 98,
        "controller_faults": "[]",
        "total_running_time": 1234.5,
        "run_count": 40210,
        "machine_room_temp": 24.5,
        "rssi": -67,
        "seq": seq,
        "ts_corrected": False,
    }
    fields.update(over)
    return fields


def schema_points(lift_a: str, lift_b: str, now: int) -> list[str]:
    """The documented schema (docs/influxdb-schema.md), two lifts, the last few minutes."""
    online: dict[str, FieldValue] = {"state": "online", "online": True}
    offline: dict[str, FieldValue] = {"state": "offline", "online": False}
    pts = [
        line("lift_status", {"lift_id": lift_a}, online, now - 300_000),
        line("lift_status", {"lift_id": lift_b}, online, now - 300_000),
        line("lift_status", {"lift_id": lift_b}, offline, now - 5_000),
    ]
    for i in range(29):  # every 10 s until 10 s ago
        ts = now - 290_000 + i * 10_000
        pts.append(line("lift_state", {"lift_id": lift_a}, state(i, floor_index=i % 8), ts))
        pts.append(line("lift_state", {"lift_id": lift_b}, state(i, speed=-0.5), ts + 1))
    pts.append(
        line(
            "lift_state",
            {"lift_id": lift_a},
            state(31, car_status="stopped", speed=0.0, door_zone=True, door_state="open"),
            now - 1_000,
        )
    )
    events: list[tuple[str, dict[str, FieldValue]]] = [
        ("alarm_button", {"seq": 40, "pressed": True}),
        ("fault", {"seq": 41, "namespace": "gb24476", "code": "3", "active": True, "text": "x"}),
        ("selftest", {"seq": 42, "result": "ok"}),
        ("end_of_alarm", {"seq": 43, "by": "technician"}),
    ]
    for n, (kind, fields) in enumerate(events):
        pts.append(line("lift_event", {"lift_id": lift_a, "type": kind}, fields, now - 60_000 + n))
    alarm_tags = {"lift_id": lift_a, "code": "entrapment", "severity": "critical"}
    for n, (event, status) in enumerate([("raised", "open"), ("acknowledged", "acknowledged")]):
        pts.append(
            line(
                "alarm",
                alarm_tags,
                {
                    "alarm_id": "al_1",
                    "subtype": "outside_zone",
                    "event": event,
                    "status": status,
                    "condition": "active",
                    "actor": "rule",
                    "note": "",
                    "outcome": "",
                    # also written by alerts' InfluxDB copy (alerts/worker.py InfluxSink)
                    "transition": "->open" if event == "raised" else "open->acknowledged",
                    "suppressed": False,
                },
                now - 50_000 + n * 1000,
            )
        )
    pts.append(
        line(
            "alarm",
            {"lift_id": lift_b, "code": "door_fault", "severity": "major"},
            {"alarm_id": "al_2", "event": "raised", "status": "open", "condition": "active"},
            now - 40_000,
        )
    )
    return pts


@pytest.fixture
async def loaded(influx: InfluxClient, unique: str) -> tuple[InfluxClient, str]:
    lift_a, lift_b = f"A{unique}", f"B{unique}"
    await influx.write("\n".join(schema_points(lift_a, lift_b, int(time.time() * 1000))))
    return influx, lift_a


async def test_every_dashboard_query_runs_and_returns_data(
    loaded: tuple[InfluxClient, str],
) -> None:
    influx, lift = loaded
    found = list(queries())
    assert len(found) >= 20
    for where, query in found:
        series = await influx.query(substitute(query, lift))  # raises on invalid InfluxQL
        assert series, f"{where} returned nothing: {query}"
        assert any(s["values"] for s in series), f"{where} returned no rows"


async def test_fleet_counts_are_right(loaded: tuple[InfluxClient, str]) -> None:
    influx, lift = loaded
    by_title = {p["title"]: p for p in dashboard()["panels"]}

    async def value(title: str) -> Any:
        series = await influx.query(substitute(by_title[title]["targets"][0]["query"], lift))
        return series[0]["values"][-1][1]

    assert await value("Lifts reporting") == 2
    assert await value("Lifts online") == 1  # the other's latest status is offline
    assert await value("Lifts offline") == 1
    assert await value("Alarms raised") == 2  # the acknowledgement is not a new alarm
    assert await value("Floor (displayed)") == "3"
    assert await value("Doors") == "open"


async def test_alarms_by_code_are_split_by_the_code_tag(loaded: tuple[InfluxClient, str]) -> None:
    influx, lift = loaded
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Alarms raised by code"]
    series = await influx.query(substitute(panel["targets"][0]["query"], lift))
    totals = {s["tags"]["code"]: sum(v[1] for v in s["values"]) for s in series}
    assert totals == {"entrapment": 1, "door_fault": 1}


def test_dashboard_panels_use_the_provisioned_data_source() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    # The password comes from the environment, never from the file.
    assert source["secureJsonData"]["password"] == "${GRAFANA_INFLUX_PASSWORD}"
    dash = dashboard()
    refs = [p["datasource"] for p in dash["panels"] if p["type"] != "row"]
    refs += [t["datasource"] for p in dash["panels"] for t in p.get("targets", [])]
    refs += [v["datasource"] for v in dash["templating"]["list"]]
    assert all(ref == {"type": "influxdb", "uid": source["uid"]} for ref in refs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_provisioning_paths_match_the_compose_mounts() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    dash_dir = provider["options"]["path"]
    assert (DEPLOY / mounts[dash_dir] / DASHBOARD.name).exists()
    assert (DEPLOY / mounts["/etc/grafana/provisioning"] / "datasources").is_dir()
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    influx_env = compose["services"]["influxdb"]["environment"]
    assert source["jsonData"]["dbName"] == influx_env["LIFTWATCH_INFLUX_DATABASE"]
    assert source["url"] == "http://influxdb:8086"
