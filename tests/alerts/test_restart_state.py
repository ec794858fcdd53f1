"""State that lives only in the alerts process's memory (../shared/repros r10, r13, r15).

r13 is fixed by the engine re-reading which lifts have an unresolved alarm-button alarm. r10
and r15 are fixed by the per-lift checkpoints (alerts/checkpoint.py, docs/ha.md): the dedup
keys and the button's press state are stored with each alarm write and restored at start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alerts import lifecycle
from tests.alerts.rig import Rig

RUNNING: dict[str, Any] = {
    "car_status": "running",
    "direction": "up",
    "speed": 1.0,
    "door_zone": False,
}


def _button_filter_after_resolve(tmp_path: Path, *, same_process: bool) -> list[str]:
    r = Rig(tmp_path / f"{same_process}.db")
    r.tel(door_zone=False)
    r.event("alarm_button", pressed=True)
    r.event("alarm_button", pressed=False)
    (alarm,) = r.alarms("alarm_button")
    r.advance(600)
    listener = r.engine if same_process else None
    lifecycle.resolve(
        r.db, alarm.alarm_id, actor="api:dispatcher", outcome="rescued", listener=listener
    )
    r.advance(7200)  # the lift's timers run meanwhile: they re-read the store every 10 s
    r.tel(**RUNNING)
    r.event("alarm_button", pressed=True)  # one short press while running normally
    r.event("alarm_button", pressed=False)
    r.advance(5)
    return [a.status for a in r.alarms("alarm_button")]


def test_button_filter_is_back_after_an_api_in_another_process_resolves(tmp_path: Path) -> None:
    """Repro r13 (M3): once resolved through a separate `liftwatch api`, the engine's next look
    at the store (timers and registry refresh, every 10 s) puts the filter back; a short press
    while running normally is ignored again."""
    assert _button_filter_after_resolve(tmp_path, same_process=True) == ["resolved"]
    assert _button_filter_after_resolve(tmp_path, same_process=False) == ["resolved"]


def test_issue15_stuck_button_after_restart_is_the_same_press(tmp_path: Path) -> None:
    """Repro r10 (m2), FAULTS.md 1.1 #3: after a restart a button still held is the same
    press, not a new one."""
    r = Rig(tmp_path / "lw.db")
    r.tel(door_zone=False, alarm_button=False)
    r.tel(alarm_button=True)
    r.advance(60)
    r.event("end_of_alarm", by="tech")
    r.advance(30)
    r.tel()
    assert [a.status for a in r.alarms("alarm_button")] == ["resolved"]
    r.restart()
    r.advance(30)
    r.tel()
    assert [a.status for a in r.alarms("alarm_button")] == ["resolved"]


def test_issue15_batch_redelivered_after_a_crash_is_evaluated_once(tmp_path: Path) -> None:
    """Repro r15 (m1), PROTOCOL.md: a duplicate is evaluated once, also when redelivered
    after liftwatch restarted."""
    r = Rig(tmp_path / "lw.db")
    r.tel(door_zone=False)
    r.event("alarm_button", pressed=True)
    r.advance(60)
    ts = r.clock.now_ms()
    batch = [
        (
            "lifts/L1/event",
            json.dumps({"v": 1, "ts": ts, "seq": 50, "type": "end_of_alarm", "by": "t"}).encode(),
        ),
        (
            "lifts/L1/event",
            json.dumps(
                {"v": 1, "ts": ts + 5, "seq": 51, "type": "alarm_button", "pressed": True}
            ).encode(),
        ),
    ]
    r.engine.handle_raw(batch)  # committed, then the process dies before its PUBACKs
    r.restart()
    r.engine.handle_raw(batch)  # the broker redelivers the batch
    assert [(a.status, a.outcome) for a in r.alarms("alarm_button")] == [
        ("resolved", "rescued"),
        ("open", None),
    ]


def test_every_slot_of_the_live_state_is_checkpointed_or_deliberately_not() -> None:
    from alerts import checkpoint
    from alerts.state import LiftState

    assert checkpoint.saved_slots() | checkpoint.NOT_SAVED == set(LiftState.__slots__)
    assert not checkpoint.saved_slots() & checkpoint.NOT_SAVED


def test_an_unreadable_checkpoint_starts_that_lift_afresh_and_restores_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from liftwatch.registry import Lift
    from liftwatch.store import registry as reg

    r = Rig(tmp_path / "lw.db")
    reg.upsert_lift(r.db, Lift(lift_id="L2", company_id="acme", rated_speed=1.0))
    for lift in ("L1", "L2"):
        r.tel(lift, door_zone=False, alarm_button=False)
        r.tel(lift, alarm_button=True)  # a press: its alarm write saves the checkpoint
    with r.db.transaction() as conn:
        conn.execute("UPDATE lift_checkpoints SET state = ? WHERE lift_id = 'L2'", (b"\x00",))
    r.restart()
    assert "event=checkpoint_unusable lift_id=L2" in caplog.text
    assert r.engine.states["L1"].btn_pressed is True  # restored
    assert r.engine.states["L2"].btn_pressed is False  # afresh


def test_only_a_meaningful_change_makes_a_lift_due_for_its_periodic_checkpoint(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path / "lw.db")
    r.tel(load=10.0)
    r.engine.checkpoint_dirty()
    for load in (20.0, 30.0, 40.0):  # the same state again, another load: nothing to save
        r.tel(load=load)
    assert r.engine.checkpoint_dirty() == 0
    r.tel(door_zone=False, passenger_present=True)  # stopped outside the zone: timed from now
    assert r.engine.checkpoint_dirty() == 1
