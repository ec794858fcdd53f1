"""Fault injection: every FAULTS.md code, alarm button presses, and bad-device behaviours.

Each injection is a small pydantic model (its scenario parameters, validated when the
scenario loads) with an ``apply(model, ctx)`` that changes the lift's behaviour — usually by
arming a hook that waits for the right moment (mid-run, at a landing with passengers, doors
open) and a timer that undoes the fault after ``hold_s``. Consequences are not labelled here
but observed by :class:`simulator.labels.LiftTruth` on what the lift then does; only discrete
happenings (a press, a reported fault code, a circuit opening while running) add labels here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from liftwatch.faults import BY_GB24476
from simulator.labels import MARGIN_S, SEVERITY, Label, Verdict, suppressed, threshold
from simulator.model import LiftModel, LinkChange, Message, Run

Seconds = Annotated[float, Field(ge=0, le=7 * 86_400)]
PosSeconds = Annotated[float, Field(gt=0, le=7 * 86_400)]

# GB/T 24476-2017 fault codes 1–8 (FAULTS.md): anything else is a `controller_fault`.
GB24476_CODES: dict[int, str] = {n: code for n, code in BY_GB24476.items() if 1 <= n <= 8}
# Codes 4 and 7 share a FAULTS.md row with a 10 s derived threshold; a reported fault may
# be raised at once or after it, so the label accepts either.
_REPORTED_THRESHOLD_S = {4: 10.0, 7: 10.0}


@dataclass
class FaultContext:
    """What an injection needs besides the lift: where labels go and the lift's overrides."""

    lift_id: str
    labels: list[Label]
    overrides: Mapping[str, float] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)  # critical codes awaiting end of alarm
    presses: list[int] = field(default_factory=list)

    def label(
        self,
        model: LiftModel,
        code: str,
        expect: Verdict,
        *,
        threshold_s: float = 0.0,
        onset_ms: int | None = None,
        until_ms: int | None = None,
        source: Literal["rule", "device"] = "rule",
        cause: str = "",
    ) -> None:
        severity = SEVERITY.get(code, "major")
        if expect == "raise" and severity == "critical":
            if code in self.unresolved:
                expect = "allow"  # re-activates the open alarm (FAULTS.md § Lifecycle)
            self.unresolved.add(code)
        self.labels.append(
            Label(
                lift_id=self.lift_id,
                code=code,
                expect=expect,
                onset_ms=model.t if onset_ms is None else onset_ms,
                threshold_s=threshold_s,
                severity=severity,
                until_ms=until_ms,
                source=source,
                cause=cause,
            )
        )


def _once(model: LiftModel, ready: Callable[[LiftModel], bool], then: Callable[[], None]) -> None:
    """Run ``then`` on the first tick where ``ready(model)`` holds."""

    def hook(m: LiftModel) -> None:
        if ready(m):
            m.hooks.remove(hook)
            then()

    model.hooks.append(hook)


def _between_floors(m: LiftModel) -> bool:
    """Running and well clear of any door zone, so an emergency stop lands outside it."""
    landing = m.cfg.landings_mm[m.nearest_floor()]
    return m.run is not None and abs(landing - m.position) > m.cfg.door_zone_mm + 300


def _idle_at_landing(m: LiftModel) -> bool:
    return not m.car_running and m.door_state == "locked" and m.door_zone


def _end_of_alarm(model: LiftModel, ctx: FaultContext, after_s: float | None) -> None:
    if after_s is None:
        return

    def send() -> None:
        model.emit_event("end_of_alarm", by="simulator technician")
        ctx.unresolved.clear()

    model.after(after_s, send)


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        raise NotImplementedError


class StuckBetweenFloors(_Fault):
    """The controller halts the car between floors on its next run (passengers stay in)."""

    kind: Literal["stuck_between_floors"]
    hold_s: PosSeconds = 40
    end_of_alarm_after_s: Seconds | None = 5
    with_passengers: bool = True  # wait for a run with someone inside

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def stop() -> None:
            model.emergency_stop()
            model.halted = True
            model.after(self.hold_s, release)

        def release() -> None:
            model.halted = False
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        def ready(m: LiftModel) -> bool:
            return _between_floors(m) and (bool(m.riders) or not self.with_passengers)

        _once(model, ready, stop)


