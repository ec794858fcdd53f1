"""The webhook and API view of an alarm: WEBHOOKS.md ``data``, also the API's alarm resource,
and the WEBHOOKS.md event types.

A contract, not SQL: the store's outbox writer (``liftwatch/store/outbox.py``) and the API
routes build it from an :class:`~liftwatch.store.alarms.Alarm` and the lift's registry card
(``liftwatch/store/registry.py`` :func:`lift_card`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from liftwatch.faults import names
from liftwatch.protocol import format_ts

if TYPE_CHECKING:
    from liftwatch.store.alarms import Alarm

# What an alarm's transitions announce (the outbox holds only these) ...
AlarmEventType = Literal[
    "alarm.raised",
    "alarm.acknowledged",
    "alarm.on_site",
    "alarm.condition_cleared",
    "alarm.condition_returned",
    "alarm.escalated",
    "alarm.overdue",
    "alarm.resolved",
    "alarm.summary",
]
# ... and every type a subscription may filter on or receive.
EventType = Literal[AlarmEventType, "webhook.test"]
ALARM_EVENT_TYPES: Final[tuple[str, ...]] = get_args(AlarmEventType)
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)


def ts(ms: int | None) -> str | None:
    """:func:`~liftwatch.protocol.format_ts`, with None for a time that has not happened."""
    return None if ms is None else format_ts(ms)


def alarm_view(alarm: Alarm, lift: dict[str, Any] | None) -> dict[str, Any]:
    """The alarm's full current view: WEBHOOKS.md ``data``, also the API's alarm resource.

    ``lift`` is :func:`liftwatch.store.registry.lift_card` (None for an unregistered lift: its
    fields are then null, with the company the alarm was raised under)."""
    card = lift or {
        "name": None,
        "address": None,
        "company_id": alarm.company_id,
        "rescue_code": None,
    }
    return {
        "alarm_id": alarm.alarm_id,
        "lift_id": alarm.lift_id,
        "code": alarm.code,
        "subtype": alarm.subtype,
        "name": names(alarm.code, alarm.subtype),
        "severity": alarm.severity,
        "source": alarm.source,
        "status": alarm.status,
        "condition": alarm.condition,
        "suspected": alarm.suspected,
        "occurrences": alarm.occurrences,
        "raised_at": format_ts(alarm.raised_at),
        "acknowledged_at": ts(alarm.acknowledged_at),
        "on_site_at": ts(alarm.on_site_at),
        "resolved_at": ts(alarm.resolved_at),
        "outcome": alarm.outcome,
        "resolved_by": alarm.resolved_by,
        "cleared_at": ts(alarm.cleared_at),
        "escalations": alarm.escalations,
        "deadline_at": ts(alarm.deadline_at),
        "overdue": alarm.overdue,
        "suppressed": alarm.suppressed,
        "suppressed_reason": alarm.suppressed_reason,
        "unregistered": alarm.unregistered,
        # FAULTS.md 1.1 #7: raised on evidence that arrived late in a burst.
        "late": alarm.evidence.get("late") is True,
        "company_id": alarm.company_id,
        "evidence": alarm.evidence,
        "lift": card,
    }
