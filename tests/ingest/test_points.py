"""Decoded messages → line protocol, and duplicate suppression (pure)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ingest.points import (
    MEASUREMENT_STATE,
    Deduplicator,
    _telemetry_line,
    dedup_key,
    point_time,
    telemetry_fields,
    to_line,
)
from liftwatch.lineprotocol import line
from liftwatch.protocol import Decoded, Telemetry, decode

TS = 1_790_000_000_000


def _decoded(payload: dict[str, object], kind: str = "telemetry") -> Decoded:
    result = decode(f"lifts/L1/{kind}", json.dumps(payload).encode(), received_ms=TS)
    assert isinstance(result, Decoded), result
    return result


BASE = {
    "v": 1, "ts": TS, "seq": 7, "service_mode": "normal", "car_status": "stopped",
    "direction": "none", "floor": "B2", "door_zone": True, "doors_closed": True,
}  # fmt: skip


@given(
    speed=st.none() | st.integers(-10, 10) | st.floats(-10, 10),
    battery=st.none() | st.integers(0, 100),
    floor=st.none() | st.text(max_size=16),
    faults=st.none()
    | st.lists(
        st.fixed_dictionaries(
            {"namespace": st.text(), "code": st.integers(-(2**63), 2**63 - 1)}  # int64 (1.1)
        )
    ),
    present=st.none() | st.booleans(),
)
def test_fast_telemetry_line_equals_the_generic_one(
    speed: float | None,
    battery: int | None,
    floor: str | None,
    faults: object,
    present: bool | None,
) -> None:
    msg = _decoded({**BASE, "speed": speed, "battery": battery, "floor": floor,
                    "controller_faults": faults, "passenger_present": present})  # fmt: skip
    assert isinstance(msg.body, Telemetry)
    generic = line(
        MEASUREMENT_STATE, {"lift_id": "L1"}, telemetry_fields(msg.body), point_time(msg)
    )
    assert _telemetry_line(msg, msg.body) == generic


def test_schema_types() -> None:
    text = to_line(_decoded({**BASE, "speed": 1, "load": 5, "floor_index": 3})).decode()
    assert text.startswith("lift_state,lift_id=L1 seq=7i,")
    assert "speed=1.0" in text and "load=5.0" in text and "floor_index=3i" in text
    assert 'floor="B2"' in text and text.endswith(f" {TS * 1000 + 7}")  # µs: ts + seq % 1000
    assert "ts_corrected" not in text
    old = to_line(_decoded({**BASE, "ts": TS - 30 * 86_400_000})).decode()
    assert "ts_corrected=true" in old
    fault = to_line(_decoded(
        {"v": 1, "ts": TS, "seq": 1, "type": "fault", "namespace": "gb24476", "code": 3,
         "active": True}, "event")).decode()  # fmt: skip
    assert fault.startswith("lift_event,lift_id=L1,type=fault seq=1i,")
    assert 'code="3"' in fault
    status = to_line(_decoded({"v": 1, "state": "online"}, "status")).decode()
    assert status == f'lift_status,lift_id=L1 state="online",online=true {TS * 1000}'


def test_deduplicator_is_bounded() -> None:
    dedup = Deduplicator(capacity=3)
    assert dedup.first_time(1) and not dedup.first_time(1)
    for k in (2, 3, 4):
        assert dedup.first_time(k)
    assert dedup.first_time(1)  # evicted as the oldest
    msg = _decoded(BASE)
    assert dedup_key(msg) == ("L1", 7, TS)
    assert dedup_key(_decoded({"v": 1, "state": "online"}, "status")) is None
