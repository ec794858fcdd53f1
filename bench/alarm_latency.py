"""Alarm latency benchmark: device publish → webhook receiver arrival (DESIGN.md target: p99
under 50 ms at 5,000 messages/s of background telemetry).

    .venv/bin/python -m bench.alarm_latency [--duration 30] [--rate 5000] [--lifts 1000]
                                            [--alarms 200] [--receiver-outage 60]
                                            [--outage-alarms 100]
                                            [--backend sqlite|postgresql|both] [--rounds 1]
                                            [--samples latencies.csv]
                                            [--replicas N [--compare]]

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

``--replicas N`` (N > 1 needs ``--backend postgresql``) runs N ``liftwatch alerts`` replicas
(docs/ha.md: ``LIFTWATCH_ALERTS_REPLICA_ID`` r1…rN, each with its own MQTT session, so every
replica receives and evaluates every message; the partition leases in PostgreSQL decide which
one commits and notifies each lift's alarms) instead of one process. The run starts once every
replica is connected and the 64 partitions are spread (each replica at or under its fair
share), and each replica's webhook connection is warmed by one alarm on a spare lift of its
partitions. ``--compare`` measures, in the same invocation and with everything else fresh
each time, one replica (``r1``) and then N replicas under the same load (``--rounds`` times,
alternating which goes first).

*Throughput* (with ``--replicas``/``--compare``) is the rate at which each replica evaluated
messages while the telemetry was being published: the growth of its
``liftwatch_alerts_messages_total`` (its ``/metrics``, scraped just before the publisher
starts and just after it stops) over the publisher's running time, averaged over the
replicas (``throughput_min`` is the slowest). In hot standby every replica evaluates every
message, so under the same offered load ``throughput_ratio`` (N replicas' over one's) near
1.0 means each of N replicas keeps up as one does; a replica falling behind shows below it.
``sent_rate`` is the telemetry rate the publisher achieved (on a loaded machine it can fall
short of ``--rate``: compare the throughput with it). ``cpu_s`` is the CPU time (user +
system, ``/proc``) a replica used during that phase; ``checkpoint_rows_s`` the
``lift_checkpoints`` rows written per second meanwhile (PostgreSQL's ``pg_stat_user_tables``:
inserts + updates; its statistics lag by up to a second) and ``wal_mb_s`` the server's WAL
written per second (``pg_current_wal_lsn``), all writers.

``--logs DIR`` keeps each run's ``liftwatch alerts`` logs (and PostgreSQL's) in DIR.

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
``p99_ratio=…`` (PostgreSQL's p99 over SQLite's). With ``--replicas N`` (no ``--compare``)
``replicas=N sent_rate=… throughput=… throughput_min=… cpu_s=… checkpoint_rows_s=…
wal_mb_s=… load1=…`` follow ``backend=postgresql``. With ``--compare`` the last line is
``replicas=N p99_ms_1=… p99_ms_N=… p99_ratio=… throughput_1=… throughput_N=…
throughput_ratio=… lost=…`` (``lost`` of both legs together), then per leg (suffix ``_1``,
``_N``) ``lost``, ``p50_ms``, ``p95_ms``, ``bad_signatures``, ``sent_rate``,
``throughput_min``, ``cpu_s``, ``checkpoint_rows_s``, ``wal_mb_s``, the MQTT baseline's p99
(and the backlog's figures with ``--receiver-outage``), then ``backend=postgresql rate=…
load1=…`` (the 1-minute load average at the end).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alerts.webhooks import signing
from liftwatch.localservices import Mosquitto, PostgreSQL, free_port
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, leases
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver, Responder

PREFIX = "bench"
SPARES = 16  # spare lifts beyond the warm-up one, for the replicas' warm-up alarms
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
    throughput: list[float] = field(default_factory=list)  # msg/s, one per replica and run
    cpu: list[float] = field(default_factory=list)  # CPU s, one per replica and run
    sent_rate: list[float] = field(default_factory=list)  # telemetry msg/s achieved, per run
    checkpoint_rows: list[float] = field(default_factory=list)  # rows/s written, per run
    wal_bytes: list[float] = field(default_factory=list)  # PostgreSQL WAL bytes/s, per run

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
            self.throughput + other.throughput,
            self.cpu + other.cpu,
            self.sent_rate + other.sent_rate,
            self.checkpoint_rows + other.checkpoint_rows,
            self.wal_bytes + other.wal_bytes,
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

    def rate(self) -> str:
        return f"{statistics.fmean(self.throughput):.0f}" if self.throughput else "nan"

    def replica_fields(self) -> dict[str, str]:
        """The replicas' throughput and CPU (see the module docstring)."""
        return {
            "sent_rate": f"{statistics.fmean(self.sent_rate):.0f}" if self.sent_rate else "nan",
            "throughput": self.rate(),
            "throughput_min": f"{min(self.throughput):.0f}" if self.throughput else "nan",
            "cpu_s": f"{statistics.fmean(self.cpu):.1f}" if self.cpu else "nan",
            "checkpoint_rows_s": (
                f"{statistics.fmean(self.checkpoint_rows):.0f}" if self.checkpoint_rows else "nan"
            ),
            "wal_mb_s": (
                f"{statistics.fmean(self.wal_bytes) / 1e6:.2f}" if self.wal_bytes else "nan"
            ),
        }


