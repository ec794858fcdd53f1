"""Thresholds that cannot be computed with are refused where they enter, and a stored one
never stops evaluation (../shared/repros r02, ../shared/reviews/security.md #2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alerts.thresholds import DEFAULTS, ThresholdError, check, resolve
from liftwatch.registry import Lift
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
