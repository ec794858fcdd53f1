"""Every FAULTS.md code in virtual time through the real engine and store: raises at the
threshold and not one tick before, clears as specified, and the known traps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from liftwatch.store import maintenance, outbox
from tests.alerts.rig import Rig

TICK = 0.001  # one millisecond: the clock's resolution


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "lw.sqlite3")


def trapped(rig: Rig, **extra: Any) -> None:
    rig.tel(door_zone=False, doors_closed=True, passenger_present=True, speed=0.0, **extra)


# --- entrapment ---------------------------------------------------------------------------


def test_entrapment_outside_zone_at_30_s_not_before(rig: Rig) -> None:
    trapped(rig, floor="7")
    rig.advance(30 - TICK)
    assert rig.alarms("entrapment") == []
    rig.advance(TICK)
    alarm = rig.one("entrapment")
    assert (alarm.subtype, alarm.severity, alarm.source) == ("outside_zone", "critical", "rule")
    assert alarm.evidence["floor"] == "7" and alarm.evidence["passenger_present"] is True
    assert alarm.evidence["door_zone"] is False and "ts" in alarm.evidence
    assert alarm.deadline_at == alarm.raised_at + 30 * 60_000
    assert rig.notified("entrapment") == ["alarm.raised"]


def test_entrapment_clears_on_doors_open_in_zone_but_needs_end_of_alarm(rig: Rig) -> None:
    trapped(rig)
    rig.advance(31)
    rig.tel(door_zone=True, doors_closed=False)
    alarm = rig.one("entrapment")
    assert alarm.condition == "cleared" and alarm.status == "open"
    rig.advance(600)
    assert rig.one("entrapment").status == "open"  # critical: no auto-resolve
    rig.event("end_of_alarm", by="technician")
    done = rig.one("entrapment")
    assert done.status == "resolved" and done.outcome == "rescued"


def test_entrapment_clears_when_car_runs_more_than_2_s(rig: Rig) -> None:
    trapped(rig)
    rig.advance(31)
    rig.tel(car_status="running", speed=1.0)
    rig.advance(2 - TICK)
    assert rig.one("entrapment").condition == "active"
    rig.advance(TICK)
    assert rig.one("entrapment").condition == "cleared"


def test_entrapment_at_landing_is_suspected_after_90_s(rig: Rig) -> None:
    rig.tel(door_zone=True, doors_closed=True, passenger_present=True, door_state="locked")
    rig.advance(90 - TICK)
    assert rig.alarms("entrapment") == []
    rig.advance(TICK)
    alarm = rig.one("entrapment")
    assert alarm.subtype == "at_landing" and alarm.suspected


def test_door_opening_resets_at_landing_timer(rig: Rig) -> None:
    rig.tel(passenger_present=True)
    rig.advance(60)
    rig.tel(doors_closed=False, door_state="opening")
    rig.tel(doors_closed=True, door_state="locked")
    rig.advance(89)
    assert rig.alarms("entrapment") == []
    rig.advance(1)
    assert rig.one("entrapment").subtype == "at_landing"


def test_no_passenger_sensor_no_entrapment_but_stopped_outside_zone(rig: Rig) -> None:
    rig.tel(door_zone=False, passenger_present=None)
    rig.advance(10 - TICK)
    assert rig.alarms() == []
    rig.advance(TICK)
    assert rig.one("stopped_outside_zone").severity == "major"
    rig.advance(60)
    assert rig.alarms("entrapment") == []
    rig.event("alarm_button", pressed=True)
    assert rig.one("alarm_button").status == "open"


def test_inspection_mode_no_entrapment_and_never_mutes_alarm_button(rig: Rig) -> None:
    trapped(rig, service_mode="inspection")
    rig.advance(120)
    assert rig.alarms("entrapment") == []
    rig.event("alarm_button", pressed=True)
    button = rig.one("alarm_button")
    assert not button.suppressed
    assert rig.notified("alarm_button") == ["alarm.raised"]


def test_rearm_hold_off_60_s_after_entrapment_clears(rig: Rig) -> None:
    trapped(rig)
    rig.advance(31)
    first = rig.one("entrapment")
    rig.event("end_of_alarm")
    rig.tel(door_zone=True, doors_closed=False)  # cleared at t
    rig.advance(1)
    trapped(rig)  # trapped again at t+1: 30 s would be t+31, hold-off holds it to t+60
    rig.advance(58)
    assert [a.alarm_id for a in rig.alarms("entrapment")] == [first.alarm_id]
    rig.advance(1 + TICK)
    assert len(rig.alarms("entrapment")) == 2


def test_returning_entrapment_reactivates_unresolved_alarm(rig: Rig) -> None:
    trapped(rig)
    rig.advance(31)
    rig.tel(door_zone=True, doors_closed=False)
    rig.advance(61)
    trapped(rig)
    rig.advance(31)
    alarm = rig.one("entrapment")
    assert alarm.occurrences == 2 and alarm.condition == "active"
    assert rig.notified("entrapment")[-2:] == [
        "alarm.condition_cleared",
        "alarm.condition_returned",
    ]


# --- alarm button -------------------------------------------------------------------------


def test_alarm_button_filtered_while_running_normally(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.0)
    rig.event("alarm_button", pressed=True)
    rig.event("alarm_button", pressed=False)
    rig.advance(61)
    assert rig.alarms("alarm_button") == []


def test_alarm_button_filter_bypassed_by_second_press_within_60_s(rig: Rig) -> None:
    rig.tel(doors_closed=False)  # doors open at a landing: filtered
    rig.event("alarm_button", pressed=True)
    rig.event("alarm_button", pressed=False)
    rig.advance(59)
    assert rig.alarms("alarm_button") == []
    rig.event("alarm_button", pressed=True)
    alarm = rig.one("alarm_button")
    assert alarm.source == "device" and alarm.severity == "critical"


def test_alarm_button_filter_bypassed_when_held_30_s(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.0)
    rig.tel(alarm_button=True)  # rising edge in telemetry
    rig.advance(30 - TICK)
    assert rig.alarms("alarm_button") == []
    rig.advance(TICK)
    assert rig.one("alarm_button").evidence["alarm_button"] is True


def test_alarm_button_never_clears_by_itself(rig: Rig) -> None:
    rig.event("alarm_button", pressed=True)
    rig.event("alarm_button", pressed=False)
    rig.advance(3600)
    alarm = rig.one("alarm_button")
    assert alarm.condition == "active" and alarm.status != "resolved"


# --- movement -----------------------------------------------------------------------------


def test_relevelling_in_door_zone_with_doors_open_is_not_unintended_movement(rig: Rig) -> None:
    rig.tel(doors_closed=False, door_state="open")
    for _ in range(5):
        rig.tel(car_status="running", speed=0.05)
        rig.advance(0.2)
    rig.tel(car_status="stopped", speed=0.0)
    assert rig.alarms("unintended_car_movement") == []


def test_unintended_movement_two_consecutive_messages(rig: Rig) -> None:
    rig.tel(doors_closed=False)
    rig.tel(car_status="running", speed=0.2, door_zone=False)
    assert rig.alarms("unintended_car_movement") == []
    rig.tel(speed=0.4)
    alarm = rig.one("unintended_car_movement")
    assert alarm.severity == "critical"
    rig.tel(car_status="stopped", speed=0.0, door_zone=True)
    rig.advance(600)
    assert rig.one("unintended_car_movement").status == "open"


def test_unintended_movement_inside_zone_too_fast(rig: Rig) -> None:
    rig.tel(doors_closed=False)
    rig.tel(car_status="running", speed=0.35)
    rig.tel(speed=0.4)
    assert len(rig.alarms("unintended_car_movement")) == 1


def test_door_open_while_running(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.0)
    rig.tel(doors_closed=False)
    rig.advance(0.5 - TICK)
    assert rig.alarms("door_open_while_running") == []
    rig.advance(TICK)  # 0.5 s elapsed but only one message with doors open
    assert rig.alarms("door_open_while_running") == []
    rig.tel(doors_closed=False, speed=1.1)
    assert rig.one("door_open_while_running").severity == "critical"
    rig.tel(doors_closed=True)
    assert rig.one("door_open_while_running").condition == "cleared"
    assert rig.alarms("unintended_car_movement") == []


def test_overspeed_over_two_messages_and_clear_after_15_s(tmp_path: Path) -> None:
    from liftwatch.registry import Lift

    rig = Rig(tmp_path / "x.sqlite3", lifts=(Lift(lift_id="L1", rated_speed=2.0),))
    rig.tel(car_status="running", door_zone=False, speed=2.31)
    rig.advance(1)
    assert rig.alarms("overspeed") == []  # one message only
    rig.tel(speed=2.4)
    assert rig.one("overspeed").severity == "critical"
    rig.tel(speed=2.1)  # above rated: not clearing yet
    rig.advance(20)
    rig.tel(speed=1.9)
    rig.advance(15 - TICK)
    assert rig.one("overspeed").condition == "active"
    rig.advance(TICK)
    assert rig.one("overspeed").condition == "cleared"


def test_overspeed_exactly_115_percent_is_not_overspeed(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.15)
    rig.tel(speed=-1.15)
    rig.advance(5)
    assert rig.alarms("overspeed") == []


def test_overtravel_immediate_condition_clears_but_needs_end_of_alarm(rig: Rig) -> None:
    rig.tel(up_limit=True)
    top = rig.one("overtravel_top")
    assert top.severity == "critical"
    rig.tel(up_limit=False)
    rig.advance(120)
    top = rig.one("overtravel_top")
    assert top.condition == "cleared" and top.status == "open"
    rig.tel(down_limit=True)
    assert rig.one("overtravel_bottom").condition == "active"


def test_overtravel_from_limit_switch_is_reported_never_muted_by_inspection(rig: Rig) -> None:
    # FAULTS.md: reported alarms come from the device (event, controller fault, limit switch);
    # inspection never suppresses reported critical faults.
    rig.tel(service_mode="inspection", car_status="running", door_zone=False, speed=0.3)
    rig.tel(car_status="stopped", speed=0.0, up_limit=True)
    top = rig.one("overtravel_top")
    assert top.source == "device" and not top.suppressed
    assert rig.notified("overtravel_top") == ["alarm.raised"]
    transitions = rig.db.conn.execute(
        "SELECT actor FROM alarm_transitions WHERE alarm_id = ?", (top.alarm_id,)
    ).fetchall()
    assert [r[0] for r in transitions] == ["device"]
    rig.tel(up_limit=False)
    rig.advance(3600)  # a critical alarm: cleared, but never resolved by itself
    top = rig.one("overtravel_top")
    assert top.condition == "cleared" and top.status == "open"


def test_limit_switch_overtravel_survives_controller_faults_list(rig: Rig) -> None:
    # controller_faults lists the device's active faults: missing ones clear. The limit
    # switch is not in that list, so the list must not clear its condition.
    rig.tel(down_limit=True, controller_faults=[])
    rig.tel(controller_faults=[{"namespace": "gb24476", "code": 2}])
    rig.tel(controller_faults=[])
    assert rig.one("overtravel_bottom").condition == "active"
    assert rig.one("door_close_fault").condition == "cleared"
    rig.tel(down_limit=False)
    assert rig.one("overtravel_bottom").condition == "cleared"


def test_overtravel_reported_by_limit_and_fault_clears_when_neither_reports(rig: Rig) -> None:
    rig.tel(up_limit=True)
    rig.tel(controller_faults=[{"namespace": "gb38656", "code": "09"}])
    rig.tel(up_limit=False)
    assert rig.one("overtravel_top").condition == "active"  # the controller still reports it
    rig.tel(controller_faults=[])
    assert rig.one("overtravel_top").condition == "cleared"
    rig.tel(controller_faults=[{"namespace": "gb38656", "code": "09"}], up_limit=True)
    rig.tel(controller_faults=[])
    assert rig.one("overtravel_top").condition == "active"  # the limit switch still reports it
    rig.tel(up_limit=False)
    top = rig.one("overtravel_top")
    assert top.condition == "cleared" and top.occurrences == 2


def test_restart_clears_limit_switch_overtravel_when_limit_resets(rig: Rig) -> None:
    rig.tel(up_limit=True)
    rig.restart()
    rig.tel(up_limit=False)
    assert rig.one("overtravel_top").condition == "cleared"


# --- major faults ---------------------------------------------------------------------------


def test_stopped_outside_zone_clears_then_auto_resolves_after_60_s(rig: Rig) -> None:
    rig.tel(door_zone=False)
    rig.advance(10)
    rig.tel(door_zone=True)
    alarm = rig.one("stopped_outside_zone")
    assert alarm.condition == "cleared"
    rig.advance(60 - TICK)
    assert rig.one("stopped_outside_zone").status == "open"
    rig.advance(TICK)
    done = rig.one("stopped_outside_zone")
    assert done.status == "resolved" and done.outcome == "auto"
    assert rig.notified("stopped_outside_zone") == [
        "alarm.raised",
        "alarm.condition_cleared",
        "alarm.resolved",
    ]


def test_stopped_outside_zone_from_gb24476_code_4(rig: Rig) -> None:
    rig.event("fault", namespace="gb24476", code=4, active=True)
    alarm = rig.one("stopped_outside_zone")
    assert alarm.source == "device"
    rig.event("fault", namespace="gb24476", code=4, active=False)
    assert rig.one("stopped_outside_zone").condition == "cleared"


def test_safety_circuit_open_while_running_clears_after_a_normal_run(rig: Rig) -> None:
    rig.tel(safety_circuit="closed")
    rig.tel(car_status="running", speed=1.0, door_zone=False)
    rig.tel(safety_circuit="open", car_status="stopped", speed=0.0)
    assert rig.one("safety_circuit_open").severity == "major"
    rig.tel(safety_circuit="closed")
    assert rig.one("safety_circuit_open").condition == "active"
    rig.tel(car_status="running", speed=1.0)
    rig.tel(car_status="stopped", speed=0.0, door_zone=True)
    assert rig.one("safety_circuit_open").condition == "cleared"


def test_safety_circuit_open_while_stopped_is_not_an_alarm(rig: Rig) -> None:
    rig.tel(safety_circuit="closed")
    rig.tel(safety_circuit="open")
    assert rig.alarms("safety_circuit_open") == []


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (1, "safety_circuit_open"),
        (2, "door_close_fault"),
        (3, "door_open_fault"),
        (5, "unintended_car_movement"),
        (6, "motor_runtime_limiter"),
        (7, "position_lost"),
        (8, "restart_prevented"),
    ],
)
def test_reported_gb24476_codes(rig: Rig, number: int, code: str) -> None:
    rig.event("fault", namespace="gb24476", code=str(number), active=True, text="from ctl")
    alarm = rig.one(code)
    assert alarm.source == "device" and alarm.evidence["fault"]["text"] == "from ctl"


def test_controller_faults_in_telemetry_raise_and_clear(rig: Rig) -> None:
    rig.tel(controller_faults=[{"namespace": "gb24476", "code": 2}, {"namespace": "x", "code": 9}])
    assert rig.one("door_close_fault").condition == "active"
    other = rig.one("controller_fault")
    assert other.subtype == "x:9" and other.severity == "major"
    rig.tel(controller_faults=[{"namespace": "x", "code": 9}])
    assert rig.one("door_close_fault").condition == "cleared"
    assert rig.one("controller_fault").condition == "active"


def test_unknown_gb24476_code_becomes_controller_fault(rig: Rig) -> None:
    rig.event("fault", namespace="gb24476", code=42, active=True, text="??")
    alarm = rig.one("controller_fault")
    assert alarm.subtype == "gb24476:42" and alarm.evidence["fault"]["code"] == 42


def test_position_lost_after_10_s_clears_with_a_floor(rig: Rig) -> None:
    rig.tel(floor=None)
    rig.advance(10 - TICK)
    assert rig.alarms("position_lost") == []
    rig.advance(TICK)
    rig.tel(floor="2")
    assert rig.one("position_lost").condition == "cleared"


def test_run_timeout_at_45_s(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.0)
    rig.advance(45 - TICK)
    assert rig.alarms("run_timeout") == []
    rig.advance(TICK)
    rig.tel(car_status="stopped", speed=0.0, door_zone=True)
    assert rig.one("run_timeout").condition == "cleared"


def test_special_mode_mutes_run_timeout_not_critical(rig: Rig) -> None:
    rig.tel(service_mode="fire_return", car_status="running", door_zone=False, speed=1.0)
    rig.tel(doors_closed=False)
    rig.tel(doors_closed=False, speed=1.05)
    rig.advance(46)
    muted = rig.one("run_timeout")
    assert muted.suppressed and muted.suppressed_reason == "special_mode:fire_return"
    assert rig.notified("run_timeout") == []
    assert not rig.one("door_open_while_running").suppressed


def test_power_failure_5_s_critical_with_passenger_outside_zone(rig: Rig) -> None:
    rig.tel(power_source="battery", door_zone=False, passenger_present=True)
    rig.advance(5 - TICK)
    assert rig.alarms("power_failure") == []
    rig.advance(TICK)
    assert rig.one("power_failure").severity == "critical"


def test_power_failure_clears_after_mains_for_30_s(rig: Rig) -> None:
    rig.tel(power_source="battery")
    rig.advance(6)
    assert rig.one("power_failure").severity == "major"
    rig.tel(power_source="mains")
    rig.advance(30 - TICK)
    assert rig.one("power_failure").condition == "active"
    rig.advance(TICK)
    assert rig.one("power_failure").condition == "cleared"


def test_device_offline_after_180_s_silence_cleared_by_any_message(rig: Rig) -> None:
    rig.tel()
    rig.advance(180 - TICK)
    assert rig.alarms("device_offline") == []
    rig.advance(TICK)
    assert rig.one("device_offline").condition == "active"
    rig.tel()
    assert rig.one("device_offline").condition == "cleared"


def test_device_offline_60_s_after_last_will(rig: Rig) -> None:
    rig.tel()
    rig.status("offline")
    rig.advance(60 - TICK)
    assert rig.alarms("device_offline") == []
    rig.advance(TICK)
    assert rig.one("device_offline").evidence["offline_status_at"]


def test_device_offline_never_muted_by_inspection(rig: Rig) -> None:
    rig.tel(service_mode="inspection")
    rig.advance(181)
    assert not rig.one("device_offline").suppressed


# --- minor ---------------------------------------------------------------------------------


def test_door_cycling_six_changes_in_15_s_clears_after_30_s_quiet(rig: Rig) -> None:
    rig.tel()
    for i in range(6):
        rig.advance(2)
        rig.tel(doors_closed=i % 2 == 1)
        if i < 5:
            assert rig.alarms("door_cycling") == []
    assert rig.one("door_cycling").severity == "minor"
    rig.advance(30 - TICK)
    assert rig.one("door_cycling").condition == "active"
    rig.advance(TICK)
    assert rig.one("door_cycling").condition == "cleared"


def test_door_cycling_too_slow_is_not_cycling(rig: Rig) -> None:
    rig.tel()
    for i in range(8):
        rig.advance(3.1)
        rig.tel(doors_closed=i % 2 == 1)
    assert rig.alarms("door_cycling") == []


def test_door_open_too_long_at_120_s(rig: Rig) -> None:
    rig.tel(doors_closed=False)
    rig.advance(120 - TICK)
    assert rig.alarms("door_open_too_long") == []
    rig.advance(TICK)
    rig.tel(doors_closed=True)
    assert rig.one("door_open_too_long").condition == "cleared"


def test_alarm_test_overdue_72_h_after_last_selftest(rig: Rig) -> None:
    rig.event("selftest", result="ok")
    start = rig.clock.now_ms()
    for _ in range(71):  # a live device: telemetry every hour is plenty for this test
        rig.advance(3600 - 120)
        rig.tel()
        rig.advance(120)
        rig.tel()
    rig.clock.set_ms(start + 72 * 3_600_000 - 1)
    rig.tel()
    assert rig.alarms("alarm_test_overdue") == []
    rig.advance(TICK)
    assert rig.one("alarm_test_overdue").severity == "minor"
    rig.event("selftest", result="ok")
    assert rig.one("alarm_test_overdue").condition == "cleared"


def test_battery_low_60_s_clear_after_10_min(rig: Rig) -> None:
    rig.tel(battery=29)
    rig.advance(60 - TICK)
    assert rig.alarms("backup_battery_low") == []
    rig.advance(TICK)
    rig.tel(battery=30)
    rig.advance(599)
    assert rig.one("backup_battery_low").condition == "active"
    rig.tel()
    rig.advance(1)
    assert rig.one("backup_battery_low").condition == "cleared"


# --- duplicates and late messages ----------------------------------------------------------


def test_duplicate_message_is_evaluated_once(rig: Rig) -> None:
    rig.tel(car_status="running", door_zone=False, speed=1.5, seq=10)
    ts = rig.clock.now_ms()
    rig.advance(1)
    rig.tel(seq=10, ts=ts)  # QoS 1 redelivery: not a second overspeed message
    assert rig.alarms("overspeed") == []
    assert rig.engine.counts["duplicates"] == 1
    rig.tel(seq=11)
    assert len(rig.alarms("overspeed")) == 1


def test_duplicate_alarm_button_event_is_one_press(rig: Rig) -> None:
    rig.tel(doors_closed=False)  # filtered: a second press would bypass the filter
    rig.event("alarm_button", pressed=True, seq=5)
    ts = rig.clock.now_ms()
    rig.event("alarm_button", pressed=True, seq=5, ts=ts)
    assert rig.alarms("alarm_button") == []


def test_redelivery_of_ts_corrected_message_is_a_duplicate(rig: Rig) -> None:
    # PROTOCOL.md: same lift, seq and ts *as sent* is a duplicate. A ts 8 days old is
    # replaced by the receive time, so the normalised time differs on the redelivery.
    stale = rig.clock.now_ms() - 8 * 86_400_000
    rig.tel(doors_closed=False)  # doors open at a landing: the press is filtered
    rig.event("alarm_button", pressed=True, seq=5, ts=stale)
    rig.advance(2)
    rig.event("alarm_button", pressed=True, seq=5, ts=stale)  # QoS 1 redelivery, not a 2nd press
    assert rig.alarms("alarm_button") == []
    assert rig.engine.counts["duplicates"] == 1


def test_redelivered_rfc3339_ts_is_a_duplicate_int_ts_is_not(rig: Rig) -> None:
    rig.tel(doors_closed=False)
    rig.event("alarm_button", pressed=True, seq=5, ts="2020-01-01T00:00:00Z")
    rig.advance(2)
    rig.event("alarm_button", pressed=True, seq=5, ts="2020-01-01T00:00:00Z")
    assert rig.alarms("alarm_button") == [] and rig.engine.counts["duplicates"] == 1
    # The same instant sent as epoch ms is a different message as sent: a second press.
    rig.event("alarm_button", pressed=True, seq=5, ts=1_577_836_800_000)
    assert len(rig.alarms("alarm_button")) == 1


def test_duplicate_refreshes_liveness(rig: Rig) -> None:
    rig.tel(seq=1)
    ts = rig.clock.now_ms()
    rig.advance(100)
    rig.tel(seq=1, ts=ts)  # a redelivery is still a valid message (FAULTS.md device_offline)
    assert rig.engine.counts["duplicates"] == 1
    rig.advance(180 - TICK)
    assert rig.alarms("device_offline") == []
    rig.advance(TICK)
    assert rig.one("device_offline").condition == "active"


def test_duplicate_clears_device_offline_and_cancels_last_will(rig: Rig) -> None:
    rig.tel(seq=1)
    ts = rig.clock.now_ms()
    rig.advance(181)
    assert rig.one("device_offline").condition == "active"
    rig.tel(seq=1, ts=ts)
    assert rig.one("device_offline").condition == "cleared"
    assert rig.engine.counts["duplicates"] == 1
    rig.status("offline")
    rig.advance(10)
    rig.tel(seq=1, ts=ts)  # a message after the Last Will: the 60 s timer no longer applies
    rig.advance(180 - TICK)
    assert [a.status for a in rig.alarms("device_offline")] == ["resolved"]  # auto after 60 s
    rig.advance(TICK)
    assert [a.condition for a in rig.alarms("device_offline")] == ["cleared", "active"]


def test_late_message_does_not_move_state_backwards(rig: Rig) -> None:
    rig.tel(seq=5)
    trapped(rig, seq=6)
    old_ts = rig.clock.now_ms() - 5000
    rig.advance(10)
    # Late (PROTOCOL.md 1.1 § Order): a lower seq of the same run; history only.
    rig.tel(door_zone=True, doors_closed=False, ts=old_ts, seq=5)
    rig.snap["L1"].update(door_zone=False, doors_closed=True)
    rig.advance(20)
    assert rig.one("entrapment").condition == "active"
    assert rig.engine.counts["late"] == 1


def test_a_clock_step_back_never_freezes_the_live_state(rig: Rig) -> None:
    """PROTOCOL.md 1.1 § Order, repro r11 (A1): one sample stamped 4 min ahead, then the
    clock is right again: seq decides, so the entrapment is raised at its threshold."""
    rig.tel(ts=rig.clock.now_ms() + 4 * 60_000)
    rig.advance(1)
    trapped_at = rig.clock.now_ms()
    trapped(rig)
    rig.advance(30)
    assert rig.one("entrapment").raised_at == trapped_at + 30_000
    assert rig.engine.counts["late"] == 0


def test_a_device_restart_starts_a_new_run(rig: Rig) -> None:
    """A lower seq after a reboot (below 16 while the latest was not) is newer."""
    rig.tel(seq=500)
    rig.advance(5)
    trapped(rig, seq=0)  # rebooted: seq starts again from 0
    rig.advance(30)
    assert len(rig.alarms("entrapment")) == 1
    assert rig.engine.counts["late"] == 0


# --- lifecycle through the engine ----------------------------------------------------------


def test_escalation_every_5_min_until_acknowledged(rig: Rig) -> None:
    from alerts import lifecycle

    rig.event("alarm_button", pressed=True)
    alarm = rig.one("alarm_button")
    rig.advance(300 - TICK)
    assert rig.notified("alarm_button") == ["alarm.raised"]
    rig.advance(TICK)
    rig.advance(300)
    assert rig.one("alarm_button").escalations == 2
    lifecycle.acknowledge(rig.db, alarm.alarm_id, actor="api:ops", listener=rig.engine)
    assert ("esc", alarm.alarm_id) not in rig.engine.scheduler
    rig.advance(900)
    assert rig.notified("alarm_button").count("alarm.escalated") == 2


def test_escalation_rechecks_store_when_acknowledged_elsewhere(rig: Rig) -> None:
    from alerts import lifecycle

    rig.event("alarm_button", pressed=True)
    alarm = rig.one("alarm_button")
    lifecycle.acknowledge(rig.db, alarm.alarm_id, actor="api:other-process")  # no listener
    rig.advance(301)
    assert rig.one("alarm_button").escalations == 0


def test_arrival_deadline_30_min_urban_60_min_rural(tmp_path: Path) -> None:
    from liftwatch.registry import Lift

    rig = Rig(
        tmp_path / "x.sqlite3",
        lifts=(Lift(lift_id="U"), Lift(lift_id="R", urban=False)),
    )
    rig.event("alarm_button", lift="U", pressed=True)
    rig.event("alarm_button", lift="R", pressed=True)
    rig.advance(1800 - TICK)
    assert not rig.one("alarm_button", "U").overdue
    rig.advance(TICK)
    assert rig.one("alarm_button", "U").overdue
    assert not rig.one("alarm_button", "R").overdue
    rig.advance(1800)
    assert rig.one("alarm_button", "R").overdue


def test_on_site_in_time_is_never_overdue(rig: Rig) -> None:
    from alerts import lifecycle

    rig.event("alarm_button", pressed=True)
    alarm = rig.one("alarm_button")
    rig.advance(600)
    lifecycle.mark_on_site(rig.db, alarm.alarm_id, actor="api:tech", listener=rig.engine)
    rig.advance(3600)
    assert not rig.one("alarm_button").overdue


def test_flood_control_after_three_raises_per_hour(rig: Rig) -> None:
    """FAULTS.md 1.1 #4 (../shared/repros r08): one summary at the end of the hour, covering
    every raise it collapsed; the summary and those alarms both say suppressed."""
    for _ in range(8):
        rig.tel(door_zone=False)
        rig.advance(10)
        rig.tel(door_zone=True)
        rig.advance(61)
    alarms = rig.alarms("stopped_outside_zone")
    assert [a.suppressed_reason for a in alarms] == [None] * 3 + ["flood_control"] * 5
    notified = rig.notified("stopped_outside_zone")
    assert notified.count("alarm.raised") == 3 and "alarm.summary" not in notified
    first_collapsed = alarms[3].raised_at
    rig.advance((first_collapsed + 3_600_000 - rig.clock.now_ms()) / 1000 - TICK)
    assert "alarm.summary" not in rig.notified("stopped_outside_zone")
    rig.advance(TICK)
    assert rig.notified("stopped_outside_zone").count("alarm.summary") == 1
    (row,) = [r for r in store_rows_all(rig) if r.event_type == "alarm.summary"]
    data = json.loads(row.payload)["data"]
    assert data["summary"]["collapsed"] == 5
    assert data["summary"]["alarm_ids"] == [a.alarm_id for a in alarms[3:]]
    assert (data["suppressed"], data["suppressed_reason"]) == (True, "flood_control")
    assert row.created_at == first_collapsed + 3_600_000


def test_flood_summary_survives_a_restart(rig: Rig) -> None:
    for _ in range(4):
        rig.tel(door_zone=False)
        rig.advance(10)
        rig.tel(door_zone=True)
        rig.advance(61)
    collapsed = rig.alarms("stopped_outside_zone")[-1]
    assert collapsed.suppressed_reason == "flood_control"
    rig.restart()
    rig.advance((collapsed.raised_at + 3_600_000 - rig.clock.now_ms()) / 1000)
    assert rig.notified("stopped_outside_zone").count("alarm.summary") == 1


def test_fifth_alarm_button_press_in_an_hour_is_announced_at_once(rig: Rig) -> None:
    """FAULTS.md 1.1 #4 (../shared/repros r08b): critical alarms are never flood-controlled."""
    for _ in range(4):
        rig.event("alarm_button", pressed=True)
        rig.event("alarm_button", pressed=False)
        rig.event("end_of_alarm", by="tech")
        rig.advance(60)
    rig.event("alarm_button", pressed=True)
    alarm = rig.alarms("alarm_button")[-1]
    assert len(rig.alarms("alarm_button")) == 5
    assert not alarm.suppressed and alarm.status == "open"
    assert [r.event_type for r in store_rows(rig, alarm.alarm_id)] == ["alarm.raised"]


