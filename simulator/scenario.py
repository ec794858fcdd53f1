"""Scenario files: the lifts and a timeline of traffic, mode changes and injected faults.

YAML or JSON; the schema is in docs/simulator.md. :func:`load_scenario` validates everything
up front (every lift, every step, every floor named) and raises :class:`ScenarioError` with one
line per problem, naming where it is (``timeline[3] (do: overspeed): factor: …``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from liftwatch.protocol import ServiceMode
from simulator.faults import BadDevice, Fault, FaultContext, _Fault, _once
from simulator.labels import THRESHOLD_KEYS
from simulator.model import LiftConfig, LiftModel

LiftId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
FloorRef = int | str
SCENARIO_DIR = Path(__file__).parent / "scenarios"


class ScenarioError(ValueError):
    """The scenario file is unreadable or invalid; the message lists every problem."""


class LiftSpec(BaseModel):
    """One simulated lift (all but ``id`` may also be set once under ``defaults``)."""

    model_config = ConfigDict(extra="forbid")

    id: LiftId
    floors: Annotated[int, Field(ge=2, le=200)] | list[Annotated[str, Field(max_length=16)]] = 10
    basements: Annotated[int, Field(ge=0, le=20)] = 0
    floor_height_m: Annotated[float, Field(gt=1.5, le=20)] = 3.0
    landing_heights_m: list[float] | None = None
    rated_speed: Annotated[float, Field(gt=0, le=20)] = 1.0
    acceleration: Annotated[float, Field(gt=0, le=3)] = 0.8
    door_zone_mm: Annotated[int, Field(ge=20, le=500)] = 100
    door_open_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    door_dwell_s: Annotated[float, Field(ge=0, le=60)] = 3.0
    door_close_s: Annotated[float, Field(gt=0, le=30)] = 2.5
    capacity: Annotated[int, Field(ge=1, le=100)] = 8
    calls_per_hour: Annotated[float, Field(ge=0, le=3600)] = 20.0
    passenger_sensor: bool = True
    telemetry_running_s: Annotated[float, Field(gt=0, le=5)] = 0.5
    telemetry_idle_s: Annotated[float, Field(gt=0, le=60)] = 60.0
    telemetry_qos: Literal[0, 1] = 1
    selftest_interval_s: Annotated[float, Field(gt=0)] = 86_400.0
    selftest_at_start: bool = True
    alarm_button_telemetry: bool = False
    ts_format: Literal["rfc3339", "epoch_ms"] = "rfc3339"
    main_floor: FloorRef = 0
    start_floor: FloorRef = 0
    overrides: dict[str, float] = Field(default_factory=dict)
    quiet: bool = False  # a control lift: nothing at all may be raised for it

    def labels(self) -> tuple[str, ...]:
        if isinstance(self.floors, list):
            return tuple(self.floors)
        below = tuple(f"B{i}" for i in range(self.basements, 0, -1))
        return below + tuple(str(i) for i in range(1, self.floors - self.basements + 1))

    def landings_mm(self) -> tuple[int, ...]:
        if self.landing_heights_m is not None:
            return tuple(round(h * 1000) for h in self.landing_heights_m)
        return tuple(round(i * self.floor_height_m * 1000) for i in range(len(self.labels())))

    def floor_index(self, ref: FloorRef) -> int:
        """An ``int`` is an index (0 = lowest landing); a ``str`` is a floor label."""
        labels = self.labels()
        if isinstance(ref, int):
            if not 0 <= ref < len(labels):
                raise ValueError(f"floor index {ref} out of range 0..{len(labels) - 1}")
            return ref
        if ref not in labels:
            raise ValueError(f"no floor labelled {ref!r} (floors: {', '.join(labels)})")
        return labels.index(ref)

    def config(self) -> LiftConfig:
        return LiftConfig(
            lift_id=self.id,
            floor_labels=self.labels(),
            landings_mm=self.landings_mm(),
            rated_speed=self.rated_speed,
            acceleration=self.acceleration,
            door_zone_mm=self.door_zone_mm,
            door_open_s=self.door_open_s,
            door_dwell_s=self.door_dwell_s,
            door_close_s=self.door_close_s,
            capacity=self.capacity,
            calls_per_hour=self.calls_per_hour,
            passenger_sensor=self.passenger_sensor,
            telemetry_running_s=self.telemetry_running_s,
            telemetry_idle_s=self.telemetry_idle_s,
            telemetry_qos=self.telemetry_qos,
            selftest_interval_s=self.selftest_interval_s,
            selftest_at_start=self.selftest_at_start,
            alarm_button_telemetry=self.alarm_button_telemetry,
            ts_format=self.ts_format,
            main_floor=self.floor_index(self.main_floor),
            start_floor=self.floor_index(self.start_floor),
        )

    @model_validator(mode="after")
    def _check(self) -> LiftSpec:
        labels = self.labels()
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("floors need ≥ 2 distinct labels")
        if isinstance(self.floors, int) and self.basements >= self.floors:
            raise ValueError("basements must be fewer than floors")
        if self.landing_heights_m is not None and len(self.landing_heights_m) != len(labels):
            raise ValueError(f"landing_heights_m needs {len(labels)} values, one per floor")
        if any(b <= a for a, b in zip(self.landings_mm(), self.landings_mm()[1:], strict=False)):
            raise ValueError("landing heights must increase")
        self.floor_index(self.main_floor)
        self.floor_index(self.start_floor)
        unknown = sorted(set(self.overrides) - THRESHOLD_KEYS)
        if unknown:
            raise ValueError(
                f"unknown override keys {unknown} (the alerts engine's threshold keys, "
                "docs/alarms.md)"
            )
        return self


# ------------------------------------------------------------------------ actions ----
class Call(_Fault):
    """Passengers appear at ``from`` and want to go to ``to``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["call"]
    origin: FloorRef = Field(alias="from")
    to: FloorRef
    passengers: Annotated[int, Field(ge=1, le=50)] = 1

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.add_passengers(_floor(model, self.origin), _floor(model, self.to), self.passengers)


