"""Detection, end to end: the ``all_faults`` scenario (every FAULTS.md code, plus cases that
must stay quiet) through the real Mosquitto and a real ``liftwatch serve``, scored against the
scenario's ground-truth labels. Real time (about 2.5 minutes): liftwatch measures every
duration on its own clock, so the run cannot be time-scaled (docs/simulator.md § Time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.detection import run_detection
from simulator.labels import CODES
from tests.support.harness import Service

pytestmark = pytest.mark.integration


def test_all_faults_scenario_is_detected_in_time_with_no_false_alarm(
    mosquitto: Service, influxdb: Service, tmp_path: Path
) -> None:
    run = run_detection(tmp_path, mqtt_url=mosquitto.url, influx_url=influxdb.url, progress=print)
    result = run.score
    print(run.table())
    print(result.summary_line())
    print({k: round(v, 1) for k, v in run.timings.items()})

    expected = {lab.code for lab in run.labels if lab.expect == "raise"}
    assert expected == set(CODES), f"the scenario no longer covers {set(CODES) - expected}"
    critical = [r for r in result.rows if r.label.severity == "critical"]
    assert len(critical) >= 10
    missed = [f"{r.label.lift_id} {r.label.code}" for r in result.missed]
    assert result.recall_critical == 1.0, f"critical alarms missed: {missed}"
    assert result.forbidden == [], f"forbidden alarms raised: {result.forbidden}"
    assert result.unexpected == [], f"unexpected alarms raised: {result.unexpected}"
    late = [(r.label.lift_id, r.label.code, r.over_s) for r in result.late]
    assert late == [], f"detected later than threshold + {result.tolerance_s} s: {late}"
    assert missed == [], f"expected alarms missed: {missed}"
    assert result.passed
    assert run.serve_exit_code == 0, "liftwatch serve did not stop cleanly"
