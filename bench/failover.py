"""Failover benchmark of the alerts replicas (issue 15, docs/ha.md): SIGKILL the owner of lifts
whose entrapment timers are armed, measure how long its partitions go without an owner that
commits for them, and check afterwards that every alarm was raised once, in time, and
delivered signed.

    .venv/bin/python -m bench.failover [--replicas 3] [--kills 5] [--lifts 200]
                                       [--duration S] [--cycle 40] [--restart-after 12]
                                       [--entrapments 20] [--presses 40] [--seed 15]
                                       [--telemetry-qos 1] [--linger S] [--logs DIR]

Everything is private and fresh, in a temp dir: a PostgreSQL server
(``liftwatch.localservices.PostgreSQL``, never the machine's own), a Mosquitto broker
(``localservices.Mosquitto``), a webhook receiver in this process
(``simulator.receiver.RecordingReceiver``), ``--lifts`` registered lifts (plus a few spare
ones for the warm-up) and one subscription to every event. ``--replicas`` real
``python -m liftwatch alerts`` processes run with the same settings except
``LIFTWATCH_ALERTS_REPLICA_ID`` (r1, r2, …): each has its own MQTT session and evaluates every
message (hot standby); the lease table decides who commits.

**Load.** Every lift publishes a telemetry snapshot once a second (QoS 1 unless
``--telemetry-qos 0``, spread evenly over the second): normal service, stopped at a landing,
doors closed. An *entrapment* is telemetry showing FAULTS.md's ``entrapment``/``outside_zone``
condition (stationary, not in a door zone, ``passenger_present`` true, mode ``normal``) for 40
s, then doors open at a landing (the condition clears), then normal service again. Its
thresholds, from the publish time of its first trapped message: ``stopped_outside_zone``
(major, mode normal, 10 s) and ``entrapment``/``outside_zone`` (critical, 30 s) — both are
expected alarms. An *alarm-button press* is a QoS 1 ``alarm_button`` event (threshold: the
press; the car is stopped with doors closed, so the filter does not apply). Every incident is
on a lift of its own, so "one alarm per (lift, code, occurrence)" is "one alarm per (lift,
code, subtype)".

**Kills.** The ``--kills`` kills are ``--cycle`` s apart. Before each kill at ``k``, the
replica holding the most partitions gets three entrapments on lifts of its partitions, starting
at ``k - 27 s`` (threshold 3 s after the kill: inside the gap, so the new owner must raise it
at takeover), ``k - 15 s`` (threshold 15 s after the kill: the new owner's own timer) and ``k -
8 s``. At ``k`` the victim is the replica owning the most entrapments armed then (started,
threshold not reached; ties: the most partitions) — SIGKILL. At ``k + 1.5 s`` an alarm button
is pressed on a lift of the victim's partitions (nobody commits for it until the takeover); at
``k + 3 s`` an entrapment starts on another lift of them (a survivor takes it over, and hands
it back when the victim rejoins: the restarted process must go on with an entrapment that
started while it was down); 1 s before the restart one more starts on the busiest survivor's
partitions (armed at the next kill, whose takeover may go to the restarted process).
``--telemetry-qos 0`` sends telemetry at QoS 0 (PROTOCOL.md allows it): a replica that is down
then misses it (Mosquitto queues only QoS 1 for a persistent session), so a restarted replica
knows what happened meanwhile only from the checkpoints. The victim is restarted (same replica
id) ``--restart-after`` s after its kill once its partitions have moved, so the run keeps N
replicas; ``join_s`` is from its restart to its own ``event=partitions_taken`` (the others give
back what is above their share). With ``--restart-after`` under the lease time + 2 s (a
supervisor's quick restart) the victim is restarted first and may take its own partitions back
before they expire; failover then ends when every partition of the victim was taken again (a
higher epoch), by whoever. ``--entrapments`` further entrapments and ``--presses`` further
presses are spread at random (``--seed``) over the run on random lifts.

**failover_s** = from the SIGKILL (this host's clock, just before ``kill()``) until, for the
last of the victim's partitions (its rows in ``alert_leases`` just before the kill), the new
owner logged ``event=partitions_taken`` (the log line's own timestamp). That line is written
after the new owner took the leases *and* committed its takeover reconciliation (replayed
deferred signals, due timers): from then on it commits for those lifts. The lease row's
``acquired_at`` (PostgreSQL's clock, the same host's) is earlier — the takeover's lease
UPDATE, before the reconciliation — and is printed beside it as ``failover_acq_s_*``; it is the
lower bound, the log line the figure the issue asks for ("until the new owner's first
commit").

**Checks at the end** (after every expected alarm was raised and delivered, or 90 s after the
last threshold): *expected* = the schedule's (lift, code, subtype) with its threshold time;
*raised* = rows of the store's ``alarms``; *delivered* = requests at the receiver answered
2xx whose Standard Webhooks signature verifies (``standardwebhooks``, checked as each request
arrives).
``lost`` = expected alarms not raised, or raised without a delivered ``alarm.raised``;
``duplicated`` = alarm rows beyond one per expected (lift, code, subtype), plus
``alarm.raised`` notifications beyond one per alarm counted by ``webhook-id`` (the spec's
deduplication key); ``redelivered`` = 2xx ``alarm.raised`` POSTs repeating a ``webhook-id``
already answered 2xx (at-least-once: allowed, a dispatcher died between the POST and
recording it); ``late_alarms`` = alarms raised (``raised_at``) more than 15 s after their
threshold; ``late_s_max`` the largest delay; ``late_delivered`` those whose first signed 2xx
``alarm.raised`` arrived more than 15 s after the threshold (the issue's "arrives at most 15 s
after its threshold"), ``arrival_s_p99``/``arrival_s_max`` that delay; ``unexpected`` =
alarms of the bench's lifts the schedule does not explain; ``order_violations`` = alarms
whose delivered events (first 2xx per ``webhook-id``, by arrival) are not a prefix of their
outbox rows' order; ``bad_signatures``.

Progress goes to stderr, the replicas' output to ``--logs`` (default: the temp dir, removed).
The last stdout line is ``replicas=… kills=… failover_s_p50=… failover_s_max=… lost=…
duplicated=… late_alarms=…`` followed by ``failover_acq_s_p50=… failover_acq_s_max=…
join_s_max=… expected=… raised=… delivered=… late_s_max=… late_delivered=… arrival_s_p99=…
arrival_s_max=… late_flagged=… reoccurred=… unexpected=… redelivered=…
order_violations=… undelivered_events=… bad_signatures=… armed_at_kills=… load1=…
escalations_due=… escalations_missed=… escalation_late_s_max=…``
(``late_flagged``: raised with ``late: true`` evidence; ``reoccurred``: expected alarms whose
``occurrences`` grew past 1; ``undelivered_events``: outbox events not delivered by the end).
``--linger S`` keeps the lifts publishing S s after the schedule, so that the first
escalations (5 min after each critical alarm's notification, FAULTS.md) fall due, for alarms
whose partition changed owner meanwhile: ``escalations_due`` those due by the end,
``escalations_missed`` those not committed (``alarm_transitions``) or not delivered
(``alarm.escalated``), ``escalation_late_s_max`` how late the later of the two was.
Exit status 0 when ``lost=0 duplicated=0 late_alarms=0`` and ``failover_s_max ≤ 15``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from liftwatch.localservices import Mosquitto, PostgreSQL
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as subs
from liftwatch.store.leases import LEASE_TTL_MS, PARTITIONS, partition_of
from simulator.receiver import Received, RecordingReceiver

PREFIX = "fo"
SECRET = "whsec_" + "F" * 40
SPARES = 24
TARGET_S = 15.0  # issue 15: failover and alarm lateness bound
ENTRAP_S = 30.0  # FAULTS.md entrapment outside_zone threshold (default)
STOPPED_S = 10.0  # FAULTS.md stopped_outside_zone threshold (default)
HOLD_S = 40.0  # how long a simulated entrapment lasts
IDLE: dict[str, Any] = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "1",
    "door_zone": True,
    "doors_closed": True,
    "door_state": "closed",
    "passenger_present": False,
    "speed": 0.0,
}
# Stopped between floors with a passenger: FAULTS.md entrapment/outside_zone (and, mode
# normal, stopped_outside_zone).
TRAPPED: dict[str, Any] = {**IDLE, "floor": "3", "door_zone": False, "passenger_present": True}
# Doors open at a landing: the entrapment condition clears.
RESCUED: dict[str, Any] = {
    **IDLE,
    "floor": "3",
    "doors_closed": False,
    "door_state": "open",
    "passenger_present": True,
}
# --restart-after below this: restart before the partitions moved (the lease time + 2 rounds).
QUICK_S = LEASE_TTL_MS / 1000 + 2
TAKEN = re.compile(r"event=partitions_taken replica=(\S+) partitions=(\d+) from=(\S+)")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def lift_id(i: int) -> str:
    return f"{PREFIX}-{i:04d}"


def spare_id(i: int) -> str:
    return f"{PREFIX}-spare-{i:02d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def log_time(line: str) -> float | None:
    """The timestamp ``liftwatch`` logging puts first (``%(asctime)s``, this host's local
    time, ms)."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


