"""``liftwatch demo`` (``make demo``): the whole product on one machine, telling a story.

A private Mosquitto and InfluxDB (unless ``LIFTWATCH_MQTT_URL`` / ``LIFTWATCH_INFLUX_URL``
name existing ones), ``liftwatch serve`` as a child process, a demo company with its lifts
and tokens registered through the API, a local webhook receiver that verifies every
signature, then the simulator's ``demo`` scenario in real time: normal traffic, an
entrapment with an alarm call, a door fault, inspection mode muting a derived alarm, end of
alarm. A dispatcher (the maintainer token) acknowledges every critical alarm through the
API. The live log shows the story, the device events and each signed webhook.

Ctrl-C (or SIGTERM) stops what the demo started — ``liftwatch serve``, then InfluxDB and
Mosquitto — and nothing else. ``--once`` (or ``LIFTWATCH_DEMO_ONCE=1``) exits after the story.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from alerts.webhooks.signing import SecretError, verify
from liftwatch.clock import now_ms
from liftwatch.localservices import ServiceError
from simulator.model import LinkChange, Output
from simulator.runner import Simulation
from simulator.scenario import Scenario, ScenarioError, Step, load_scenario
from simulator.stack import (
    Stack,
    StackError,
    create_token,
    create_user,
    list_alarms,
    register_scenario,
    run_scenario,
    start_stack,
)

COMPANY = ("demo", "Harbour View Lift Service")
LIFT_CARDS = {
    "DEMO-A": {"name": "Harbour View Tower, car A", "address": "1 Harbour Road"},
    "DEMO-B": {"name": "Harbour View Tower, car B", "address": "1 Harbour Road"},
    "DEMO-C": {"name": "Harbour View Tower, service car", "address": "1 Harbour Road"},
}
TIMESTAMP_TOLERANCE_S = 300  # Standard Webhooks: refuse a signature older or newer than this
EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run everything locally with simulated lifts and a webhook receiver (make demo)",
        description="Start a private Mosquitto and InfluxDB (unless LIFTWATCH_MQTT_URL / "
        "LIFTWATCH_INFLUX_URL are set), liftwatch serve, a webhook receiver, and play the "
        "simulator's demo story with a live log. Ctrl-C stops everything the demo started. "
        "See docs/demo.md.",
    )
    p.add_argument(
        "--once",
        action="store_true",
        default=os.environ.get("LIFTWATCH_DEMO_ONCE", "") not in ("", "0"),
        help="exit when the story ends (default: keep running until Ctrl-C; "
        "also LIFTWATCH_DEMO_ONCE=1)",
    )
    p.add_argument("--port", type=int, help="API port (default 8000 if free, else any free port)")
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep services' data and logs here (default: a temporary directory, removed)",
    )
    p.add_argument(
        "--scenario",
        default="demo",
        metavar="FILE",
        help="another scenario file to play (default: the built-in demo story)",
    )
    p.set_defaults(handler=_demo)


class _Say:
    """The live log: one line at a time from any thread, with the story clock once it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.story_start_ms: int | None = None

    def __call__(self, text: str, at_ms: int | None = None) -> None:
        if self.story_start_ms is not None:
            now = now_ms() if at_ms is None else at_ms
            text = f"[{(now - self.story_start_ms) / 1000:6.1f}s] {text}"
        with self._lock:
            print(text, flush=True)


