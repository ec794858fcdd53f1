"""Alarm latency benchmark: device publish → webhook receiver arrival (DESIGN.md target: p99
under 50 ms at 5,000 messages/s of background telemetry).

    .venv/bin/python -m bench.alarm_latency [--duration 30] [--rate 5000] [--lifts 1000]
                                            [--alarms 200] [--receiver-outage 60]
                                            [--outage-alarms 100]
                                            [--backend sqlite|postgresql|both] [--rounds 1]
                                            [--samples latencies.csv]

A private Mosquitto (``liftwatch.localservices``) and the real ``liftwatch alerts`` process
(its own ``LIFTWATCH_*`` environment, a fresh store holding ``--lifts`` registered lifts
and one webhook subscription) are started. The store is a SQLite file (``--backend sqlite``,
the default) or a fresh database on a private PostgreSQL server started here in the bench's
temp dir (``liftwatch.localservices.PostgreSQL``, never the machine's own; stopped at the end)
named to the alerts process by ``LIFTWATCH_DATABASE_URL`` (``--backend postgresql``).
``--backend both`` measures SQLite and PostgreSQL in the same invocation, one after the other
with everything else fresh each time (broker, receiver, alerts process), ``--rounds`` times,
alternating which goes first; each backend's figures pool its rounds' alarms.

A separate process publishes telemetry at ``--rate`` messages/s (QoS 0) cycling over the
lifts, in normal service (no alarm). Meanwhile ``--alarms`` alarm-button events (QoS 1), each
on a different lift, are spread evenly over the run. Latency = time the receiver (a real
HTTP server in this process) got ``alarm.raised`` minus the time just before the event was
published; both clocks are this host's. ``lost`` counts alarms not received within 10 s
after the run.

The broker (``liftwatch/localservices.py``) runs with the production setting
``set_tcp_nodelay true`` (``deploy/mosquitto/mosquitto.conf``): without it Nagle's algorithm
on the broker's socket to ``liftwatch alerts``, which only ever receives telemetry and so
sends no data for the kernel to piggyback ACKs on, meets the 40 ms delayed ACK and holds the
alarm back ~40 ms.

Same-run baselines, so that a figure from a busy shared machine can be read: a plain MQTT
subscriber of the alarm-button topic only (publish → broker → subscriber, same broker, same
load: the floor under any MQTT consumer) and direct POSTs from this process to the same
receiver, one between each two alarms (POST → arrival: the receiver's own share).

With ``--receiver-outage S`` a second phase follows (issue 12 item 6, "a recovered receiver
gets its backlog at once"): the receiver answers 500 for S seconds while ``--outage-alarms``
alarm buttons (other lifts) are pressed, spread over the first 90 % of the outage, under the
same telemetry rate; then it answers 204 again. ``backlog_drained_s`` is the time from the
recovery until the last of them was answered 2xx, ``backlog_lost`` those not answered 2xx
within 120 s of the recovery, ``backlog_dups`` extra 2xx answers of the same alarm (none is
expected: the webhook-id is the same, but a 2xx ends the delivery).

``--samples CSV`` appends every alarm's latency and its MQTT floor, with the time it was
published, to a file: whether a slow tail is spread over the run or one stall.

Every ``alarm.raised`` request is checked afterwards against the subscription's secret
(Standard Webhooks signature); ``bad_signatures`` counts those that do not verify.

Progress goes to stderr; the last stdout line is ``p50_ms=… p95_ms=… p99_ms=… lost=…
bad_signatures=…`` followed by the baselines (``baseline_mqtt_p50_ms=… baseline_mqtt_p99_ms=…
baseline_http_p50_ms=… baseline_http_p99_ms=…``), then with ``--receiver-outage``
``backlog_drained_s=… backlog_waiting=… backlog_lost=… backlog_dups=…``. On PostgreSQL
``backend=postgresql`` follows; with ``--backend both`` the line is PostgreSQL's, and the
SQLite figures of the same invocation come after it with the suffix ``_sqlite``
(``p50_ms_sqlite=… p95_ms_sqlite=… p99_ms_sqlite=… lost_sqlite=…``, the backlog's too), then
``p99_ratio=…`` (PostgreSQL's p99 over SQLite's).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alerts.webhooks import signing
from liftwatch.localservices import Mosquitto, PostgreSQL
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver, Responder

PREFIX = "bench"
SECRET = "whsec_" + "B" * 40
IDLE = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "1",
    "door_zone": True,
    "doors_closed": True,
    "passenger_present": False,
    "speed": 0.0,
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def lift_id(i: int) -> str:
    return f"bench-{i:05d}"


def _client(url: str, name: str) -> paho.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv311)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    return client


def telemetry_publisher(url: str, lifts: int, rate: int, duration: float, sent: list[int]) -> None:
    """Runs in its own process: ``rate`` messages/s over ``lifts`` lifts, paced every 10 ms."""
    client = _client(url, "bench-telemetry")
    seqs = [100] * lifts
    n, start = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < duration:
            due = int(elapsed * rate)
            while n < due:
                i = n % lifts
                seqs[i] += 1
                body = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": seqs[i], **IDLE}
                client.publish(f"{PREFIX}/{lift_id(i)}/telemetry", json.dumps(body), qos=0)
                n += 1
            time.sleep(0.01)
    finally:
        sent.append(n)
        client.disconnect()
        client.loop_stop()


def press(client: paho.Client, lift: str, seq: int) -> float:
    body = {
        "v": 1,
        "ts": time.time_ns() // 1_000_000,
        "seq": seq,
        "type": "alarm_button",
        "pressed": True,
    }
    at = time.time()
    client.publish(f"{PREFIX}/{lift}/event", json.dumps(body), qos=1)
    return at


class DirectPoster:
    """Direct POSTs to the receiver over one kept-alive connection (the HTTP baseline)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.sent: dict[str, float] = {}

    def post(self, key: str) -> None:
        body = json.dumps({"type": "bench.direct", "data": {"key": key}}).encode()
        self.sent[key] = time.time()
        self.conn.request("POST", "/direct", body, {"content-type": "application/json"})
        self.conn.getresponse().read()

    def close(self) -> None:
        self.conn.close()


