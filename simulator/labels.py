"""Ground truth: which alarms liftwatch must raise, when, and which it must not.

Labels come from two places. Conditions the lift's own state makes true (stopped outside the
door zone, passengers inside, doors open, running, battery low, power source, …) are tracked
here on the simulated state, tick by tick, so every consequence of an injected fault (a
safety-gear stop between floors with passengers is also an entrapment) is labelled from what
the lift actually did. Discrete happenings (alarm button presses, reported controller faults,
safety circuit openings) are labelled by :mod:`simulator.faults` when they are injected.

Every condition that matters is part of the model's change key, so it is published the
instant it starts: a label's ``onset_ms`` is the sample time of the first message on which
the condition held, which is where FAULTS.md says a duration starts.

Verdicts: ``raise`` (must be raised by ``onset + threshold`` + tolerance), ``forbid`` (must not
be raised, unsuppressed, between ``onset_ms`` and ``until_ms``), ``allow`` (either is right:
a duration within the tolerance of its threshold, or a behaviour FAULTS.md leaves open).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from liftwatch.faults import CODES as FAULT_CODES
from liftwatch.thresholds import DEFAULTS as ALERT_DEFAULTS
from simulator.model import LiftModel

Verdict = Literal["raise", "forbid", "allow"]

# Threshold keys are the alerts engine's (liftwatch/thresholds.py, docs/alarms.md): the same keys
# a lift's registry ``overrides`` and LIFTWATCH_ALERTS_THRESHOLDS set.
THRESHOLD_KEYS: frozenset[str] = frozenset(ALERT_DEFAULTS)

SEVERITY: dict[str, str] = {code: c.severity for code, c in FAULT_CODES.items()}  # FAULTS.md
CODES: tuple[str, ...] = tuple(SEVERITY)

SPECIAL_MODES = frozenset(
    {"fire_return", "firefighter", "emergency_power", "earthquake", "out_of_service"}
)
_SPECIAL_SUPPRESSES = frozenset(
    {"door_open_too_long", "door_cycling", "run_timeout", "stopped_outside_zone"}
)
# Durations closer than this to their threshold are "allow": both outcomes are defensible
# given message spacing and clock differences.
MARGIN_S = 1.0


def threshold(overrides: Mapping[str, float], key: str) -> float:
    """The lift's value for a duration key, in seconds (``_h`` and ``_min`` keys converted)."""
    value = float(overrides.get(key, ALERT_DEFAULTS[key]))
    if key.endswith("_h"):
        return value * 3600
    if key.endswith("_min"):
        return value * 60
    return value


def suppressed(code: str, mode: str, source: str = "rule") -> bool | None:
    """True when FAULTS.md § Suppression mutes ``code`` in ``mode`` (None: unclear).

    Inspection mutes *derived* alarms only: a fault the device reports is not derived, so it
    is never muted there (the literal reading, and the one docs/alarms.md chose)."""
    if mode == "inspection":
        return source == "rule" and code not in ("alarm_button", "device_offline")
    if mode in SPECIAL_MODES:
        return code in _SPECIAL_SUPPRESSES
    return False


@dataclass
class Label:
    lift_id: str
    code: str
    expect: Verdict
    onset_ms: int
    threshold_s: float
    severity: str
    subtype: str | None = None
    until_ms: int | None = None
    source: Literal["rule", "device"] = "rule"
    cause: str = ""

    @property
    def due_ms(self) -> int:
        return self.onset_ms + round(self.threshold_s * 1000)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Label:
        return cls(**dict(data))


@dataclass(frozen=True)
class _Cond:
    code: str
    subtype: str | None
    key: str
    holds: Callable[[LiftModel], bool]
    rearm_s: float = 0.0  # a new interval this soon after the last one is the same alarm
    critical_if: Callable[[LiftModel], bool] | None = None


def _outside_zone_stop(m: LiftModel) -> bool:
    return m.stationary and not m.door_zone


