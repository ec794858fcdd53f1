"""The alarm lifecycle over a real store (each test on SQLite and on PostgreSQL):
forward-only status, outbox rows written with their transition, suppression never notified,
flood control, end of alarm."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from alerts import lifecycle as lc
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, maintenance, outbox
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg

T0 = 1_795_000_000_000


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url)
    reg.upsert_company(database, Company(company_id="acme", name="Acme Lifts"))
    reg.upsert_lift(
        database,
        Lift(
            lift_id="L1",
            company_id="acme",
            name="Tower A",
            address="1 Main St",
            rescue_code="123456",
        ),
    )
    yield database
    database.close()


def _raise(db: Database, code: str = "entrapment", at: int = T0, **kw: object) -> store.Alarm:
    req = lc.Raise(
        lift_id="L1",
        code=code,
        subtype=kw.pop("subtype", "outside_zone" if code == "entrapment" else None),  # type: ignore[arg-type]
        severity=kw.pop("severity", "critical"),  # type: ignore[arg-type]
        source="rule",
        at=at,
        evidence={"floor": "7"},
        company_id="acme",
        **kw,  # type: ignore[arg-type]
    )
    out: list[lc.Change] = []
    with db.transaction() as conn:
        return lc.raise_condition(conn, req, lc.Policy(), out)


def _types(db: Database, alarm_id: str | None = None) -> list[str]:
    return [r.event_type for r in outbox.outbox_rows(db, alarm_id=alarm_id)]


def test_alarm_ids_sort_by_time() -> None:
    ids = [store.new_alarm_id(T0 + i) for i in range(0, 5000, 7)]
    assert ids == sorted(ids)
    assert all(i.startswith("al_") and len(i) == 29 for i in ids)


def test_raise_writes_outbox_row_with_full_view(db: Database) -> None:
    alarm = _raise(db)
    [row] = outbox.outbox_rows(db)
    body = json.loads(row.payload)
    assert row.event_type == "alarm.raised" and row.company_id == "acme"
    assert body["type"] == "alarm.raised"
    assert body["timestamp"] == "2026-11-18T11:06:40.000Z"
    data = body["data"]
    assert data["alarm_id"] == alarm.alarm_id
    assert data["name"] == {"zh": "困人", "en": "Passenger entrapment"}
    assert data["lift"] == {
        "name": "Tower A",
        "address": "1 Main St",
        "company_id": "acme",
        "rescue_code": "123456",
    }
    assert data["status"] == "open" and data["condition"] == "active"
    assert data["evidence"] == {"floor": "7"}
    assert data["acknowledged_at"] is None and data["outcome"] is None


def test_same_condition_twice_is_one_alarm(db: Database) -> None:
    first = _raise(db)
    again = _raise(db, at=T0 + 5)
    assert again.alarm_id == first.alarm_id and again.occurrences == 1
    assert _types(db) == ["alarm.raised"]


def test_returning_condition_reactivates_with_occurrences(db: Database) -> None:
    first = _raise(db)
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.clear_condition(conn, "L1", "entrapment", "outside_zone", T0 + 1000, out)
    back = _raise(db, at=T0 + 2000)
    assert back.alarm_id == first.alarm_id and back.occurrences == 2
    assert _types(db) == ["alarm.raised", "alarm.condition_cleared", "alarm.condition_returned"]


def test_status_moves_forward_only(db: Database) -> None:
    alarm = _raise(db)
    lc.mark_on_site(db, alarm.alarm_id, actor="api:tech")
    with pytest.raises(lc.InvalidTransition, match="on_site"):
        lc.acknowledge(db, alarm.alarm_id, actor="api:tech")
    with pytest.raises(lc.InvalidOutcome):
        lc.resolve(db, alarm.alarm_id, actor="api:tech", outcome="auto")
    done = lc.resolve(db, alarm.alarm_id, actor="api:tech", outcome="rescued", note="freed")
    assert done.status == "resolved" and done.outcome == "rescued"
    with pytest.raises(lc.InvalidTransition):
        lc.resolve(db, alarm.alarm_id, actor="api:tech", outcome="rescued")
    with pytest.raises(lc.AlarmNotFound):
        lc.acknowledge(db, "al_nope", actor="x")
    assert _types(db) == ["alarm.raised", "alarm.on_site", "alarm.resolved"]
    events = [
        (t.event, t.from_state, t.to_state, t.actor, t.note)
        for t in store.transitions_of(db, alarm.alarm_id)
    ]
    assert events[1:] == [
        ("on_site", "open", "on_site", "api:tech", None),
        ("resolved", "on_site", "resolved", "api:tech", "freed"),
    ]


def test_listener_hears_api_transitions(db: Database) -> None:
    heard: list[str] = []

    class Ear:
        def alarm_changed(self, changes: object) -> None:
            heard.extend(c.transition.event for c in changes)  # type: ignore[attr-defined]

    alarm = _raise(db)
    lc.acknowledge(db, alarm.alarm_id, actor="api:x", listener=Ear())
    assert heard == ["acknowledged"]


def test_suppressed_alarm_is_recorded_never_notified(db: Database) -> None:
    alarm = _raise(db, "run_timeout", severity="major", suppressed_reason="special_mode")
    assert alarm.suppressed and alarm.suppressed_reason == "special_mode"
    lc.acknowledge(db, alarm.alarm_id, actor="api:x")
    assert _types(db) == []
    assert store.get_alarm(db, alarm.alarm_id) is not None


def test_maintenance_window_mutes_derived_alarms_only(db: Database) -> None:
    maintenance.add_maintenance_window(
        db, "L1", T0 - 1000, T0 + 60_000, reason="service", created_by="api:x"
    )
    muted = _raise(db, "run_timeout", severity="major", maintenance_applies=True)
    loud = _raise(db, "alarm_button", severity="critical", maintenance_applies=False)
    assert muted.suppressed_reason == "maintenance_window"
    assert not loud.suppressed
    # After the window, a condition still holding is raised for real.
    later = _raise(db, "run_timeout", severity="major", maintenance_applies=True, at=T0 + 70_000)
    assert later.alarm_id == muted.alarm_id and not later.suppressed
    assert _types(db, muted.alarm_id) == ["alarm.raised"]


def test_flood_control_collapses_after_three_raises_per_hour(db: Database) -> None:
    ids = []
    for i in range(6):
        at = T0 + i * 120_000
        alarm = _raise(db, "door_cycling", severity="minor", at=at)
        ids.append(alarm.alarm_id)
        out: list[lc.Change] = []
        with db.transaction() as conn:
            lc.clear_condition(conn, "L1", "door_cycling", None, at + 1000, out)
            lc.auto_resolve(conn, alarm.alarm_id, at + 61_000, lc.Policy(), out)
    alarms = [store.get_alarm(db, i) for i in ids]
    assert [a.suppressed_reason for a in alarms if a] == [None] * 3 + ["flood_control"] * 3
    assert _types(db).count("alarm.raised") == 3
    assert _types(db).count("alarm.summary") == 0  # FAULTS.md 1.1 #4: at the end of the hour
    first = alarms[3]
    assert first is not None
    due = lc.summary_due(first, lc.Policy())
    assert due == first.raised_at + 3_600_000
    with db.transaction() as conn:
        assert lc.send_summary(conn, "L1", "door_cycling", due, lc.Policy())
        assert not lc.send_summary(conn, "L1", "door_cycling", due + 1, lc.Policy())
    (summary,) = [r for r in outbox.outbox_rows(db) if r.event_type == "alarm.summary"]
    data = json.loads(summary.payload)["data"]
    assert data["summary"]["collapsed"] == 3
    assert data["summary"]["alarm_ids"] == ids[3:]
    # The summary and the alarms it covers say suppressed consistently.
    assert (data["suppressed"], data["suppressed_reason"]) == (True, "flood_control")
    assert data["alarm_id"] == ids[5]
    assert all(
        a is not None and a.notified_at == due for a in (store.get_alarm(db, i) for i in ids[3:])
    )
    # The window slides: once fewer than 3 raises remain in the last hour, raises notify again.
    late = _raise(db, "door_cycling", severity="minor", at=T0 + 3 * 120_000 + 3_600_001)
    assert late.suppressed_reason is None
    assert _types(db).count("alarm.raised") == 4


def test_critical_alarms_are_never_flood_controlled(db: Database) -> None:
    """FAULTS.md 1.1 #4: flood control never delays a critical alarm's notification; the 4th
    alarm-button alarm within an hour is announced at once like the first."""
    for i in range(3):
        _raise(db, "alarm_button", at=T0 + i * 60_000)
        with db.transaction() as conn:
            lc.end_of_alarm(conn, "L1", T0 + i * 60_000 + 1000, None, [])
    alarm = _raise(db, "alarm_button", at=T0 + 200_000, deadline_ms=1_800_000)
    assert not alarm.suppressed and alarm.notified_at == T0 + 200_000
    assert _types(db, alarm.alarm_id) == ["alarm.raised"]


def test_muted_critical_alarm_is_never_escalated_or_overdue(db: Database) -> None:
    alarm = _raise(db, "overspeed", suppressed_reason="maintenance_window", deadline_ms=60_000)
    assert not lc.pursued(alarm)
    out: list[lc.Change] = []
    with db.transaction() as conn:
        esc = lc.escalate(conn, alarm.alarm_id, T0 + 300_000, out)
        late = lc.mark_overdue(conn, alarm.alarm_id, T0 + 300_000, out)
    assert esc is not None and esc.escalations == 0
    assert late is not None and not late.overdue
    assert _types(db) == []
