"""Registry changes reach the alerts engine and the alarms (FAULTS.md 1.1 #6; repros r03, r04,
r06, r06b). The real engine on SQLite in virtual time; a second connection plays the API."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from alerts.webhooks import filters
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, outbox
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from tests.alerts.rig import Rig

H = 3600


def _receives(row: outbox.OutboxRow, company: str) -> bool:
    ev = filters.Event(row.event_type, row.lift_id, row.company_id, row.code, row.severity)
    return filters.matches(filters.Subscriber(company), ev)


def test_an_unresolved_alarm_moves_with_its_lift_to_the_new_company(tmp_path: Path) -> None:
    """Repro r04 (m5): the new company is told (alarm.raised) and gets what follows; the old
    one stops hearing of it."""
    r = Rig(tmp_path / "lw.db")
    reg.upsert_company(r.db, Company(company_id="beta", name="Beta"))
    r.tel(door_zone=False, doors_closed=True, passenger_present=True, speed=0.0)
    r.advance(30)
    alarm = r.one("entrapment")
    assert alarm.company_id == "acme"
    reg.upsert_lift(r.db, Lift(lift_id="L1", company_id="beta", rated_speed=1.0))
    r.engine.refresh_registry()
    r.advance(300)  # not acknowledged: escalated
    rows = outbox.outbox_rows(r.db, alarm_id=alarm.alarm_id)
    assert [(x.event_type, x.company_id) for x in rows] == [
        ("alarm.raised", "acme"),
        ("alarm.raised", "beta"),
        ("alarm.escalated", "beta"),
    ]
    moved = json.loads(rows[1].payload)["data"]
    assert moved["company_id"] == "beta" and moved["reassigned_from"] == "acme"
    assert _receives(rows[2], "beta") and not _receives(rows[2], "acme")
    assert r.one("entrapment").company_id == "beta"


def test_a_resolved_alarm_stays_with_the_company_that_handled_it(tmp_path: Path) -> None:
    r = Rig(tmp_path / "lw.db")
    reg.upsert_company(r.db, Company(company_id="beta", name="Beta"))
    r.tel()
    r.event("alarm_button", pressed=True)
    r.event("end_of_alarm", by="tech")
    reg.upsert_lift(r.db, Lift(lift_id="L1", company_id="beta", rated_speed=1.0))
    r.engine.refresh_registry()
    assert r.one("alarm_button").company_id == "acme"
    assert [x.company_id for x in outbox.outbox_rows(r.db)].count("beta") == 0


def test_an_alarm_raised_before_the_engine_saw_the_registration_gets_the_company(
    tmp_path: Path,
) -> None:
    """Repro r06b (M2a): registered through the API, the button tested before the engine's
    next refresh; the refresh gives the alarm its company and tells the company."""
    r = Rig(tmp_path / "lw.db")
    api = Database(r.path)  # another process's connection
    reg.upsert_lift(api, Lift(lift_id="L5", company_id="acme"))
    r.tel("L5", door_zone=False)
    r.event("alarm_button", lift="L5", pressed=True)
    (alarm,) = r.alarms("alarm_button", "L5")
    assert alarm.company_id is None and alarm.unregistered
    r.advance(10)
    r.engine.refresh_registry()
    r.advance(300)
    alarm = r.one("alarm_button", "L5")
    assert alarm.company_id == "acme" and not alarm.unregistered
    rows = outbox.outbox_rows(r.db, alarm_id=alarm.alarm_id)
    assert [(x.event_type, x.company_id) for x in rows] == [
        ("alarm.raised", None),  # administrators' subscriptions heard it at once
        ("alarm.raised", "acme"),
        ("alarm.escalated", "acme"),
    ]


def test_a_registry_write_that_commits_late_is_not_missed(tmp_path: Path) -> None:
    """Repro r06 (M2b): registry changes are found by a change counter, not by a wall-clock
    window, so a transaction that commits after a refresh ran (a bulk import), or a host
    whose clock is behind the engine's, cannot lose a lift."""
    r = Rig(tmp_path / "lw.db", start=False)
    r.clock.set_ms(time.time_ns() // 1_000_000 + H * 1000)  # the engine's clock 1 h ahead
    r.engine.start()
    api = Database(r.path)
    with api.transaction() as conn:
        reg.upsert_lift_in(conn, Lift(lift_id="L7", company_id="acme"))
        assert r.engine.refresh_registry() == 0  # runs while the write is still open
        assert "L7" not in r.engine.lifts
    r.advance(10)
    assert r.engine.refresh_registry() == 1
    assert r.engine.lifts["L7"].company_id == "acme"
    r.tel("L7")
    r.event("alarm_button", lift="L7", pressed=True)
    assert r.one("alarm_button", "L7").company_id == "acme"


def test_alarm_test_overdue_counts_from_the_last_self_test_after_reactivation(
    tmp_path: Path,
) -> None:
    """Repro r03 (m3): a self-test passed while the engine ran is the clock's origin."""
    r = Rig(tmp_path / "lw.db", start=False)
    t0 = r.clock.now_ms()
    with r.db.transaction() as c:
        c.execute("UPDATE lifts SET created_at = ?", (t0 - 240 * H * 1000,))
        store.set_selftest_ok(c, "L1", t0 - H * 1000)
    r.engine.start()
    r.tel()
    r.advance(48 * H)
    r.event("selftest", result="ok")
    r.advance(H)
    reg.set_lift_active(r.db, "L1", False)
    r.engine.refresh_registry()
    r.advance(H)
    reg.set_lift_active(r.db, "L1", True)
    r.engine.refresh_registry()
    r.tel()
    r.advance(70 * H - 0.001)  # t0 + 120 h, less 1 ms: 72 h after the last ok self-test
    assert r.alarms("alarm_test_overdue") == []
    r.advance(0.001)
    assert len(r.alarms("alarm_test_overdue")) == 1


def test_a_bulk_registration_is_taken_in_chunks_and_none_is_missed(tmp_path: Path) -> None:
    """The refresh applies at most REFRESH_CHUNK lifts per hold of the engine lock (a quarter
    of a million imported lifts must not hold up other lifts' alarms), and takes them all."""
    from alerts.engine import REFRESH_CHUNK

    r = Rig(tmp_path / "lw.db")
    n = 2 * REFRESH_CHUNK + 7
    rows = [(i, Lift(lift_id=f"B{i:05d}", company_id="acme")) for i in range(n)]
    reg.import_lifts(r.db, rows)
    holds: list[int] = []
    take = r.engine._take_lifts

    def counting(
        chunk: Sequence[tuple[Lift, str | None, int]],
    ) -> None:
        holds.append(len(chunk))
        take(chunk)

    r.engine._take_lifts = counting  # type: ignore[method-assign, assignment]
    assert r.engine.refresh_registry() == n
    assert holds == [REFRESH_CHUNK, REFRESH_CHUNK, 7]
    assert all(f"B{i:05d}" in r.engine.lifts for i in range(n))
    assert r.engine.refresh_registry() == 0