_CONDITIONS: tuple[_Cond, ...] = (
    _Cond("stopped_outside_zone", None, "stopped_outside_zone_s", _outside_zone_stop),
    _Cond(
        "entrapment",
        "outside_zone",
        "entrapment_s",
        lambda m: _outside_zone_stop(m) and m.passenger_present is True,
        rearm_s=60,
    ),
    _Cond(
        "entrapment",
        "at_landing",
        "entrapment_at_landing_s",
        lambda m: (
            m.stationary
            and m.door_zone
            and m.door_state == "locked"
            and m.passenger_present is True
            and m.mode == "normal"
        ),
        rearm_s=60,
    ),
    _Cond("door_open_too_long", None, "door_open_too_long_s", lambda m: not m.doors_closed),
    _Cond("run_timeout", None, "run_timeout_s", lambda m: m.car_running),
    _Cond(
        "position_lost",
        None,
        "position_lost_s",
        lambda m: m.position_lost and m.mode == "normal",
    ),
    _Cond(
        "power_failure",
        None,
        "power_failure_s",
        lambda m: m.power != "mains",
        rearm_s=30,
        critical_if=lambda m: m.passenger_present is True and not m.door_zone,
    ),
    _Cond("backup_battery_low", None, "battery_low_s", lambda m: int(m.battery) < 30, 600),
    _Cond("overspeed", None, "overspeed_s", lambda m: m.speed_band() == 3, rearm_s=15),
    _Cond(
        "door_open_while_running",
        None,
        "door_open_while_running_s",
        lambda m: (
            m.car_running and m.run_started_closed and m.speed_band() >= 2 and not m.doors_closed
        ),
    ),
    _Cond(
        "unintended_car_movement",
        None,
        "unintended_car_movement",
        lambda m: (
            m.car_running
            and not m.run_started_closed
            and m.mode != "inspection"
            and (not m.door_zone or m.speed_band() >= 2)
        ),
        rearm_s=10**9,  # never clears by itself: one alarm until the end of alarm
    ),
    _Cond("overtravel_top", None, "overtravel_top", lambda m: m.up_limit, rearm_s=10**9),
    _Cond("overtravel_bottom", None, "overtravel_bottom", lambda m: m.down_limit, rearm_s=10**9),
)
_IMMEDIATE = {"unintended_car_movement": 0.0, "overtravel_top": 0.0, "overtravel_bottom": 0.0}
_DEVICE_SOURCED = frozenset({"overtravel_top", "overtravel_bottom"})


class _Interval:
    __slots__ = ("critical", "mode", "onset")

    def __init__(self, onset: int, mode: str, critical: bool) -> None:
        self.onset, self.mode, self.critical = onset, mode, critical