class _Receiver:
    """A maintenance company's webhook endpoint: verifies each request's signature (Standard
    Webhooks, WEBHOOKS.md) and hands the event on; answers 401 to a bad signature."""

    def __init__(self, on_event: Any, say: _Say) -> None:
        self.secret = ""
        self.on_event = on_event
        self.say = say
        self.verified = 0
        self.invalid = 0
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # the demo prints its own line per event

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/liftwatch"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        msg_id = headers.get("webhook-id", "")
        try:
            stamp = int(headers.get("webhook-timestamp", ""))
            fresh = abs(time.time() - stamp) <= TIMESTAMP_TOLERANCE_S
            ok = fresh and verify(
                self.secret, msg_id, stamp, body, headers.get("webhook-signature", "")
            )
        except (ValueError, SecretError):
            ok = False
        if not ok:
            with self._lock:
                self.invalid += 1
            self.say(f"webhook  REJECTED: signature invalid (webhook-id {msg_id or '?'})")
            return 401
        with self._lock:
            duplicate = msg_id in self.seen
            self.seen.add(msg_id)
            if not duplicate:
                self.verified += 1
        if duplicate:  # at-least-once delivery: receivers deduplicate by webhook-id
            self.say(f"webhook  (a retry of {msg_id}, already handled)")
            return 200
        event: dict[str, Any] = json.loads(body)
        with self._lock:
            self.events.append(event)
        self.say(_describe_webhook(event))
        self.on_event(event)
        return 200

    def raised(self) -> set[str]:
        with self._lock:
            return {e["data"]["alarm_id"] for e in self.events if e.get("type") == "alarm.raised"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _describe_webhook(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    kind = str(event.get("type", "?"))
    if "code" not in data:
        return f"webhook  {kind:<24} signature ok"
    code = data["code"] + (f"/{data['subtype']}" if data.get("subtype") else "")
    name = (data.get("name") or {}).get("en", "")
    state = f"{data.get('status')}, {data.get('condition')}"
    if data.get("outcome"):
        state += f", outcome {data['outcome']}"
    return (
        f"webhook  {kind:<24} {data.get('lift_id')}  {data.get('severity')}  {code} "
        f"({name}) [{state}]  signature ok"
    )


def _describe_event(payload: bytes) -> str | None:
    body = json.loads(payload)
    kind = body.get("type")
    if kind == "alarm_button":
        return "alarm button " + ("PRESSED" if body.get("pressed") else "released")
    if kind == "fault":
        state = "active" if body.get("active") else "cleared"
        text = f" {body['text']!r}" if body.get("text") else ""
        return f"controller fault {body.get('namespace')} {body.get('code')}{text} {state}"
    if kind == "end_of_alarm":
        return "END OF ALARM at the installation" + (f" by {body['by']}" if body.get("by") else "")
    return None  # a self-test: routine, every lift runs one at start


class _Story:
    """What the simulated lifts do, as readable lines."""

    def __init__(self, say: _Say) -> None:
        self.say = say
        self.mode: dict[str, str] = {}
        self.outside: dict[str, bool] = {}

    def step(self, at_ms: int, step: Step) -> None:
        lifts = ", ".join(step.lifts)
        text = step.note or f"{step.do}"
        self.say(f"story    {lifts}: {text}", at_ms)

    def output(self, item: Output) -> None:
        if isinstance(item, LinkChange):
            state = "back online" if item.up else "link lost (the broker publishes its Last Will)"
            self.say(f"device   {item.lift_id}: {state}", item.at_ms)
            return
        if item.malformed:
            return
        if item.kind == "event":
            text = _describe_event(item.payload)
            if text:
                self.say(f"device   {item.lift_id}: {text}", item.at_ms)
        elif item.kind == "telemetry":
            self._telemetry(item.lift_id, json.loads(item.payload), item.at_ms)

    def _telemetry(self, lift: str, state: dict[str, Any], at_ms: int) -> None:
        mode = str(state.get("service_mode"))
        if self.mode.get(lift, mode) != mode:
            self.say(f"device   {lift}: service mode {mode}", at_ms)
        self.mode[lift] = mode
        # The moments a reader needs to follow the story: a car standing outside a door
        # zone (trapped riders, an inspection stop) and its way back.
        outside = state.get("car_status") == "stopped" and not state.get("door_zone")
        if outside != self.outside.get(lift, False):
            if outside:
                riders = " with passengers inside" if state.get("passenger_present") else ""
                self.say(
                    f"device   {lift}: car stopped OUTSIDE the door zone near floor "
                    f"{state.get('floor')}{riders}",
                    at_ms,
                )
            else:
                self.say(f"device   {lift}: car {state.get('car_status')} again", at_ms)
        self.outside[lift] = outside


class _DispatcherBot(threading.Thread):
    """The maintenance company's dispatcher: acknowledges every critical alarm through the
    API with the maintainer token (FAULTS.md: a critical alarm escalates until acknowledged)."""

    def __init__(self, stack: Stack, token: str, say: _Say) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.api = stack.client(token)
        self.say = say
        self.todo: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def on_event(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event.get("type") == "alarm.raised" and data.get("severity") == "critical":
            self.todo.put(data)

    def run(self) -> None:
        while (alarm := self.todo.get()) is not None:
            with contextlib.suppress(httpx.HTTPError):
                r = self.api.post(
                    f"/alarms/{alarm['alarm_id']}/acknowledge",
                    json={"note": "dispatcher: rescue team on its way"},
                )
                if r.status_code == 200:
                    self.say(
                        f"api      dispatcher acknowledges {alarm['code']} on "
                        f"{alarm['lift_id']} (POST /alarms/{alarm['alarm_id']}/acknowledge)"
                    )

    def close(self) -> None:
        self.todo.put(None)
        self.join(5)
        self.api.close()


class _Muted(threading.Thread):
    """Suppressed alarms are recorded but never notified (FAULTS.md): show them by asking
    the API, as an inspector would."""

    def __init__(self, stack: Stack, token: str, say: _Say) -> None:
        super().__init__(name="muted-alarms", daemon=True)
        self.api = stack.client(token)
        self.say = say
        self.stop = threading.Event()
        self.seen: set[str] = set()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(httpx.HTTPError, StackError):
                for alarm in list_alarms(self.api, include_suppressed="true"):
                    if alarm["suppressed"] and alarm["alarm_id"] not in self.seen:
                        self.seen.add(alarm["alarm_id"])
                        self.say(
                            f"alarm    {alarm['lift_id']}  {alarm['severity']}  {alarm['code']} "
                            f"recorded as SUPPRESSED ({alarm['suppressed_reason']}): "
                            "no webhook, by design"
                        )

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.api.close()


def _port(requested: int | None) -> int:
    if requested is not None:
        return requested
    if os.environ.get("LIFTWATCH_API_PORT"):
        return int(os.environ["LIFTWATCH_API_PORT"])
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8000))
        except OSError:
            return 0  # 8000 is taken: any free port (the URL is printed)
    return 8000


def _serve_log(say: _Say) -> Any:
    """Show ``liftwatch serve``'s warnings and errors, one line each; the rest (and any
    traceback) stays in its log file."""

    def on_log(line: str) -> None:
        for level in (" WARNING ", " ERROR ", " CRITICAL "):
            if level in line:
                say(f"server   {level.strip().lower()}: {line.split(level, 1)[1][:200]}")

    return on_log


def _interrupt(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"liftwatch demo: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops as Ctrl-C does
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="liftwatch-demo-"))
    say = _Say()
    say(f"liftwatch demo: {scenario.description or scenario.name}")
    say(f"(everything runs locally in {workdir}; Ctrl-C stops it all)\n")
    stack: Stack | None = None
    parts: list[Any] = []
    code = 0
    try:
        stack = start_stack(
            workdir,
            mqtt_url=os.environ.get("LIFTWATCH_MQTT_URL") or None,
            influx_url=os.environ.get("LIFTWATCH_INFLUX_URL") or None,
            port=_port(args.port),
            on_log=_serve_log(say),
            progress=lambda text: say(f"setup    {text}"),
        )
        code = _run(stack, scenario, args.once, say, parts)
    except KeyboardInterrupt:
        say("stopping (Ctrl-C)…")
    except (StackError, ServiceError, httpx.HTTPError, OSError) as exc:
        say(f"liftwatch demo: {exc}")
        code = EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = _clean_up(stack, parts, say, workdir, keep=args.data_dir is not None) or code
    return code


