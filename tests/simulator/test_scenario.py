"""Scenario files: validation with clear errors, built-ins, timeline compression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulator.runner import Simulation
from simulator.scenario import ScenarioError, compress_timeline, load_scenario, parse_scenario

START = 1_795_000_000_000


def _base(**extra: Any) -> dict[str, Any]:
    return {"name": "t", "duration_s": 60, "lifts": [{"id": "L1"}], **extra}


def _error(data: Any) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, where="s.yaml")
    return str(info.value)


def test_builtins_load_and_validate() -> None:
    for name in ("demo", "all_faults"):
        scn = load_scenario(name)
        assert scn.name == name and scn.steps


def test_every_problem_is_reported_with_its_place() -> None:
    msg = _error(
        _base(
            lifts=[{"id": "L1", "floors": 5}, {"id": "bad id!"}, {"id": "L2"}, {"id": "L2"}],
            timeline=[
                {"at": 5, "lift": "L1", "do": "teleport"},
                {"at": 5, "lift": "L9", "do": "call", "from": 0, "to": 3},
                {"at": 5, "lift": "L1", "do": "call", "from": 0, "to": 7},
                {"at": 5, "lift": "L1", "do": "call", "from": 0, "to": "42"},
                {"at": 500, "lift": "L1", "do": "overspeed", "factor": 0.5},
                {"lift": "L1", "do": "move"},
            ],
        )
    )
    assert "lifts[1] (bad id!)" in msg and "id: String should match pattern" in msg
    assert "duplicate ids ['L2']" in msg
    assert "timeline[0] (do: teleport)" in msg and "unknown action; expected one of" in msg
    assert "timeline[1] (do: call): unknown lift(s) ['L9']" in msg
    assert "timeline[2] (do: call): lift L1: floor index 7 out of range 0..4" in msg
    assert "no floor labelled '42'" in msg
    assert "timeline[4] (do: overspeed): `at` must be seconds from the start, 0..60" in msg
    assert "factor: Input should be greater than 1" in msg
    assert "timeline[5] (do: move): `at` must be" in msg
    assert "give exactly one of `to` (a floor) or `by_mm`" in msg


def test_lift_spec_errors() -> None:
    assert "unknown override keys ['entrapment']" in _error(
        _base(lifts=[{"id": "L1", "overrides": {"entrapment": 5}}])
    )
    assert "telemetry_idle_s: Input should be less than or equal to 60" in _error(
        _base(lifts=[{"id": "L1", "telemetry_idle_s": 120}])
    )
    assert "landing_heights_m needs 3 values" in _error(
        _base(lifts=[{"id": "L1", "floors": 3, "landing_heights_m": [0, 3]}])
    )
    assert "duration_s: Field required" in _error({"name": "x", "lifts": [{"id": "A"}]})
    assert "top level must be a mapping" in _error([1, 2])


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(_base(timeline=[{"at": 1, "lift": "*", "do": "mode", "mode": "inspection"}]))
    )
    scn = load_scenario(good)
    assert scn.steps[0].lifts == ("L1",)


def test_floor_labels_basements_and_defaults() -> None:
    scn = parse_scenario(
        {
            "name": "t",
            "duration_s": 10,
            "defaults": {"floors": 5, "basements": 2, "rated_speed": 2.0},
            "lifts": [{"id": "A", "start_floor": "1"}, {"id": "B", "floors": ["G", "M", "1"]}],
        }
    )
    a, b = scn.lifts
    assert a.labels() == ("B2", "B1", "1", "2", "3") and a.config().start_floor == 2
    assert a.rated_speed == b.rated_speed == 2.0
    assert b.labels() == ("G", "M", "1")


def test_compress_timeline_cuts_only_idle_stretches() -> None:
    scn = parse_scenario(
        _base(
            duration_s=1000,
            timeline=[
                {"at": 10, "lift": "L1", "do": "power_failure", "hold_s": 20},
                {"at": 20, "lift": "L1", "do": "alarm_button"},
                {"at": 500, "lift": "L1", "do": "battery_low", "hold_s": 70},
            ],
        )
    )
    steps, duration = compress_timeline(scn.steps, scn.duration_s, max_gap_s=5)
    # busy until max(10+20, 20+1)+15 = 45; the gap 45→500 shrinks to 5 s.
    assert [s.at for s in steps] == [10, 20, 50]
    assert duration == pytest.approx(50 + 70 + 15 + 5)
    sim = Simulation(scn, START, compress_idle_s=5)
    assert sim.duration_s == duration
    raised = {lab.code for lab in sim.finish() or [] if lab.expect == "raise"}
    assert raised == set()  # nothing simulated yet
    sim.run_all()
    assert {lab.code for lab in sim.labels if lab.expect == "raise"} == {
        "power_failure",
        "alarm_button",
        "backup_battery_low",
    }