def store_rows_all(rig: Rig) -> list[Any]:

    return outbox.outbox_rows(rig.db)


def store_rows(rig: Rig, alarm_id: str) -> list[Any]:

    return outbox.outbox_rows(rig.db, alarm_id=alarm_id)


def test_critical_alarm_muted_by_inspection_never_auto_resolves(rig: Rig) -> None:
    rig.tel(service_mode="inspection", car_status="running", door_zone=False, speed=1.5)
    rig.tel(speed=1.5)
    rig.advance(1)
    muted = rig.one("overspeed")
    assert muted.suppressed_reason == "inspection_mode" and muted.severity == "critical"
    rig.tel(speed=0.5)
    rig.advance(3600)
    muted = rig.one("overspeed")
    assert muted.condition == "cleared" and muted.status == "open"  # needs an end of alarm
    assert muted.escalations == 0 and rig.notified("overspeed") == []
    rig.event("end_of_alarm")
    assert rig.one("overspeed").status == "resolved"


def test_maintenance_window_mutes_derived_not_button(rig: Rig) -> None:

    now = rig.clock.now_ms()
    maintenance.add_maintenance_window(rig.db, "L1", now, now + 3_600_000, created_by="api:x")
    rig.tel(door_zone=False)
    rig.advance(11)
    assert rig.one("stopped_outside_zone").suppressed_reason == "maintenance_window"
    rig.event("alarm_button", pressed=True)
    assert not rig.one("alarm_button").suppressed
    assert rig.notified() == ["alarm.raised"]