def direct_key(r: Received) -> str | None:
    body = json.loads(r.body)
    return str(body["data"]["key"]) if body["type"] == "bench.direct" else None


def raised_lift(r: Received) -> str | None:
    body = json.loads(r.body)
    return str(body["data"]["lift_id"]) if body["type"] == "alarm.raised" else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ok_or_500(down: threading.Event, answered: dict[str, list[float]]) -> Responder:
    """500 while ``down`` is set, else 204; records when each lift's raise was answered 2xx."""

    def answer(r: Received) -> tuple[int, dict[str, str], bytes]:
        if down.is_set():
            return 500, {}, b"down"
        lift = raised_lift(r) if r.path == "/hook" else None
        if lift is not None:
            answered.setdefault(lift, []).append(time.time())
        return 204, {}, b""

    return answer


def receiver_outage(
    args: argparse.Namespace, broker_url: str, receiver: RecordingReceiver, buttons: paho.Client
) -> dict[str, str]:
    """The outage phase (see the module docstring); returns its fields, formatted."""
    step = args.lifts // args.alarms
    lifts = [lift_id(i) for i in range(args.lifts) if i % step][: args.outage_alarms]
    down = threading.Event()
    down.set()
    answered: dict[str, list[float]] = {}
    receiver.responder = ok_or_500(down, answered)
    manager = multiprocessing.Manager()
    sent = manager.list()
    bg = multiprocessing.Process(
        target=telemetry_publisher,
        args=(broker_url, args.lifts, args.rate, args.receiver_outage + 20, sent),
    )
    bg.start()
    start = time.monotonic()
    gap = 0.9 * args.receiver_outage / max(1, len(lifts))
    say(f"receiver down for {args.receiver_outage:g} s; {len(lifts)} alarm buttons meanwhile")
    for k, lift in enumerate(lifts):
        target = start + gap * k
        while (left := target - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        press(buttons, lift, 2)
    while (left := start + args.receiver_outage - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
    tried = {raised_lift(r) for r in list(receiver.requests)}
    waiting = sum(1 for lift in lifts if lift in tried)
    down.clear()
    recovered = time.time()
    say(f"receiver answers 204 again; {waiting}/{len(lifts)} alarms had been tried and wait")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(lift in answered for lift in lifts):
        time.sleep(0.05)
    bg.join()
    done = [min(answered[lift]) for lift in lifts if lift in answered]
    drained = max(done) - recovered if done else float("nan")
    dups = sum(len(answered[lift]) - 1 for lift in lifts if lift in answered)
    lost = len(lifts) - len(done)
    say(f"backlog: {len(done)}/{len(lifts)} answered 2xx, the last {drained:.1f} s after recovery")
    return {
        "backlog_drained_s": f"{drained:.1f}",
        "backlog_waiting": str(waiting),
        "backlog_lost": str(lost),
        "backlog_dups": str(dups),
    }


def signed(r: Received) -> bool:
    """The request's ``webhook-signature`` verifies with the subscription's secret."""
    try:
        stamp = int(r.headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    return signing.verify(
        SECRET,
        r.headers.get("webhook-id", ""),
        stamp,
        r.body,
        r.headers.get("webhook-signature", ""),
    )


@dataclass
class Run:
    """One backend's measurements: of one run, or pooled over several (``+``)."""

    backend: str
    published: int = 0
    latencies: list[float] = field(default_factory=list)
    bad_signatures: int = 0
    base_mqtt: list[float] = field(default_factory=list)
    base_http: list[float] = field(default_factory=list)
    outages: list[dict[str, str]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.published - len(self.latencies)

    def __add__(self, other: Run) -> Run:
        return Run(
            self.backend,
            self.published + other.published,
            self.latencies + other.latencies,
            self.bad_signatures + other.bad_signatures,
            self.base_mqtt + other.base_mqtt,
            self.base_http + other.base_http,
            self.outages + other.outages,
        )

    def p(self, q: float) -> str:
        return f"{percentile(self.latencies, q):.1f}" if self.latencies else "nan"

    def outage(self) -> dict[str, str]:
        """The outage phase's fields; over several rounds the worst of each (a sum for the
        counts of alarms lost or answered twice)."""
        if not self.outages:
            return {}
        if len(self.outages) == 1:
            return self.outages[0]
        drained = [float(o["backlog_drained_s"]) for o in self.outages]
        return {
            "backlog_drained_s": f"{max(drained):.1f}",
            "backlog_waiting": str(min(int(o["backlog_waiting"]) for o in self.outages)),
            "backlog_lost": str(sum(int(o["backlog_lost"]) for o in self.outages)),
            "backlog_dups": str(sum(int(o["backlog_dups"]) for o in self.outages)),
        }

    def line(self) -> str:
        """Today's key=value line of this run."""
        baselines = " ".join(
            f"baseline_{name}_p{q}_ms={percentile(values, q / 100):.1f}" if values else ""
            for name, values in (("mqtt", self.base_mqtt), ("http", self.base_http))
            for q in (50, 99)
        )
        outage = " ".join(f"{k}={v}" for k, v in self.outage().items())
        return (
            f"p50_ms={self.p(0.50)} p95_ms={self.p(0.95)} p99_ms={self.p(0.99)} lost={self.lost}"
            f" bad_signatures={self.bad_signatures} {baselines} {outage}"
        ).strip()

    def beside(self) -> str:
        """This run's alarm and backlog figures with the suffix ``_<backend>``, to be printed
        beside another backend's line."""
        fields = {
            "p50_ms": self.p(0.50),
            "p95_ms": self.p(0.95),
            "p99_ms": self.p(0.99),
            "lost": str(self.lost),
            "bad_signatures": str(self.bad_signatures),
        }
        fields.update({k: v for k, v in self.outage().items() if k != "backlog_waiting"})
        return " ".join(f"{k}_{self.backend}={v}" for k, v in fields.items())


def seed(db: Database, lifts: int, receiver_url: str) -> None:
    reg.upsert_company(db, Company(company_id="bench", name="Bench"))
    for i in range(lifts + 1):
        reg.upsert_lift(db, Lift(lift_id=lift_id(i), company_id="bench", name=f"L{i}"))
    store.add_subscription(
        db,
        company_id="bench",
        url=receiver_url,
        secret=SECRET,
        filters={"event_types": ["alarm.raised"]},
        created_by="bench",
    )


def measure(args: argparse.Namespace, root: Path, database_url: str | None) -> Run:
    """One run (see the module docstring) in ``root``, on the SQLite file under ``root/data``
    or on ``database_url`` (a fresh PostgreSQL database)."""
    run = Run("postgresql" if database_url else "sqlite")
    broker = Mosquitto(root / "mosquitto")  # set_tcp_nodelay as deployed
    broker.start()
    receiver = RecordingReceiver()
    db = Database(database_url or root / "data" / "liftwatch.sqlite3")
    try:
        seed(db, args.lifts, receiver.url)
    finally:
        db.close()
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": broker.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": PREFIX,
        "LIFTWATCH_DATA_DIR": str(root / "data"),
        "LIFTWATCH_ALERTS_CLIENT_ID": "bench-alerts",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        # The company's subscription reaches the local receiver through the allow-list.
        "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
        "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
    }
    env.pop("LIFTWATCH_DATABASE_URL", None)
    if database_url:
        env["LIFTWATCH_DATABASE_URL"] = database_url
    alerts = subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "alerts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "alerts.log", "wb"),  # noqa: SIM115 - lives as long as the child
    )
    buttons = _client(broker.url, "bench-buttons")
    # The MQTT baseline: the alarm-button topic only, QoS 1 like liftwatch alerts.
    baseline: dict[str, float] = {}

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        baseline.setdefault(msg.topic.split("/")[1], time.time())

    watcher = _client(broker.url, "bench-baseline")
    watcher.on_message = on_message
    watcher.subscribe(f"{PREFIX}/+/event", qos=1)
    direct = DirectPoster(receiver.port)
    try:
        # Warm-up: press one spare lift's button until its alarm arrives, so the alerts
        # process is subscribed and the receiver's connection is pooled.
        warm = lift_id(args.lifts)
        deadline = time.monotonic() + 30
        while not [r for r in receiver.requests if raised_lift(r) == warm]:
            if time.monotonic() > deadline or alerts.poll() is not None:
                say((root / "alerts.log").read_text()[-2000:])
                raise SystemExit("liftwatch alerts did not come up")
            press(buttons, warm, 1)
            time.sleep(0.5)
        receiver.requests.clear()
        say(
            f"alerts up on {run.backend}; {args.rate} msg/s telemetry over {args.lifts} lifts "
            f"for {args.duration:g} s, {args.alarms} alarm buttons"
        )

        manager = multiprocessing.Manager()
        sent = manager.list()
        bg = multiprocessing.Process(
            target=telemetry_publisher,
            args=(broker.url, args.lifts, args.rate, args.duration, sent),
        )
        bg.start()
        published: dict[str, float] = {}
        start = time.monotonic()
        gap = args.duration / (args.alarms + 1)
        for k in range(args.alarms):
            target = start + gap * (k + 1)
            while (left := target - time.monotonic()) > 0:
                time.sleep(min(left, 0.05))
            lift = lift_id(k * (args.lifts // args.alarms))
            published[lift] = press(buttons, lift, 1)
            # Half a gap later (far from any alarm in flight): the HTTP baseline.
            target += gap / 2
            while (left := target - time.monotonic()) > 0:
                time.sleep(min(left, 0.05))
            direct.post(str(k))
        bg.join()
        telemetry_sent = sent[0] if sent else 0
        say(
            f"telemetry sent: {telemetry_sent} "
            f"({telemetry_sent / args.duration:.0f} msg/s achieved)"
        )
        lock = threading.Event()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            got = {raised_lift(r): r.arrived for r in list(receiver.requests)}
            if all(lift in got for lift in published):
                break
            lock.wait(0.1)
        got = {}
        for r in list(receiver.requests):
            lift_or_none = raised_lift(r)
            if lift_or_none is None:
                continue
            run.bad_signatures += not signed(r)
            if lift_or_none not in got:
                got[lift_or_none] = r.arrived
        run.published = len(published)
        run.latencies = [(got[lift] - at) * 1000 for lift, at in published.items() if lift in got]
        run.base_mqtt = [(baseline[k] - at) * 1000 for k, at in published.items() if k in baseline]
        arrived = {key: r.arrived for r in list(receiver.requests) if (key := direct_key(r))}
        run.base_http = [(arrived[k] - at) * 1000 for k, at in direct.sent.items() if k in arrived]
        if args.samples is not None:
            with args.samples.open("a") as out:
                for lift, at in published.items():
                    ms = f"{(got[lift] - at) * 1000:.2f}" if lift in got else ""
                    floor = f"{(baseline[lift] - at) * 1000:.2f}" if lift in baseline else ""
                    out.write(f"{run.backend},{root.name},{lift},{at:.3f},{ms},{floor}\n")
        if args.receiver_outage:
            run.outages.append(receiver_outage(args, broker.url, receiver, buttons))
    finally:
        direct.close()
        for client in (buttons, watcher):
            client.disconnect()
            client.loop_stop()
        alerts.terminate()
        try:
            alerts.wait(10)
        except subprocess.TimeoutExpired:
            alerts.kill()
        receiver.close()
        broker.stop()
    if run.latencies:
        say(
            f"{run.backend}: alarms received {len(run.latencies)}/{run.published}; "
            f"mean {statistics.fmean(run.latencies):.1f} ms, max {max(run.latencies):.1f} ms; "
            f"{run.line()}"
        )
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--lifts", type=int, default=1000)
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--receiver-outage", type=float, default=0.0, metavar="S")
    parser.add_argument("--outage-alarms", type=int, default=100)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs per backend (alternating with both)"
    )
    parser.add_argument(
        "--samples",
        type=Path,
        metavar="CSV",
        help="append every alarm's latency to CSV: backend,run,lift,published_at,ms,mqtt_ms",
    )
    args = parser.parse_args()
    if args.alarms >= args.lifts:
        parser.error("--alarms must be below --lifts (one alarm per lift; one lift warms up)")
    if args.receiver_outage and args.outage_alarms > args.lifts - args.alarms - 1:
        parser.error("--outage-alarms needs as many lifts beyond --alarms (one alarm per lift)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    runs: dict[str, Run] = {b: Run(b) for b in backends}

    with tempfile.TemporaryDirectory(prefix="liftwatch-bench-") as tmp:
        root = Path(tmp)
        pg = PostgreSQL(root / "postgresql") if "postgresql" in backends else None
        try:
            if pg is not None:
                pg.start()
            for n in range(args.rounds):
                # Alternate which backend goes first, so that neither always meets the
                # machine a run later (page cache, a neighbour's load).
                for backend in backends if n % 2 == 0 else backends[::-1]:
                    url = None
                    if backend == "postgresql":
                        assert pg is not None
                        url = pg.create_database(f"bench_{n}")
                    say(f"round {n + 1}/{args.rounds}: {backend}")
                    runs[backend] += measure(args, root / f"{backend}-{n}", url)
        finally:
            if pg is not None:
                pg.stop()
    main_run = runs["postgresql" if "postgresql" in runs else "sqlite"]
    if not main_run.latencies:
        print(f"p50_ms=nan p95_ms=nan p99_ms=nan lost={main_run.lost}")
        return 1
    line = main_run.line()
    if main_run.backend == "postgresql":
        line += " backend=postgresql"
    if "sqlite" in runs and main_run.backend != "sqlite":
        sqlite = runs["sqlite"]
        line += " " + sqlite.beside()
        if sqlite.latencies:
            ratio = percentile(main_run.latencies, 0.99) / percentile(sqlite.latencies, 0.99)
            line += f" p99_ratio={ratio:.2f}"
    print(line)
    return 0 if all(r.latencies for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
