"""A whole liftwatch on one machine, for ``liftwatch demo`` and the end-to-end detection run.

:func:`start_stack` uses the broker and InfluxDB it is given, or starts private ones
(:mod:`liftwatch.localservices`: child processes on free ports in the work directory), then
``liftwatch serve`` as a child process and waits until it is ready. :meth:`Stack.close`
stops exactly what it started, in reverse order, and nothing else.

``liftwatch serve`` runs in its own session, so a Ctrl-C typed in the terminal reaches only
the caller, which then stops the server before the broker (ingest flushes, alerts finish
their batch). Its whole log goes to ``serve.log`` in the work directory; the caller sees
each line through ``on_log`` and decides what a reader should see.

:func:`run_scenario` publishes a scenario in real time. The simulation starts *after* every
device connection is accepted, so device timestamps are the wall clock the scenario's
labels are scored against.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from liftwatch.clock import now_ms
from liftwatch.localservices import InfluxDB, Mosquitto
from liftwatch.settings import MqttTarget
from simulator.model import Output
from simulator.publisher import Publisher
from simulator.runner import Simulation, run_realtime
from simulator.scenario import Scenario, Step

READY = re.compile(r"event=serve_ready api=(http://\S+)")
# Settings the stack decides; a value inherited from the caller's shell would break the run
# (the labels assume FAULTS.md's default thresholds).
_DROPPED_ENV = ("LIFTWATCH_ALERTS_THRESHOLDS",)


class StackError(RuntimeError):
    """Part of the stack could not start; the message says which and where its log is."""


class ServeProcess:
    """A ``liftwatch serve`` child. A thread reads its stderr (the pipe never fills), writes
    every line to ``log_path`` and hands it to ``on_log``."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        port: int = 0,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        self.log_path = log_path
        self.on_log = on_log
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._cond = threading.Condition()
        self.url: str | None = None
        self._log: IO[str] = log_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liftwatch", "serve", "--port", str(port)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the caller, which stops us in order
        )
        self._reader = threading.Thread(target=self._read, name="serve-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if self.url is None and (m := READY.search(line)):
                    self.url = m.group(1)
                self._cond.notify_all()
            if self.on_log is not None:
                self.on_log(line)
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.url is None:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise StackError(
                        f"liftwatch serve exited with code {self.proc.returncode} before it "
                        f"was ready: {self.last_error() or 'no message'} (log: {self.log_path})"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StackError(
                        f"liftwatch serve was not ready within {timeout:.0f} s "
                        f"(log: {self.log_path})"
                    )
                self._cond.wait(min(left, 0.5))
            return self.url

    def last_error(self) -> str | None:
        """The last ERROR/CRITICAL log line or the last line of a traceback, if any."""
        with self._cond:
            lines = list(self.lines)
        for line in reversed(lines):
            if " ERROR " in line or " CRITICAL " in line or line.startswith("liftwatch:"):
                return line
        for line in reversed(lines):
            if line and not line.startswith(" "):
                return line
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean stop of all three parts), SIGKILL if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        self._log.close()
        return self.proc.returncode


@dataclass
class Stack:
    workdir: Path
    mqtt_url: str
    influx_url: str
    prefix: str
    admin_token: str
    serve: ServeProcess
    api_url: str
    started: list[Mosquitto | InfluxDB] = field(default_factory=list)

    @property
    def docs_url(self) -> str:
        return f"{self.api_url}/docs"

    def client(self, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
        """An API client (``/api/v1``) with ``token`` (default: the administrator's)."""
        return httpx.Client(
            base_url=f"{self.api_url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=timeout,
        )

    def close(self) -> int | None:
        """Stop ``liftwatch serve``, then the services this stack started; return serve's exit
        code (0: it stopped cleanly)."""
        try:
            code = self.serve.stop()
        finally:
            for svc in reversed(self.started):
                svc.stop()
        return code


def start_stack(
    workdir: Path,
    *,
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    prefix: str = "lifts",
    database: str = "liftwatch",
    port: int = 0,
    env: Mapping[str, str] | None = None,
    on_log: Callable[[str], None] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ready_timeout: float = 60.0,
) -> Stack:
    """Start what is missing (Mosquitto, InfluxDB), then ``liftwatch serve``; wait for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[Mosquitto | InfluxDB] = []
    try:
        if mqtt_url is None:
            broker = Mosquitto(workdir / "mosquitto")
            progress(f"starting Mosquitto on 127.0.0.1:{broker.port} (private, {broker.workdir})")
            started.append(broker)  # before start(): a Ctrl-C while it starts still stops it
            broker.start()
            mqtt_url = broker.url
        if influx_url is None:
            influx = InfluxDB(workdir / "influxdb")
            progress(f"starting InfluxDB on 127.0.0.1:{influx.port} (private, {influx.workdir})")
            started.append(influx)
            influx.start()
            influx_url = influx.url
        admin_token = "lw_admin_" + secrets.token_urlsafe(24)
        tag = secrets.token_hex(4)
        child_env = {k: v for k, v in (env or os.environ).items() if k not in _DROPPED_ENV}
        child_env.update(
            {
                "LIFTWATCH_MQTT_URL": mqtt_url,
                "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
                "LIFTWATCH_INFLUX_URL": influx_url,
                "LIFTWATCH_INFLUX_DATABASE": database,
                "LIFTWATCH_DATA_DIR": str(workdir / "data"),
                "LIFTWATCH_ADMIN_TOKEN": admin_token,
                # Own MQTT sessions: never take over another liftwatch's on a shared broker.
                "LIFTWATCH_INGEST_CLIENT_ID": f"liftwatch-ingest-{tag}",
                "LIFTWATCH_ALERTS_CLIENT_ID": f"liftwatch-alerts-{tag}",
                "LIFTWATCH_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
                "LIFTWATCH_INGEST_METRICS_PORT": "0",
                "LIFTWATCH_ALERTS_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        progress("starting liftwatch serve (ingest + alerts + webhooks + API)")
        serve = ServeProcess(child_env, workdir / "serve.log", port=port, on_log=on_log)
        try:
            url = serve.wait_ready(ready_timeout)
        except BaseException:
            serve.stop()
            raise
    except BaseException:
        for svc in reversed(started):
            svc.stop()
        raise
    return Stack(workdir, mqtt_url, influx_url, prefix, admin_token, serve, url, started)


def _ok(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise StackError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


def register_scenario(
    api: httpx.Client,
    scenario: Scenario,
    company_id: str,
    company_name: str,
    *,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Register a company and the scenario's lifts (rated speed, floors and the threshold
    overrides its labels assume) through the API, as an administrator would; ``extra`` adds
    registry fields (name, address, …) per lift id."""
    _ok(
        api.post("/companies", json={"company_id": company_id, "name": company_name}),
        f"creating company {company_id}",
    )
    for spec in scenario.lifts:
        body: dict[str, Any] = {
            "lift_id": spec.id,
            "company_id": company_id,
            "rated_speed": spec.rated_speed,
            "floors": len(spec.labels()),
            "overrides": spec.overrides,
        }
        body.update((extra or {}).get(spec.id, {}))
        _ok(api.post("/lifts", json=body), f"registering lift {spec.id}")


def create_token(api: httpx.Client, role: str, name: str, company_id: str | None = None) -> str:
    body = {"role": role, "name": name} | ({"company_id": company_id} if company_id else {})
    token: str = _ok(api.post("/tokens", json=body), f"creating the {role} token")["token"]
    return token


def create_user(api: httpx.Client, username: str, role: str, company_id: str | None = None) -> str:
    """A person's console login (docs/console.md) with a fresh random password, returned."""
    password = secrets.token_urlsafe(12)
    body = {"username": username, "password": password, "role": role}
    if company_id:
        body["company_id"] = company_id
    _ok(api.post("/users", json=body), f"creating the console user {username!r}")
    return password


def list_alarms(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Every alarm the caller may see (suppressed ones included), following the cursor."""
    out: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "1000", "order": "asc", **params}
    while True:
        page = _ok(api.get("/alarms", params=query), "listing alarms")
        out.extend(page["items"])
        if not page.get("next_cursor"):
            return out
        query["cursor"] = page["next_cursor"]


def run_scenario(
    scenario: Scenario,
    mqtt_url: str,
    prefix: str,
    *,
    client_id_prefix: str = "liftsim",
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[Simulation], None] | None = None,
    on_step: Callable[[int, Step], None] | None = None,
    on_output: Callable[[Output], None] | None = None,
) -> Simulation:
    """Connect every simulated lift, then run ``scenario`` in real time; returns the finished
    simulation (its labels are ground truth for this run)."""
    pub = Publisher(
        MqttTarget.parse(mqtt_url), prefix, per_lift=True, client_id_prefix=client_id_prefix
    )
    pub.start([lift.id for lift in scenario.lifts])
    try:
        sim = Simulation(scenario, now_ms())
        sim.on_step = on_step
        if on_start is not None:
            on_start(sim)
        run_realtime(sim, pub, should_stop=should_stop, on_output=on_output)
    finally:
        pub.close()
    return sim
