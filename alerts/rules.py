"""Rule evaluation: pure functions over a lift's live state and liftwatch's clock.

:func:`on_message` applies one decoded message to a :class:`LiftState` and returns the
:class:`Signal` s it causes plus the next time (epoch ms) the lift's rules need looking at
without a message (a duration reached, a clear hold passed, the device silent too long);
:func:`on_tick` is the same evaluation at that time. No I/O: the engine turns signals into
lifecycle steps and the deadline into one scheduler entry per lift.

Durations are measured on liftwatch's clock from the first message on which the condition
held (FAULTS.md § Terms); the live state holds until a newer message changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from alerts.lifecycle import Policy
from alerts.state import CONDITION_SOURCES, LIMIT, CondKey, LiftState, alarm_source
from liftwatch.faults import info, reported_code
from liftwatch.protocol import (
    AlarmButtonEvent,
    Decoded,
    EndOfAlarmEvent,
    FaultEvent,
    SelftestEvent,
    Status,
    Telemetry,
    format_ts,
)
from liftwatch.thresholds import Thresholds

NEVER: Final = 1 << 62
LATE_SLACK_MS: Final = 2000  # a raise this far behind liftwatch's clock is marked late


@dataclass(slots=True)
class Signal:
    kind: str  # "raise", "clear", "end_of_alarm", "selftest_ok", "duplicate" (a marker)
    code: str = ""
    subtype: str | None = None
    source: str = "rule"
    severity: str = ""
    suspected: bool = False
    evidence: dict[str, Any] | None = None
    note: str | None = None
    at: int | None = None  # end_of_alarm: when liftwatch received the event


@dataclass(slots=True)
class Context:
    """What the rules need to know about the lift beyond its messages."""

    p: Thresholds
    rated_speed: float | None = None  # None: unknown, no overspeed check (FAULTS.md 1.1 #2)
    button_unresolved: bool = False  # EN 81-28: filtering is bypassed once an alarm stands
    policy: Policy = field(default_factory=Policy)  # escalation, auto-resolve, flood (per lift)


DUPLICATE: Final[tuple[list[Signal], int]] = ([], NEVER)

_ENTRAP_OUT: Final[CondKey] = ("entrapment", "outside_zone", "rule")
_ENTRAP_LANDING: Final[CondKey] = ("entrapment", "at_landing", "rule")
_STOPPED_OUT: Final[CondKey] = ("stopped_outside_zone", None, "rule")
_POSITION: Final[CondKey] = ("position_lost", None, "rule")
_RUN_TIMEOUT: Final[CondKey] = ("run_timeout", None, "rule")
_POWER: Final[CondKey] = ("power_failure", None, "rule")
_DOOR_OPEN: Final[CondKey] = ("door_open_too_long", None, "rule")
_BATTERY: Final[CondKey] = ("backup_battery_low", None, "rule")
_OVERSPEED: Final[CondKey] = ("overspeed", None, "rule")
_DOOR_RUN: Final[CondKey] = ("door_open_while_running", None, "rule")
_UCM: Final[CondKey] = ("unintended_car_movement", None, "rule")
_TOP: Final[CondKey] = ("overtravel_top", None, LIMIT)
_BOTTOM: Final[CondKey] = ("overtravel_bottom", None, LIMIT)
_SAFETY: Final[CondKey] = ("safety_circuit_open", None, "rule")
_CYCLING: Final[CondKey] = ("door_cycling", None, "rule")
_OFFLINE: Final[CondKey] = ("device_offline", None, "rule")
_SELFTEST: Final[CondKey] = ("alarm_test_overdue", None, "rule")
_NO_CONDS: Final[dict[CondKey, object]] = {}


def evidence(st: LiftState, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state snapshot an alarm records at raise time (FAULTS.md § Terms)."""
    out: dict[str, Any] = {}
    if st.tel is not None:
        snap = msgspec.to_builtins(st.tel)
        out = {k: v for k, v in snap.items() if v is not None and k != "v"}
        out["ts"] = format_ts(st.ts_ms)
    if extra:
        out.update(extra)
    return out


