"""The alarm lifecycle of FAULTS.md § Lifecycle, over the store.

The store is the source of truth for an alarm's status: the API (possibly in another process)
acknowledges, marks on site and resolves concurrently, so every step here re-reads the alarm
inside its write transaction before acting. Each transition writes its history row and, unless
the alarm is suppressed, its outbox row in that same transaction.

Public transition API (called by the HTTP API): :func:`acknowledge`, :func:`mark_on_site`,
:func:`resolve`. Invalid steps raise :class:`InvalidTransition` (HTTP 409), an unknown alarm
:class:`AlarmNotFound` (404), a bad outcome :class:`InvalidOutcome` (422). Pass the running
engine as ``listener`` so it learns of the transition at once (stops escalation timers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from liftwatch import clock
from liftwatch.protocol import format_ts
from liftwatch.store import alarms as store
from liftwatch.store import maintenance, outbox
from liftwatch.store.alarms import Alarm, Transition
from liftwatch.store.db import Connection, Database

MAX_NOTE: Final = 2000
FLOOD_LIMIT: Final = 3
HOUR_MS: Final = 3_600_000
FLOOD_CONTROL: Final = "flood_control"
# Resolving from the device: EN 81-28 "end of alarm" means a competent person at the
# installation confirmed no one is trapped (or the fault is dealt with).
_END_OF_ALARM_OUTCOME: Final = {"entrapment": "rescued", "alarm_button": "rescued"}


class LifecycleError(Exception):
    """Base of the transition API's errors."""


class AlarmNotFound(LifecycleError):
    def __init__(self, alarm_id: str) -> None:
        super().__init__(f"no alarm {alarm_id!r}")
        self.alarm_id = alarm_id


class InvalidTransition(LifecycleError):
    """The requested step is not allowed from the alarm's current status (HTTP 409)."""

    def __init__(self, alarm_id: str, status: str, wanted: str) -> None:
        super().__init__(
            f"alarm {alarm_id} is {status}: it cannot become {wanted}"
            " (status only moves forward: open → acknowledged → on_site → resolved)"
        )
        self.alarm_id, self.status, self.wanted = alarm_id, status, wanted


class InvalidOutcome(LifecycleError, ValueError):
    def __init__(self, outcome: str) -> None:
        super().__init__(f"outcome {outcome[:40]!r} is not one of {', '.join(store.OUTCOMES)}")


@dataclass(frozen=True, slots=True)
class Change:
    """One committed transition: what the engine re-arms timers from and what InfluxDB gets."""

    alarm: Alarm
    transition: Transition


class Listener(Protocol):
    def alarm_changed(self, changes: Sequence[Change]) -> None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    escalate_every_ms: int = 300_000
    deadline_urban_ms: int = 1_800_000
    deadline_rural_ms: int = 3_600_000
    auto_resolve_ms: int = 60_000  # 0 disables auto-resolution of major/minor alarms
    flood_limit: int = FLOOD_LIMIT
    flood_window_ms: int = HOUR_MS


