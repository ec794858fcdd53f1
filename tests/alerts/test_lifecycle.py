"""The alarm lifecycle over a real SQLite store: forward-only status, outbox rows written with
their transition, suppression never notified, flood control, end of alarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts import lifecycle as lc
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg

T0 = 1_795_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "lw.sqlite3")
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
    return database


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
    return [r.event_type for r in store.outbox_rows(db, alarm_id=alarm_id)]


def test_alarm_ids_sort_by_time() -> None:
    ids = [store.new_alarm_id(T0 + i) for i in range(0, 5000, 7)]
    assert ids == sorted(ids)
    assert all(i.startswith("al_") and len(i) == 29 for i in ids)


def test_raise_writes_outbox_row_with_full_view(db: Database) -> None:
    alarm = _raise(db)
    [row] = store.outbox_rows(db)
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
    store.add_maintenance_window(
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
    assert _types(db).count("alarm.summary") == 1
    summary = next(r for r in store.outbox_rows(db) if r.event_type == "alarm.summary")
    assert json.loads(summary.payload)["data"]["summary"]["raises_last_hour"] == 4
    # The window slides: once fewer than 3 raises remain in the last hour, raises notify again.
    late = _raise(db, "door_cycling", severity="minor", at=T0 + 3 * 120_000 + 3_600_001)
    assert late.suppressed_reason is None
    assert _types(db).count("alarm.raised") == 4


def test_auto_resolve_only_after_sixty_seconds_cleared(db: Database) -> None:
    alarm = _raise(db, "run_timeout", severity="major")
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.clear_condition(conn, "L1", "run_timeout", None, T0 + 1000, out)
        early = lc.auto_resolve(conn, alarm.alarm_id, T0 + 60_999, lc.Policy(), out)
        assert early is not None and early.status == "open"
        done = lc.auto_resolve(conn, alarm.alarm_id, T0 + 61_000, lc.Policy(), out)
    assert done is not None and done.status == "resolved" and done.outcome == "auto"


def test_critical_never_auto_resolves_end_of_alarm_does(db: Database) -> None:
    alarm = _raise(db)
    other = _raise(db, "run_timeout", severity="major")
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.clear_condition(conn, "L1", "entrapment", "outside_zone", T0 + 1000, out)
        kept = lc.auto_resolve(conn, alarm.alarm_id, T0 + 600_000, lc.Policy(), out)
        assert kept is not None and kept.status == "open"
        ended = lc.end_of_alarm(conn, "L1", T0 + 700_000, "tech 7", out)
    assert [a.alarm_id for a in ended] == [alarm.alarm_id]
    assert ended[0].outcome == "rescued" and ended[0].resolved_by == "device:tech 7"
    assert store.get_alarm(db, other.alarm_id).status == "open"  # type: ignore[union-attr]


def test_escalation_stops_once_acknowledged(db: Database) -> None:
    alarm = _raise(db)
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.escalate(conn, alarm.alarm_id, T0 + 300_000, out)
    lc.acknowledge(db, alarm.alarm_id, actor="api:x")
    with db.transaction() as conn:
        after = lc.escalate(conn, alarm.alarm_id, T0 + 600_000, out)
    assert after is not None and after.escalations == 1
    assert _types(db) == ["alarm.raised", "alarm.escalated", "alarm.acknowledged"]


def test_overdue_unless_on_site(db: Database) -> None:
    alarm = _raise(db, deadline_ms=1_800_000)
    assert alarm.deadline_at == T0 + 1_800_000
    out: list[lc.Change] = []
    with db.transaction() as conn:
        late = lc.mark_overdue(conn, alarm.alarm_id, T0 + 1_800_000, out)
        again = lc.mark_overdue(conn, alarm.alarm_id, T0 + 1_800_001, out)
    assert late is not None and late.overdue and again is not None
    assert _types(db).count("alarm.overdue") == 1


def test_view_of_unregistered_lift(db: Database) -> None:
    out: list[lc.Change] = []
    req = lc.Raise("ghost", "alarm_button", None, "critical", "device", T0, {}, unregistered=True)
    with db.transaction() as conn:
        alarm = lc.raise_condition(conn, req, lc.Policy(), out)
    data = store.view(db, alarm.alarm_id)
    assert data is not None and data["unregistered"] is True
    assert data["lift"]["name"] is None and data["lift"]["company_id"] is None


def test_muted_critical_alarm_never_auto_resolves(db: Database) -> None:
    # FAULTS.md: critical alarms resolve only by an explicit end of alarm, muted or not.
    alarm = _raise(db, "overspeed", suppressed_reason="inspection_mode")
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.clear_condition(conn, "L1", "overspeed", None, T0 + 1000, out)
        kept = lc.auto_resolve(conn, alarm.alarm_id, T0 + 3_600_000, lc.Policy(), out)
        assert kept is not None and kept.status == "open"
        ended = lc.end_of_alarm(conn, "L1", T0 + 3_700_000, None, out)
    assert [a.alarm_id for a in ended] == [alarm.alarm_id]
    assert not lc.auto_resolvable(alarm)


def test_muted_major_alarm_still_auto_resolves(db: Database) -> None:
    alarm = _raise(db, "run_timeout", severity="major", suppressed_reason="inspection_mode")
    out: list[lc.Change] = []
    with db.transaction() as conn:
        lc.clear_condition(conn, "L1", "run_timeout", None, T0 + 1000, out)
        done = lc.auto_resolve(conn, alarm.alarm_id, T0 + 61_000, lc.Policy(), out)
    assert done is not None and done.status == "resolved" and done.outcome == "auto"
    assert _types(db) == []


def _flooded_button(db: Database) -> store.Alarm:
    """Three alarm_button alarms ended at the installation, then a 4th within the hour."""
    for i in range(3):
        _raise(db, "alarm_button", at=T0 + i * 60_000)
        with db.transaction() as conn:
            lc.end_of_alarm(conn, "L1", T0 + i * 60_000 + 1000, None, [])
    alarm = _raise(db, "alarm_button", at=T0 + 200_000, deadline_ms=1_800_000)
    assert alarm.suppressed_reason == "flood_control"
    return alarm


def test_flood_controlled_critical_alarm_is_still_escalated_and_overdue(db: Database) -> None:
    # Flood control collapses repeated *raise* notifications into a summary; the alarm is
    # still a real critical alarm: EN 81-28 emits it until acknowledged, and a technician
    # must still arrive by the deadline. Escalation and overdue are notified individually.
    alarm = _flooded_button(db)
    assert _types(db, alarm.alarm_id) == ["alarm.summary"]
    assert lc.pursued(alarm)
    out: list[lc.Change] = []
    with db.transaction() as conn:
        esc = lc.escalate(conn, alarm.alarm_id, T0 + 500_000, out)
    assert esc is not None and esc.escalations == 1
    lc.acknowledge(db, alarm.alarm_id, actor="api:ops")
    with db.transaction() as conn:
        late = lc.mark_overdue(conn, alarm.alarm_id, T0 + 2_000_000, out)
    assert late is not None and late.overdue
    assert _types(db, alarm.alarm_id) == [
        "alarm.summary",
        "alarm.escalated",
        "alarm.acknowledged",  # once escalated, its later transitions are notified too
        "alarm.overdue",
    ]
    payload = json.loads(store.outbox_rows(db, alarm_id=alarm.alarm_id)[1].payload)
    assert payload["data"]["suppressed_reason"] == "flood_control"


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
