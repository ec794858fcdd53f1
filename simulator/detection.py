"""End-to-end detection run: a scenario through a real broker and a real ``liftwatch serve``,
the alarms read back from the API, scored against the scenario's ground-truth labels.

Shared by ``tests/e2e/test_detection.py`` (asserts on the score) and
``bench/detection_score.py`` (prints it). Real time only: liftwatch measures every duration
on its own clock, so a time-scaled run could not be scored (docs/simulator.md § Time). The
lifts are registered with the scenario's per-lift threshold overrides and liftwatch runs with
FAULTS.md's default global thresholds, as the labels assume.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.labels import Label
from simulator.model import Output
from simulator.scenario import load_scenario
from simulator.score import Observed, Score, score
from simulator.stack import list_alarms, register_scenario, run_scenario, start_stack

# After the script ends, how long alarms that are due by then may take to show in the API.
SETTLE_S = 5.0


@dataclass
class DetectionRun:
    scenario: str
    score: Score
    labels: list[Label]
    label_doc: dict[str, Any]
    alarms: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    serve_exit_code: int | None = None

    def table(self) -> str:
        return self.score.table(self.label_doc["started_ms"])


def observations(
    alarms: list[dict[str, Any]], details: dict[str, dict[str, Any]]
) -> list[Observed]:
    """Raised alarms, plus every ``condition_returned`` transition of the alarms in
    ``details`` (an open alarm whose condition came back counts as a detection)."""
    out = [Observed.from_json(a) for a in alarms]
    for detail in details.values():
        for tr in detail.get("transitions", []):
            if tr.get("event") == "condition_returned":
                out.append(
                    Observed.from_json(  # timed by the transition, not by the raise
                        {**detail, "raised_at": None, "at": tr["at"], "kind": "returned"}
                    )
                )
    return out


class _Ticker:
    """A progress line every 10 s of the run."""

    def __init__(self, duration_s: float, progress: Callable[[str], None]) -> None:
        self.duration_s, self.progress = duration_s, progress
        self.t0 = self.last = time.monotonic()

    def __call__(self, _item: Output) -> None:
        now = time.monotonic()
        if now - self.last >= 10:
            self.last = now
            self.progress(f"  {now - self.t0:4.0f} / {self.duration_s:.0f} s of the scenario")


def run_detection(
    workdir: Path,
    *,
    scenario: str = "all_faults",
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> DetectionRun:
    """Run ``scenario`` end to end and score it. Broker and InfluxDB: the given URLs, or
    private ones started in ``workdir``; ``liftwatch serve`` always runs as a child here."""
    scn = load_scenario(scenario)
    tag = secrets.token_hex(4)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    stack = start_stack(
        workdir,
        mqtt_url=mqtt_url,
        influx_url=influx_url,
        prefix=f"e2e{tag}",
        database=f"e2e_{tag}",
        progress=progress,
    )
    code: int | None = None
    try:
        timings["startup_s"] = time.monotonic() - t0
        progress(f"liftwatch serve ready at {stack.api_url}")
        with stack.client() as api:
            register_scenario(api, scn, "e2e", "End-to-end test company")
            progress(f"registered {len(scn.lifts)} lifts; running {scn.name} in real time")
            t1 = time.monotonic()
            ticker = _Ticker(scn.duration_s, progress)
            sim = run_scenario(
                scn,
                stack.mqtt_url,
                stack.prefix,
                client_id_prefix=f"e2e{tag}",
                on_output=ticker,
            )
            timings["scenario_s"] = time.monotonic() - t1
            labels = sim.finish()
            doc = sim.label_document()
            lifts = [spec.id for spec in scn.lifts]
            progress("scenario done; reading the alarms back from the API")

            # Everything due is due before the end; give the last ones SETTLE_S to appear,
            # polling (not sleeping) until every expected alarm is there.
            deadline = time.monotonic() + SETTLE_S
            while True:
                alarms = list_alarms(api)
                result = score(labels, observations(alarms, {}), lifts=lifts, end_ms=sim.end_ms)
                if not result.missed or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            details = {
                a["alarm_id"]: api.get(f"/alarms/{a['alarm_id']}").json()
                for a in alarms
                if a["occurrences"] > 1
            }
            observed = observations(alarms, details)
            result = score(labels, observed, lifts=lifts, end_ms=sim.end_ms)
    finally:
        code = stack.close()
    timings["total_s"] = time.monotonic() - t0
    return DetectionRun(scn.name, result, labels, doc, alarms, timings, code)