def test_inactive_lift_raises_nothing(tmp_path: Path) -> None:
    from liftwatch.registry import Lift

    rig = Rig(tmp_path / "x.sqlite3", lifts=(Lift(lift_id="L1", active=False),))
    rig.event("alarm_button", pressed=True)
    rig.tel(up_limit=True)
    trapped(rig)
    rig.status("offline")
    rig.advance(400)  # past device_offline too
    assert rig.alarms() == [] and rig.notified() == []  # FAULTS.md: raises nothing
    assert rig.engine.counts["messages"] == 4


def test_deactivated_lift_raises_nothing_reactivated_lift_is_evaluated(tmp_path: Path) -> None:
    from liftwatch.store import alarms as store
    from liftwatch.store import registry as reg

    rig = Rig(tmp_path / "x.sqlite3")
    rig.tel(door_zone=False)
    rig.advance(11)
    stopped = rig.one("stopped_outside_zone")
    reg.set_lift_active(rig.db, "L1", False)
    rig.engine.refresh_registry()
    rig.event("alarm_button", pressed=True)
    rig.advance(400)  # no device_offline either
    assert [a.alarm_id for a in rig.alarms()] == [stopped.alarm_id]
    rig.event("selftest", result="ok")  # data, not an alarm: the 72 h clock still learns it
    ok_at = rig.clock.now_ms()
    assert store.lift_marks(rig.db)["L1"][0] == ok_at
    rig.advance(60)
    reg.set_lift_active(rig.db, "L1", True)
    rig.engine.refresh_registry()
    rig.tel(door_zone=True)  # the stop that was open at deactivation clears
    assert rig.one("stopped_outside_zone").condition == "cleared"
    rig.event("alarm_button", pressed=True)
    assert not rig.one("alarm_button").suppressed
    rig.advance(72 * 3600 - 60 - 1)
    assert rig.alarms("alarm_test_overdue") == []
    rig.advance(1)
    assert len(rig.alarms("alarm_test_overdue")) == 1