def _run(stack: Stack, scenario: Scenario, once: bool, say: _Say, parts: list[Any]) -> int:
    with stack.client() as admin:
        register_scenario(admin, scenario, *COMPANY, extra=LIFT_CARDS)
        inspector = create_token(admin, "inspector", "city inspectorate")
        maintainer = create_token(admin, "maintainer", "demo dispatch", COMPANY[0])
        logins = {
            "dispatcher": create_user(admin, "dispatcher", "maintainer", COMPANY[0]),
            "inspector": create_user(admin, "inspector", "inspector"),
            "admin": create_user(admin, "admin", "admin"),
        }
    lifts = ", ".join(spec.id for spec in scenario.lifts)
    say(
        f"setup    registered company {COMPANY[0]!r} and its lifts {lifts};"
        " tokens and console logins created"
    )

    dispatcher = _DispatcherBot(stack, maintainer, say)
    receiver = _Receiver(dispatcher.on_event, say)
    parts += [receiver, dispatcher]
    with stack.client(maintainer) as api:
        r = api.post("/webhooks", json={"url": receiver.url, "description": "liftwatch demo"})
        if r.status_code != 201:
            raise StackError(f"subscribing the webhook receiver: HTTP {r.status_code}: {r.text}")
        receiver.secret = r.json()["secret"]
    say(f"setup    webhook receiver {receiver.url} subscribed (signatures verified)")
    dispatcher.start()
    muted = _Muted(stack, inspector, say)
    muted.start()
    parts.append(muted)

    base = f"{stack.api_url}/api/v1"
    console_logins = "".join(
        f"               {name} / {pw}"
        + (f"   (maintainer of company {COMPANY[0]})" if name == "dispatcher" else "")
        + "\n"
        for name, pw in logins.items()
    )
    say(
        f"\nliftwatch is running:\n"
        f"  API          {base}\n"
        f"  console      {stack.api_url}/console/   log in as (user / password)\n"
        f"{console_logins}"
        f"  docs         {stack.docs_url}\n"
        f"  inspector    {inspector}\n"
        f"  maintainer   {maintainer}   (company {COMPANY[0]})\n"
        f"  try:  curl -s -H 'Authorization: Bearer {inspector}' '{base}/alarms?status=open'\n"
        f"  server log   {stack.serve.log_path}\n"
    )
    story = _Story(say)

    def started(sim: Simulation) -> None:
        say.story_start_ms = sim.start_ms
        say(f"story    begins: {len(scenario.lifts)} lifts, {sim.duration_s:.0f} s")

    run_scenario(
        scenario,
        stack.mqtt_url,
        stack.prefix,
        client_id_prefix="liftwatch-demo",
        on_start=started,
        on_step=story.step,
        on_output=story.output,
    )
    expected = _wait_for_webhooks(stack, inspector, receiver)
    say(
        f"story    complete: {receiver.verified} webhooks received, "
        f"{receiver.verified} signatures ok, {receiver.invalid} rejected; "
        f"{len(expected - receiver.raised())} alarms without their webhook"
    )
    ok = receiver.invalid == 0 and not expected - receiver.raised()
    if once:
        return 0 if ok else EXIT_FAILED
    say("\nliftwatch keeps running: try the API and the docs above. Ctrl-C stops everything.")
    exit_code = stack.serve.proc.wait()  # until Ctrl-C, or until the server stops by itself
    say(f"liftwatch serve stopped by itself (exit code {exit_code}): {stack.serve.last_error()}")
    return EXIT_FAILED


