"""Alerts replicas on one store (docs/ha.md): leases, fencing, takeover, restart state.

Two (or three) real engines on one real SQLite file, in one virtual clock: every replica
receives every message (hot standby), each commits only for the partitions it holds. A replica
"dies" by no longer being driven (no messages, no lease rounds): the others take its
partitions once its leases expire, and must raise what it did not, never twice what it did.
The lease protocol itself also runs on PostgreSQL (server clock, real time) below.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from alerts import lifecycle
from alerts.engine import Engine
from alerts.replicas import Keeper
from liftwatch.clock import ManualClock
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, OperationalError, leases
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from liftwatch.store.alarms import Alarm
from tests.alerts.rig import BASE
from tests.support.harness import until

TTL_S = leases.LEASE_TTL_MS / 1000
TRAPPED: dict[str, Any] = {"door_zone": False, "passenger_present": True, "speed": 0.0}


class Replicas:
    """Engines + keepers on one store and one clock; ``alive`` ones get messages and rounds."""

    def __init__(self, path: Path, names: tuple[str, ...], lifts: int = 40) -> None:
        self.db = Database(path)
        self.clock = ManualClock()
        reg.upsert_company(self.db, Company(company_id="acme", name="Acme"))
        self.lift_ids = [f"L{i}" for i in range(lifts)]
        for lift_id in self.lift_ids:
            reg.upsert_lift(self.db, Lift(lift_id=lift_id, company_id="acme", rated_speed=1.0))
        self.engines: dict[str, Engine] = {}
        self.keepers: dict[str, Keeper] = {}
        self.alive: list[str] = []
        for name in names:
            self.start(name)
        self.seq: dict[str, int] = {}
        self.snap: dict[str, dict[str, Any]] = {}

    def start(self, name: str) -> None:
        """A (new) process for replica ``name``: start, then its first lease round."""
        engine = Engine(Database(self.db.target), clock=self.clock, replica_id=name)
        engine.start()
        self.engines[name] = engine
        self.keepers[name] = Keeper(engine)
        if name not in self.alive:
            self.alive.append(name)
        self.keepers[name].round()

    def kill(self, name: str) -> None:
        self.alive.remove(name)

    def rounds(self) -> None:
        for name in self.alive:
            self.keepers[name].round()

    def owner_of(self, lift_id: str) -> str | None:
        p = leases.partition_of(lift_id)
        owners = [n for n in self.alive if p in (self.engines[n].held or {})]
        assert len(owners) <= 1, f"{lift_id} owned by {owners}"
        return owners[0] if owners else None

    def send(self, lift: str, kind: str, body: dict[str, Any], to: list[str] | None = None) -> None:
        seq = self.seq[lift] = self.seq.get(lift, -1) + 1
        payload = json.dumps({"v": 1, "ts": self.clock.now_ms(), "seq": seq, **body}).encode()
        for name in to if to is not None else self.alive:
            self.engines[name].handle_raw([(f"lifts/{lift}/{kind}", payload)])

    def tel(self, lift: str, to: list[str] | None = None, **changes: Any) -> None:
        snap = self.snap.setdefault(lift, dict(BASE))
        snap.update(changes)
        self.send(lift, "telemetry", dict(snap), to)

    def advance(self, seconds: float, *, rounds: bool = True) -> None:
        """Move the clock, firing every live engine's timers on the way and a lease round of
        every live replica each second."""
        target = self.clock.now_ms() + round(seconds * 1000)
        next_round = self.clock.now_ms() + 1000
        while True:
            dues = [
                (d, n)
                for n in self.alive
                if (d := self.engines[n].next_due_ms()) is not None and d <= target
            ]
            step = min([d for d, _ in dues] + ([next_round] if rounds else []) + [target])
            self.clock.set_ms(max(step, self.clock.now_ms()))
            for name in list(self.alive):
                self.engines[name].run_due()
            if rounds and self.clock.now_ms() >= next_round:
                self.rounds()
                next_round += 1000
            if self.clock.now_ms() >= target:
                return

    def alarms(self, code: str | None = None, lift: str | None = None) -> list[Alarm]:
        return sorted(
            store.list_alarms(self.db, code=code, lift_id=lift, limit=10_000),
            key=lambda a: a.alarm_id,
        )


def _owned_counts(r: Replicas) -> dict[str, int]:
    return {n: len(r.engines[n].held or {}) for n in r.alive}


def test_a_lone_replica_holds_every_partition_from_its_first_round(tmp_path: Path) -> None:
    r = Replicas(tmp_path / "lw.db", ("a",))
    assert _owned_counts(r) == {"a": leases.PARTITIONS}
    rows = leases.leases(r.db)
    assert {row.owner for row in rows} == {"a"} and all(row.epoch == 1 for row in rows)
    r.advance(10)
    assert all(row.epoch == 1 for row in leases.leases(r.db))  # renewed, never re-taken


def test_a_joining_replica_gets_its_share_and_every_partition_has_one_owner(
    tmp_path: Path,
) -> None:
    r = Replicas(tmp_path / "lw.db", ("a",))
    r.start("b")
    r.start("c")
    r.advance(3)
    counts = _owned_counts(r)
    assert sum(counts.values()) == leases.PARTITIONS
    assert max(counts.values()) - min(counts.values()) <= 2, counts
    for lift_id in r.lift_ids:
        assert r.owner_of(lift_id) is not None


def test_a_joining_replica_goes_on_from_the_state_handed_over(tmp_path: Path) -> None:
    """A replica that joins has not seen what happened before it started (here: every lift
    trapped); the partitions it is given come with their owner's state, saved in the
    transaction that gave them back, so their entrapments are still raised, once, on time."""
    r = Replicas(tmp_path / "lw.db", ("a",))
    for lift_id in r.lift_ids:
        r.tel(lift_id, **TRAPPED)
    threshold = r.clock.now_ms() + 30_000
    r.advance(5)
    r.start("b")
    r.advance(3)
    moved = [lid for lid in r.lift_ids if r.owner_of(lid) == "b"]
    assert moved, "b was given nothing"
    r.advance(25)
    for lift_id in r.lift_ids:
        (alarm,) = r.alarms("entrapment", lift_id)
        assert alarm.raised_at - threshold <= 1000, (lift_id, alarm.raised_at - threshold)


def test_owner_killed_while_an_entrapment_timer_is_armed(tmp_path: Path) -> None:
    """Issue 15: the alarm still arrives, within 15 s of its threshold, exactly once."""
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.tel(lift, **TRAPPED)
    threshold = r.clock.now_ms() + 30_000
    r.advance(20)
    r.kill("a")
    r.advance(30)
    (alarm,) = r.alarms("entrapment", lift)
    assert alarm.subtype == "outside_zone"
    assert alarm.raised_at - threshold <= 15_000, (alarm.raised_at - threshold) / 1000
    assert r.owner_of(lift) == "b"
    other = [a for a in r.alarms() if a.lift_id != lift]
    assert other == []  # nothing else raised by the takeover


def test_what_the_dead_owner_committed_is_not_raised_again(tmp_path: Path) -> None:
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.tel(lift, **TRAPPED)
    r.advance(31)  # a raises it; b evaluated it too, as a standby
    (first,) = r.alarms("entrapment", lift)
    r.send(lift, "event", {"type": "alarm_button", "pressed": True})
    r.kill("a")
    r.advance(TTL_S + 3)
    assert r.owner_of(lift) == "b"
    assert [a.alarm_id for a in r.alarms("entrapment", lift)] == [first.alarm_id]
    assert len(r.alarms("alarm_button", lift)) == 1
    # Its escalation keeps the schedule the stored alarm carries (every 300 s from the
    # raise), now fired by b.
    due = first.raised_at + 300_000
    r.advance((due - r.clock.now_ms()) / 1000 - 1)
    assert r.alarms("entrapment", lift)[0].escalations == 0
    r.advance(2)
    (alarm,) = r.alarms("entrapment", lift)
    assert alarm.escalations == 1 and alarm.escalated_at == due


def test_an_alarm_resolved_during_the_gap_is_not_raised_again(tmp_path: Path) -> None:
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.send(lift, "event", {"type": "alarm_button", "pressed": True})
    (alarm,) = r.alarms("alarm_button", lift)
    r.kill("a")
    lifecycle.resolve(r.db, alarm.alarm_id, actor="api:dispatcher", outcome="false_alarm")
    r.advance(TTL_S + 3)
    assert r.owner_of(lift) == "b"
    assert [(a.alarm_id, a.status) for a in r.alarms("alarm_button", lift)] == [
        (alarm.alarm_id, "resolved")
    ]


def test_what_only_the_standby_received_is_raised_at_takeover(tmp_path: Path) -> None:
    """The owner died before committing (its batch never reached the store): the new owner
    commits what it evaluated meanwhile, marked late."""
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.kill("a")
    r.send(lift, "event", {"type": "alarm_button", "pressed": True}, to=["b"])
    assert r.alarms("alarm_button", lift) == []  # b does not own it yet
    r.advance(TTL_S + 3)
    (alarm,) = r.alarms("alarm_button", lift)
    assert alarm.evidence.get("late") is True and alarm.evidence["late_by_s"] > 2
    r.advance(5)
    assert len(r.alarms("alarm_button", lift)) == 1


def test_a_replica_that_lost_its_lease_cannot_commit_for_those_lifts(tmp_path: Path) -> None:
    """Fencing: a paused replica wakes after another took its partitions, still believing
    it owns them; its write for those lifts commits nothing (the store's epochs decide)."""
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    paused = r.engines["a"]
    r.kill("a")  # paused: no rounds
    r.advance(TTL_S + 3)
    assert r.owner_of(lift) == "b"
    assert leases.partition_of(lift) in (paused.held or {})  # it still believes so
    payload = json.dumps(
        {"v": 1, "ts": r.clock.now_ms(), "seq": 99, "type": "alarm_button", "pressed": True}
    ).encode()
    changes = paused.handle_raw([(f"lifts/{lift}/event", payload)])
    assert changes == [] and r.alarms("alarm_button", lift) == []
    assert leases.partition_of(lift) not in (paused.held or {})  # it knows now
    r.engines["b"].handle_raw([(f"lifts/{lift}/event", payload)])
    assert len(r.alarms("alarm_button", lift)) == 1


def test_a_clean_stop_hands_over_at_the_next_round(tmp_path: Path) -> None:
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    r.keepers["a"].leave()
    r.kill("a")
    r.rounds()
    assert _owned_counts(r) == {"b": leases.PARTITIONS}


def test_a_restarted_replica_takes_its_partitions_back_at_once_with_a_new_epoch(
    tmp_path: Path,
) -> None:
    r = Replicas(tmp_path / "lw.db", ("a",))
    before = {row.partition: row.epoch for row in leases.leases(r.db)}
    old = r.engines["a"]
    r.start("a")  # the old process vanished without giving anything back
    after = {row.partition: row.epoch for row in leases.leases(r.db)}
    assert after == {p: e + 1 for p, e in before.items()}
    assert len(r.engines["a"].held or {}) == leases.PARTITIONS
    # The old process, were it still running, is fenced out.
    payload = json.dumps(
        {"v": 1, "ts": r.clock.now_ms(), "seq": 5, "type": "alarm_button", "pressed": True}
    ).encode()
    assert old.handle_raw([("lifts/L1/event", payload)]) == []
    assert r.alarms("alarm_button") == []


def test_an_entrapment_in_progress_keeps_its_start_across_a_restart(tmp_path: Path) -> None:
    """Chaos D3: timed from the first message on which it held, not re-timed by the new
    process (the checkpoint carries the condition's start)."""
    r = Replicas(tmp_path / "lw.db", ("a",))
    r.tel("L1", **TRAPPED)
    threshold = r.clock.now_ms() + 30_000
    r.advance(12)
    r.engines["a"].checkpoint_dirty()  # the worker's periodic save (what the writes left)
    (saved,) = r.db.conn.execute("SELECT COUNT(*) FROM lift_checkpoints WHERE lift_id = 'L1'")
    assert saved[0] == 1
    r.kill("a")
    r.advance(4, rounds=False)  # the restart
    r.start("a")
    r.tel("L1")  # the same snapshot, still trapped
    r.advance(20)
    (alarm,) = r.alarms("entrapment", "L1")
    assert alarm.raised_at - threshold <= 1000, (alarm.raised_at - threshold) / 1000


def test_two_processes_with_one_replica_id_are_told_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = Replicas(tmp_path / "lw.db", ("a",))
    first = r.keepers["a"]
    r.start("a")  # a second process started with the same id
    first.round()
    assert "event=replica_id_conflict" in caplog.text
    assert first.engine.held == {}


# --- the lease protocol on the real backends (PostgreSQL: the server's clock) ------------------


def test_leases_expire_and_move_on_the_store_clock(store_url: str) -> None:
    db = Database(store_url)
    now = 10**12
    a = leases.lease_round(db, "a", "ia", {}, first=True, now_ms=now, ttl_ms=400)
    assert len(a.held) == leases.PARTITIONS
    b = leases.lease_round(db, "b", "ib", {}, first=True, now_ms=now, ttl_ms=400)
    assert b.held == {}  # everything is held and not expired
    state: dict[str, Any] = {"held": {}, "now": now}

    def b_took_all() -> bool:
        state["now"] += 100  # SQLite runs on the caller's clock; PostgreSQL on its own
        got = leases.lease_round(
            db, "b", "ib", state["held"], first=False, now_ms=state["now"], ttl_ms=400
        )
        state["held"] = got.held
        return len(got.held) == leases.PARTITIONS

    until(b_took_all, timeout=10)
    assert all(state["held"][p] == a.held[p] + 1 for p in a.held)
    with db.transaction() as conn:
        assert leases.fence(conn, db.dialect, "a", a.held) == set()
        assert leases.fence(conn, db.dialect, "b", state["held"]) == set(state["held"])


def test_a_takeover_waits_for_the_old_owners_write_in_flight(postgres: Any) -> None:
    """PostgreSQL: the old owner's fenced transaction holds its lease rows FOR SHARE; the
    takeover's UPDATE waits for it, so the new owner's reconciliation sees what it wrote."""
    url = postgres.fresh_url()
    db = Database(url)
    try:
        a = leases.lease_round(db, "a", "ia", {}, first=True, now_ms=0, ttl_ms=300)
        started = threading.Event()
        result: dict[str, Any] = {}

        def take() -> None:
            other = Database(url)
            started.set()
            held: dict[int, int] = {}
            first = True
            while len(held) < leases.PARTITIONS:
                held = leases.lease_round(
                    other, "b", "ib", held, first=first, now_ms=0, ttl_ms=300
                ).held
                first = False
            result["held"] = held
            other.close()

        with db.transaction() as conn:
            assert leases.fence(conn, db.dialect, "a", a.held) == set(a.held)
            thread = threading.Thread(target=take)
            thread.start()
            assert started.wait(30)

            def waiting_on_a_lock() -> bool:
                (n,) = db.tuples(
                    "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                ).__next__()
                return int(n) > 0

            # b is blocked by a's open write (a lock it waits for, in this database).
            until(waiting_on_a_lock, timeout=30, what="b waiting for a's lease rows")
            assert "held" not in result
        thread.join(15)
        assert len(result["held"]) == leases.PARTITIONS
    finally:
        db.close()
        postgres.drop(url)


def test_a_takeover_that_fails_half_way_gives_the_partitions_back_and_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.send(lift, "event", {"type": "alarm_button", "pressed": True})
    (alarm,) = r.alarms("alarm_button", lift)
    r.kill("a")
    r.advance(TTL_S + 0.5, rounds=False)  # a's leases have expired
    real = store.flood_pending
    calls: list[int] = []

    def store_away_once(db: Database) -> list[Alarm]:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(db)

    monkeypatch.setattr(store, "flood_pending", store_away_once)
    with pytest.raises(OperationalError):
        r.keepers["b"].round()
    p = leases.partition_of(lift)
    assert p not in (r.engines["b"].held or {})
    assert {row.partition: row.owner for row in leases.leases(r.db)}[p] is None
    r.keepers["b"].round()  # the whole takeover this time
    assert r.owner_of(lift) == "b"
    due = alarm.raised_at + 300_000  # its escalation is armed again, at the stored time
    r.advance((due - r.clock.now_ms()) / 1000 + 1)
    assert r.alarms("alarm_button", lift)[0].escalations == 1


def test_a_restarted_replica_taking_over_from_a_dead_owner_uses_its_checkpoint(
    tmp_path: Path,
) -> None:
    """b restarts (it has not seen the lift's trapped snapshot since), then the owner dies:
    b has evaluated nothing of that lift in this process, so it takes the dead owner's last
    checkpoint (saved after b started) instead of its own empty state."""
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "a")
    r.tel(lift, **TRAPPED)
    threshold = r.clock.now_ms() + 30_000
    r.advance(1)
    r.kill("b")
    r.start("b")  # a new process: its restore predates the trapped snapshot's checkpoint
    r.advance(1)
    while r.engines["a"].checkpoint_dirty() > 0:  # a's periodic save
        pass
    r.advance(1)
    r.kill("a")
    r.advance(TTL_S + 3)
    assert r.owner_of(lift) == "b"
    r.advance(30)
    (alarm,) = r.alarms("entrapment", lift)
    assert alarm.raised_at - threshold <= 1000, (alarm.raised_at - threshold) / 1000


def test_a_hand_over_row_is_not_adopted_once_another_owner_came_between(
    tmp_path: Path,
) -> None:
    """a hands half the partitions to b (their state saved as hand-over rows); a passenger is
    trapped on one of b's lifts; b dies at once (no checkpoint of it). a takes the partition
    back: the hand-over row predates the trapped snapshot, a's own live state does not."""
    r = Replicas(tmp_path / "lw.db", ("a",))
    r.start("b")
    r.advance(3)
    lift = next(lid for lid in r.lift_ids if r.owner_of(lid) == "b")
    r.tel(lift, **TRAPPED)
    threshold = r.clock.now_ms() + 30_000
    r.kill("b")
    r.advance(TTL_S + 3)
    assert r.owner_of(lift) == "a"
    r.advance(30)
    (alarm,) = r.alarms("entrapment", lift)
    assert alarm.raised_at - threshold <= 1000, (alarm.raised_at - threshold) / 1000


def test_renewals_and_fenced_writes_never_deadlock(postgres: Any) -> None:
    """PostgreSQL: lease rounds (renewals) and alarm writes (fence: FOR SHARE) lock lease rows
    in one order, so they only ever wait for each other, never deadlock (before: ~1 deadlock
    every 2 s, each stalling every replica's alarm path for deadlock_timeout, 1 s)."""
    import psycopg

    url = postgres.fresh_url()
    db = Database(url)
    stop = threading.Event()
    errors: list[BaseException] = []
    try:
        held = leases.lease_round(db, "a", "ia", {}, first=True, now_ms=0).held
        fenced = [0]

        def renew() -> None:
            while not stop.is_set():
                try:
                    leases.lease_round(db, "a", "ia", held, first=False, now_ms=0)
                except psycopg.Error as exc:
                    errors.append(exc)

        def write() -> None:
            while not stop.is_set():
                try:
                    with db.transaction() as conn:
                        assert leases.fence(conn, db.dialect, "a", held) == set(held)
                        fenced[0] += 1
                except psycopg.Error as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=f) for f in (renew, write, write)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 4
        until(lambda: time.monotonic() > deadline or bool(errors), timeout=10)
        stop.set()
        for t in threads:
            t.join(10)
        assert errors == [] and fenced[0] > 100, (errors[:3], fenced[0])
    finally:
        stop.set()
        db.close()
        postgres.drop(url)


def test_a_dead_owners_partitions_go_to_a_warm_replica_then_are_shared_with_their_state(
    tmp_path: Path,
) -> None:
    """A replica started seconds ago has not evaluated what happened just before it started:
    while a warm replica is alive, a dead owner's partitions go to the warm one; the cold one
    then gets its share by hand-over, with the lifts' state."""
    r = Replicas(tmp_path / "lw.db", ("a", "b"))
    r.advance(12)  # both warm
    r.start("c")  # cold
    r.advance(2)
    of_a = {p for p in range(leases.PARTITIONS) if p in (r.engines["a"].held or {})}
    assert of_a
    r.kill("a")
    r.advance(TTL_S + 1.5)
    owners = {row.partition: row.owner for row in leases.leases(r.db)}
    assert {owners[p] for p in of_a} == {"b"}, "the cold replica took a dead owner's partition"
    r.advance(3)  # hand-overs restore the fair share
    counts = _owned_counts(r)
    assert counts["c"] >= 30 and sum(counts.values()) == leases.PARTITIONS, counts