def test_unregistered_lift_still_evaluated_and_flagged(rig: Rig) -> None:
    rig.tel("ghost-1", door_zone=False, passenger_present=True, speed=0.0)
    rig.advance(30)
    alarm = rig.one("entrapment", "ghost-1")
    assert alarm.unregistered and alarm.company_id is None
    assert rig.notified("entrapment") == ["alarm.raised"]


def test_unregistered_lift_alarm_goes_to_the_company_that_registers_it(rig: Rig) -> None:
    """A gateway that reports before the lift is in the registry: once the lift is registered
    its open entrapment belongs to the lift's company (API, webhooks from then on)."""
    from liftwatch.registry import Lift
    from liftwatch.store import registry as reg

    rig.tel("ghost-2", door_zone=False, passenger_present=True, speed=0.0)
    rig.advance(30)
    alarm = rig.one("entrapment", "ghost-2")
    assert alarm.company_id is None
    reg.upsert_lift(rig.db, Lift(lift_id="ghost-2", company_id="acme"))  # no engine involved
    adopted = rig.one("entrapment", "ghost-2")
    assert adopted.alarm_id == alarm.alarm_id and adopted.company_id == "acme"
    rig.engine.refresh_registry()
    rig.event("end_of_alarm", lift="ghost-2", by="technician")
    [row] = [r for r in outbox.outbox_rows(rig.db, alarm_id=alarm.alarm_id)
             if r.event_type == "alarm.resolved"]  # fmt: skip
    assert row.company_id == "acme"


