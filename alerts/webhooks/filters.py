"""Which subscriptions an event goes to (WEBHOOKS.md § Subscriptions).

A subscription's filters are all optional; an empty list means "any". A maintenance company's
subscription (``company_id`` set) only ever matches alarms of that company's lifts, whatever
its filters say; an administrator's (``company_id`` None) may span all companies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liftwatch.faults import SEVERITY_RANK

if TYPE_CHECKING:
    from liftwatch.store.outbox import OutboxRow
    from liftwatch.store.webhooks import Subscription


@dataclass(frozen=True, slots=True)
class Filters:
    event_types: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    min_severity: str | None = None
    lift_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "event_types": list(self.event_types),
            "codes": list(self.codes),
            "min_severity": self.min_severity,
            "lift_ids": list(self.lift_ids),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Filters:
        return cls(
            event_types=tuple(raw.get("event_types") or ()),
            codes=tuple(raw.get("codes") or ()),
            min_severity=raw.get("min_severity"),
            lift_ids=tuple(raw.get("lift_ids") or ()),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """What filters look at in one outbox row."""

    event_type: str
    lift_id: str
    company_id: str | None
    code: str
    severity: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    company_id: str | None
    filters: Filters = field(default_factory=Filters)


def _type_matches(wanted: tuple[str, ...], event_type: str) -> bool:
    if not wanted or event_type in wanted:
        return True
    # Flood control replaces further raise notifications by one summary per hour: whoever
    # asked for raises must get the summary, or alarms would vanish without a trace.
    return event_type == "alarm.summary" and "alarm.raised" in wanted


def matches(sub: Subscriber, event: Event) -> bool:
    if sub.company_id is not None and event.company_id != sub.company_id:
        return False
    f = sub.filters
    if not _type_matches(f.event_types, event.event_type):
        return False
    if f.codes and event.code not in f.codes:
        return False
    if f.lift_ids and event.lift_id not in f.lift_ids:
        return False
    if f.min_severity is not None:
        return SEVERITY_RANK.get(event.severity, -1) >= SEVERITY_RANK[f.min_severity]
    return True


def route(event: OutboxRow, subs: Sequence[Subscription]) -> list[Subscription]:
    """The subscriptions an outbox row goes to (:func:`matches`)."""
    ev = Event(event.event_type, event.lift_id, event.company_id, event.code, event.severity)
    return [s for s in subs if matches(Subscriber(s.company_id, Filters.from_json(s.filters)), ev)]