class DoorsWontOpen(_Fault):
    """With passengers inside, the doors stay shut on arrival at the next landing."""

    kind: Literal["doors_wont_open"]
    hold_s: PosSeconds = 95
    report_code: bool = False
    end_of_alarm_after_s: Seconds | None = 5

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def armed() -> None:
            model.doors_blocked = True
            _once(model, lambda m: m.stationary and m.door_zone and bool(m.riders), arrived)

        def arrived() -> None:
            if self.report_code:
                _report(model, ctx, "gb24476", 3, True, "door open fault")
            model.after(self.hold_s, release)

        def release() -> None:
            model.doors_blocked = False
            if self.report_code:
                _report(model, ctx, "gb24476", 3, False, "door open fault")
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        _once(model, lambda m: m.run is not None and bool(m.riders), armed)


class UnintendedMovement(_Fault):
    """With the doors open at a landing the car creeps away (brake failure) and stops."""

    kind: Literal["unintended_movement"]
    distance_mm: Annotated[int, Field(gt=0, le=5000)] = 400
    speed: Annotated[float, Field(gt=0, le=5)] = 0.2
    hold_s: Seconds = 5
    report_code: bool = False
    end_of_alarm_after_s: Seconds | None = 10

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def creep() -> None:
            model.door_hold = True
            model.door_until = None
            model.start_run(model.position - self.distance_mm, self.speed, "ucm")
            if self.report_code:
                _report(model, ctx, "gb24476", 5, True, "unintended car movement")
            _once(model, lambda m: m.run is None, stopped)

        def stopped() -> None:
            model.halted = True
            model.after(self.hold_s, release)

        def release() -> None:
            model.hold_doors(False)
            model.halted = False
            if self.report_code:
                _report(model, ctx, "gb24476", 5, False, "unintended car movement")
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        model.hold_doors(True)
        _once(model, lambda m: m.door_state == "open" and m.stationary, creep)


class DoorOpenWhileRunning(_Fault):
    """Door contacts bridged: on the next run the doors come open at speed; the car runs on."""

    kind: Literal["door_open_while_running"]
    hold_s: PosSeconds = 3
    end_of_alarm_after_s: Seconds | None = 10

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def open_() -> None:
            model.door_state = "not_fully_closed"
            model.doors_forced_open = True
            model.after(self.hold_s, close)

        def close() -> None:
            model.doors_forced_open = False
            if model.door_state == "not_fully_closed":
                model.door_state = "locked"
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        _once(model, lambda m: m.run is not None and m.speed_band() >= 2, open_)


class Overspeed(_Fault):
    """The next run cruises at ``factor`` × rated speed (a drive fault the governor misses)."""

    kind: Literal["overspeed"]
    factor: Annotated[float, Field(gt=1, le=3)] = 1.3
    end_of_alarm_after_s: Seconds | None = 20

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def boost() -> None:
            run = model.run
            assert run is not None
            model.run = Run(
                run.start_ms,
                run.from_mm,
                run.to_mm,
                model.run_vmax * self.factor,
                model.cfg.acceleration,
            )
            _once(model, lambda m: m.run is None, done)

        def done() -> None:
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        _once(model, lambda m: m.run is not None and m.t == m.run.start_ms, boost)