# --- the replicas --------------------------------------------------------------------------


class Replica:
    """One ``liftwatch alerts`` process (restartable under the same replica id); its output is
    read line by line by a thread, kept with arrival times, and copied to a log file."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.env = {**env, "LIFTWATCH_ALERTS_REPLICA_ID": name}
        self.logfile = logdir / f"alerts-{name}.log"
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.started_at = 0.0
        self.incarnations = 0

    def start(self) -> None:
        self.incarnations += 1
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liftwatch", "alerts"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with self.logfile.open("a") as out:
            out.write(f"--- incarnation {self.incarnations} pid {proc.pid}\n")
            for line in proc.stdout:
                with self.lock:
                    self.lines.append((time.time(), line))
                out.write(line)
                out.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.wait()

    def stop(self) -> int | None:
        """A clean stop (SIGTERM: the replica gives its partitions back)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def matching(self, pattern: re.Pattern[str], since: float) -> list[tuple[float, str]]:
        """(log time, line) of the lines matching ``pattern`` that arrived after ``since``."""
        with self.lock:
            lines = [(t, line) for t, line in self.lines if t >= since]
        return [(log_time(line) or t, line) for t, line in lines if pattern.search(line)]

    def tail(self, n: int = 30) -> str:
        with self.lock:
            return "".join(line for _, line in self.lines[-n:])