def seed(db: Database, lifts: int, receiver_url: str, spares: int = 0) -> None:
    reg.upsert_company(db, Company(company_id="bench", name="Bench"))
    for i in range(lifts + 1 + spares):
        reg.upsert_lift(db, Lift(lift_id=lift_id(i), company_id="bench", name=f"L{i}"))
    store.add_subscription(
        db,
        company_id="bench",
        url=receiver_url,
        secret=SECRET,
        filters={"event_types": ["alarm.raised"]},
        created_by="bench",
    )


class Replicas:
    """The ``liftwatch alerts`` processes of one run: the single default one (no replica id,
    no metrics port: as before ``--replicas``), or replicas r1…rN, each with its own MQTT
    session, log file and metrics port."""

    def __init__(self, root: Path, env: dict[str, str], count: int, named: bool) -> None:
        self.root = root
        self.names = [f"r{i + 1}" for i in range(count)] if named else [""]
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in self.names:
            child = dict(env)
            if name:
                child["LIFTWATCH_ALERTS_REPLICA_ID"] = name
                self.ports[name] = free_port()
                child["LIFTWATCH_ALERTS_METRICS_PORT"] = str(self.ports[name])
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "liftwatch", "alerts"],
                env=child,
                stdout=subprocess.DEVNULL,
                stderr=open(self.log(name), "wb"),  # noqa: SIM115 - lives as long as the child
            )

    def log(self, name: str) -> Path:
        return self.root / (f"alerts-{name}.log" if name else "alerts.log")

    def exited(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def tails(self) -> str:
        return "\n".join(
            f"--- {n or 'alerts'}\n{self.log(n).read_text()[-2000:]}" for n in self.names
        )

    def messages(self) -> dict[str, float]:
        """Each replica's ``liftwatch_alerts_messages_total`` (its /metrics)."""
        out: dict[str, float] = {}
        for name, port in self.ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            out[name] = next(
                float(line.split()[1])
                for line in text.splitlines()
                if line.startswith("liftwatch_alerts_messages_total ")
            )
        return out

    def cpu(self) -> dict[str, float]:
        """Each replica's CPU time so far (user + system, s)."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def store_writes(database_url: str) -> tuple[int, int]:
    """``lift_checkpoints`` rows written so far (inserts + updates, PostgreSQL's statistics)
    and the server's WAL position (bytes): what the replicas' checkpoints cost the store."""
    db = Database(database_url)
    try:
        db.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = db.conn.execute(
            "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd), 0),"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
            " FROM pg_stat_user_tables WHERE relname = 'lift_checkpoints'"
        ).fetchone()
    finally:
        db.close()
    return int(row[0]), int(row[1])


def spread(database_url: str, names: list[str]) -> dict[str, set[int]] | None:
    """Each replica's partitions once all 64 are held, each replica at or under its fair
    share (the lease rounds have settled); else None."""
    db = Database(database_url)
    try:
        rows = leases.leases(db)
        (now,) = db.conn.execute(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        ).fetchone()
    finally:
        db.close()
    held: dict[str, set[int]] = {n: set() for n in names}
    for row in rows:
        if row.owner in held and row.expires_at > int(now):
            held[row.owner].add(row.partition)
    share = -(-leases.PARTITIONS // len(names))
    counts = [len(p) for p in held.values()]
    if sum(counts) == leases.PARTITIONS and min(counts) > 0 and max(counts) <= share:
        return held
    return None


def measure(
    args: argparse.Namespace,
    root: Path,
    database_url: str | None,
    replicas: int = 1,
    named: bool = False,
) -> Run:
    """One run (see the module docstring) in ``root``, on the SQLite file under ``root/data``
    or on ``database_url`` (a fresh PostgreSQL database); ``named``: ``replicas`` replicas
    r1…rN with metrics (else the single unnamed ``liftwatch alerts`` of the default run)."""
    run = Run("postgresql" if database_url else "sqlite")
    broker = Mosquitto(root / "mosquitto")  # set_tcp_nodelay as deployed
    broker.start()
    receiver = RecordingReceiver()
    db = Database(database_url or root / "data" / "liftwatch.sqlite3")
    try:
        seed(db, args.lifts, receiver.url, SPARES if named else 0)
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
    env.pop("LIFTWATCH_ALERTS_REPLICA_ID", None)
    if database_url:
        env["LIFTWATCH_DATABASE_URL"] = database_url
    alerts = Replicas(root, env, replicas, named)
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
        # process is subscribed and the receiver's connection is pooled. Replicas: once the
        # partitions are spread, one spare lift in each replica's partitions.
        warms = [lift_id(args.lifts)]
        if named:
            assert database_url is not None
            deadline = time.monotonic() + 60
            while (held := spread(database_url, alerts.names)) is None:
                if time.monotonic() > deadline or alerts.exited():
                    say(alerts.tails())
                    raise SystemExit("the replicas did not spread the partitions")
                time.sleep(0.2)
            spares = [lift_id(args.lifts + 1 + j) for j in range(SPARES)]
            warms = []
            for name in alerts.names:
                mine = [w for w in spares if leases.partition_of(w) in held[name]]
                if not mine:
                    raise SystemExit(f"no spare lift in {name}'s partitions: raise SPARES")
                warms.append(mine[0])
            say("partitions: " + ", ".join(f"{n}={len(p)}" for n, p in held.items()))
        for warm in warms:
            deadline = time.monotonic() + 30
            while not [r for r in receiver.requests if raised_lift(r) == warm]:
                if time.monotonic() > deadline or alerts.exited():
                    say(alerts.tails())
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
        counted = alerts.messages() if named else {}
        cpu = alerts.cpu() if named else {}
        writes = store_writes(database_url) if named and database_url else None
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
        if named:
            took = time.monotonic() - start
            after = alerts.messages()
            cpu_after = alerts.cpu()
            run.throughput = [(after[n] - counted[n]) / took for n in alerts.names]
            run.cpu = [cpu_after[n] - cpu[n] for n in alerts.names]
            if writes is not None and database_url:
                rows, wal = (b - a for a, b in zip(writes, store_writes(database_url), strict=True))
                run.checkpoint_rows.append(rows / took)
                run.wal_bytes.append(wal / took)
            say(
                "evaluated msg/s per replica: "
                + ", ".join(
                    f"{n}={v:.0f}" for n, v in zip(alerts.names, run.throughput, strict=True)
                )
                + "; CPU s: "
                + ", ".join(f"{n}={v:.1f}" for n, v in zip(alerts.names, run.cpu, strict=True))
            )
        telemetry_sent = sent[0] if sent else 0
        if named:
            run.sent_rate.append(telemetry_sent / args.duration)
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
        alerts.stop()
        if args.logs is not None:
            keep = args.logs / root.name
            keep.mkdir(parents=True, exist_ok=True)
            for name in alerts.names:
                shutil.copy(alerts.log(name), keep)
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
    parser.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep the alerts and PostgreSQL logs in DIR"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="alerts replicas (N > 1 needs --backend postgresql)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="measure 1 replica, then --replicas N, under the same load in this invocation",
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    if args.replicas > 1 and args.backend != "postgresql":
        parser.error(
            "--replicas > 1 requires --backend postgresql (replicas share the PostgreSQL"
            " store's partition leases; a SQLite site runs one alerts process)"
        )
    if args.compare and args.replicas < 2:
        parser.error("--compare needs --replicas N with N ≥ 2 (it measures 1, then N)")
    if args.alarms >= args.lifts:
        parser.error("--alarms must be below --lifts (one alarm per lift; one lift warms up)")
    if args.receiver_outage and args.outage_alarms > args.lifts - args.alarms - 1:
        parser.error("--outage-alarms needs as many lifts beyond --alarms (one alarm per lift)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.replicas > 1:
        return main_replicas(args)
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
                if args.logs is not None:
                    shutil.copy(pg.log_path, args.logs)
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


def main_replicas(args: argparse.Namespace) -> int:
    """``--replicas N`` on PostgreSQL; with ``--compare`` one replica and N replicas in turn
    (``--rounds`` times, alternating which goes first), each on a fresh database, broker,
    receiver and processes."""
    counts = [1, args.replicas] if args.compare else [args.replicas]
    runs: dict[int, Run] = {c: Run("postgresql") for c in counts}
    with tempfile.TemporaryDirectory(prefix="liftwatch-bench-") as tmp:
        root = Path(tmp)
        pg = PostgreSQL(root / "postgresql")
        try:
            pg.start()
            for n in range(args.rounds):
                for count in counts if n % 2 == 0 else counts[::-1]:
                    url = pg.create_database(f"bench_{n}_{count}")
                    say(f"round {n + 1}/{args.rounds}: {count} replica(s) on postgresql")
                    runs[count] += measure(args, root / f"r{count}-{n}", url, count, named=True)
        finally:
            pg.stop()
            if args.logs is not None:
                shutil.copy(pg.log_path, args.logs)
    load = os.getloadavg()[0]
    many = runs[args.replicas]
    if not args.compare:
        if not many.latencies:
            print(f"p50_ms=nan p95_ms=nan p99_ms=nan lost={many.lost} replicas={args.replicas}")
            return 1
        extra = " ".join(f"{k}={v}" for k, v in many.replica_fields().items())
        print(f"{many.line()} backend=postgresql replicas={args.replicas} {extra} load1={load:.2f}")
        return 0
    one = runs[1]
    n = args.replicas
    p99_1 = percentile(one.latencies, 0.99) if one.latencies else float("nan")
    p99_n = percentile(many.latencies, 0.99) if many.latencies else float("nan")
    t1 = statistics.fmean(one.throughput) if one.throughput else float("nan")
    tn = statistics.fmean(many.throughput) if many.throughput else float("nan")
    fields = {
        "replicas": str(n),
        "p99_ms_1": f"{p99_1:.1f}",
        f"p99_ms_{n}": f"{p99_n:.1f}",
        "p99_ratio": f"{p99_n / p99_1:.2f}" if p99_1 else "nan",
        "throughput_1": f"{t1:.0f}",
        f"throughput_{n}": f"{tn:.0f}",
        "throughput_ratio": f"{tn / t1:.3f}" if t1 else "nan",
        "lost": str(one.lost + many.lost),
    }
    for count, run in ((1, one), (n, many)):
        mqtt = percentile(run.base_mqtt, 0.99) if run.base_mqtt else float("nan")
        fields.update(
            {
                f"lost_{count}": str(run.lost),
                f"p50_ms_{count}": run.p(0.50),
                f"p95_ms_{count}": run.p(0.95),
                f"bad_signatures_{count}": str(run.bad_signatures),
                f"sent_rate_{count}": run.replica_fields()["sent_rate"],
                f"throughput_min_{count}": run.replica_fields()["throughput_min"],
                f"cpu_s_{count}": run.replica_fields()["cpu_s"],
                f"checkpoint_rows_s_{count}": run.replica_fields()["checkpoint_rows_s"],
                f"wal_mb_s_{count}": run.replica_fields()["wal_mb_s"],
                f"baseline_mqtt_p99_ms_{count}": f"{mqtt:.1f}",
            }
        )
        for key, value in run.outage().items():
            fields[f"{key}_{count}"] = value
    fields["backend"] = "postgresql"
    fields["rate"] = str(args.rate)
    fields["load1"] = f"{load:.2f}"
    print(" ".join(f"{k}={v}" for k, v in fields.items()))
    return 0 if one.latencies and many.latencies else 1


if __name__ == "__main__":
    sys.exit(main())