class Overtravel(_Fault):
    """The car runs past a terminal landing onto the final limit switch and stays there."""

    kind: Literal["overtravel"]
    end: Literal["top", "bottom"] = "top"
    beyond_mm: Annotated[int, Field(gt=100, le=2000)] = 250
    hold_s: PosSeconds = 15
    end_of_alarm_after_s: Seconds | None = 5

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def go() -> None:
            target = (
                model.top_mm + self.beyond_mm
                if self.end == "top"
                else model.bottom_mm - self.beyond_mm
            )
            model.start_run(target, model.cfg.rated_speed, "forced")
            model.halted = True
            _once(model, lambda m: m.run is None, arrived)

        def arrived() -> None:
            model.after(self.hold_s, release)

        def release() -> None:
            model.halted = False  # reset by a technician: the controller relevels
            _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        _once(model, _idle_at_landing, go)


class SafetyCircuitOpen(_Fault):
    """The safety circuit opens mid-run (a contact drops out): emergency stop."""

    kind: Literal["safety_circuit_open"]
    hold_s: PosSeconds = 6
    report_code: bool = False

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def trip() -> None:
            model.emergency_stop()
            model.safety = "open"
            muted = suppressed("safety_circuit_open", model.mode)
            ctx.label(
                model,
                "safety_circuit_open",
                "forbid" if muted else "raise",
                until_ms=model.t + round(self.hold_s * 1000) if muted else None,
                cause="safety circuit opened while running",
            )
            if self.report_code:
                _report(model, ctx, "gb24476", 1, True, "safety circuit open", label=False)
            model.after(self.hold_s, close)

        def close() -> None:
            model.safety = "closed"
            if self.report_code:
                _report(model, ctx, "gb24476", 1, False, "safety circuit open", label=False)

        _once(model, _between_floors, trip)


class PowerFailure(_Fault):
    """Mains lost: the car brakes where it is, the terminal runs on its battery."""

    kind: Literal["power_failure"]
    hold_s: PosSeconds = 20
    when: Literal["now", "mid_run"] = "now"

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def cut() -> None:
            model.emergency_stop()
            model.power = "battery"
            model.after(self.hold_s, restore)

        def restore() -> None:
            model.power = "mains"
            if model.door_until is None and model.door_state in ("opening", "closing", "closed"):
                model.door_until = model.t  # the operator resumes its interrupted movement

        if self.when == "now":
            cut()
        else:
            _once(model, _between_floors, cut)


class TractionSlip(_Fault):
    """The machine turns but the car does not move (rope slip): a run that never ends."""

    kind: Literal["traction_slip"]
    hold_s: PosSeconds = 50

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def slip() -> None:
            model.slipping = True
            model.run_started_closed = True
            model.run_count += 1
            model.after(self.hold_s, stop)

        def stop() -> None:
            model.slipping = False

        _once(model, _idle_at_landing, slip)


class PositionLost(_Fault):
    """The controller loses its floor position (encoder or selector fault)."""

    kind: Literal["position_lost"]
    hold_s: PosSeconds = 15

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def lose() -> None:
            model.position_lost = True
            model.after(self.hold_s, found)

        def found() -> None:
            model.position_lost = False

        _once(model, lambda m: not m.car_running, lose)


class ReportedControllerFault(_Fault):
    """The controller reports a fault code (event + telemetry list) and clears it later."""

    kind: Literal["controller_fault"]
    namespace: Annotated[str, Field(min_length=1, max_length=64)] = "gb24476"
    code: int | Annotated[str, Field(min_length=1, max_length=64)]
    text: str | None = None
    hold_s: PosSeconds = 20
    end_of_alarm_after_s: Seconds | None = 5

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        _report(model, ctx, self.namespace, self.code, True, self.text)

        def clear() -> None:
            _report(model, ctx, self.namespace, self.code, False, self.text, label=False)
            if alarm_code(self.namespace, self.code) == "unintended_car_movement":
                _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        model.after(self.hold_s, clear)


def alarm_code(namespace: str, code: int | str) -> str:
    """The liftwatch code a reported controller fault maps to (FAULTS.md)."""
    if namespace == "gb24476":
        try:
            return GB24476_CODES.get(int(code), "controller_fault")
        except ValueError:
            return "controller_fault"
    return "controller_fault"