def _wait_for_webhooks(stack: Stack, token: str, receiver: _Receiver) -> set[str]:
    """Every notified alarm's ``alarm.raised`` reaches the receiver (polled, 15 s at most)."""
    deadline = time.monotonic() + 15
    with stack.client(token) as api:
        while True:
            expected = {
                a["alarm_id"]
                for a in list_alarms(api, include_suppressed="false")
                if a["company_id"] == COMPANY[0]
            }
            if expected <= receiver.raised() or time.monotonic() > deadline:
                return expected
            time.sleep(0.2)


def _clean_up(
    stack: Stack | None, parts: list[Any], say: _Say, workdir: Path, *, keep: bool
) -> int:
    say.story_start_ms = None
    for part in reversed(parts):
        with contextlib.suppress(Exception):
            part.close()
    code = 0
    if stack is not None:
        serve_code = stack.close()
        names = ["liftwatch serve"] + [svc.name for svc in reversed(stack.started)]
        say(f"stopped: {', '.join(names)} (only what this demo started)")
        if serve_code not in (0, None):
            say(f"liftwatch serve exited with code {serve_code}; its log: {stack.serve.log_path}")
            code = EXIT_FAILED
    if keep:
        say(f"data and logs kept in {workdir}")
    else:
        logs = _remove_all_but_logs(workdir)
        if logs:
            say(f"logs kept in {workdir}: {', '.join(logs)} (the data is removed)")
    return code


def _remove_all_but_logs(workdir: Path) -> list[str]:
    """Remove the demo's data (stores, broker and InfluxDB files) but keep its logs where the
    demo said they are: a log named on screen must still exist after Ctrl-C."""
    kept = []
    for path in sorted(workdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()  # only once empty: directories holding a log stay
        elif path.suffix == ".log":
            kept.append(str(path.relative_to(workdir)))
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return sorted(kept)