def _record(
    conn: Connection,
    alarm: Alarm,
    out: list[Change],
    *,
    at: int,
    event: str,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    note: str | None = None,
    notify: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    alarm.updated_at = at
    store.save_alarm(conn, alarm)
    t = Transition(alarm.alarm_id, at, event, from_state, to_state, actor, note)
    t = store.add_transition(conn, t)
    if notify is not None and notifies(alarm):
        outbox.add_outbox(conn, alarm, notify, at, extra=extra)
    out.append(Change(replace(alarm), t))


# --- the transition API -----------------------------------------------------------------------


def _step(
    db: Database,
    alarm_id: str,
    wanted: str,
    *,
    actor: str,
    note: str | None,
    at: int | None,
    outcome: str | None = None,
    listener: Listener | None = None,
) -> Alarm:
    at = clock.now_ms() if at is None else at
    note = None if note is None else note[:MAX_NOTE]
    out: list[Change] = []
    with db.transaction() as conn:
        alarm = store.get_alarm(conn, alarm_id)
        if alarm is None:
            raise AlarmNotFound(alarm_id)
        if store.STATUS_RANK[wanted] <= store.STATUS_RANK[alarm.status]:
            raise InvalidTransition(alarm_id, alarm.status, wanted)
        before = alarm.status
        alarm.status = wanted
        if wanted == "acknowledged":
            alarm.acknowledged_at = at
        elif wanted == "on_site":
            alarm.on_site_at = at
        else:
            alarm.resolved_at, alarm.outcome, alarm.resolved_by = at, outcome, actor
        _record(
            conn,
            alarm,
            out,
            at=at,
            event=wanted,
            from_state=before,
            to_state=wanted,
            actor=actor,
            note=note,
            notify=f"alarm.{wanted}",
        )
    if listener is not None:
        listener.alarm_changed(out)
    return alarm


def acknowledge(
    db: Database,
    alarm_id: str,
    *,
    actor: str,
    note: str | None = None,
    at: int | None = None,
    listener: Listener | None = None,
) -> Alarm:
    """The maintenance company has taken the alarm (处置响应). Stops escalation."""
    return _step(db, alarm_id, "acknowledged", actor=actor, note=note, at=at, listener=listener)


def mark_on_site(
    db: Database,
    alarm_id: str,
    *,
    actor: str,
    note: str | None = None,
    at: int | None = None,
    listener: Listener | None = None,
) -> Alarm:
    """A technician arrived (处置到场). May skip ``acknowledged``."""
    return _step(db, alarm_id, "on_site", actor=actor, note=note, at=at, listener=listener)


def resolve(
    db: Database,
    alarm_id: str,
    *,
    actor: str,
    outcome: str,
    note: str | None = None,
    at: int | None = None,
    listener: Listener | None = None,
) -> Alarm:
    """End the alarm (处置完成) with an outcome: rescued, repaired, false_alarm or test.

    An authorised call may resolve any alarm, including a critical one whose condition is
    still active (it is the API form of the EN 81-28 end of alarm)."""
    if outcome not in store.OUTCOMES:
        raise InvalidOutcome(outcome)
    return _step(
        db,
        alarm_id,
        "resolved",
        actor=actor,
        note=note,
        at=at,
        outcome=outcome,
        listener=listener,
    )


# --- steps driven by the engine (inside its transaction) ------------------------------------


@dataclass(slots=True)
class Raise:
    lift_id: str
    code: str
    subtype: str | None
    severity: str
    source: str
    at: int
    evidence: dict[str, Any]
    suspected: bool = False
    suppressed_reason: str | None = None  # decided from live state (mode, inactive lift)
    maintenance_applies: bool = False  # derived alarms are muted by maintenance windows
    company_id: str | None = None
    unregistered: bool = False
    deadline_ms: int | None = None  # arrival deadline for entrapment and alarm_button
    actor: str = "rule"
    note: str | None = None  # why the rule raised (e.g. "filter bypassed: held")


def raise_condition(conn: Connection, req: Raise, policy: Policy, out: list[Change]) -> Alarm:
    """A condition holds: raise a new alarm, re-activate the unresolved one (``occurrences``
    grows), or do nothing when it is already active. Idempotent, so a message redelivered
    after a crash never duplicates an alarm."""
    reason = req.suppressed_reason
    if (
        reason is None
        and req.maintenance_applies
        and maintenance.in_maintenance(conn, req.lift_id, req.at)
    ):
        reason = "maintenance_window"
    existing = store.find_unresolved(conn, req.lift_id, req.code, req.subtype)
    if existing is not None:
        if existing.condition == "cleared":
            existing.condition = "active"
            existing.occurrences += 1
            _record(
                conn,
                existing,
                out,
                at=req.at,
                event="condition_returned",
                from_state="cleared",
                to_state="active",
                actor=req.actor,
                notify="alarm.condition_returned",
            )
        if not pursued(existing) and not reason:
            _promote(conn, existing, req, out)
        return existing

    alarm = Alarm(
        alarm_id=store.new_alarm_id(req.at),
        lift_id=req.lift_id,
        code=req.code,
        subtype=req.subtype,
        severity=req.severity,
        source=req.source,
        status="open",
        condition="active",
        raised_at=req.at,
        updated_at=req.at,
        suspected=req.suspected,
        evidence=req.evidence,
        deadline_at=None if req.deadline_ms is None else req.at + req.deadline_ms,
        unregistered=req.unregistered,
        company_id=req.company_id,
    )
    if reason is None and req.severity != "critical":
        # FAULTS.md 1.1 #4: flood control collapses major and minor notifications only; the
        # summary goes out at the end of the hour (send_summary, armed by the engine).
        since = req.at - policy.flood_window_ms
        if store.recent_raises(conn, req.lift_id, req.code, since) >= policy.flood_limit:
            reason = FLOOD_CONTROL
    alarm.suppressed, alarm.suppressed_reason = reason is not None, reason
    if reason is None:
        alarm.notified_at = req.at  # a flood-collapsed one: when its summary is sent
    store.insert_alarm(conn, alarm)
    _record(
        conn,
        alarm,
        out,
        at=req.at,
        event="raised",
        from_state=None,
        to_state="open",
        actor=req.actor,
        note=_raise_note(reason, req.note),
        notify="alarm.raised",
    )
    return alarm


def _raise_note(reason: str | None, note: str | None) -> str | None:
    parts = [note] if note else []
    if reason is not None:
        parts.append(f"suppressed: {reason}")
    return "; ".join(parts) or None


def summary_due(alarm: Alarm, policy: Policy) -> int | None:
    """When the flood-control summary covering ``alarm`` is due: an hour after the first raise
    it collapsed (None when the alarm is not waiting for one)."""
    if alarm.suppressed_reason != FLOOD_CONTROL or alarm.notified_at is not None:
        return None
    return alarm.raised_at + policy.flood_window_ms


def send_summary(conn: Connection, lift_id: str, code: str, at: int, policy: Policy) -> bool:
    """The hourly flood-control summary of ``code`` on ``lift_id`` (FAULTS.md 1.1 #4): one
    ``alarm.summary`` covering every raise collapsed since the last summary; those alarms are
    then notified (``notified_at``). ``data`` is the latest collapsed alarm's full view, which
    says ``suppressed: true, suppressed_reason: flood_control`` like every alarm it covers.
    Returns whether a summary was written."""
    collapsed = store.flood_collapsed(conn, lift_id, code)
    if not collapsed:
        return False
    first, last = collapsed[0], collapsed[-1]
    extra = {
        "summary": {
            "code": code,
            "collapsed": len(collapsed),
            "alarm_ids": [a.alarm_id for a in collapsed],
            "first_raised_at": format_ts(first.raised_at),
            "last_raised_at": format_ts(last.raised_at),
            "window_start": format_ts(first.raised_at),
            "window_end": format_ts(at),
            "raises_last_hour": store.recent_raises(
                conn, lift_id, code, at - policy.flood_window_ms
            ),
            "note": "notifications of these raises were collapsed into this summary (flood"
            " control, major and minor alarms only); every alarm is recorded",
        }
    }
    latest = store.get_alarm(conn, last.alarm_id) or last
    outbox.add_outbox(conn, latest, "alarm.summary", at, extra=extra)
    store.mark_notified(conn, [a.alarm_id for a in collapsed], at)
    return True


def _promote(conn: Connection, alarm: Alarm, req: Raise, out: list[Change]) -> None:
    """Its suppression ended while the condition still holds: the alarm is raised for real,
    as news (FAULTS.md 1.1 #5): it carries the evidence of now, its ``raised_at`` is now (the
    first, muted raise stays in its transitions and in ``evidence.muted_since``), so the
    arrival deadline, escalation and response times count from the announcement."""
    before = alarm.suppressed_reason
    muted_since = alarm.raised_at
    alarm.suppressed, alarm.suppressed_reason = False, None
    if alarm.deadline_at is not None:
        alarm.deadline_at = req.at + (alarm.deadline_at - alarm.raised_at)
    alarm.raised_at = req.at
    alarm.evidence = {**req.evidence, "muted_since": format_ts(muted_since)}
    alarm.notified_at = req.at
    _record(
        conn,
        alarm,
        out,
        at=req.at,
        event="suppression_ended",
        from_state=before,
        to_state=None,
        actor=req.actor,
        note="suppression ended while the condition still holds",
        notify="alarm.raised",
    )


def clear_condition(
    conn: Connection,
    lift_id: str,
    code: str,
    subtype: str | None,
    at: int,
    out: list[Change],
    *,
    actor: str = "rule",
) -> Alarm | None:
    alarm = store.find_unresolved(conn, lift_id, code, subtype)
    if alarm is None or alarm.condition == "cleared":
        return alarm
    alarm.condition, alarm.cleared_at = "cleared", at
    _record(
        conn,
        alarm,
        out,
        at=at,
        event="condition_cleared",
        from_state="active",
        to_state="cleared",
        actor=actor,
        notify="alarm.condition_cleared",
    )
    return alarm


def auto_resolvable(alarm: Alarm) -> bool:
    """Major and minor alarms resolve by themselves. Critical alarms need an explicit end of
    alarm (FAULTS.md § Lifecycle), suppressed or not."""
    return alarm.severity != "critical"


def pursued(alarm: Alarm) -> bool:
    """Whether an unacknowledged critical alarm is escalated and an arrival deadline marks it
    overdue: every alarm but the muted ones (inspection, maintenance window, special mode).
    A flood-controlled alarm is pursued: flood control collapses repeated raise
    notifications into a summary, it does not make a trapped passenger's alarm any less
    real (EN 81-28: emitted until acknowledged)."""
    return not alarm.suppressed or alarm.suppressed_reason == FLOOD_CONTROL


def notifies(alarm: Alarm) -> bool:
    """Whether a transition of the alarm is notified. Suppressed alarms are not, except a
    flood-controlled one once it has been escalated or marked overdue: from then on
    subscribers know it, so they also hear of its acknowledgement and its end."""
    return not alarm.suppressed or (
        alarm.suppressed_reason == FLOOD_CONTROL and (alarm.escalations > 0 or alarm.overdue)
    )


def auto_resolve(
    conn: Connection, alarm_id: str, at: int, policy: Policy, out: list[Change]
) -> Alarm | None:
    alarm = store.get_alarm(conn, alarm_id)
    if (
        alarm is None
        or alarm.resolved
        or alarm.condition != "cleared"
        or not auto_resolvable(alarm)
        or policy.auto_resolve_ms <= 0
        or alarm.cleared_at is None
        or at - alarm.cleared_at < policy.auto_resolve_ms
    ):
        return alarm
    before = alarm.status
    alarm.status, alarm.resolved_at, alarm.outcome, alarm.resolved_by = (
        "resolved",
        at,
        "auto",
        "rule",
    )
    _record(
        conn,
        alarm,
        out,
        at=at,
        event="resolved",
        from_state=before,
        to_state="resolved",
        actor="rule",
        note=f"condition cleared for {policy.auto_resolve_ms // 1000} s",
        notify="alarm.resolved",
    )
    return alarm


def escalate(conn: Connection, alarm_id: str, at: int, out: list[Change]) -> Alarm | None:
    """EN 81-28: a critical alarm is emitted again until acknowledged."""
    alarm = store.get_alarm(conn, alarm_id)
    if alarm is None or alarm.status != "open" or alarm.severity != "critical":
        return alarm
    if not pursued(alarm):
        return alarm
    alarm.escalations += 1
    alarm.escalated_at = at
    _record(
        conn,
        alarm,
        out,
        at=at,
        event="escalated",
        from_state="open",
        to_state="open",
        actor="rule",
        note=f"not acknowledged: escalation {alarm.escalations}",
        notify="alarm.escalated",
    )
    return alarm


def mark_overdue(conn: Connection, alarm_id: str, at: int, out: list[Change]) -> Alarm | None:
    alarm = store.get_alarm(conn, alarm_id)
    if (
        alarm is None
        or alarm.status not in ("open", "acknowledged")
        or alarm.overdue
        or not pursued(alarm)
    ):
        return alarm
    alarm.overdue, alarm.overdue_at = True, at
    _record(
        conn,
        alarm,
        out,
        at=at,
        event="overdue",
        from_state=alarm.status,
        to_state=alarm.status,
        actor="rule",
        note="no technician on site by the arrival deadline",
        notify="alarm.overdue",
    )
    return alarm


def end_of_alarm(
    conn: Connection,
    lift_id: str,
    at: int,
    by: str | None,
    out: list[Change],
    *,
    received_at: int | None = None,
) -> list[Alarm]:
    """The device's ``end_of_alarm`` event resolves the lift's unresolved critical alarms
    raised before the event was received (FAULTS.md 1.1 #8); one raised afterwards is new."""
    done = []
    cutoff = at if received_at is None else received_at
    for alarm in store.unresolved_alarms(conn, lift_id, severity="critical"):
        if alarm.raised_at > cutoff:
            continue
        before = alarm.status
        outcome = _END_OF_ALARM_OUTCOME.get(alarm.code, "repaired")
        alarm.status, alarm.resolved_at, alarm.outcome = "resolved", at, outcome
        alarm.resolved_by = "device" if not by else f"device:{by}"[:200]
        _record(
            conn,
            alarm,
            out,
            at=at,
            event="resolved",
            from_state=before,
            to_state="resolved",
            actor="device",
            note="end of alarm at the installation" + (f" by {by}" if by else ""),
            notify="alarm.resolved",
        )
        done.append(alarm)
    return done