def _report(
    model: LiftModel,
    ctx: FaultContext,
    namespace: str,
    code: int | str,
    active: bool,
    text: str | None,
    *,
    label: bool = True,
) -> None:
    key = (namespace, str(code))
    if active:
        model.controller_faults[key] = (code, text)
    else:
        model.controller_faults.pop(key, None)
    fields: dict[str, Any] = {"namespace": namespace, "code": code, "active": active}
    if text:
        fields["text"] = text
    model.emit_event("fault", **fields)
    if active and label:
        mapped = alarm_code(namespace, code)
        muted = suppressed(mapped, model.mode, "device")
        thr = 0.0
        if namespace == "gb24476" and isinstance(code, int):
            thr = _REPORTED_THRESHOLD_S.get(code, 0.0)
        expect: Verdict = "allow" if muted is None else ("forbid" if muted else "raise")
        ctx.label(
            model,
            mapped,
            expect,
            threshold_s=thr,
            source="device",
            until_ms=model.t + 10_000 if expect != "raise" else None,
            cause=f"controller reported {namespace} {code}",
        )


class DeviceSilent(_Fault):
    """The terminal hangs: connected, but it sends nothing (offline by timeout)."""

    kind: Literal["device_silent"]
    hold_s: PosSeconds = 30

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.silent = True

        def wake() -> None:
            model.silent = False
            model.next_telemetry_ms = model.t

        model.after(self.hold_s, wake)


class ConnectionLost(_Fault):
    """The link drops without a DISCONNECT: the broker publishes the Last Will ``offline``."""

    kind: Literal["connection_lost"]
    hold_s: PosSeconds = 70

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.link_up = False
        model.out.append(LinkChange(model.cfg.lift_id, model.t, up=False))

        def back() -> None:
            model.link_up = True
            model.out.append(LinkChange(model.cfg.lift_id, model.t, up=True))
            model.next_telemetry_ms = model.t

        model.after(self.hold_s, back)


class DoorCycling(_Fault):
    """The door reverses again and again (a blocked light curtain)."""

    kind: Literal["door_cycling"]
    cycles: Annotated[int, Field(ge=1, le=100)] = 5

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def start() -> None:
            model.door_cycles_left = self.cycles
            model.open_doors()

        _once(model, _idle_at_landing, start)


class HoldDoors(_Fault):
    """The doors are held open at a landing (door-open button jammed, a trolley in the way)."""

    kind: Literal["hold_doors"]
    hold_s: PosSeconds = 125

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def hold() -> None:
            model.hold_doors(True)
            model.after(self.hold_s, lambda: model.hold_doors(False))

        _once(model, lambda m: not m.car_running and m.door_zone, hold)


class BatteryLow(_Fault):
    """The backup battery reads ``level`` % (degraded) until it is replaced."""

    kind: Literal["battery_low"]
    level: Annotated[int, Field(ge=0, le=100)] = 25
    hold_s: PosSeconds = 70

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.battery_pinned = float(self.level)
        model.battery = float(self.level)

        def replaced() -> None:
            model.battery_pinned = None
            model.battery = 100.0

        model.after(self.hold_s, replaced)


class SelftestMissing(_Fault):
    """The alarm equipment stops running its periodic self-test."""

    kind: Literal["selftest_missing"]

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.next_selftest_ms = 2**62


class SelftestFail(_Fault):
    """One self-test reports ``fail``."""

    kind: Literal["selftest_fail"]
    detail: str = "alarm line test failed"

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.emit_event("selftest", result="fail", detail=self.detail)


