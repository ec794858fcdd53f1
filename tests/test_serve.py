"""``liftwatch serve`` as a real process: ingest, alerts, webhooks and the API in one, against
the real Mosquitto and InfluxDB; SIGTERM stops it cleanly; a part that cannot start stops it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from simulator.receiver import RecordingReceiver
from simulator.stack import ServeProcess
from tests.support.harness import Service
from tests.support.mqtt import TRAPPED, publish

pytestmark = pytest.mark.integration

ADMIN = "serve-test-admin-token-0123456789"
T = TypeVar("T")


def poll(check: Callable[[], T], within: float = 15, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def env(mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LIFTWATCH_MQTT_URL": mosquitto.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": f"t{unique}",
        "LIFTWATCH_INFLUX_URL": influxdb.url,
        "LIFTWATCH_INFLUX_DATABASE": f"serve_{unique}",
        "LIFTWATCH_DATA_DIR": str(tmp_path / "data"),
        "LIFTWATCH_ADMIN_TOKEN": ADMIN,
        "LIFTWATCH_INGEST_CLIENT_ID": f"ingest-{unique}",
        "LIFTWATCH_ALERTS_CLIENT_ID": f"alerts-{unique}",
        "LIFTWATCH_ALERTS_THRESHOLDS": json.dumps({"entrapment_s": 1}),
        "LIFTWATCH_WEBHOOK_ALLOW_PRIVATE": "true",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
    }


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(env, tmp_path / "serve.log")  # as the demo runs it
    yield proc
    proc.stop()


def test_serve_runs_all_three_parts_and_stops_cleanly(
    serve: ServeProcess, env: dict[str, str], unique: str
) -> None:
    lift = f"L-{unique}"
    url = serve.wait_ready()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    recv = RecordingReceiver()
    try:
        with httpx.Client(base_url=url + "/api/v1", timeout=10) as api:
            r = api.post("/companies", json={"company_id": "acme", "name": "Acme"}, headers=admin)
            assert r.status_code == 201, r.text
            r = api.post("/lifts", json={"lift_id": lift, "company_id": "acme"}, headers=admin)
            assert r.status_code == 201, r.text
            r = api.post(
                "/tokens",
                json={"role": "maintainer", "company_id": "acme", "name": "acme ops"},
                headers=admin,
            )
            maintainer = {"Authorization": f"Bearer {r.json()['token']}"}
            r = api.post("/webhooks", json={"url": recv.url}, headers=maintainer)
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]

            # ingest + alerts: a trapped passenger over MQTT.
            now = time.time_ns() // 1_000_000
            body = json.dumps({"v": 1, "ts": now, "seq": 1, **TRAPPED}).encode()
            publish(env["LIFTWATCH_MQTT_URL"], [(f"t{unique}/{lift}/telemetry", body)])

            def entrapment() -> list[dict[str, object]]:
                got = api.get("/alarms", params={"lift_id": lift}, headers=maintainer)
                assert got.status_code == 200, got.text
                return [a for a in got.json()["items"] if a["code"] == "entrapment"]

            [alarm] = poll(entrapment, what="entrapment alarm")
            r = api.post(f"/alarms/{alarm['alarm_id']}/acknowledge", headers=maintainer)
            assert r.status_code == 200, r.text

            got = recv.wait_for(2, 15)
            hook = Webhook(secret)
            events = [hook.verify(g.body, g.headers) for g in got]
            assert [e["type"] for e in events] == ["alarm.raised", "alarm.acknowledged"]

            # ingest stored the telemetry in InfluxDB (read back through the API).
            def stored() -> list[dict[str, object]]:
                got = api.get(
                    f"/lifts/{lift}/telemetry", params={"start": now - 60_000}, headers=admin
                )
                assert got.status_code == 200, got.text
                points: list[dict[str, object]] = got.json()["points"]
                return points

            [point] = poll(stored, what="telemetry stored")
            assert point["floor"] == TRAPPED["floor"] and point["seq"] == 1

            # one registry for the three parts, at the API's /metrics
            metrics = httpx.get(url + "/metrics", timeout=10).text
            assert "liftwatch_ingest_" in metrics and "liftwatch_alerts_" in metrics
    finally:
        recv.close()
    assert serve.stop() == 0, "\n".join(serve.lines)


def test_serve_stops_every_part_when_one_cannot_start(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = ServeProcess(env, tmp_path / "serve.log", port=taken.getsockname()[1])
        try:
            code = proc.proc.wait(60)  # ingest and alerts would run forever if not stopped
        finally:
            proc.stop()
    log = "\n".join(proc.lines)
    assert code == 1, log
    assert "event=part_stopped part=api" in log


def test_serve_refuses_to_start_without_admin_token(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "LIFTWATCH_ADMIN_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "liftwatch", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert "LIFTWATCH_ADMIN_TOKEN" in done.stderr