def test_per_lift_override_and_global_threshold(tmp_path: Path) -> None:
    from liftwatch.registry import Lift

    rig = Rig(
        tmp_path / "x.sqlite3",
        thresholds={"stopped_outside_zone_s": 20},
        lifts=(Lift(lift_id="A"), Lift(lift_id="B", overrides={"stopped_outside_zone_s": 5})),
    )
    rig.tel("A", door_zone=False)
    rig.tel("B", door_zone=False)
    rig.advance(5)
    assert [a.lift_id for a in rig.alarms("stopped_outside_zone")] == ["B"]
    rig.advance(15)
    assert len(rig.alarms("stopped_outside_zone")) == 2


def test_unknown_global_threshold_is_refused(tmp_path: Path) -> None:
    from liftwatch.thresholds import ThresholdError

    with pytest.raises(ThresholdError, match="entrapmnt_s"):
        Rig(tmp_path / "x.sqlite3", thresholds={"entrapmnt_s": 1})


def test_restart_rearms_escalation_and_loses_no_alarm(rig: Rig) -> None:
    trapped(rig)
    rig.advance(31)
    alarm = rig.one("entrapment")
    rig.restart()
    assert ("esc", alarm.alarm_id) in rig.engine.scheduler
    trapped(rig)  # the same message stream goes on: no duplicate
    rig.advance(40)
    assert rig.one("entrapment").alarm_id == alarm.alarm_id
    rig.advance(300)
    assert rig.one("entrapment").escalations >= 1