class LiftTruth:
    """Tracks one lift's conditions; attach with ``model.watchers.append(truth)``."""

    def __init__(self, lift_id: str, overrides: Mapping[str, float], sink: list[Label]) -> None:
        self.lift_id = lift_id
        self.overrides = dict(overrides)
        self.sink = sink
        self._open: dict[int, _Interval] = {}
        self._last_end: dict[int, int] = {}
        self._cycling_since: int | None = None
        self._cycling_labelled = False
        self._last_valid_ms: int | None = None
        self._will_ms: int | None = None
        self._selftests: list[int] = []

    # ---------------------------------------------------------------- state conditions ----
    def __call__(self, model: LiftModel) -> None:
        now = model.t
        for i, cond in enumerate(_CONDITIONS):
            holds = cond.holds(model)
            cur = self._open.get(i)
            if cur is not None and (not holds or cur.mode != model.mode):
                self._close(i, cond, cur, now)
                cur = None
            if holds and cur is None:
                critical = bool(cond.critical_if and cond.critical_if(model))
                self._open[i] = _Interval(now, model.mode, critical)
        self._door_cycling(model)

    def _threshold(self, cond: _Cond) -> float:
        if cond.code in _IMMEDIATE:
            return _IMMEDIATE[cond.code]
        return threshold(self.overrides, cond.key)

    def _close(self, i: int, cond: _Cond, iv: _Interval, end: int) -> None:
        del self._open[i]
        previous_end = self._last_end.get(i)
        self._last_end[i] = end
        thr = self._threshold(cond)
        duration = (end - iv.onset) / 1000
        source: Literal["rule", "device"] = "device" if cond.code in _DEVICE_SOURCED else "rule"
        muted = suppressed(cond.code, iv.mode, source)
        if cond.code == "stopped_outside_zone" and iv.mode not in SPECIAL_MODES | {
            "normal",
            "inspection",
        }:
            muted = None  # the rule only speaks of mode normal
        immediate = cond.code in _IMMEDIATE
        rearmed = previous_end is not None and iv.onset - previous_end < cond.rearm_s * 1000
        margin = 0.5 if immediate else MARGIN_S
        if duration >= thr + margin:
            if muted is None or rearmed:
                verdict: Verdict | None = "allow"
            else:
                verdict = "forbid" if muted else "raise"
        elif duration > thr - margin and not immediate:
            verdict = "allow"
        elif duration >= max(1.0, thr / 2) and not muted:
            verdict = "forbid"  # a condition cut short: raising it would be a false alarm
        else:
            verdict = None
        if verdict is None:
            return
        severity = SEVERITY[cond.code]
        if cond.code == "power_failure" and iv.critical:
            severity = "critical"
        self.sink.append(
            Label(
                lift_id=self.lift_id,
                code=cond.code,
                subtype=cond.subtype,
                expect=verdict,
                onset_ms=iv.onset,
                threshold_s=thr,
                severity=severity,
                until_ms=end if verdict != "raise" else None,
                source=source,
                cause=f"{cond.code} held {duration:.1f} s in mode {iv.mode}",
            )
        )

    def _door_cycling(self, model: LiftModel) -> None:
        window = threshold(self.overrides, "door_cycling_window_s") * 1000
        now = model.t
        recent = [t for t in model.door_transitions if now - t <= window]
        last_change = model.door_transitions[-1] if model.door_transitions else None
        episode_over = model.car_running or (last_change is not None and now - last_change > 30_000)
        if episode_over:
            self._cycling_since, self._cycling_labelled = None, False
            return
        if (
            model.stationary
            and len(recent) >= 6
            and not self._cycling_labelled
            and recent[-1] == now
        ):
            self._cycling_labelled = True
            muted = suppressed("door_cycling", model.mode)
            self.sink.append(
                Label(
                    lift_id=self.lift_id,
                    code="door_cycling",
                    expect="forbid" if muted else "raise",
                    onset_ms=now,
                    threshold_s=0.0,
                    severity="minor",
                    until_ms=now + 30_000 if muted else None,
                    cause=f"{len(recent)} door transitions within {window / 1000:.0f} s",
                )
            )

    # ------------------------------------------------------------------ message stream ----
    def published(self, at_ms: int, kind: str, body: Mapping[str, Any] | None) -> None:
        """Every valid message the device put on the wire (offline and self-test rules)."""
        if kind == "status":
            return
        self._offline_gap(at_ms)
        self._last_valid_ms = at_ms
        self._will_ms = None
        if body is not None and body.get("type") == "selftest" and body.get("result") == "ok":
            self._selftests.append(at_ms)

    def link_down(self, at_ms: int) -> None:
        self._will_ms = at_ms

    def _offline_gap(self, until_ms: int) -> None:
        if self._last_valid_ms is None:
            return
        timeout = threshold(self.overrides, "device_offline_s")
        onset, thr = self._last_valid_ms, timeout
        if self._will_ms is not None:
            after_will = threshold(self.overrides, "device_offline_after_will_s")
            will_due = self._will_ms + after_will * 1000
            if will_due < onset + timeout * 1000:
                onset, thr = self._will_ms, after_will
        gap = (until_ms - onset) / 1000
        if gap >= thr + MARGIN_S:
            verdict: Verdict | None = "raise"
        elif gap > thr - MARGIN_S:
            verdict = "allow"
        elif gap >= max(5.0, thr / 2):
            verdict = "forbid"
        else:
            verdict = None
        if verdict is not None:
            self.sink.append(
                Label(
                    lift_id=self.lift_id,
                    code="device_offline",
                    expect=verdict,
                    onset_ms=onset,
                    threshold_s=thr,
                    severity="major",
                    until_ms=until_ms if verdict != "raise" else None,
                    cause=f"no valid message for {gap:.1f} s"
                    + (" after the Last Will" if self._will_ms is not None else ""),
                )
            )

    # ------------------------------------------------------------------------- finish ----
    def finish(self, end_ms: int) -> None:
        """Close open intervals at the end of the run (a raise needs its threshold passed)."""
        for i, iv in list(self._open.items()):
            self._close(i, _CONDITIONS[i], iv, end_ms)
        self._offline_gap(end_ms)
        self._selftest_overdue(end_ms)

    def _selftest_overdue(self, end_ms: int) -> None:
        thr = threshold(self.overrides, "alarm_test_overdue_h")
        points = [*self._selftests, end_ms]
        for start, stop in itertools.pairwise(points):
            gap = (stop - start) / 1000
            if gap >= thr + MARGIN_S:
                verdict: Verdict = "raise"
            elif gap > thr - MARGIN_S:
                verdict = "allow"
            else:
                continue
            self.sink.append(
                Label(
                    lift_id=self.lift_id,
                    code="alarm_test_overdue",
                    expect=verdict,
                    onset_ms=start,
                    threshold_s=thr,
                    severity="minor",
                    until_ms=stop if verdict != "raise" else None,
                    cause=f"no self-test ok for {gap:.0f} s",
                )
            )


def forbid_everything(lift_id: str, start_ms: int, end_ms: int, cause: str) -> Label:
    """A control lift: nothing at all may be raised for it (code ``*``)."""
    return Label(
        lift_id=lift_id,
        code="*",
        expect="forbid",
        onset_ms=start_ms,
        threshold_s=0.0,
        severity="none",
        until_ms=end_ms,
        cause=cause,
    )