def on_message(st: LiftState, msg: Decoded, now: int, ctx: Context) -> tuple[list[Signal], int]:
    """Apply one message. Returns ``(signals, next deadline)``; an exact duplicate returns
    :data:`DUPLICATE` (or signals led by a ``duplicate`` marker, see :func:`_duplicate`) and
    changes nothing but the lift's liveness."""
    out: list[Signal] = []
    body = msg.body
    if isinstance(body, Status):
        if msg.retained:
            # PROTOCOL.md 1.1: the broker's retained status, replayed on (re)subscription, is
            # not news. It sets the connection state, but proves nothing about liveness and
            # does not restart the offline timer: a retained Last Will counts from the last
            # valid message, not from now.
            if body.state == "offline":
                if st.will_at is None:
                    st.will_at = st.last_valid_ms
            else:
                st.will_at = None
        elif body.state == "offline":
            st.will_at = now
        else:
            _alive(st, now, out)
        return out, _evaluate(st, now, ctx, out, new_message=False)
    if not st.accept(body.seq, body.ts):
        return _duplicate(st, now, ctx)
    _alive(st, now, out)
    if isinstance(body, Telemetry):
        if not st.newer(body.seq, msg.ts_ms):
            # Late: history only. The live state never moves backwards (PROTOCOL.md 1.1 §
            # Order: by seq within a run of the device, so a clock step never freezes it).
            return out, _evaluate(st, now, ctx, out, new_message=False)
        eff = st.advance(now, msg.ts_ms)
        _telemetry(st, body, msg.ts_ms, eff, ctx, out)
        return out, _evaluate(st, now, ctx, out, new_message=True)
    _event(st, body, msg, st.time_at(now), ctx, out)
    return out, _evaluate(st, now, ctx, out, new_message=False)


def _duplicate(st: LiftState, now: int, ctx: Context) -> tuple[list[Signal], int]:
    """A redelivery is not evaluated again, but it is still a valid message: it proves the
    device alive (FAULTS.md device_offline). Usually that only moves ``last_valid_ms`` (the
    lift's timer then fires early and re-arms); the rare redelivery that ends an offline
    alarm or a Last Will timer returns its signals, led by a ``duplicate`` marker."""
    conds = st.conds
    offline = conds.get(_OFFLINE) if conds else None
    if st.will_at is None and (offline is None or not offline.active):
        st.last_valid_ms = now
        return DUPLICATE
    out = [Signal("duplicate")]
    _alive(st, now, out)
    return out, _evaluate(st, now, ctx, out, new_message=False)


def on_tick(st: LiftState, now: int, ctx: Context) -> tuple[list[Signal], int]:
    """Evaluate the duration rules at ``now`` with the live state unchanged."""
    out: list[Signal] = []
    return out, _evaluate(st, now, ctx, out, new_message=False)


# --- message handling --------------------------------------------------------------------


def _alive(st: LiftState, now: int, out: list[Signal]) -> None:
    st.last_valid_ms = now
    st.will_at = None
    if not st.conds:
        return
    c = st.conds.get(_OFFLINE)
    if c is not None and c.active:
        c.active, c.since = False, None
        out.append(Signal("clear", "device_offline"))


