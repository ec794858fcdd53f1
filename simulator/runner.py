"""Run a scenario: lifts + timeline → messages, and the ground-truth label file.

:class:`Simulation` is pure (virtual time in, messages out) so tests can run a whole scenario
in milliseconds. :func:`run_realtime` paces it against the wall clock and publishes through a
:class:`simulator.publisher.Publisher`.

Time scale: ``time_scale`` > 1 runs the lifts faster than real time. Device timestamps then
run ahead of the wall clock, and liftwatch measures durations on its *own* clock, so a scaled
run cannot be scored against real-time thresholds (a 30 s entrapment takes 3 s of wall time
at ×10 and is never raised). To get a short real-time run, compress the script instead:
``compress_idle_s`` shortens idle stretches of the timeline while the lifts run in real time
(:func:`simulator.scenario.compress_timeline`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from liftwatch.protocol import format_ts
from simulator.faults import FaultContext
from simulator.labels import Label, LiftTruth, forbid_everything
from simulator.model import LiftModel, LinkChange, Message, Output
from simulator.scenario import Scenario, Step, compress_timeline

LABEL_FORMAT = "liftwatch-labels/1"
TOLERANCE_S = 1.0


def lift_rng(seed: int, lift_id: str) -> random.Random:
    """One generator per lift, so adding a lift never changes what the others do."""
    return random.Random(f"{seed}/{lift_id}")


@dataclass
class Simulation:
    scenario: Scenario
    start_ms: int
    seed: int | None = None
    compress_idle_s: float | None = None
    models: dict[str, LiftModel] = field(init=False)
    labels: list[Label] = field(init=False, default_factory=list)
    on_step: Callable[[int, Step], None] | None = None

    def __post_init__(self) -> None:
        seed = self.scenario.seed if self.seed is None else self.seed
        steps = list(self.scenario.steps)
        self.duration_s = self.scenario.duration_s
        if self.compress_idle_s is not None:
            steps, self.duration_s = compress_timeline(
                steps, self.scenario.duration_s, self.compress_idle_s
            )
        self.end_ms = self.start_ms + round(self.duration_s * 1000)
        self._steps = steps
        self._next_step = 0
        self.models = {}
        self.truths: dict[str, LiftTruth] = {}
        self.contexts: dict[str, FaultContext] = {}
        for spec in self.scenario.lifts:
            model = LiftModel(spec.config(), lift_rng(seed, spec.id), self.start_ms)
            truth = LiftTruth(spec.id, spec.overrides, self.labels)
            model.watchers.append(truth)
            self.models[spec.id] = model
            self.truths[spec.id] = truth
            self.contexts[spec.id] = FaultContext(spec.id, self.labels, spec.overrides)
            model.settle()  # the boot snapshot (and self-test) at the very start
        self.now_ms = self.start_ms
        self.finished = False

    def step_time_ms(self, step: Step) -> int:
        return self.start_ms + round(step.at * 1000)

    def advance(self, to_ms: int) -> list[Output]:
        """Everything the lifts send up to ``to_ms`` (capped at the scenario's end)."""
        to_ms = min(to_ms, self.end_ms)
        out: list[Output] = []
        while self._next_step < len(self._steps):
            step = self._steps[self._next_step]
            at = self.step_time_ms(step)
            if at > to_ms:
                break
            self._next_step += 1
            for lift_id in step.lifts:
                model = self.models[lift_id]
                model.advance(at)
                step.action.apply(model, self.contexts[lift_id])
                model.settle()
            if self.on_step:
                self.on_step(at, step)
        for model in self.models.values():
            model.advance(to_ms)
        for model in self.models.values():
            out.extend(model.drain())
        out.sort(key=lambda o: o.at_ms)  # stable: per-lift order is kept
        for item in out:
            self._observe(item)
        self.now_ms = max(self.now_ms, to_ms)
        return out

    def _observe(self, item: Output) -> None:
        truth = self.truths[item.lift_id]
        if isinstance(item, LinkChange):
            if not item.up:
                truth.link_down(item.at_ms)
            return
        if item.malformed or item.kind == "status":
            return
        body = msgspec.json.decode(item.payload) if item.kind == "event" else None
        truth.published(item.at_ms, item.kind, body)

    def run_all(self) -> list[Output]:
        """The whole scenario at once, in virtual time (tests, ``--dry-run``)."""
        out = self.advance(self.end_ms)
        self.finish()
        return out

    def finish(self) -> list[Label]:
        if not self.finished:
            self.finished = True
            end = min(self.now_ms, self.end_ms)
            for truth in self.truths.values():
                truth.finish(end)
            for spec in self.scenario.lifts:
                if spec.quiet:
                    self.labels.append(
                        forbid_everything(spec.id, self.start_ms, end, "control lift")
                    )
            self.labels.sort(key=lambda lab: (lab.onset_ms, lab.lift_id, lab.code))
        return self.labels

    def label_document(self) -> dict[str, Any]:
        end = min(self.now_ms, self.end_ms)
        return {
            "format": LABEL_FORMAT,
            "scenario": self.scenario.name,
            "seed": self.scenario.seed if self.seed is None else self.seed,
            "started_ms": self.start_ms,
            "ended_ms": end,
            "started": format_ts(self.start_ms),
            "ended": format_ts(end),
            "tolerance_s": TOLERANCE_S,
            "lifts": [
                {
                    "lift_id": spec.id,
                    "rated_speed": spec.rated_speed,
                    "floors": len(spec.labels()),
                    "overrides": spec.overrides,
                    "quiet": spec.quiet,
                }
                for spec in self.scenario.lifts
            ],
            "labels": [label.to_json() for label in self.labels],
        }


def write_labels(sim: Simulation, path: Path) -> None:
    sim.finish()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(sim.label_document(), indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_labels(path: Path) -> tuple[dict[str, Any], list[Label]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != LABEL_FORMAT:
        raise ValueError(f"{path}: not a {LABEL_FORMAT} label file")
    return doc, [Label.from_json(item) for item in doc["labels"]]


class Sink(Protocol):
    def send(self, item: Output) -> None: ...

    def poll(self, timeout: float) -> None: ...


def run_realtime(
    sim: Simulation,
    sink: Sink,
    *,
    time_scale: float = 1.0,
    should_stop: Callable[[], bool] = lambda: False,
    tick_s: float = 0.01,
    on_output: Callable[[Output], None] | None = None,
) -> None:
    """Pace ``sim`` on the wall clock (× ``time_scale``) and hand every output to ``sink``.

    ``sim.start_ms`` should be "now" for time_scale 1, so device timestamps are real time.
    """
    t0 = time.monotonic()
    while not should_stop():
        elapsed = (time.monotonic() - t0) * time_scale
        now_ms = sim.start_ms + round(elapsed * 1000)
        for item in sim.advance(now_ms):
            sink.send(item)
            if on_output:
                on_output(item)
        if now_ms >= sim.end_ms:
            break
        sink.poll(tick_s)
    sim.finish()


def describe(item: Output) -> str:
    """One line for a live log."""
    if isinstance(item, LinkChange):
        return f"{item.lift_id} link {'up' if item.up else 'DOWN (Last Will)'}"
    return f"{item.lift_id} {item.kind} {item.payload[:160].decode(errors='replace')}"


def messages_only(items: Iterable[Output]) -> list[Message]:
    return [i for i in items if isinstance(i, Message)]
