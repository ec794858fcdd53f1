"""Alarm latency benchmark: device publish → webhook receiver arrival (DESIGN.md target: p99
under 50 ms at 5,000 messages/s of background telemetry).

    .venv/bin/python -m bench.alarm_latency [--duration 30] [--rate 5000] [--lifts 1000]
                                            [--alarms 200] [--receiver-outage 60]
                                            [--outage-alarms 100]

A private Mosquitto (``liftwatch.localservices``) and the real ``liftwatch alerts`` process
(its own ``LIFTWATCH_*`` environment, a fresh SQLite store holding ``--lifts`` registered lifts
and one webhook subscription) are started. A separate process publishes telemetry at
``--rate`` messages/s (QoS 0) cycling over the lifts, in normal service (no alarm). Meanwhile
``--alarms`` alarm-button events (QoS 1), each on a different lift, are spread evenly over the
run. Latency = time the receiver (a real HTTP server in this process) got ``alarm.raised``
minus the time just before the event was published; both clocks are this host's.
``lost`` counts alarms not received within 10 s after the run.

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

Progress goes to stderr; the last stdout line is ``p50_ms=… p95_ms=… p99_ms=… lost=…``
followed by the baselines (``baseline_mqtt_p50_ms=… baseline_mqtt_p99_ms=…
baseline_http_p50_ms=… baseline_http_p99_ms=…``), then with ``--receiver-outage``
``backlog_drained_s=… backlog_waiting=… backlog_lost=… backlog_dups=…``.
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
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.localservices import Mosquitto
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver, Responder

PREFIX = "bench"
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
) -> str:
    """The outage phase (see the module docstring); returns its key=value fields."""
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
    return (
        f"backlog_drained_s={drained:.1f} backlog_waiting={waiting} backlog_lost={lost}"
        f" backlog_dups={dups}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--lifts", type=int, default=1000)
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--receiver-outage", type=float, default=0.0, metavar="S")
    parser.add_argument("--outage-alarms", type=int, default=100)
    args = parser.parse_args()
    if args.alarms >= args.lifts:
        parser.error("--alarms must be below --lifts (one alarm per lift; one lift warms up)")
    if args.receiver_outage and args.outage_alarms > args.lifts - args.alarms - 1:
        parser.error("--outage-alarms needs as many lifts beyond --alarms (one alarm per lift)")
    outage = ""

    with tempfile.TemporaryDirectory(prefix="liftwatch-bench-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto")  # set_tcp_nodelay as deployed
        broker.start()
        receiver = RecordingReceiver()
        db = Database(root / "data" / "liftwatch.sqlite3")
        reg.upsert_company(db, Company(company_id="bench", name="Bench"))
        for i in range(args.lifts + 1):
            reg.upsert_lift(db, Lift(lift_id=lift_id(i), company_id="bench", name=f"L{i}"))
        store.add_subscription(
            db,
            company_id="bench",
            url=receiver.url,
            secret="whsec_" + "B" * 40,
            filters={"event_types": ["alarm.raised"]},
            created_by="bench",
        )
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
                f"alerts up; {args.rate} msg/s telemetry over {args.lifts} lifts for "
                f"{args.duration:g} s, {args.alarms} alarm buttons"
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
                if lift_or_none is not None and lift_or_none not in got:
                    got[lift_or_none] = r.arrived
            latencies = [(got[lift] - at) * 1000 for lift, at in published.items() if lift in got]
            lost = len(published) - len(latencies)
            base_mqtt = [(baseline[k] - at) * 1000 for k, at in published.items() if k in baseline]
            arrived = {key: r.arrived for r in list(receiver.requests) if (key := direct_key(r))}
            base_http = [(arrived[k] - at) * 1000 for k, at in direct.sent.items() if k in arrived]
            if args.receiver_outage:
                outage = receiver_outage(args, broker.url, receiver, buttons)
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
    if not latencies:
        print(f"p50_ms=nan p95_ms=nan p99_ms=nan lost={lost}")
        return 1
    say(
        f"alarms received: {len(latencies)}/{len(published)}; "
        f"mean {statistics.fmean(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    baselines = " ".join(
        f"baseline_{name}_p{q}_ms={percentile(values, q / 100):.1f}" if values else ""
        for name, values in (("mqtt", base_mqtt), ("http", base_http))
        for q in (50, 99)
    )
    print(
        f"p50_ms={percentile(latencies, 0.50):.1f} p95_ms={percentile(latencies, 0.95):.1f} "
        f"p99_ms={percentile(latencies, 0.99):.1f} lost={lost} {baselines} {outage}".strip()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