class AlarmButton(_Fault):
    """A passenger presses the car alarm button ``presses`` times, each held ``hold_s``.

    Labels follow FAULTS.md's filter: a press while the car runs normally or while its doors
    are open at a landing is ignored unless held ≥ 30 s or repeated within 60 s.
    """

    kind: Literal["alarm_button"]
    hold_s: PosSeconds = 1
    presses: Annotated[int, Field(ge=1, le=20)] = 1
    gap_s: PosSeconds = 5
    end_of_alarm_after_s: Seconds | None = None
    # Send each press event twice (same seq and ts): liftwatch must count it once.
    duplicate: bool = False

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        def press(n: int) -> None:
            now = model.t
            window = threshold(ctx.overrides, "alarm_button_repeat_s") * 1000
            repeat = any(now - p <= window for p in ctx.presses)
            ctx.presses.append(now)
            # A press while a button alarm still stands is never filtered.
            filtered = _button_filtered(model) and "alarm_button" not in ctx.unresolved
            model.alarm_pressed = True
            model.emit_event("alarm_button", pressed=True)
            if self.duplicate and model.out and isinstance(model.out[-1], Message):
                model.out.append(Message(**{**_fields(model.out[-1]), "tag": "duplicate"}))
            long_press = threshold(ctx.overrides, "alarm_button_hold_s")
            if repeat or not filtered:
                why = "repeated within the window" if repeat else "not filtered"
                ctx.label(model, "alarm_button", "raise", source="device", cause=f"press: {why}")
            elif self.hold_s >= long_press + MARGIN_S:
                ctx.label(
                    model,
                    "alarm_button",
                    "raise",
                    threshold_s=long_press,
                    source="device",
                    cause="filtered press held past the long-press threshold",
                )
            model.after(self.hold_s, lambda: release(n, now, filtered and not repeat))

        def release(n: int, pressed_at: int, was_filtered: bool) -> None:
            model.alarm_pressed = False
            model.emit_event("alarm_button", pressed=False)
            long_press = threshold(ctx.overrides, "alarm_button_hold_s")
            if was_filtered and self.hold_s < long_press - MARGIN_S:
                # Forbidden only if the press stayed filtered for its whole length.
                still = _button_filtered(model) and "alarm_button" not in ctx.unresolved
                ctx.label(
                    model,
                    "alarm_button",
                    "forbid" if still else "allow",
                    onset_ms=pressed_at,
                    until_ms=model.t + 1000,
                    source="device",
                    cause="filtered short press",
                )
            if n + 1 < self.presses:
                model.after(self.gap_s, lambda: press(n + 1))
            else:
                _end_of_alarm(model, ctx, self.end_of_alarm_after_s)

        press(0)


def _button_filtered(m: LiftModel) -> bool:
    """FAULTS.md's filter: the car running in normal service, or its doors open in a zone."""
    running_normally = m.car_running and m.mode == "normal"
    open_at_landing = not m.doors_closed and m.door_zone
    return running_normally or open_at_landing


class EndOfAlarm(_Fault):
    """A competent person ends the alarm at the installation (EN 81-28)."""

    kind: Literal["end_of_alarm"]
    by: str = "simulator technician"

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.emit_event("end_of_alarm", by=self.by)
        ctx.unresolved.clear()


Fault = Annotated[
    StuckBetweenFloors
    | DoorsWontOpen
    | UnintendedMovement
    | DoorOpenWhileRunning
    | Overspeed
    | Overtravel
    | SafetyCircuitOpen
    | PowerFailure
    | TractionSlip
    | PositionLost
    | ReportedControllerFault
    | DeviceSilent
    | ConnectionLost
    | DoorCycling
    | HoldDoors
    | BatteryLow
    | SelftestMissing
    | SelftestFail
    | AlarmButton
    | EndOfAlarm,
    Field(discriminator="kind"),
]

# ------------------------------------------------------------------- bad devices ----
MalformedVariant = Literal[
    "not_json", "missing_seq", "bad_enum", "nan", "too_large", "array", "bad_version", "bad_ts"
]
MALFORMED_VARIANTS: tuple[MalformedVariant, ...] = (
    "not_json",
    "missing_seq",
    "bad_enum",
    "nan",
    "too_large",
    "array",
    "bad_version",
    "bad_ts",
)