@dataclass(frozen=True)
class LeaseRow:
    partition: int
    owner: str | None
    epoch: int
    expires_at: int
    acquired_at: int | None


def read_leases(db: Database) -> tuple[list[LeaseRow], int]:
    """The lease rows and PostgreSQL's clock (ms), in one read."""
    with db.transaction(serialized=False) as conn:
        (now,) = conn.execute(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        ).fetchone()
        rows = [
            LeaseRow(int(r[0]), r[1], int(r[2]), int(r[3]), None if r[4] is None else int(r[4]))
            for r in conn.execute(
                "SELECT partition, owner, epoch, expires_at, acquired_at FROM alert_leases"
                " ORDER BY partition"
            )
        ]
    return rows, int(now)


def owners(db: Database) -> dict[str, set[int]]:
    """Live owner -> partitions (unexpired leases only)."""
    rows, now = read_leases(db)
    out: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        if r.owner is not None and r.expires_at > now:
            out[r.owner].add(r.partition)
    return out


def balanced(db: Database, names: list[str]) -> bool:
    held = owners(db)
    counts = [len(held.get(n, ())) for n in names]
    share = -(-PARTITIONS // len(names))
    return sum(counts) == PARTITIONS and min(counts) > 0 and max(counts) <= share


def until(check: Any, within: float, what: str, replicas: list[Replica]) -> None:
    deadline = time.monotonic() + within
    while not check():
        dead = [r.name for r in replicas if not r.alive()]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {r.name}\n{r.tail()}" for r in replicas)
            raise SystemExit(f"{what}: not within {within:g} s (exited: {dead})\n{tails}")
        time.sleep(0.1)


# --- the lifts -----------------------------------------------------------------------------


@dataclass
class Expected:
    lift: str
    code: str
    subtype: str | None
    threshold: float  # this host's clock, s
    why: str


class Fleet:
    """The lifts: one telemetry snapshot per lift and second (QoS 1), entrapments and alarm
    presses on request; runs in its own thread with its own MQTT connection."""

    def __init__(self, broker_url: str, lifts: list[str], telemetry_qos: int = 1) -> None:
        self.telemetry_qos = telemetry_qos
        host, port = broker_url.removeprefix("mqtt://").split(":")
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-fleet", protocol=paho.MQTTv311
        )
        self.client.max_queued_messages_set(0)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.lifts = lifts
        self.lock = threading.Lock()
        self.seq = dict.fromkeys(lifts, 100)
        self.state: dict[str, dict[str, Any]] = dict.fromkeys(lifts, IDLE)
        self.trapped: dict[str, float] = {}  # lift -> first trapped message (s)
        self.changes: list[tuple[float, str, dict[str, Any]]] = []  # (at, lift, state)
        self.expected: list[Expected] = []
        self.published = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _publish(self, lift: str, kind: str, body: dict[str, Any]) -> float:
        self.seq[lift] += 1
        msg = {"v": 1, "ts": time.time_ns() // 1_000_000, "seq": self.seq[lift], **body}
        at = time.time()
        qos = self.telemetry_qos if kind == "telemetry" else 1
        self.client.publish(f"{PREFIX}/{lift}/{kind}", json.dumps(msg), qos=qos)
        self.published += 1
        return at

    def entrap(self, lift: str, why: str) -> float:
        """Start an entrapment now (its first trapped message is published here)."""
        with self.lock:
            self.state[lift] = TRAPPED
            at = self._publish(lift, "telemetry", TRAPPED)
            self.trapped[lift] = at
            self.expected.append(Expected(lift, "stopped_outside_zone", None, at + STOPPED_S, why))
            self.expected.append(Expected(lift, "entrapment", "outside_zone", at + ENTRAP_S, why))
            self.changes.append((at + HOLD_S, lift, RESCUED))
            self.changes.append((at + HOLD_S + 3, lift, IDLE))
        return at

    def press(self, lift: str, why: str) -> float:
        with self.lock:
            body = {"type": "alarm_button", "pressed": True}
            at = self._publish(lift, "event", body)
            self.expected.append(Expected(lift, "alarm_button", None, at, why))
        return at

    def armed(self, now: float) -> list[str]:
        """Lifts trapped now whose entrapment threshold is still ahead."""
        with self.lock:
            return [
                lift
                for lift, at in self.trapped.items()
                if at + ENTRAP_S > now and self.state[lift] is TRAPPED
            ]

    def _run(self) -> None:
        n = len(self.lifts)
        start = time.monotonic()
        nxt = [start + i / n for i in range(n)]
        while not self.stop_event.is_set():
            now_m = time.monotonic()
            now = time.time()
            with self.lock:
                due = [c for c in self.changes if c[0] <= now]
                if due:
                    self.changes = [c for c in self.changes if c[0] > now]
                    for _, lift, st in due:
                        self.state[lift] = st
                        self._publish(lift, "telemetry", st)
                for i, lift in enumerate(self.lifts):
                    if nxt[i] <= now_m:
                        self._publish(lift, "telemetry", self.state[lift])
                        nxt[i] += 1.0
            time.sleep(0.01)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


# --- one kill ------------------------------------------------------------------------------


@dataclass
class Kill:
    victim: str
    at: float
    partitions: set[int]
    armed: list[str]
    armed_owned: int
    epochs: dict[int, int] = field(default_factory=dict)  # the victim's rows at the kill
    failover_s: float = float("nan")
    failover_acq_s: float = float("nan")
    new_owners: dict[str, int] = field(default_factory=dict)
    join_s: float = float("nan")


def take_failover(
    db: Database, kill: Kill, replicas: dict[str, Replica], within: float = 60.0
) -> None:
    """Wait until every partition of the victim was taken again (a higher epoch: by another
    replica, or by the victim's next process when it restarts before its leases expire) and
    is held; then the figures (see the module docstring)."""
    deadline = time.monotonic() + within
    while True:
        rows, now = read_leases(db)
        moved = [r for r in rows if r.partition in kill.partitions]
        if all(
            r.owner is not None
            and r.epoch > kill.epochs.get(r.partition, -1)
            and r.expires_at > now
            for r in moved
        ):
            break
        if time.monotonic() > deadline:
            say(f"kill of {kill.victim}: its partitions did not all move within {within:g} s")
            return
        time.sleep(0.05)
    # The partitions_taken line that follows each moved row's acquisition (log lines come
    # a moment after the round that took the rows).
    done: list[float] = []
    for _ in range(100):
        done = []
        for r in moved:
            assert r.owner is not None and r.acquired_at is not None
            lines = replicas[r.owner].matching(TAKEN, kill.at)
            after = [t for t, _ in lines if t >= r.acquired_at / 1000 - 0.005]
            if not after:
                break
            done.append(min(after))
        if len(done) == len(moved):
            break
        time.sleep(0.05)
    kill.new_owners = defaultdict(int)
    for r in moved:
        kill.new_owners[str(r.owner)] += 1
    kill.failover_acq_s = max(r.acquired_at or 0 for r in moved) / 1000 - kill.at
    if len(done) == len(moved):
        kill.failover_s = max(done) - kill.at


def pick_lift(free: list[str], partitions: set[int]) -> str | None:
    for lift in free:
        if partition_of(lift) in partitions:
            free.remove(lift)
            return lift
    return None


# --- the run -------------------------------------------------------------------------------


def seed(db: Database, lifts: list[str], receiver_url: str) -> None:
    reg.upsert_company(db, Company(company_id="bench", name="Bench"))
    for lift in lifts:
        reg.upsert_lift(db, Lift(lift_id=lift, company_id="bench", name=lift))
    subs.add_subscription(
        db,
        company_id="bench",
        url=receiver_url,
        secret=SECRET,
        filters={},
        created_by="bench",
    )


def wait_raised(receiver: RecordingReceiver, lift: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for r in list(receiver.requests):
            body = json.loads(r.body or b"{}")
            if body.get("type") == "alarm.raised" and body["data"]["lift_id"] == lift:
                return True
        time.sleep(0.05)
    return False


def warm_up(db: Database, fleet: Fleet, receiver: RecordingReceiver, names: list[str]) -> None:
    """Press a spare lift's button in each replica's partitions until its alarm arrives: every
    replica is subscribed and its webhook connection pooled."""
    held = owners(db)
    spares = [spare_id(i) for i in range(SPARES)]
    for name in names:
        lift = pick_lift(spares, held.get(name, set()))
        if lift is None:
            say(f"warm-up: no spare lift in {name}'s partitions")
            continue
        for _ in range(20):
            with fleet.lock:
                fleet._publish(lift, "event", {"type": "alarm_button", "pressed": True})
            if wait_raised(receiver, lift, 3):
                break
        else:
            raise SystemExit(f"warm-up: no alarm for {lift} ({name})")


def run(args: argparse.Namespace, root: Path, logdir: Path) -> tuple[str, bool]:
    rng = random.Random(args.seed)
    lifts = [lift_id(i) for i in range(args.lifts)]
    spares = [spare_id(i) for i in range(SPARES)]
    pg = PostgreSQL(root / "postgresql")
    broker = Mosquitto(root / "mosquitto")
    receiver = RecordingReceiver(Verifier())
    replicas: dict[str, Replica] = {}
    fleet: Fleet | None = None
    db: Database | None = None
    try:
        pg.start()
        url = pg.create_database("failover")
        broker.start()
        db = Database(url)
        seed(db, lifts + spares, receiver.url)
        env = {
            **os.environ,
            "LIFTWATCH_DATABASE_URL": url,
            "LIFTWATCH_MQTT_URL": broker.url,
            "LIFTWATCH_MQTT_TOPIC_PREFIX": PREFIX,
            "LIFTWATCH_DATA_DIR": str(root / "data"),
            "LIFTWATCH_ALERTS_CLIENT_ID": "bench-alerts",
            "LIFTWATCH_ALERTS_METRICS_PORT": "0",
            "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
            "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
        }
        names = [f"r{i + 1}" for i in range(args.replicas)]
        for name in names:
            replicas[name] = Replica(name, env, logdir)
            replicas[name].start()
        group = list(replicas.values())
        until(
            lambda: all(r.matching(re.compile("event=mqtt_connected"), 0) for r in group),
            60,
            "every replica connected",
            group,
        )
        until(lambda: balanced(db, names), 60, "the partitions balanced", group)
        say(
            f"{args.replicas} replicas up: "
            + ", ".join(f"{n}={len(p)}" for n, p in sorted(owners(db).items()))
        )
        fleet = Fleet(broker.url, lifts + spares, args.telemetry_qos)
        warm_up(db, fleet, receiver, names)
        fleet.start()
        t0 = time.time()
        first_kill = 35.0
        duration = args.duration or first_kill + (args.kills - 1) * args.cycle + 50
        kill_times = [t0 + first_kill + i * args.cycle for i in range(args.kills)]
        say(
            f"{len(lifts)} lifts at 1 msg/s each for {duration:.0f} s; kills at "
            + ", ".join(f"+{k - t0:.0f}s" for k in kill_times)
        )
        free = list(lifts)
        rng.shuffle(free)
        # The random background incidents.
        background: list[tuple[float, str, str]] = []
        window = (5.0, max(6.0, duration - HOLD_S - 5))
        for _ in range(args.entrapments):
            background.append((t0 + rng.uniform(*window), "entrap", free.pop()))
        for _ in range(args.presses):
            background.append((t0 + rng.uniform(*window), "press", free.pop()))
        # The kill-targeted ones: (time, action, kill index).
        plan: list[tuple[float, str, Any]] = [(t, a, lift) for t, a, lift in background]
        for i, k in enumerate(kill_times):
            for lead in (27.0, 15.0, 8.0):
                plan.append((k - lead, "target-entrap", i))
            plan.append((k, "kill", i))
            plan.append((k + 1.5, "gap-press", i))
            # While the victim is down: one on its partitions (the survivors' now, handed
            # back to it when it rejoins), one on the busiest survivor's, started just
            # before the restart so that it is armed at the next kill.
            plan.append((k + 3.0, "down-entrap", i))
            plan.append((k + args.restart_after - 1.0, "survivor-entrap", i))
            plan.append((k + args.restart_after, "restart", i))
        plan.sort(key=lambda x: x[0])
        kills: list[Kill] = []
        for at, action, what in plan:
            while (left := at - time.time()) > 0:
                time.sleep(min(left, 0.05))
            if action == "entrap":
                fleet.entrap(what, "background")
            elif action == "press":
                fleet.press(what, "background")
            elif action == "target-entrap":
                held = owners(db)
                top = max(held, key=lambda n: len(held[n]))
                lift = pick_lift(free, held[top])
                if lift is not None:
                    fleet.entrap(lift, f"kill {what + 1}")
            elif action == "kill":
                held = owners(db)
                armed = fleet.armed(time.time())
                by_owner: dict[str, int] = defaultdict(int)
                for lift in armed:
                    for n, parts in held.items():
                        if partition_of(lift) in parts:
                            by_owner[n] += 1
                alive = [n for n in names if replicas[n].alive()]
                victim = max(alive, key=lambda n: (by_owner[n], len(held.get(n, ()))))
                rows, _ = read_leases(db)
                kill = Kill(victim, time.time(), set(held.get(victim, ())), armed, by_owner[victim])
                kill.epochs = {r.partition: r.epoch for r in rows if r.partition in kill.partitions}
                kill.at = time.time()
                replicas[victim].kill()
                kills.append(kill)
                say(
                    f"kill {len(kills)}: SIGKILL {victim} ({len(kill.partitions)} partitions, "
                    f"{kill.armed_owned} of {len(armed)} armed entrapments)"
                )
            elif action == "gap-press":
                kill = kills[what]
                lift = pick_lift(free, kill.partitions)
                if lift is not None:
                    fleet.press(lift, f"gap {what + 1}")
            elif action == "down-entrap":
                lift = pick_lift(free, kills[what].partitions)
                if lift is not None:
                    fleet.entrap(lift, f"down {what + 1}")
            elif action == "survivor-entrap":
                held = owners(db)
                others = [n for n in held if n != kills[what].victim]
                if others:
                    top = max(others, key=lambda n: len(held[n]))
                    lift = pick_lift(free, held[top])
                    if lift is not None:
                        fleet.entrap(lift, f"survivor {what + 1}")
            elif action == "restart":
                kill = kills[what]
                back = replicas[kill.victim]
                quick = args.restart_after < QUICK_S
                if quick:
                    # A supervisor's quick restart (systemd RestartSec): the victim's next
                    # process may take its own partitions back before they expire.
                    back.start()
                take_failover(db, kill, replicas)
                say(
                    f"kill {what + 1}: failover_s={kill.failover_s:.2f} "
                    f"(acquired {kill.failover_acq_s:.2f}) to "
                    + ", ".join(f"{n}:{c}" for n, c in sorted(kill.new_owners.items()))
                )
                if not quick:
                    back.start()
                since = back.started_at

                def rejoined(v: Replica = back, s: float = since) -> bool:
                    return bool(v.matching(TAKEN, s))

                try:
                    until(rejoined, 60, f"{kill.victim} rejoined", list(replicas.values()))
                    kill.join_s = min(t for t, _ in back.matching(TAKEN, since)) - since
                except SystemExit as exc:
                    say(str(exc)[:2000])
                say(f"{kill.victim} restarted; took partitions after {kill.join_s:.1f} s")
        while (left := t0 + duration - time.time()) > 0:
            time.sleep(min(left, 0.2))
        # Drain: every expected alarm raised and delivered, or 90 s after the last threshold.
        last = max(e.threshold for e in fleet.expected)
        say(f"schedule done: {len(fleet.expected)} expected alarms; waiting for them")
        deadline = last + 90
        while time.time() < deadline:
            if all_delivered(db, receiver, fleet.expected):
                break
            time.sleep(0.5)
        expected = list(fleet.expected)
        if args.linger:
            say(f"lingering {args.linger:.0f} s (escalations fall due 5 min after each raise)")
            end = time.time() + args.linger
            while (left := end - time.time()) > 0:
                time.sleep(min(left, 0.5))
        fleet.stop()
        fleet = None
        for r in replicas.values():
            code = r.stop()
            if code not in (0, None):
                say(f"{r.name} exited {code} on SIGTERM")
        return report(args, db, receiver, kills, expected)
    finally:
        if fleet is not None:
            fleet.stop()
        for r in replicas.values():
            if r.alive():
                r.stop()
        if db is not None:
            db.close()
        receiver.close()
        broker.stop()
        pg.stop()


# --- the checks ----------------------------------------------------------------------------


@dataclass
class StoredAlarm:
    alarm_id: str
    lift: str
    code: str
    subtype: str | None
    raised_at: float  # s
    occurrences: int
    late: bool


def stored_alarms(db: Database) -> list[StoredAlarm]:
    rows = db.conn.execute(
        "SELECT alarm_id, lift_id, code, subtype, raised_at, occurrences, evidence FROM alarms"
        " WHERE lift_id LIKE ? ORDER BY raised_at",
        (f"{PREFIX}-%",),
    )
    out = []
    for r in rows:
        evidence = json.loads(r[6] or "{}")
        out.append(
            StoredAlarm(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                r[3],
                int(r[4]) / 1000,
                int(r[5]),
                bool(evidence.get("late")),
            )
        )
    return out


@dataclass
class Delivered:
    arrived: float
    webhook_id: str
    type: str
    alarm_id: str
    lift: str


class Verifier:
    """The receiver's answer: 200 to every request, each checked on arrival with
    ``standardwebhooks`` (its timestamp tolerance is 5 min from *now*: checked at the end of a
    long run, early requests would fail as too old)."""

    def __init__(self) -> None:
        self.hook = Webhook(SECRET)
        self.verified: dict[int, Any] = {}  # id(request) -> its verified body, or None

    def __call__(self, r: Received) -> tuple[int, dict[str, str], bytes]:
        try:
            self.verified[id(r)] = self.hook.verify(r.body, r.headers)
        except WebhookVerificationError:
            self.verified[id(r)] = None
        return 200, {}, b"ok"


def deliveries(receiver: RecordingReceiver) -> tuple[list[Delivered], int]:
    """The signed requests answered 2xx (the receiver answers 200 to every request), and how
    many requests failed the signature check."""
    verifier = receiver.responder
    assert isinstance(verifier, Verifier)
    out: list[Delivered] = []
    bad = 0
    for r in list(receiver.requests):
        if r.path != "/hook":
            continue
        body = verifier.verified.get(id(r))
        if body is None:
            bad += 1
            continue
        data = body.get("data") or {}
        out.append(
            Delivered(
                r.arrived,
                r.headers.get("webhook-id", ""),
                str(body.get("type")),
                str(data.get("alarm_id", "")),
                str(data.get("lift_id", "")),
            )
        )
    return out, bad


def key_of(x: Expected | StoredAlarm) -> tuple[str, str, str | None]:
    return (x.lift, x.code, x.subtype)


def all_delivered(db: Database, receiver: RecordingReceiver, expected: list[Expected]) -> bool:
    alarms = {key_of(a): a.alarm_id for a in stored_alarms(db)}
    if any(key_of(e) not in alarms for e in expected):
        return False
    got = {
        json.loads(r.body)["data"].get("alarm_id")
        for r in list(receiver.requests)
        if r.path == "/hook" and b'"alarm.raised"' in r.body
    }
    return all(alarms[key_of(e)] in got for e in expected)


def load1() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "nan"


def fmt(values: list[float], q: float | None) -> str:
    values = [v for v in values if v == v]  # not NaN
    if not values:
        return "nan"
    return f"{(max(values) if q is None else percentile(values, q)):.2f}"


def report(
    args: argparse.Namespace,
    db: Database,
    receiver: RecordingReceiver,
    kills: list[Kill],
    expected: list[Expected],
) -> tuple[str, bool]:
    alarms = stored_alarms(db)
    delivered, bad = deliveries(receiver)
    by_key: dict[tuple[str, str, str | None], list[StoredAlarm]] = defaultdict(list)
    for a in alarms:
        by_key[key_of(a)].append(a)
    raised_ids: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    first_arrival: dict[str, float] = {}
    for d in delivered:
        if d.type == "alarm.raised":
            raised_ids[d.alarm_id][d.webhook_id] += 1
            first_arrival[d.alarm_id] = min(first_arrival.get(d.alarm_id, d.arrived), d.arrived)
    lost: list[str] = []
    late: list[str] = []
    lateness: list[float] = []
    arrival: list[float] = []
    late_arrivals: list[str] = []
    duplicated = 0
    reoccurred = 0
    late_flagged = 0
    for e in expected:
        rows = by_key.get(key_of(e), [])
        if not rows:
            lost.append(f"{e.lift}/{e.code} ({e.why}): never raised")
            continue
        duplicated += len(rows) - 1
        first = rows[0]
        reoccurred += first.occurrences > 1
        late_flagged += first.late
        if first.alarm_id not in raised_ids:
            lost.append(f"{e.lift}/{e.code} ({e.why}): raised, alarm.raised never delivered")
        else:
            came = first_arrival[first.alarm_id] - e.threshold
            arrival.append(came)
            if came > TARGET_S:
                late_arrivals.append(
                    f"{e.lift}/{e.code} ({e.why}): delivered {came:.1f} s after its threshold"
                )
        delay = first.raised_at - e.threshold
        lateness.append(delay)
        if delay > TARGET_S:
            late.append(f"{e.lift}/{e.code} ({e.why}): raised {delay:.1f} s after its threshold")
    for ids in raised_ids.values():
        duplicated += len(ids) - 1
    redelivered = sum(n - 1 for ids in raised_ids.values() for n in ids.values())
    wanted = {key_of(e) for e in expected}
    unexpected = [
        a for a in alarms if key_of(a) not in wanted and not a.lift.startswith(f"{PREFIX}-spare-")
    ]
    # Order: per alarm, the first 2xx of each webhook-id by arrival vs the outbox's order.
    outbox: dict[str, list[str]] = defaultdict(list)
    for alarm_id, event_type in db.conn.execute(
        "SELECT alarm_id, event_type FROM outbox ORDER BY id"
    ):
        outbox[str(alarm_id)].append(str(event_type))
    seen: set[str] = set()
    arrived: dict[str, list[str]] = defaultdict(list)
    for d in sorted(delivered, key=lambda d: d.arrived):
        if d.webhook_id not in seen:
            seen.add(d.webhook_id)
            arrived[d.alarm_id].append(d.type)
    order_violations = [
        aid for aid, types in arrived.items() if outbox.get(aid, [])[: len(types)] != types
    ]
    undelivered = sum(len(types) - len(arrived.get(aid, [])) for aid, types in outbox.items())
    for line in lost + late + late_arrivals:
        say(line)
    for a in unexpected[:20]:
        say(f"unexpected alarm: {a.lift}/{a.code}/{a.subtype} at {a.raised_at:.1f}")
    for aid in order_violations[:10]:
        say(f"order: {aid} delivered {arrived[aid]} vs outbox {outbox.get(aid)}")
    for i, k in enumerate(kills):
        say(
            f"kill {i + 1}: {k.victim} {len(k.partitions)} partitions, {k.armed_owned} armed, "
            f"failover_s={k.failover_s:.2f} acquired={k.failover_acq_s:.2f} "
            f"join_s={k.join_s:.1f}"
        )
    fo = [k.failover_s for k in kills]
    acq = [k.failover_acq_s for k in kills]
    ok_failover = bool(fo) and all(v == v and v <= TARGET_S for v in fo)
    fields = {
        "replicas": str(args.replicas),
        "kills": str(len(kills)),
        "failover_s_p50": fmt(fo, 0.5),
        "failover_s_max": fmt(fo, None),
        "lost": str(len(lost)),
        "duplicated": str(duplicated),
        "late_alarms": str(len(late)),
        "failover_acq_s_p50": fmt(acq, 0.5),
        "failover_acq_s_max": fmt(acq, None),
        "join_s_max": fmt([k.join_s for k in kills], None),
        "expected": str(len(expected)),
        "raised": str(sum(1 for e in expected if key_of(e) in by_key)),
        "delivered": str(
            sum(
                1
                for e in expected
                if by_key.get(key_of(e)) and by_key[key_of(e)][0].alarm_id in raised_ids
            )
        ),
        "late_s_max": fmt(lateness, None),
        "late_delivered": str(len(late_arrivals)),
        "arrival_s_p99": fmt(arrival, 0.99),
        "arrival_s_max": fmt(arrival, None),
        "late_flagged": str(late_flagged),
        "reoccurred": str(reoccurred),
        "unexpected": str(len(unexpected)),
        "redelivered": str(redelivered),
        "order_violations": str(len(order_violations)),
        "undelivered_events": str(undelivered),
        "bad_signatures": str(bad),
        "armed_at_kills": str(sum(k.armed_owned for k in kills)),
        "load1": load1(),
    }
    esc = escalation_check(db, receiver_escalations(delivered), by_key, expected)
    fields.update(esc)
    ok = ok_failover and not lost and not duplicated and not late
    return " ".join(f"{k}={v}" for k, v in fields.items()), ok


ESCALATE_S = 300.0  # FAULTS.md: a critical alarm not acknowledged within 5 min is escalated


def receiver_escalations(delivered: list[Delivered]) -> dict[str, float]:
    """alarm_id -> first arrival of a signed 2xx ``alarm.escalated``."""
    out: dict[str, float] = {}
    for d in delivered:
        if d.type == "alarm.escalated":
            out[d.alarm_id] = min(out.get(d.alarm_id, d.arrived), d.arrived)
    return out


def escalation_check(
    db: Database,
    arrived: dict[str, float],
    by_key: dict[tuple[str, str, str | None], list[StoredAlarm]],
    expected: list[Expected],
) -> dict[str, str]:
    """The first escalation of every expected critical alarm that fell due by now (10 s
    margin): committed (``alarm_transitions`` event ``escalated``) and delivered on time."""
    (now_ms,) = db.conn.execute(
        "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    ).fetchone()
    now = int(now_ms) / 1000
    due_n = missed = 0
    drift: list[float] = []
    for e in expected:
        if e.code not in ("entrapment", "alarm_button") or not by_key.get(key_of(e)):
            continue
        alarm = by_key[key_of(e)][0]
        row = db.conn.execute(
            "SELECT COALESCE(notified_at, raised_at) FROM alarms WHERE alarm_id = ?",
            (alarm.alarm_id,),
        ).fetchone()
        due = int(row[0]) / 1000 + ESCALATE_S
        if due > now - 10:
            continue
        due_n += 1
        first = db.conn.execute(
            "SELECT MIN(at) FROM alarm_transitions WHERE alarm_id = ? AND event = 'escalated'",
            (alarm.alarm_id,),
        ).fetchone()[0]
        came = arrived.get(alarm.alarm_id)
        if first is None or came is None:
            missed += 1
            say(f"escalation of {e.lift}/{e.code} due {due - now:+.0f} s: committed={first}")
            continue
        drift.append(max(int(first) / 1000, came) - due)
    return {
        "escalations_due": str(due_n),
        "escalations_missed": str(missed),
        "escalation_late_s_max": fmt(drift, None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lifts", type=int, default=200)
    parser.add_argument(
        "--duration", type=float, default=0.0, help="s of load (default: fits the kills)"
    )
    parser.add_argument("--cycle", type=float, default=40.0, help="s between kills")
    parser.add_argument("--restart-after", type=float, default=12.0, metavar="S")
    parser.add_argument("--entrapments", type=int, default=20, help="random, besides 3 per kill")
    parser.add_argument("--presses", type=int, default=40, help="random, besides 1 per kill")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--telemetry-qos",
        type=int,
        choices=(0, 1),
        default=1,
        help="QoS of the telemetry (PROTOCOL.md: 0 or 1; events are always 1)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the lifts running S s after the schedule: checks the first escalations",
    )
    parser.add_argument("--logs", type=Path, help="keep the replicas' output in this directory")
    args = parser.parse_args()
    if args.replicas < 2:
        parser.error("--replicas must be at least 2 (a failover needs a survivor)")
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    if args.cycle < 30 or args.restart_after >= args.cycle - 10:
        parser.error("--cycle must be ≥ 30 s and leave ≥ 10 s after --restart-after")
    if args.entrapments + args.presses + 6 * args.kills > args.lifts:
        parser.error("--lifts too few: one lift per incident")
    with tempfile.TemporaryDirectory(prefix="liftwatch-failover-") as tmp:
        root = Path(tmp)
        logdir = args.logs or root / "logs"
        logdir.mkdir(parents=True, exist_ok=True)
        say(f"load before: {load1()} (uptime: {os.getloadavg()})")
        line, ok = run(args, root, logdir)
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
