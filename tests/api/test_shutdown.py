"""A clean stop with clients connected (issue 17 item 2): SIGTERM ends ``liftwatch api`` and
``liftwatch serve`` within 5 s even with open ``/alarms/stream`` clients; the streams end (a
final comment, then closed), and a client that reconnects with ``Last-Event-ID`` to the
restarted server gets every notification committed meanwhile, in order, without a gap."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts import lifecycle
from liftwatch.localservices import free_port
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, outbox
from liftwatch.store import registry as reg
from simulator.stack import ServeProcess
from tests.support.harness import Service
from tests.support.processes import Child

pytestmark = pytest.mark.integration

ADMIN = "shutdown-test-admin-token-0123456789"
STOP_WITHIN_S = 5.0


def _raise(db: Database, lift_id: str, code: str) -> None:
    req = lifecycle.Raise(
        lift_id=lift_id,
        code=code,
        subtype=None,
        severity="critical",
        source="device",
        at=time.time_ns() // 1_000_000,
        evidence={},
        company_id="acme",
    )
    with db.transaction() as conn:
        lifecycle.raise_condition(conn, req, lifecycle.Policy(), [])


class Listener:
    """An SSE client on its own thread: the ids it received, and whether its stream ended."""

    def __init__(self, url: str, *, last_event_id: int | None = None) -> None:
        self.ids: list[int] = []
        self.text: list[str] = []
        self.ended = threading.Event()
        self.first = threading.Event()
        headers = {"Authorization": f"Bearer {ADMIN}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        params: dict[str, Any] = {} if last_event_id is not None else {"after": 0}
        self._thread = threading.Thread(target=self._run, args=(url, headers, params), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str], params: dict[str, Any]) -> None:
        try:
            with httpx.stream(
                "GET",
                f"{url}/api/v1/alarms/stream",
                headers=headers,
                params=params,
                timeout=httpx.Timeout(10.0, read=30.0),
            ) as r:
                for line in r.iter_lines():
                    self.text.append(line)
                    if line.startswith("id: "):
                        self.ids.append(int(line[4:]))
                        self.first.set()
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_ids(self, n: int, within: float = 10) -> list[int]:
        deadline = time.monotonic() + within
        while len(self.ids) < n and time.monotonic() < deadline:
            self.first.wait(0.05)
        assert len(self.ids) >= n, f"got {self.ids}, wanted {n} ids"
        return self.ids


def _wait_healthy(url: str, child: Child) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert child.proc.poll() is None, child.output
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the API never answered /healthz:\n{child.output}")


def _api(env: dict[str, str], port: int) -> Child:
    child = Child(["api", "--port", str(port)], env)
    _wait_healthy(f"http://127.0.0.1:{port}", child)
    return child


def test_sigterm_ends_the_api_with_streams_open_and_a_reconnect_has_no_gap(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = Database(data / "liftwatch.sqlite3")
    reg.upsert_company(db, Company(company_id="acme", name="Acme"))
    for lift in ("L1", "L2", "L3"):
        reg.upsert_lift(db, Lift(lift_id=lift, company_id="acme"))
    _raise(db, "L1", "alarm_button")
    env = {**os.environ, "LIFTWATCH_DATA_DIR": str(data), "LIFTWATCH_ADMIN_TOKEN": ADMIN}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = _api(env, port)
    clients = [Listener(url), Listener(url)]
    first = [c.wait_ids(1)[-1] for c in clients]
    assert first[0] == first[1]

    began = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    api.proc.wait(10)
    took = time.monotonic() - began
    assert took < STOP_WITHIN_S, f"liftwatch api took {took:.1f} s to stop:\n{api.output}"
    for c in clients:
        assert c.ended.wait(STOP_WITHIN_S), "a stream was still open after the stop"
        assert any("reconnect with Last-Event-ID" in t for t in c.text)  # told, then closed

    # Notifications committed while no API runs (the alerts engine keeps working).
    _raise(db, "L2", "entrapment")
    _raise(db, "L3", "alarm_button")
    expected = [r.id for r in outbox.outbox_rows(db)]
    assert len(expected) >= 3

    api = _api(env, port)
    try:
        again = Listener(url, last_event_id=first[0])
        got = again.wait_ids(len(expected) - expected.index(first[0]) - 1)
        assert got == expected[expected.index(first[0]) + 1 :]  # every one, in order, no gap
    finally:
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(10)
        db.close()


def test_sigterm_ends_serve_with_a_stream_open(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": mosquitto.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": f"t{unique}",
        "LIFTWATCH_INFLUX_URL": influxdb.url,
        "LIFTWATCH_INFLUX_DATABASE": f"stop_{unique}",
        "LIFTWATCH_DATA_DIR": str(tmp_path / "data"),
        "LIFTWATCH_ADMIN_TOKEN": ADMIN,
        "LIFTWATCH_INGEST_CLIENT_ID": f"ingest-{unique}",
        "LIFTWATCH_ALERTS_CLIENT_ID": f"alerts-{unique}",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
    }
    serve = ServeProcess(env, tmp_path / "serve.log")
    try:
        url = serve.wait_ready()
        client = Listener(url)
        deadline = time.monotonic() + 10
        while not client.text and time.monotonic() < deadline:  # the stream is open
            client.first.wait(0.05)
        assert client.text, "the stream never opened"
        began = time.monotonic()
        code = serve.stop()
        took = time.monotonic() - began
    finally:
        serve.stop()
    assert code == 0, "\n".join(serve.lines)
    assert took < STOP_WITHIN_S, f"liftwatch serve took {took:.1f} s to stop"
    assert client.ended.wait(STOP_WITHIN_S)