@dataclass
class Quirks:
    """Message-level misbehaviour of a device, installed as the model's ``transform``."""

    duplicates: int = 0
    late: int = 0
    held: Message | None = None

    def __call__(self, msg: Message) -> list[Message]:
        out: list[Message] = []
        if self.late > 0 and self.held is None:
            # Keep this one back and send it after the next: a late, out-of-order message.
            self.held = Message(**{**_fields(msg), "tag": "late"})
            self.late -= 1
            return out
        out.append(msg)
        if self.held is not None:
            out.append(Message(**{**_fields(self.held), "at_ms": msg.at_ms}))
            self.held = None
        if self.duplicates > 0:
            self.duplicates -= 1
            out.append(Message(**{**_fields(msg), "tag": "duplicate"}))
        return out


def _fields(msg: Message) -> dict[str, Any]:
    return {s: getattr(msg, s) for s in Message.__slots__}


def _quirks(model: LiftModel) -> Quirks:
    if not isinstance(model.transform, Quirks):
        model.transform = Quirks()
    return model.transform


class Duplicate(_Fault):
    """The next ``count`` messages are each sent twice (same seq and ts: a QoS 1 redelivery)."""

    kind: Literal["duplicate"]
    count: Annotated[int, Field(ge=1, le=10_000)] = 3

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        _quirks(model).duplicates += self.count


class OutOfOrder(_Fault):
    """``count`` times, a message is held back and sent after the next one."""

    kind: Literal["out_of_order"]
    count: Annotated[int, Field(ge=1, le=10_000)] = 2

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        _quirks(model).late += self.count


class ClockSkew(_Fault):
    """The device clock runs ``offset_s`` off (beyond +5 min / −7 d the server corrects it)."""

    kind: Literal["clock_skew"]
    offset_s: Annotated[float, Field(ge=-30 * 86_400, le=30 * 86_400)]

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.skew_ms = round(self.offset_s * 1000)


class Reboot(_Fault):
    """The terminal restarts: ``seq`` begins again at 0 and a boot self-test runs."""

    kind: Literal["reboot"]

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        model.seq = 0
        model.next_selftest_ms = model.t
        model.next_telemetry_ms = model.t


class Malformed(_Fault):
    """``count`` payloads liftwatch must reject (dead-letter), cycling through ``variants``."""

    kind: Literal["malformed"]
    count: Annotated[int, Field(ge=1, le=10_000)] = len(MALFORMED_VARIANTS)
    variants: list[MalformedVariant] = Field(default_factory=lambda: list(MALFORMED_VARIANTS))

    def apply(self, model: LiftModel, ctx: FaultContext) -> None:
        for i in range(self.count):
            variant = self.variants[i % len(self.variants)]
            model.out.append(malformed_message(model, variant))


def malformed_message(model: LiftModel, variant: str) -> Message:
    body: dict[str, Any] = {"v": 1, "ts": model.device_ts(), "seq": model.seq, **model.snapshot()}
    raw: bytes
    if variant == "not_json":
        raw = b'{"v":1,"ts":' + str(model.t).encode() + b',"seq":'
    elif variant == "missing_seq":
        del body["seq"]
        raw = msgspec.json.encode(body)
    elif variant == "bad_enum":
        raw = msgspec.json.encode(body | {"service_mode": "party"})
    elif variant == "nan":
        raw = msgspec.json.encode(body | {"speed": 0.5}).replace(b'"speed":0.5', b'"speed":NaN')
    elif variant == "too_large":
        raw = msgspec.json.encode(body | {"padding": "x" * (17 * 1024)})
    elif variant == "array":
        raw = msgspec.json.encode([body])
    elif variant == "bad_version":
        raw = msgspec.json.encode(body | {"v": 99})
    elif variant == "bad_ts":
        raw = msgspec.json.encode(body | {"ts": "yesterday at noon"})
    else:
        raise ValueError(f"unknown malformed variant {variant!r}")
    return Message(model.cfg.lift_id, "telemetry", raw, model.t, qos=1, malformed=True, tag=variant)


BadDevice = Annotated[
    Duplicate | OutOfOrder | ClockSkew | Reboot | Malformed,
    Field(discriminator="kind"),
]
