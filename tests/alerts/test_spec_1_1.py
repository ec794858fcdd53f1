"""FAULTS.md § Version 1.1 decisions, each a regression test of a defect in
../shared/repros/README.md (the real engine on SQLite, in virtual time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liftwatch.protocol import format_ts
from liftwatch.store import alarms as store
from liftwatch.store import maintenance, outbox
from tests.alerts.rig import Rig

RUNNING: dict[str, Any] = {
    "car_status": "running",
    "direction": "up",
    "speed": 1.0,
    "door_zone": False,
}


def test_one_press_reported_as_event_and_telemetry_is_one_press(tmp_path: Path) -> None:
    """1.1 #3, repro r01 (M4): the event and the next snapshot's field are one press, so a
    short press while running normally stays filtered — in either order."""
    for order in ("event_first", "telemetry_first"):
        r = Rig(tmp_path / f"{order}.db")
        r.tel(alarm_button=False, **RUNNING)
        r.advance(1)
        if order == "event_first":
            r.event("alarm_button", pressed=True)
            r.tel(alarm_button=True)
        else:
            r.tel(alarm_button=True)
            r.event("alarm_button", pressed=True)
        r.advance(1)
        r.event("alarm_button", pressed=False)
        r.tel(alarm_button=False)
        r.advance(5)
        assert r.alarms("alarm_button") == [], order


def test_a_second_press_reported_both_ways_still_bypasses_the_filter(store_url: str) -> None:
    r = Rig(store_url)
    r.tel(alarm_button=False, **RUNNING)
    for _ in range(2):
        r.event("alarm_button", pressed=True)
        r.tel(alarm_button=True)
        r.advance(1)
        r.event("alarm_button", pressed=False)
        r.tel(alarm_button=False)
        r.advance(5)
    (alarm,) = r.alarms("alarm_button")
    notes = [t.note for t in store.transitions_of(r.db, alarm.alarm_id)]
    # M4 (tiny): the reason the rule computed is kept with the raise transition.
    assert notes == ["filter bypassed: pressed again within the repeat window"]


def test_a_held_press_counts_as_soon_as_the_car_stops_between_floors(store_url: str) -> None:
    """1.1 #3 (A7): judged while the button is held, not only after the 30 s hold."""
    r = Rig(store_url)
    r.tel(**RUNNING)
    r.event("alarm_button", pressed=True)
    r.advance(3)
    assert r.alarms("alarm_button") == []
    r.tel(car_status="stopped", speed=0.0, door_zone=False)  # stuck between floors, still held
    (alarm,) = r.alarms("alarm_button")
    assert alarm.raised_at == r.clock.now_ms() and alarm.status == "open"


def test_a_promoted_alarm_is_announced_with_the_evidence_of_now(store_url: str) -> None:
    """1.1 #5, repro r07 (M5): muted in a maintenance window with the technician at floor 7,
    raised for real two days later for a passenger at floor 2."""
    r = Rig(store_url)
    t0 = r.clock.now_ms()
    maintenance.add_maintenance_window(
        r.db, "L1", t0, t0 + 3_600_000, reason="check", created_by="t"
    )
    r.tel(floor="7", door_zone=False, doors_closed=True, passenger_present=True, speed=0.0)
    r.advance(31)
    r.tel(floor="7", door_zone=True, doors_closed=False, passenger_present=False)
    r.advance(2 * 86_400)
    r.tel(floor="2", door_zone=False, doors_closed=True, passenger_present=True, speed=0.0)
    r.advance(31)
    (alarm,) = r.alarms("entrapment")
    (row,) = outbox.outbox_rows(r.db, alarm_id=alarm.alarm_id)
    body = json.loads(row.payload)
    assert body["type"] == "alarm.raised"
    data = body["data"]
    assert data["raised_at"] == body["timestamp"]  # response times count from the announcement
    assert data["evidence"]["floor"] == "2"
    assert data["evidence"]["muted_since"] < data["raised_at"]
    assert alarm.deadline_at == alarm.raised_at + 30 * 60_000


