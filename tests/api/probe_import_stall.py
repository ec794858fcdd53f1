"""Probe: does a large lift import through ``liftwatch serve`` delay alarms? (security review
#4; the figures in docs/registry.md § API import come from this script.)

    .venv/bin/python -m tests.api.probe_import_stall [--mib 31.99] [--after 25]

Starts a private Mosquitto and InfluxDB and the real ``liftwatch serve`` on free ports, with
one webhook subscription on a receiver in this process. Meanwhile: ``GET /healthz`` every
20 ms (latency recorded), and an alarm-button press on a fresh registered lift every 0.5 s
(press → ``alarm.raised`` webhook arrival recorded). After a 3 s baseline it POSTs a
``--mib`` MiB CSV registry (about 8,500 rows per MiB) to ``/lifts/import``, and keeps
measuring for ``--after`` seconds once the import has answered. Prints one line per phase
(``before``; ``import``: parsing, validating and writing, from the API's ``event=lift_import``
log line; ``engine_refresh``: the in-process alerts engine taking the new lifts in, before the
API answers; ``after``): ``phase=… healthz_max_ms=… healthz_p99_ms=… press_max_ms=…
press_p50_ms=… presses=… lost=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.localservices import InfluxDB, Mosquitto
from simulator.receiver import Received, RecordingReceiver
from simulator.stack import ServeProcess

ADMIN = "probe-admin-token-0123456789"
PREFIX = "probe"


def registry_csv(nbytes: int, company: str = "acme", first: int = 0) -> bytes:
    """A registry CSV of about ``nbytes`` (never more), every row valid."""
    head = (
        "lift_id,registration_code,rescue_code,name,address,area_code,company_id,"
        "rated_speed,floors,urban,active\n"
    )
    out, size, i = [head], len(head), first
    while True:
        row = (
            f"L{i:010d},R{i:012d},{i % 1000000:06d},Lift {i} of the big estate,"
            f"No. {i} Long Road district {i % 97},A{i % 1000:04d},{company},1.75,"
            f"{2 + i % 40},true,true\n"
        )
        if size + len(row) > nbytes:
            return "".join(out).encode()
        out.append(row)
        size += len(row)
        i += 1


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=float, default=31.99)
    ap.add_argument("--after", type=float, default=25.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lw-import-probe-"))
    mosquitto, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
    mosquitto.start()
    influx.start()
    receiver = RecordingReceiver()
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": mosquitto.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": PREFIX,
        "LIFTWATCH_INFLUX_URL": influx.url,
        "LIFTWATCH_INFLUX_DATABASE": "probe",
        "LIFTWATCH_DATA_DIR": str(work / "data"),
        "LIFTWATCH_ADMIN_TOKEN": ADMIN,
        # The company's subscription to the local receiver: accepted by the API (ALLOW_PRIVATE),
        # delivered through the allow-list (docs/webhooks.md § private targets).
        "LIFTWATCH_WEBHOOK_ALLOW_PRIVATE": "true",
        "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
    }
    serve = ServeProcess(env, work / "serve.log")
    try:
        return _run(serve, receiver, mosquitto.url, args)
    finally:
        serve.stop()
        receiver.close()
        influx.stop()
        mosquitto.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(
    serve: ServeProcess, receiver: RecordingReceiver, mqtt_url: str, args: argparse.Namespace
) -> int:
    url = serve.wait_ready()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    presses = 200
    with httpx.Client(base_url=url + "/api/v1", headers=admin, timeout=30) as api:
        api.post("/companies", json={"company_id": "acme", "name": "Acme"}).raise_for_status()
        for i in range(presses):
            api.post("/lifts", json={"lift_id": f"press-{i:04d}", "company_id": "acme"})
        r = api.post("/tokens", json={"role": "maintainer", "company_id": "acme"})
        maintainer = {"Authorization": f"Bearer {r.json()['token']}"}
        api.post("/webhooks", json={"url": receiver.url}, headers=maintainer).raise_for_status()
    body = registry_csv(int(args.mib * 2**20))
    rows = body.count(b"\n") - 1
    say(f"import body {len(body)} bytes, {rows} rows")

    stop = threading.Event()
    health: list[tuple[float, float]] = []  # (started, latency s)
    pressed: dict[str, float] = {}

    def poll_health() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while not stop.is_set():
                t = time.time()
                c.get("/healthz")
                health.append((t, time.time() - t))
                stop.wait(0.02)

    def press_buttons() -> None:
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        client.connect(host, int(port))
        client.loop_start()
        try:
            for i in range(presses):
                if stop.wait(0.5):
                    return
                lift = f"press-{i:04d}"
                msg: dict[str, object] = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": 1}
                msg |= {"type": "alarm_button", "pressed": True}
                pressed[lift] = time.time()
                client.publish(f"{PREFIX}/{lift}/event", json.dumps(msg), qos=1)
        finally:
            client.disconnect()
            client.loop_stop()

    threads = [threading.Thread(target=f, daemon=True) for f in (poll_health, press_buttons)]
    for th in threads:
        th.start()
    time.sleep(3)
    t_import = time.time()
    with httpx.Client(base_url=url + "/api/v1", headers=admin, timeout=900) as api:
        r = api.post("/lifts/import", content=body, headers={"content-type": "text/csv"})
    t_done = time.time()
    say(f"import answered {r.status_code} in {t_done - t_import:.1f} s: {r.text[:200]}")
    time.sleep(args.after)
    stop.set()
    for th in threads:
        th.join(30)
    time.sleep(2)

    def arrived(req: Received) -> tuple[str, float] | None:
        event = json.loads(req.body)
        if event.get("type") != "alarm.raised":
            return None
        return event["data"]["lift_id"], req.arrived

    arrivals = dict(a for a in map(arrived, list(receiver.requests)) if a is not None)
    for lift, t in sorted(pressed.items(), key=lambda kv: kv[1]):
        if lift in arrivals and arrivals[lift] - t > 0.1:
            say(f"slow press at import+{t - t_import:.2f} s: {arrivals[lift] - t:.3f} s")
    t_written = t_done
    for line in serve.lines:
        if "event=lift_import" in line:
            say(line)
            if m := re.search(r"import_s=([0-9.]+)", line):
                t_written = min(t_done, t_import + float(m.group(1)))
    phases = {
        "before": (0.0, t_import),
        "import": (t_import, t_written),  # parse, validate, write (the API's part)
        "engine_refresh": (t_written, t_done),  # the in-process engine learns the lifts
        "after": (t_done, float("inf")),
    }
    for name, (lo, hi) in phases.items():
        h = [lat for t, lat in health if lo <= t < hi]
        p = [arrivals[k] - t for k, t in pressed.items() if lo <= t < hi and k in arrivals]
        lost = sum(1 for k, t in pressed.items() if lo <= t < hi and k not in arrivals)
        print(
            f"phase={name} healthz_max_ms={max(h, default=0) * 1000:.1f}"
            f" healthz_p99_ms={_pct(h, 0.99) * 1000:.1f} healthz_n={len(h)}"
            f" press_max_ms={max(p, default=0) * 1000:.1f}"
            f" press_p50_ms={(statistics.median(p) if p else 0) * 1000:.1f}"
            f" presses={len(p)} lost={lost}",
            flush=True,
        )
    print(f"import_s={t_done - t_import:.1f} status={r.status_code}", flush=True)
    return 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
