"""The InfluxDB copy of alarm transitions keeps every transition (../shared/repros r05, m7):
transitions of one lift and code in the same millisecond are distinct points. Real InfluxDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alerts.worker import InfluxSink
from liftwatch.influx import InfluxClient
from tests.alerts.rig import Rig

pytestmark = pytest.mark.integration


async def test_same_millisecond_transitions_are_distinct_points(
    influx: InfluxClient, tmp_path: Path
) -> None:
    sink = InfluxSink()
    r = Rig(tmp_path / "lw.db")
    r.engine.sink = sink
    # One snapshot with two vendor faults: two controller_fault alarms in one millisecond.
    r.tel(
        controller_faults=[
            {"namespace": "acme", "code": "E17"},
            {"namespace": "acme", "code": "E42"},
        ]
    )
    r.tel(controller_faults=[])  # both clear in one millisecond
    lines = len(sink.lines)
    assert lines == 4
    stop = asyncio.Event()
    stop.set()  # flush what is queued, then return
    await sink.run(influx, stop)
    series = await influx.query("SELECT alarm_id, event FROM alarm")
    rows = series[0]["values"]
    assert len(rows) == lines
    assert sorted(row[2] for row in rows) == ["condition_cleared"] * 2 + ["raised"] * 2
    # Read in ms, every point carries its transition's millisecond (the µs offset is < 1 ms).
    assert {row[0] for row in rows} == {r.clock.now_ms()}