class Move(_Fault):
    """Send the empty car somewhere: a car call in normal mode, a technician's run in
    inspection (``by_mm`` up or down, at inspection speed)."""

    kind: Literal["move"]
    to: FloorRef | None = None
    by_mm: Annotated[int, Field(ge=-500_000, le=500_000)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Move:
        if (self.to is None) == (self.by_mm is None):
            raise ValueError("give exactly one of `to` (a floor) or `by_mm`")
        return self

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        if model.car_running or model.door_state != "locked":
            # Busy: the request waits, as a registered car call would, until the car is free.
            _once(model, lambda m: not m.car_running and m.door_state == "locked", self._go(model))
            return
        self._go(model)()

    def _go(self, model: LiftModel) -> Callable[[], None]:
        return lambda: self._start(model)

    def _start(self, model: LiftModel) -> None:
        if self.to is not None:
            target = float(model.cfg.landings_mm[_floor(model, self.to)])
        else:
            target = model.position + (self.by_mm or 0)
        if model.mode == "inspection":
            model.start_run(target, model.cfg.inspection_speed, "inspection")
        else:
            model.start_run(target, model.cfg.rated_speed, "dispatch")


class Mode(_Fault):
    """Change the service mode (a keyswitch, the fire service, an inspection by a technician)."""

    kind: Literal["mode"]
    mode: ServiceMode

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        if model.mode == "fire_return" and self.mode != "fire_return":
            model.hold_doors(False)
        model.mode = self.mode


class Power(_Fault):
    """Switch the power source directly (see ``power_failure`` for a failure with a hold)."""

    kind: Literal["power"]
    source: Literal["mains", "battery", "other"]

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        if self.source != "mains":
            model.emergency_stop()
        model.power = self.source


class Traffic(_Fault):
    """Change how many passenger calls per hour arrive from now on."""

    kind: Literal["traffic"]
    calls_per_hour: Annotated[float, Field(ge=0, le=3600)]

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        from dataclasses import replace

        model.cfg = replace(model.cfg, calls_per_hour=self.calls_per_hour)
        model.next_arrival_ms = model._draw_arrival(model.t)


Action = Annotated[
    Call | Move | Mode | Power | Traffic | Fault | BadDevice, Field(discriminator="kind")
]
_ACTION = TypeAdapter(Action)


def _floor(model: LiftModel, ref: FloorRef) -> int:
    # Validated when the scenario loaded (LiftSpec.floor_index): ints are indexes.
    return ref if isinstance(ref, int) else model.cfg.floor_labels.index(ref)


class Step(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    at: float
    lifts: tuple[str, ...]
    action: Any
    note: str = ""

    @property
    def do(self) -> str:
        return str(self.action.kind)

    def hold_s(self) -> float:
        return float(getattr(self.action, "hold_s", 0) or 0)


class Scenario(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    description: str = ""
    seed: int = 0
    duration_s: float
    lifts: list[LiftSpec]
    steps: list[Step]

    def spec(self, lift_id: str) -> LiftSpec:
        for lift in self.lifts:
            if lift.id == lift_id:
                return lift
        raise KeyError(lift_id)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    seed: int = 0
    duration_s: Annotated[float, Field(gt=0, le=30 * 86_400)]
    defaults: dict[str, Any] = Field(default_factory=dict)
    lifts: list[dict[str, Any]] = Field(min_length=1)
    timeline: list[dict[str, Any]] = Field(default_factory=list)


def builtin(name: str) -> Path | None:
    """``demo`` → simulator/scenarios/demo.yaml, if it exists."""
    path = SCENARIO_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def load_scenario(source: Path | str) -> Scenario:
    """Read and validate a scenario file (a path, or the name of a built-in scenario)."""
    path = Path(source)
    if not path.exists() and (found := builtin(str(source))):
        path = found
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ScenarioError(f"{path}: not valid {kind}: {exc}") from None
    return parse_scenario(data, where=str(path))


def parse_scenario(data: Any, where: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: the top level must be a mapping")
    try:
        top = _File.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{where}:\n" + _describe(exc)) from None
    problems: list[str] = []
    lifts: list[LiftSpec] = []
    for i, raw in enumerate(top.lifts):
        merged = {**top.defaults, **raw} if isinstance(raw, dict) else raw
        try:
            lifts.append(LiftSpec.model_validate(merged))
        except ValidationError as exc:
            name = raw.get("id", "?") if isinstance(raw, dict) else "?"
            problems.append(f"lifts[{i}] ({name}):\n" + _describe(exc, indent="    "))
    ids = [lift.id for lift in lifts]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"lifts: duplicate ids {dupes}")
    by_id = {lift.id: lift for lift in lifts}
    steps: list[Step] = []
    for i, raw in enumerate(top.timeline):
        step, errors = _parse_step(i, raw, by_id, top.duration_s)
        problems.extend(errors)
        if step is not None:
            steps.append(step)
    if problems:
        raise ScenarioError(f"{where}: {len(problems)} problem(s):\n" + "\n".join(problems))
    steps.sort(key=lambda s: s.at)  # stable: same-time steps keep file order
    return Scenario(
        name=top.name,
        description=top.description,
        seed=top.seed,
        duration_s=top.duration_s,
        lifts=lifts,
        steps=steps,
    )


def _parse_step(
    i: int, raw: Any, lifts: Mapping[str, LiftSpec], duration_s: float
) -> tuple[Step | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"timeline[{i}]: each step must be a mapping"]
    body = dict(raw)
    at = body.pop("at", None)
    target = body.pop("lift", body.pop("lifts", None))
    note = str(body.pop("note", ""))
    do = body.pop("do", None)
    where = f"timeline[{i}]" + (f" (do: {do})" if do else "")
    errors: list[str] = []
    if not isinstance(at, int | float) or isinstance(at, bool) or not 0 <= at <= duration_s:
        errors.append(f"{where}: `at` must be seconds from the start, 0..{duration_s:g}")
    if target == "*":
        names = tuple(lifts)
    elif isinstance(target, str):
        names = (target,)
    elif isinstance(target, list) and target and all(isinstance(t, str) for t in target):
        names = tuple(target)
    else:
        names = ()
        errors.append(f"{where}: `lift` must name a lift, a list of lifts, or '*'")
    unknown = [n for n in names if n not in lifts]
    if unknown:
        errors.append(f"{where}: unknown lift(s) {unknown}")
    if not isinstance(do, str):
        errors.append(f"{where}: `do` must name an action (see docs/simulator.md)")
        return None, errors
    try:
        action = _ACTION.validate_python({"kind": do, **body})
    except ValidationError as exc:
        errors.append(f"{where}:\n" + _describe(exc, indent="    ", skip_kind=True))
        return None, errors
    for name in names:
        if name in lifts:
            errors.extend(_check_floors(where, action, lifts[name]))
    if errors:
        return None, errors
    return Step(at=float(at), lifts=names, action=action, note=note), []


def _check_floors(where: str, action: Any, spec: LiftSpec) -> list[str]:
    errors = []
    for attr in ("origin", "to"):
        ref = getattr(action, attr, None)
        if ref is not None:
            try:
                spec.floor_index(ref)
            except ValueError as exc:
                errors.append(f"{where}: lift {spec.id}: {exc}")
    return errors


def _describe(exc: ValidationError, indent: str = "  ", skip_kind: bool = False) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if skip_kind and loc:
            loc = loc[1:]  # the discriminator's tag is already named in `where`
        if err["type"] == "union_tag_invalid":
            tags = err.get("ctx", {}).get("expected_tags", "")
            lines.append(f"{indent}unknown action; expected one of: {tags}")
            continue
        lines.append(f"{indent}{'.'.join(loc) or 'value'}: {err['msg']}")
    return "\n".join(lines)


def compress_timeline(
    steps: Sequence[Step], duration_s: float, max_gap_s: float, settle_s: float = 15.0
) -> tuple[list[Step], float]:
    """Shorten idle stretches of the timeline to at most ``max_gap_s``.

    A step keeps the timeline busy from its time until its hold has passed plus
    ``settle_s`` (time for alarms to be raised and cleared); gaps between busy stretches
    longer than ``max_gap_s`` are cut down. Lifts still run in real time: only the script
    moves faster, so every threshold liftwatch measures on its own clock stays real.
    """
    out: list[Step] = []
    shift = 0.0
    busy_until: float | None = None
    for step in sorted(steps, key=lambda s: s.at):
        if busy_until is not None and step.at - busy_until > max_gap_s:
            shift += step.at - busy_until - max_gap_s
        new_at = step.at - shift
        out.append(step.model_copy(update={"at": new_at}))
        end = step.at + step.hold_s() + settle_s
        busy_until = end if busy_until is None else max(busy_until, end)
    if busy_until is not None and duration_s - busy_until > max_gap_s:
        shift += duration_s - busy_until - max_gap_s
    return out, duration_s - shift
