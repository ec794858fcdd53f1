"""Thresholds that cannot be computed with are refused where they enter, and a stored one
never stops evaluation (../shared/repros r02, ../shared/reviews/security.md #2)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from liftwatch.registry import Lift
from liftwatch.thresholds import DEFAULTS, ThresholdError, check, resolve
from tests.alerts.rig import Rig


@pytest.mark.parametrize("value", [math.inf, json.loads("1e999"), 1e308, 2e9, math.nan, -1.0])
def test_check_refuses_values_the_engine_cannot_use(value: float) -> None:
    with pytest.raises(ThresholdError, match="entrapment_s"):
        check({"entrapment_s": value}, "lift L1")


def test_registry_refuses_an_infinite_override() -> None:
    with pytest.raises(ValueError, match="entrapment_s"):
        Lift(lift_id="L1", overrides={"entrapment_s": json.loads("1e999")})


def test_a_stored_unusable_override_falls_back_to_the_default() -> None:
    t = resolve({}, {"entrapment_s": math.inf, "door_open_too_long_s": 1e308})
    assert t.raw["entrapment_s"] == DEFAULTS["entrapment_s"]
    assert t.raw["door_open_too_long_s"] == DEFAULTS["door_open_too_long_s"]


def test_engine_survives_an_infinite_override_already_in_the_store(tmp_path: Path) -> None:
    r = Rig(tmp_path / "lw.db", start=False)
    with r.db.transaction() as conn:
        conn.execute(
            "UPDATE lifts SET overrides = ? WHERE lift_id = 'L1'", ('{"entrapment_s": 1e999}',)
        )
    r.engine.start()
    r.tel(car_status="stopped", door_zone=False, doors_closed=True, passenger_present=True)
    r.advance(DEFAULTS["entrapment_s"] + 2)
    assert [a.code for a in r.alarms("entrapment")] == ["entrapment"]


# --- FAULTS.md 1.1 #1: documented ranges -------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("entrapment_s", 0),  # durations: more than 0 ...
        ("entrapment_s", 30 * 86_400 + 1),  # ... and at most 30 days
        ("auto_resolve_s", 0),
        ("alarm_test_overdue_h", 721),
        ("arrival_deadline_urban_min", 0),
        ("flood_limit", 0),  # counts: integers from 1 to 1,000
        ("flood_limit", 1001),
        ("door_cycling_changes", 2.5),
        ("overspeed_factor", 1.0),
        ("battery_low_pct", 101),
        ("moving_speed", 0),
    ],
)
def test_check_refuses_values_outside_the_documented_range(key: str, value: float) -> None:
    with pytest.raises(ThresholdError, match=key):
        check({key: value}, "lift L1")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("entrapment_s", 30 * 86_400),
        ("entrapment_s", 0.001),
        ("flood_limit", 1000),
        ("flood_limit", 1),
        ("door_cycling_changes", 4.0),
        ("alarm_test_overdue_h", 720),
        ("battery_low_pct", 100),
    ],
)
def test_check_accepts_the_range_bounds(key: str, value: float) -> None:
    assert check({key: value}, "lift L1") == {key: value}


def test_the_error_names_the_range() -> None:
    with pytest.raises(ThresholdError, match=r"flood_limit must be an integer from 1 to 1000"):
        check({"flood_limit": 0}, "overrides")


# --- every key works per lift ------------------------------------------------------------

TRAPPED: dict[str, Any] = {
    "door_zone": False,
    "doors_closed": True,
    "passenger_present": True,
    "speed": 0.0,
}


def test_per_lift_escalation_interval_is_honoured(tmp_path: Path) -> None:
    lifts = (
        Lift(lift_id="L1", company_id="acme", overrides={"escalation_s": 60}),
        Lift(lift_id="L2", company_id="acme"),
    )
    r = Rig(tmp_path / "lw.db", lifts=lifts)
    r.tel("L1", **TRAPPED)
    r.tel("L2", **TRAPPED)
    r.advance(30)
    r.advance(60 - 0.001)
    assert r.one("entrapment", "L1").escalations == 0
    r.advance(0.001)
    assert r.one("entrapment", "L1").escalations == 1
    assert r.one("entrapment", "L2").escalations == 0  # the global 300 s
    r.advance(240)
    assert r.one("entrapment", "L1").escalations == 5
    assert r.one("entrapment", "L2").escalations == 1


def test_per_lift_auto_resolve_is_honoured(tmp_path: Path) -> None:
    lifts = (Lift(lift_id="L1", company_id="acme", overrides={"auto_resolve_s": 600}),)
    r = Rig(tmp_path / "lw.db", lifts=lifts)
    r.tel(door_zone=False, doors_closed=True, speed=0.0)  # stopped outside a landing, empty
    r.advance(10)
    assert r.one("stopped_outside_zone").status == "open"
    r.tel(door_zone=True)
    r.advance(61)
    assert r.one("stopped_outside_zone").status == "open"  # the lift's 600 s, not 60 s
    r.advance(540)
    assert r.one("stopped_outside_zone").outcome == "auto"


def test_per_lift_flood_limit_is_honoured(tmp_path: Path) -> None:
    lifts = (
        Lift(lift_id="L1", company_id="acme", overrides={"flood_limit": 1}),
        Lift(lift_id="L2", company_id="acme"),
    )
    r = Rig(tmp_path / "lw.db", lifts=lifts)
    for _ in range(2):
        for lift in ("L1", "L2"):
            r.tel(lift, door_zone=False, doors_closed=True, speed=0.0)
        r.advance(10)
        for lift in ("L1", "L2"):
            r.tel(lift, door_zone=True)
        r.advance(120)
    assert [a.suppressed_reason for a in r.alarms("stopped_outside_zone", "L1")] == [
        None,
        "flood_control",
    ]
    assert [a.suppressed_reason for a in r.alarms("stopped_outside_zone", "L2")] == [None, None]


# --- FAULTS.md 1.1 #2: overspeed needs a known rated_speed --------------------------------


def test_a_lift_without_rated_speed_is_not_checked_for_overspeed(tmp_path: Path) -> None:
    lifts = (
        Lift(lift_id="FAST", company_id="acme"),  # registered without a rated speed
        Lift(lift_id="SLOW", company_id="acme", rated_speed=1.0),
    )
    r = Rig(tmp_path / "lw.db", lifts=lifts)
    for _ in range(5):
        for lift in ("FAST", "SLOW", "UNREGISTERED"):
            r.tel(lift, car_status="running", direction="up", door_zone=False, speed=2.5)
        r.advance(0.3)
    assert [a.lift_id for a in r.alarms("overspeed")] == ["SLOW"]
