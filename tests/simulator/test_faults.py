"""Fault injection and ground truth: every FAULTS.md code, and what must stay quiet."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from liftwatch.protocol import FaultEvent, Rejection, Telemetry, decode, parse_ts
from simulator.faults import MALFORMED_VARIANTS
from simulator.labels import CODES, Label
from simulator.model import LinkChange, Message
from simulator.runner import Simulation, messages_only
from simulator.scenario import load_scenario, parse_scenario

START = 1_795_000_000_000
FAULTS_MD = Path("/work/shared/spec/FAULTS.md")


@pytest.fixture(scope="module")
def all_faults() -> tuple[Simulation, list[Message | LinkChange]]:
    sim = Simulation(load_scenario("all_faults"), START)
    return sim, sim.run_all()


def _spec_codes() -> set[str]:
    table = FAULTS_MD.read_text(encoding="utf-8") if FAULTS_MD.exists() else ""
    codes = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    return codes or set(CODES) - {"controller_fault"}


def test_every_faults_md_code_is_expected_at_least_once(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    sim, _ = all_faults
    raised = {lab.code for lab in sim.labels if lab.expect == "raise"}
    assert _spec_codes() | {"controller_fault"} <= raised
    subtypes = {lab.subtype for lab in sim.labels if lab.code == "entrapment"}
    assert subtypes == {"outside_zone", "at_landing"}


def test_all_faults_fits_the_end_to_end_budget_and_labels_fall_inside_it(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    sim, _ = all_faults
    assert sim.duration_s <= 150
    for lab in sim.labels:
        if lab.expect == "raise":
            assert lab.due_ms <= sim.end_ms - 1000, lab


def test_what_must_not_be_raised_is_labelled(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    sim, _ = all_faults
    forbids = {(lab.lift_id, lab.code) for lab in sim.labels if lab.expect == "forbid"}
    assert ("SIM-BTN-RUN", "alarm_button") in forbids  # filtered while running (and duplicated)
    assert ("SIM-BTN-TWICE", "alarm_button") in forbids  # its first, filtered press
    assert ("SIM-INSPECT", "stopped_outside_zone") in forbids  # suppressed by inspection
    assert ("SIM-OOS-CYCLE", "door_cycling") in forbids  # suppressed by a special mode
    assert ("SIM-SAFETY", "stopped_outside_zone") in forbids  # released after 6 s < 10 s
    assert ("SIM-TRAFFIC", "*") in forbids and ("SIM-BAD", "*") in forbids
    # Inspection never suppresses the alarm button.
    assert any(
        lab.lift_id == "SIM-INSPECT" and lab.code == "alarm_button" and lab.expect == "raise"
        for lab in sim.labels
    )
    # Control lifts have nothing expected that would contradict their "nothing" label.
    for lab in sim.labels:
        if lab.lift_id in ("SIM-TRAFFIC", "SIM-BAD"):
            assert lab.expect == "forbid", lab


def test_every_message_decodes_except_the_injected_malformed_ones(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    _, out = all_faults
    msgs = messages_only(out)
    rejected: Counter[str] = Counter()
    for m in msgs:
        d = decode(f"lifts/{m.lift_id}/{m.kind}", m.payload, received_ms=m.at_ms)
        if isinstance(d, Rejection):
            assert m.malformed, (m, d)
            rejected[d.reason.value] += 1
        else:
            assert not m.malformed, m
            assert len(m.payload) <= 16 * 1024
    assert sum(rejected.values()) == len(MALFORMED_VARIANTS)
    assert {
        "bad_json",
        "missing_field",
        "bad_value",
        "too_large",
        "not_object",
        "unsupported_version",
    } <= set(rejected)


def _telemetry(out: list[Message | LinkChange], lift: str) -> list[tuple[int, Telemetry]]:
    rows = []
    for m in messages_only(out):
        if m.lift_id == lift and m.kind == "telemetry" and not m.malformed:
            d = decode(f"lifts/{lift}/telemetry", m.payload, received_ms=m.at_ms)
            assert not isinstance(d, Rejection)
            assert isinstance(d.body, Telemetry)
            rows.append((m.at_ms, d.body))
    return rows


def test_physics_is_broken_only_where_a_fault_was_injected(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    sim, out = all_faults
    moving_open: set[str] = set()
    too_fast: set[str] = set()
    for spec in sim.scenario.lifts:
        for _, t in _telemetry(out, spec.id):
            if t.car_status == "running" and not t.doors_closed and (t.speed or 0) != 0:
                moving_open.add(spec.id)
            if abs(t.speed or 0) > spec.rated_speed + 1e-9:
                too_fast.add(spec.id)
            if t.floor_index is not None:
                assert 0 <= t.floor_index < len(spec.labels())
    assert moving_open == {"SIM-UCM", "SIM-DOWR"}
    assert too_fast == {"SIM-OVERSPEED"}


def test_injections_look_right_on_the_wire(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    _, out = all_faults
    fast = [t for _, t in _telemetry(out, "SIM-OVERSPEED") if abs(t.speed or 0) > 1.15]
    assert len(fast) >= 4 and max(abs(t.speed or 0) for t in fast) == pytest.approx(1.3, 0.01)
    assert any(t.up_limit for _, t in _telemetry(out, "SIM-OT-TOP"))
    assert any(t.down_limit for _, t in _telemetry(out, "SIM-OT-BOTTOM"))
    assert any(t.floor is None for _, t in _telemetry(out, "SIM-POSLOST"))
    assert any(t.safety_circuit == "open" for _, t in _telemetry(out, "SIM-SAFETY"))
    assert any(t.power_source == "battery" for _, t in _telemetry(out, "SIM-POWER"))
    assert any((t.battery or 100) < 30 for _, t in _telemetry(out, "SIM-BATTERY"))
    slip = [t for _, t in _telemetry(out, "SIM-SLIP") if t.car_status == "running"]
    assert slip and all(t.speed == 0 for t in slip)
    ent = [
        t
        for _, t in _telemetry(out, "SIM-ENT-OUT")
        if t.passenger_present and t.car_status == "stopped" and not t.door_zone
    ]
    assert ent
    # A link drop is announced to the publisher and nothing is sent while it is down.
    links = [o for o in out if isinstance(o, LinkChange)]
    assert [(o.lift_id, o.up) for o in links] == [("SIM-OFF-WILL", False), ("SIM-OFF-WILL", True)]
    down, up = links[0].at_ms, links[1].at_ms
    assert not [
        m for m in messages_only(out) if m.lift_id == "SIM-OFF-WILL" and down < m.at_ms < up
    ]
    # Controller faults: one active and one cleared event each, and the telemetry list.
    faults = [
        msgspec.json.decode(m.payload)
        for m in messages_only(out)
        if m.lift_id == "SIM-CODES-A" and m.kind == "event" and b'"fault"' in m.payload
    ]
    assert sorted((f["code"], f["active"]) for f in faults) == sorted(
        (c, a) for c in (2, 3, 6, 8) for a in (True, False)
    )
    for f in faults:
        d = decode("lifts/SIM-CODES-A/event", msgspec.json.encode(f), received_ms=START)
        assert not isinstance(d, Rejection) and isinstance(d.body, FaultEvent)
    listed = max(len(t.controller_faults or []) for _, t in _telemetry(out, "SIM-CODES-A"))
    assert listed == 4


def test_bad_device_duplicates_late_skew_reboot(
    all_faults: tuple[Simulation, list[Message | LinkChange]],
) -> None:
    _, out = all_faults
    bad = [m for m in messages_only(out) if m.lift_id == "SIM-BAD" and not m.malformed]
    bodies = [msgspec.json.decode(m.payload) for m in bad]
    keys = Counter((b["seq"], b["ts"]) for b in bodies)
    assert sum(1 for n in keys.values() if n == 2) == 5  # five duplicates, same seq and ts
    late = [i for i, m in enumerate(bad) if m.tag == "late"]
    assert len(late) == 3
    for i in late:
        assert parse_ts(bodies[i]["ts"]) < parse_ts(bodies[i - 1]["ts"])  # type: ignore[operator]
    skewed = [b for m, b in zip(bad, bodies, strict=True) if parse_ts(b["ts"]) - m.at_ms > 500_000]  # type: ignore[operator]
    assert skewed
    seqs = [b["seq"] for b in bodies]
    assert any(b < a for a, b in itertools.pairwise(seqs) if a - b > 5)  # reboot
    d = decode("lifts/SIM-BAD/telemetry", bad[-1].payload, received_ms=bad[-1].at_ms)
    assert not isinstance(d, Rejection)
    # The filtered press on SIM-BTN-RUN goes out twice with the same seq and ts.
    presses = [
        msgspec.json.decode(m.payload)
        for m in messages_only(out)
        if m.lift_id == "SIM-BTN-RUN" and b'"pressed":true' in m.payload
    ]
    assert len(presses) == 2 and presses[0] == presses[1]


def test_labels_are_deterministic() -> None:
    a = Simulation(load_scenario("all_faults"), START)
    b = Simulation(load_scenario("all_faults"), START)
    a.run_all()
    b.run_all()
    assert a.labels == b.labels


def _labels(scenario: dict[str, object]) -> list[Label]:
    sim = Simulation(parse_scenario(scenario), START)
    sim.run_all()
    return sim.labels


def test_duration_rules_label_raise_allow_forbid_by_how_long_they_held() -> None:
    def stuck(hold: float) -> dict[str, object]:
        return {
            "name": "t",
            "duration_s": 120,
            "lifts": [{"id": "L", "calls_per_hour": 0}],
            "timeline": [
                {"at": 1, "lift": "L", "do": "move", "to": 9},
                {
                    "at": 1,
                    "lift": "L",
                    "do": "stuck_between_floors",
                    "hold_s": hold,
                    "with_passengers": False,
                },
            ],
        }

    def verdict(labels: list[Label], code: str) -> str | None:
        found = [lab.expect for lab in labels if lab.code == code]
        return found[0] if found else None

    assert verdict(_labels(stuck(30)), "stopped_outside_zone") == "raise"
    assert verdict(_labels(stuck(10.3)), "stopped_outside_zone") == "allow"
    assert verdict(_labels(stuck(6)), "stopped_outside_zone") == "forbid"
    assert verdict(_labels(stuck(3)), "stopped_outside_zone") is None
    # No passengers: no entrapment either way.
    assert verdict(_labels(stuck(60)), "entrapment") is None


def test_passengerless_lift_gets_no_entrapment_label() -> None:
    labels = _labels(
        {
            "name": "t",
            "duration_s": 120,
            "lifts": [{"id": "L", "calls_per_hour": 0, "passenger_sensor": False}],
            "timeline": [
                {"at": 1, "lift": "L", "do": "call", "from": 0, "to": 9, "passengers": 2},
                {"at": 1, "lift": "L", "do": "stuck_between_floors", "hold_s": 60},
            ],
        }
    )
    codes = defaultdict(list)
    for lab in labels:
        codes[lab.code].append(lab.expect)
    assert codes["stopped_outside_zone"] == ["raise"]
    assert "entrapment" not in codes


def test_power_failure_with_passengers_between_floors_is_critical() -> None:
    labels = _labels(
        {
            "name": "t",
            "duration_s": 120,
            "lifts": [{"id": "L", "calls_per_hour": 0}],
            "timeline": [
                {"at": 1, "lift": "L", "do": "call", "from": 0, "to": 9, "passengers": 1},
                {"at": 1, "lift": "L", "do": "power_failure", "hold_s": 40, "when": "mid_run"},
            ],
        }
    )
    power = [lab for lab in labels if lab.code == "power_failure"]
    assert [(p.expect, p.severity) for p in power] == [("raise", "critical")]
    assert {lab.code for lab in labels if lab.expect == "raise"} == {
        "power_failure",
        "stopped_outside_zone",
        "entrapment",
    }


def test_the_demo_story_labels() -> None:
    sim = Simulation(load_scenario("demo"), START)
    sim.run_all()
    raised = {(lab.lift_id, lab.code) for lab in sim.labels if lab.expect == "raise"}
    assert raised == {
        ("DEMO-A", "entrapment"),
        ("DEMO-A", "stopped_outside_zone"),
        ("DEMO-A", "alarm_button"),
        ("DEMO-B", "door_close_fault"),
    }
    muted = {(lab.lift_id, lab.code, lab.expect) for lab in sim.labels}
    assert ("DEMO-C", "stopped_outside_zone", "forbid") in muted
    assert ("DEMO-C", "power_failure", "forbid") in muted  # recorded as suppressed, not notified
    events = [msgspec.json.decode(m.payload) for m in messages_only(sim.run_all() or [])]
    assert events == []  # run_all is idempotent at the end: nothing more to send
    eoa = [
        o
        for o in Simulation(load_scenario("demo"), START).run_all()
        if isinstance(o, Message) and b"end_of_alarm" in o.payload
    ]
    assert [o.lift_id for o in eoa] == ["DEMO-A"]
    assert sim.models["DEMO-A"].halted is False