def test_restart_clears_condition_that_ended_while_down(rig: Rig) -> None:
    rig.tel(door_zone=False)
    rig.advance(11)
    rig.restart()
    rig.tel(door_zone=True)
    assert rig.one("stopped_outside_zone").condition == "cleared"
    rig.advance(61)
    assert rig.one("stopped_outside_zone").status == "resolved"


def test_muted_alarm_is_raised_for_real_when_inspection_ends(rig: Rig) -> None:
    rig.tel(service_mode="inspection", car_status="running", door_zone=False, speed=0.3)
    rig.advance(46)
    muted = rig.one("run_timeout")
    assert muted.suppressed_reason == "inspection_mode" and rig.notified() == []
    rig.tel(service_mode="normal")  # still running: the condition holds
    alarm = rig.one("run_timeout")
    assert alarm.alarm_id == muted.alarm_id and not alarm.suppressed
    assert rig.notified("run_timeout") == ["alarm.raised"]


def test_muted_entrapment_escalates_from_when_it_is_announced(rig: Rig) -> None:
    """A passenger still trapped when a maintenance window ends: ``alarm.raised`` goes out
    then, and escalation and the arrival deadline count from that moment, not from the muted
    raise (the maintenance company cannot act on what it was not told)."""

    now = rig.clock.now_ms()
    maintenance.add_maintenance_window(rig.db, "L1", now, now + 700_000, created_by="api:x")
    trapped(rig)
    rig.advance(31)
    muted = rig.one("entrapment")
    assert muted.suppressed_reason == "maintenance_window" and muted.notified_at is None
    rig.advance(670)  # more than twice the escalation period, muted: nothing escalated
    assert rig.one("entrapment").escalations == 0
    trapped(rig)  # the window is over, the passenger is still there
    alarm = rig.one("entrapment")
    announced = rig.clock.now_ms()
    assert not alarm.suppressed and alarm.notified_at == announced
    assert alarm.deadline_at == announced + 30 * 60_000  # the full urban arrival window
    assert rig.notified("entrapment") == ["alarm.raised"]
    rig.advance(300 - TICK)
    assert rig.one("entrapment").escalations == 0  # not at once, as raised_at would give
    rig.advance(TICK)
    assert rig.one("entrapment").escalations == 1
    assert rig.notified("entrapment") == ["alarm.raised", "alarm.escalated"]