def test_end_of_alarm_resolves_only_alarms_raised_before_it_was_received(store_url: str) -> None:
    """1.1 #8: an end_of_alarm received before an alarm was raised (and evaluated after it,
    say from a backlog) does not resolve that alarm; it is a new alarm."""
    r = Rig(store_url)
    r.tel()
    received = r.clock.now_ms()
    r.advance(1)
    r.event("alarm_button", pressed=True)
    alarm = r.one("alarm_button")
    assert alarm.raised_at > received
    end = json.dumps({"v": 1, "ts": received, "seq": 50, "type": "end_of_alarm"}).encode()
    r.engine.handle_raw([("lifts/L1/event", end)], received_ms=received)
    assert r.one("alarm_button").status == "open"
    r.event("end_of_alarm", by="tech")
    assert r.one("alarm_button").status == "resolved"


def _snapshot(ts: int, seq: int, **changes: Any) -> tuple[str, bytes]:
    from tests.alerts.rig import BASE

    body = {"v": 1, "ts": ts, "seq": seq, **BASE, **changes}
    return ("lifts/L1/telemetry", json.dumps(body).encode())


TRAPPED: dict[str, Any] = {"door_zone": False, "passenger_present": True, "speed": 0.0}


def test_late_evidence_in_a_burst_still_raises_and_says_late(store_url: str) -> None:
    """1.1 #7 (A2): an entrapment that began and ended inside a broker outage, its snapshots
    delivered in one burst afterwards, is raised (late: true) and stays open until ended."""
    r = Rig(store_url)
    t0 = r.clock.now_ms()
    r.engine.handle_raw([_snapshot(t0, 1)])
    r.advance(90)  # the broker is down: the device buffers its snapshots
    burst = [_snapshot(t0 + 10_000 + i * 5_000, 2 + i, **TRAPPED) for i in range(9)]
    burst.append(_snapshot(t0 + 60_000, 11, door_zone=True, doors_closed=False))
    r.engine.handle_raw(burst)
    (alarm,) = r.alarms("entrapment")
    assert (alarm.subtype, alarm.status) == ("outside_zone", "open")
    assert alarm.condition == "cleared"  # it ended inside the burst: open until a person ends it
    assert alarm.evidence["late"] is True and alarm.evidence["late_by_s"] > 40
    assert alarm.evidence["held_since"] == format_ts(t0 + 10_000)  # its start in device time
    r.advance(600)
    assert r.one("entrapment").status == "open"
    view = json.loads(outbox.outbox_rows(r.db, alarm_id=alarm.alarm_id)[0].payload)["data"]
    assert view["late"] is True


def test_a_device_clock_behind_is_not_late(store_url: str) -> None:
    """A device whose clock runs 30 s behind, live: the entrapment is raised 30 s after the
    first trapped snapshot arrives, not marked late."""
    r = Rig(store_url)
    skew = 30_000
    r.engine.handle_raw([_snapshot(r.clock.now_ms() - skew, 1)])
    r.advance(5)
    trapped_at = r.clock.now_ms()
    for seq in range(2, 6):
        r.engine.handle_raw([_snapshot(r.clock.now_ms() - skew, seq, **TRAPPED)])
        r.advance(10)
    (alarm,) = r.alarms("entrapment")
    assert alarm.raised_at == trapped_at + 30_000
    assert "late" not in alarm.evidence


def _status(r: Rig, state: str, *, retained: bool) -> None:
    payload = json.dumps({"v": 1, "state": state}).encode()
    r.engine.handle_raw([("lifts/L1/status", payload)], retained=[retained])


def test_a_retained_online_status_does_not_restart_the_offline_timer(store_url: str) -> None:
    """PROTOCOL.md 1.1 § Value ranges: a retained status replayed on (re)subscription is not
    news; the lift silent since its last message is still offline 180 s after it."""
    r = Rig(store_url)
    r.tel()
    last = r.clock.now_ms()
    r.advance(100)
    _status(r, "online", retained=True)
    r.advance(80 - 0.001)
    assert r.alarms("device_offline") == []
    r.advance(0.001)
    assert r.one("device_offline").raised_at == last + 180_000


def test_a_live_online_status_proves_the_device_alive(store_url: str) -> None:
    r = Rig(store_url)
    r.tel()
    r.advance(100)
    _status(r, "online", retained=False)
    r.advance(179)
    assert r.alarms("device_offline") == []


def test_a_retained_last_will_counts_from_the_last_message(store_url: str) -> None:
    r = Rig(store_url)
    r.tel()
    last = r.clock.now_ms()
    r.advance(20)
    _status(r, "offline", retained=True)  # the Last Will the broker kept
    r.advance(40)
    assert r.one("device_offline").raised_at == last + 60_000