def _raise(
    st: LiftState,
    key: CondKey,
    out: list[Signal],
    *,
    severity: str | None = None,
    suspected: bool = False,
    extra: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    code, subtype, source = key
    if st.lag_ms > LATE_SLACK_MS:
        # Raised on evidence that arrived late in a burst (FAULTS.md 1.1 #7).
        extra = {**(extra or {}), "late": True, "late_by_s": round(st.lag_ms / 1000, 1)}
    out.append(
        Signal(
            "raise",
            code,
            subtype,
            alarm_source(source),
            severity or info(code).severity,
            suspected,
            evidence(st, extra),
            note,
        )
    )


def _clear(st: LiftState, key: CondKey, out: list[Signal]) -> None:
    """Clear the alarm's condition unless another source still reports it."""
    code, subtype, source = key
    conds = st.conds
    if conds:
        for other in CONDITION_SOURCES:
            c = conds.get((code, subtype, other)) if other != source else None
            if c is not None and c.active:
                return
    out.append(Signal("clear", code, subtype, alarm_source(source)))


def _limit(st: LiftState, key: CondKey, operated: bool, out: list[Signal]) -> None:
    """A final limit switch: a reported alarm, raised at once; its condition clears when the
    switch resets (the critical alarm itself waits for an end of alarm)."""
    c = st.peek(key)
    if operated:
        if c is None or not c.active:
            st.cond(key).active = True
            _raise(
                st, key, out, extra={"limit_switch": "up_limit" if key == _TOP else "down_limit"}
            )
    elif c is not None and c.active:
        c.active = False
        _clear(st, key, out)


def _telemetry(
    st: LiftState, tel: Telemetry, ts_ms: int, now: int, ctx: Context, out: list[Signal]
) -> None:
    p = ctx.p
    prev = st.tel
    running = tel.car_status == "running"
    speed = tel.speed
    moving = running or (speed is not None and abs(speed) >= p.stationary_speed)
    if running:
        if st.run_since is None:
            st.run_since = now
            st.run_started_closed = tel.doors_closed
    else:
        st.run_since = None
    if moving and not st.moving:
        st.move_started_open = not tel.doors_closed
    st.moving = moving
    if moving:
        st.door_changes = ()
    elif prev is not None and prev.doors_closed != tel.doors_closed:
        st.door_changes = (*st.door_changes[-(p.door_cycling_changes - 1) :], now)
    prev_running = prev is not None and prev.car_status == "running"
    prev_circuit = prev.safety_circuit if prev is not None else None
    prev_button = prev.alarm_button if prev is not None else None
    st.tel, st.ts_ms, st.seq = tel, ts_ms, tel.seq

    safety = st.peek(_SAFETY)
    if tel.safety_circuit == "open" and prev_circuit != "open" and (running or prev_running):
        if safety is None or not safety.active:
            st.cond(_SAFETY).active = True
            _raise(st, _SAFETY, out)
    elif (
        safety is not None
        and safety.active
        and tel.safety_circuit == "closed"
        and prev_circuit == "closed"
        and prev_running
        and not running
        and tel.service_mode == "normal"
    ):
        # Circuit closed again and one normal run completed with it closed.
        safety.active = False
        _clear(st, _SAFETY, out)

    if tel.controller_faults is not None:
        _controller_faults(st, tel, out)

    if tel.alarm_button is True and not prev_button:
        if not st.btn_pressed:  # held since an alarm_button event: the same press (1.1 #3)
            _press(st, now, ctx, out, "telemetry")
    elif tel.alarm_button is False and st.btn_pressed:
        st.btn_pressed = st.btn_pending = False


def _controller_faults(st: LiftState, tel: Telemetry, out: list[Signal]) -> None:
    """``controller_faults`` lists the faults active now: new ones raise, missing ones clear."""
    present: set[CondKey] = set()
    for fault in tel.controller_faults or ():
        code, subtype = reported_code(fault.namespace, fault.code)
        key = (code, subtype, "device")
        present.add(key)
        c = st.cond(key)
        if not c.active:
            c.active = True
            _raise(st, key, out, extra=_fault_extra(fault.namespace, fault.code, fault.text))
    if st.conds:
        for key, c in list(st.conds.items()):
            if key[2] == "device" and c.active and key not in present:
                c.active = False
                _clear(st, key, out)


def _fault_extra(namespace: str, code: int | str, text: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"fault": {"namespace": namespace, "code": code}}
    if text:
        extra["fault"]["text"] = text
    return extra


def _press(st: LiftState, now: int, ctx: Context, out: list[Signal], via: str) -> None:
    """FAULTS.md alarm_button: filtered only while running normally or doors open at a
    landing; the filter is bypassed when held 30 s, pressed again within 60 s, or while an
    alarm of the button already stands."""
    p, tel = ctx.p, st.tel
    filtered = _button_filtered(tel)
    repeat = st.btn_last_press is not None and now - st.btn_last_press <= p.alarm_button_repeat_ms
    st.btn_last_press = now
    st.btn_pressed, st.btn_since = True, now
    if filtered and not repeat and not ctx.button_unresolved:
        st.btn_pending = True
        return
    st.btn_pending = False
    note = None
    if filtered:
        note = "filter bypassed: pressed again within the repeat window" if repeat else None
    _raise(st, ("alarm_button", None, "device"), out, extra={"via": via}, note=note)


def _button_filtered(tel: Telemetry | None) -> bool:
    """FAULTS.md: a press is ignored only while the car runs normally or stands open at a
    landing."""
    return tel is not None and (
        (tel.car_status == "running" and tel.service_mode == "normal")
        or (tel.door_zone and not tel.doors_closed)
    )


def _event(
    st: LiftState,
    body: AlarmButtonEvent | FaultEvent | SelftestEvent | EndOfAlarmEvent,
    msg: Decoded,
    now: int,
    ctx: Context,
    out: list[Signal],
) -> None:
    if isinstance(body, AlarmButtonEvent):
        if body.pressed:
            held = st.tel is not None and st.tel.alarm_button is True
            if not (st.btn_pressed and held):  # already seen in telemetry: the same press
                _press(st, now, ctx, out, "event")
        else:
            st.btn_pressed = st.btn_pending = False
    elif isinstance(body, FaultEvent):
        code, subtype = reported_code(body.namespace, body.code)
        key = (code, subtype, "device")
        c = st.peek(key)
        if body.active:
            if c is None or not c.active:
                st.cond(key).active = True
                extra = _fault_extra(body.namespace, body.code, body.text)
                extra["event_ts"] = format_ts(msg.ts_ms)
                _raise(st, key, out, extra=extra)
        elif c is not None and c.active:
            c.active = False
            _clear(st, key, out)
    elif isinstance(body, SelftestEvent):
        if body.result == "ok":
            st.selftest_ok_at = now
            out.append(Signal("selftest_ok"))
            c = st.peek(_SELFTEST)
            if c is not None and c.active:
                c.active = False
                _clear(st, _SELFTEST, out)
    else:
        st.btn_pending = False
        out.append(Signal("end_of_alarm", note=body.by, at=msg.received_ms))


# --- duration rules --------------------------------------------------------------------


def _timed(
    st: LiftState,
    key: CondKey,
    holds: bool,
    threshold: int,
    clear_hold: int | None,
    now: int,
    out: list[Signal],
    new_message: bool,
    *,
    min_count: int = 1,
    not_before: int = 0,
    never_clears: bool = False,
    severity: str | None = None,
    suspected: bool = False,
) -> int:
    """One duration condition. ``clear_hold`` is None while the clear predicate is false,
    else how long it must hold. Returns this condition's next deadline."""
    conds = st.conds
    c = conds.get(key) if conds else None
    if c is None or not c.active:
        if not holds:
            if c is not None:
                c.since, c.count = None, 0
            return NEVER
        if c is None:
            c = st.cond(key)
        if c.since is None:
            c.since, c.count = now, 0
        if new_message:
            c.count += 1
        if c.count < min_count:
            return NEVER
        due = max(c.since + threshold, not_before)
        if now < due:
            return due
        c.active, c.clear_since = True, None
        held = {"held_since": format_ts(c.since)} if threshold else None
        _raise(st, key, out, severity=severity, suspected=suspected, extra=held)
        return NEVER
    if never_clears:
        if not holds:  # rearm silently: the alarm itself waits for an end of alarm
            c.active, c.since, c.count = False, None, 0
        return NEVER
    if clear_hold is None:
        c.clear_since = None
        return NEVER
    if c.clear_since is None:
        c.clear_since = now
    due = c.clear_since + clear_hold
    if now < due:
        return due
    c.active, c.since, c.count, c.clear_since = False, None, 0, None
    _clear(st, key, out)
    if key[0] == "entrapment":
        st.entrap_cleared_at = now
    return NEVER


def _evaluate(st: LiftState, now: int, ctx: Context, out: list[Signal], new_message: bool) -> int:
    """Every rule at liftwatch's ``now``: liveness and the self-test clock on liftwatch's clock,
    the duration rules in the lift's time (:meth:`LiftState.time_at`, FAULTS.md 1.1 #7).
    Returns the next deadline on liftwatch's clock."""
    p = ctx.p
    due = _silence(st, now, p, out)
    if st.selftest_ok_at is not None:
        c = st.conds.get(_SELFTEST) if st.conds else None
        if c is None or not c.active:
            test_due = st.selftest_ok_at + p.selftest_ms
            if now >= test_due:
                st.cond(_SELFTEST).active = True
                _raise(st, _SELFTEST, out, extra={"last_ok": format_ts(st.selftest_ok_at)})
            elif test_due < due:
                due = test_due
    eff = st.time_at(now)
    lag = st.lag_ms
    d = _durations(st, eff, ctx, out, new_message)
    return min(due, d + lag) if d < NEVER else due


def _durations(st: LiftState, now: int, ctx: Context, out: list[Signal], new_message: bool) -> int:
    """The duration rules at the lift's time ``now``; returns their next deadline in it."""
    p = ctx.p
    due = NEVER
    if st.btn_pending and st.btn_pressed:
        hold_due = st.btn_since + p.alarm_button_hold_ms
        # FAULTS.md 1.1 #3: judged while held; once the car is neither running normally nor
        # open at a landing the press counts now, else after the hold.
        why = None
        if not _button_filtered(st.tel):
            why = "filter ended while the button was held"
        elif now >= hold_due:
            why = "filter bypassed: held"
        if why is not None:
            st.btn_pending = False
            held = {"held_since": format_ts(st.btn_since)}
            _raise(st, ("alarm_button", None, "device"), out, extra=held, note=why)
        elif hold_due < due:
            due = hold_due
    tel = st.tel
    if tel is None:
        return due

    running = tel.car_status == "running"
    speed = tel.speed
    aspeed = abs(speed) if speed is not None else None
    stationary = not running and (aspeed is None or aspeed < p.stationary_speed)
    mode = tel.service_mode
    normal = mode == "normal"
    zone, closed = tel.door_zone, tel.doors_closed
    present = tel.passenger_present is True
    conds = st.conds or _NO_CONDS
    # Each rule below is skipped outright when its predicate is false and nothing is being
    # timed or latched for it: the common case, and what keeps a message in microseconds.

    if present or _ENTRAP_OUT in conds or _ENTRAP_LANDING in conds:
        # Entrapment clears when doors open in a door zone, or the car runs for 2 s.
        if zone and not closed:
            entrap_clear: int | None = 0
        elif running:
            entrap_clear = p.entrapment_clear_run_ms
        else:
            entrap_clear = None
        cleared_at = st.entrap_cleared_at
        rearm = cleared_at + p.entrapment_rearm_ms if cleared_at is not None else 0
        holds = stationary and not zone and present and mode != "inspection"
        if holds or _ENTRAP_OUT in conds:
            d = _timed(
                st,
                _ENTRAP_OUT,
                holds,
                p.entrapment_ms,
                entrap_clear,
                now,
                out,
                new_message,
                not_before=rearm,
            )
            due = d if d < due else due
        holds = (
            stationary
            and zone
            and closed
            and present
            and normal
            and tel.door_state not in ("open", "opening")
        )
        if holds or _ENTRAP_LANDING in conds:
            d = _timed(
                st,
                _ENTRAP_LANDING,
                holds,
                p.entrapment_at_landing_ms,
                entrap_clear,
                now,
                out,
                new_message,
                not_before=rearm,
                suspected=True,
            )
            due = d if d < due else due
    holds = stationary and not zone and normal
    if holds or _STOPPED_OUT in conds:
        d = _timed(
            st,
            _STOPPED_OUT,
            holds,
            p.stopped_outside_zone_ms,
            0 if zone or running else None,
            now,
            out,
            new_message,
        )
        due = d if d < due else due
    holds = tel.floor is None and normal
    if holds or _POSITION in conds:
        d = _timed(
            st,
            _POSITION,
            holds,
            p.position_lost_ms,
            0 if tel.floor is not None else None,
            now,
            out,
            new_message,
        )
        due = d if d < due else due
    if running or _RUN_TIMEOUT in conds:
        d = _timed(
            st,
            _RUN_TIMEOUT,
            running,
            p.run_timeout_ms,
            None if running else 0,
            now,
            out,
            new_message,
        )
        due = d if d < due else due
    holds = not closed and normal
    if holds or _DOOR_OPEN in conds:
        d = _timed(
            st,
            _DOOR_OPEN,
            holds,
            p.door_open_too_long_ms,
            0 if closed else None,
            now,
            out,
            new_message,
        )
        due = d if d < due else due
    power = tel.power_source
    if power is not None and (power != "mains" or _POWER in conds):
        d = _timed(
            st,
            _POWER,
            power != "mains",
            p.power_failure_ms,
            p.power_failure_clear_ms if power == "mains" else None,
            now,
            out,
            new_message,
            severity="critical" if present and not zone else "major",
        )
        due = d if d < due else due
    battery = tel.battery
    if battery is not None:
        low = battery < p.battery_low_pct
        if low or _BATTERY in conds:
            d = _timed(
                st,
                _BATTERY,
                low,
                p.battery_low_ms,
                None if low else p.battery_clear_ms,
                now,
                out,
                new_message,
            )
            due = d if d < due else due
    rated = ctx.rated_speed
    if aspeed is not None and rated is not None:
        holds = aspeed > p.overspeed_factor * rated
        if holds or _OVERSPEED in conds:
            d = _timed(
                st,
                _OVERSPEED,
                holds,
                p.overspeed_ms,
                p.overspeed_clear_ms if aspeed <= rated else None,
                now,
                out,
                new_message,
                min_count=2,
            )
            due = d if d < due else due
    if not closed or st.move_started_open or _DOOR_RUN in conds or _UCM in conds:
        fast = aspeed is None or aspeed > p.moving_speed
        holds = running and st.run_started_closed and not closed and fast
        if holds or _DOOR_RUN in conds:
            slow = aspeed is not None and aspeed < p.moving_speed
            d = _timed(
                st,
                _DOOR_RUN,
                holds,
                p.door_open_while_running_ms,
                0 if closed or not running or slow else None,
                now,
                out,
                new_message,
                min_count=2,
            )
            due = d if d < due else due
        holds = (
            st.moving
            and st.move_started_open
            and (not zone or (aspeed is not None and aspeed > p.moving_speed))
            and mode != "inspection"
        )
        if holds or _UCM in conds:
            _timed(
                st,
                _UCM,
                holds,
                0,
                None,
                now,
                out,
                new_message,
                min_count=p.unintended_movement_messages,
                never_clears=True,
            )
    if tel.up_limit is not None and (tel.up_limit or _TOP in conds):
        _limit(st, _TOP, tel.up_limit, out)
    if tel.down_limit is not None and (tel.down_limit or _BOTTOM in conds):
        _limit(st, _BOTTOM, tel.down_limit, out)
    if st.door_changes or _CYCLING in conds:
        d = _door_cycling(st, now, p, out, new_message)
        due = d if d < due else due
    return due


def _door_cycling(
    st: LiftState, now: int, p: Thresholds, out: list[Signal], new_message: bool
) -> int:
    c = st.peek(_CYCLING)
    changes = st.door_changes
    if c is not None and c.active:
        if st.moving:
            c.active = False
            _clear(st, _CYCLING, out)
            return NEVER
        quiet_due = (changes[-1] if changes else now) + p.door_cycling_quiet_ms
        if now >= quiet_due:
            c.active = False
            st.door_changes = ()
            _clear(st, _CYCLING, out)
            return NEVER
        return quiet_due
    n = p.door_cycling_changes
    if new_message and len(changes) >= n and changes[-1] - changes[-n] <= p.door_cycling_window_ms:
        st.cond(_CYCLING).active = True
        _raise(st, _CYCLING, out, extra={"door_changes": len(changes)})
        return changes[-1] + p.door_cycling_quiet_ms
    return NEVER


def _silence(st: LiftState, now: int, p: Thresholds, out: list[Signal]) -> int:
    """device_offline: no valid message for 180 s, or a Last Will ``offline`` followed by
    60 s without a message."""
    conds = st.conds
    if conds and _OFFLINE in conds and conds[_OFFLINE].active:
        return NEVER
    due = st.last_valid_ms + p.offline_ms
    if st.will_at is not None:
        due = min(due, st.will_at + p.offline_after_will_ms)
    if now < due:
        return due
    st.cond(_OFFLINE).active = True
    silent = {"last_message_at": format_ts(st.last_valid_ms)}
    if st.will_at is not None:
        silent["offline_status_at"] = format_ts(st.will_at)
    _raise(st, _OFFLINE, out, extra=silent)
    return NEVER
