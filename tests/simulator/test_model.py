"""The lift model's physics and protocol invariants, on long runs of random traffic."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from liftwatch.protocol import Decoded, Rejection, Telemetry, decode, parse_ts
from simulator.model import OVERSPEED_FACTOR, LiftConfig, LiftModel, Message, Run
from simulator.runner import Simulation, messages_only
from simulator.scenario import parse_scenario

START = 1_795_000_000_000


def _traffic(seed: int = 3, duration_s: float = 1800) -> tuple[Simulation, list[Message]]:
    scn = parse_scenario(
        {
            "name": "traffic",
            "seed": seed,
            "duration_s": duration_s,
            "lifts": [
                {"id": "T-LOW", "floors": 6, "calls_per_hour": 30},
                {
                    "id": "T-MID",
                    "floors": 12,
                    "basements": 2,
                    "rated_speed": 1.6,
                    "calls_per_hour": 90,
                },
                {
                    "id": "T-HIGH",
                    "floors": 30,
                    "rated_speed": 2.5,
                    "calls_per_hour": 200,
                    "capacity": 13,
                    "ts_format": "epoch_ms",
                },
                {"id": "T-NOSENSOR", "floors": 8, "passenger_sensor": False, "calls_per_hour": 60},
            ],
        }
    )
    sim = Simulation(scn, START)
    return sim, messages_only(sim.run_all())


def _decoded(msgs: list[Message]) -> list[tuple[Message, Decoded]]:
    out = []
    for m in msgs:
        d = decode(f"lifts/{m.lift_id}/{m.kind}", m.payload, received_ms=m.at_ms)
        assert not isinstance(d, Rejection), (m, d)
        out.append((m, d))
    return out


def test_normal_traffic_obeys_physics_and_speaks_the_protocol() -> None:
    sim, msgs = _traffic()
    scn = sim.scenario
    assert len(msgs) > 1000
    decoded = _decoded(msgs)
    specs = {s.id: s for s in scn.lifts}
    runs: dict[str, int] = defaultdict(int)
    for m, d in decoded:
        if not isinstance(d.body, Telemetry):
            continue
        t = d.body
        spec = specs[m.lift_id]
        n = len(spec.labels())
        if t.car_status == "running":
            runs[m.lift_id] += 1
            # No movement with the doors open (nothing is injected here).
            assert t.doors_closed and t.door_state == "locked", m
            assert t.direction in ("up", "down")
        else:
            assert t.direction == "none"
        assert t.speed is not None and abs(t.speed) <= spec.rated_speed + 1e-9
        assert t.floor_index is not None and 0 <= t.floor_index < n
        assert t.floor == spec.labels()[t.floor_index]
        assert t.position is not None
        assert spec.landings_mm()[0] <= t.position <= spec.landings_mm()[-1]
        assert t.up_limit is False and t.down_limit is False
        assert t.safety_circuit == "closed" and t.power_source == "mains"
        if not t.doors_closed:
            assert t.door_zone and t.car_status == "stopped"
        if spec.passenger_sensor:
            assert t.passenger_present is not None
        else:
            assert t.passenger_present is None
    assert all(runs[lift] > 10 for lift in specs), runs
    # Normal service raises nothing.
    assert [lab for lab in sim.labels if lab.expect != "forbid"] == []


def test_seq_counts_up_by_one_and_ts_never_goes_back_and_heartbeats_keep_time() -> None:
    _, stream = _traffic(seed=11, duration_s=900)
    by_lift: dict[str, list[Message]] = defaultdict(list)
    for m in stream:
        by_lift[m.lift_id].append(m)
    for lift, msgs in by_lift.items():
        bodies = [msgspec.json.decode(m.payload) for m in msgs]
        assert [b["seq"] for b in bodies] == list(range(len(bodies))), lift
        ts = [parse_ts(b["ts"]) for b in bodies]
        assert all(t is not None for t in ts)
        assert ts == sorted(ts)  # type: ignore[type-var]
        telemetry = [(m.at_ms, b) for m, b in zip(msgs, bodies, strict=True) if "car_status" in b]
        for (t0, b0), (t1, _) in itertools.pairwise(telemetry):
            limit = 5000 if b0["car_status"] == "running" else 60_000
            assert t1 - t0 <= limit, (lift, t0, t1, b0["car_status"])


def test_same_seed_same_bytes_other_seed_other_traffic() -> None:
    sim, a = _traffic(seed=5, duration_s=600)
    _, b = _traffic(seed=5, duration_s=600)
    assert [(o.lift_id, o.payload) for o in a] == [(o.lift_id, o.payload) for o in b]
    c = messages_only(Simulation(sim.scenario, START, seed=6).run_all())
    assert [o.payload for o in a] != [o.payload for o in c]


def test_adding_a_lift_does_not_change_the_others() -> None:
    base = _traffic(seed=2, duration_s=300)[0].scenario
    fewer = base.model_copy(update={"lifts": base.lifts[:2]})
    full = [
        o.payload for o in messages_only(Simulation(base, START).run_all()) if o.lift_id == "T-LOW"
    ]
    part = [
        o.payload for o in messages_only(Simulation(fewer, START).run_all()) if o.lift_id == "T-LOW"
    ]
    assert full == part


@settings(max_examples=200, deadline=None)
@given(
    dist=st.integers(min_value=1, max_value=150_000),
    vmax=st.floats(min_value=0.2, max_value=6.0),
    accel=st.floats(min_value=0.3, max_value=1.5),
    down=st.booleans(),
)
def test_a_run_is_smooth_bounded_and_ends_on_target(
    dist: int, vmax: float, accel: float, down: bool
) -> None:
    start, target = 10_000.0, 10_000.0 + (-dist if down else dist)
    run = Run(0, start, target, vmax, accel)
    step = 20
    prev_pos, prev_v = start, 0.0
    t = 0
    while True:
        t += step
        pos, v, done = run.at(t)
        assert abs(v) <= vmax + 1e-9
        # Acceleration stays within the rating (finite differences, 2 % slack for the step).
        assert abs(v - prev_v) / (step / 1000) <= accel * 1.02 + 1e-6
        # Never moves backwards, never overshoots.
        assert (pos - prev_pos) * (target - start) >= -1e-6
        lo, hi = min(start, target), max(start, target)
        assert lo - 1e-6 <= pos <= hi + 1e-6
        prev_pos, prev_v = pos, v
        if done:
            break
    assert pos == target and v == 0.0
    assert math.isclose(t / 1000, run.duration_s, abs_tol=step / 1000)


def test_an_idle_lift_jumps_to_its_next_heartbeat() -> None:
    cfg = LiftConfig(lift_id="IDLE", calls_per_hour=0, telemetry_idle_s=60)
    model = LiftModel(cfg, random.Random(1), START)
    model.settle()
    model.drain()
    updates = 0
    original = model._update

    def counting() -> None:
        nonlocal updates
        updates += 1
        original()

    model._update = counting  # type: ignore[method-assign]
    model.advance(START + 3600_000)
    assert 55 <= updates <= 65  # about one per heartbeat, not one per 100 ms tick
    assert len(model.drain()) == 60


def test_overspeed_band_is_published_at_once() -> None:
    cfg = LiftConfig(lift_id="FAST", calls_per_hour=0, rated_speed=1.0)
    model = LiftModel(cfg, random.Random(1), START)
    model.settle()
    model.drain()
    model.start_run(27_000, 1.0 * 1.3, "dispatch")
    model.advance(START + 30_000)
    tele = [msgspec.json.decode(m.payload) for m in model.drain() if isinstance(m, Message)]
    fast = [b for b in tele if abs(b.get("speed", 0)) > OVERSPEED_FACTOR]
    assert len(fast) >= 2
    first_fast = next(i for i, b in enumerate(tele) if abs(b.get("speed", 0)) > OVERSPEED_FACTOR)
    # The message before the first fast one was sent because the speed crossed the band.
    assert abs(tele[first_fast - 1]["speed"]) <= OVERSPEED_FACTOR
