from __future__ import annotations

from alerts.webhooks.filters import Event, Filters, Subscriber, matches, route
from liftwatch.store.outbox import OutboxRow
from tests.support.webhooks import a_subscription

EV = Event("alarm.raised", "L1", "co-a", "entrapment", "critical")


def _ev(**kw: str | None) -> Event:
    values = {
        "event_type": EV.event_type,
        "lift_id": EV.lift_id,
        "company_id": EV.company_id,
        "code": EV.code,
        "severity": EV.severity,
    } | kw
    return Event(**values)  # type: ignore[arg-type]


def test_company_subscription_matches_only_its_company() -> None:
    sub = Subscriber("co-a")
    assert matches(sub, EV)
    assert not matches(sub, _ev(company_id="co-b"))
    assert not matches(sub, _ev(company_id=None))
    # Filters naming another company's lift never widen the scope.
    assert not matches(
        Subscriber("co-a", Filters(lift_ids=("LB",))), _ev(lift_id="LB", company_id="co-b")
    )


def test_admin_subscription_spans_companies() -> None:
    assert matches(Subscriber(None), _ev(company_id="co-b"))
    assert matches(Subscriber(None), _ev(company_id=None))


def test_each_filter_narrows() -> None:
    assert matches(Subscriber(None, Filters(event_types=("alarm.raised",))), EV)
    assert not matches(Subscriber(None, Filters(event_types=("alarm.resolved",))), EV)
    assert matches(Subscriber(None, Filters(codes=("entrapment", "x"))), EV)
    assert not matches(Subscriber(None, Filters(codes=("door_open_too_long",))), EV)
    assert matches(Subscriber(None, Filters(lift_ids=("L1",))), EV)
    assert not matches(Subscriber(None, Filters(lift_ids=("L2",))), EV)


def test_minimum_severity() -> None:
    major = Subscriber(None, Filters(min_severity="major"))
    assert matches(major, EV)
    assert matches(major, _ev(severity="major"))
    assert not matches(major, _ev(severity="minor"))
    assert not matches(Subscriber(None, Filters(min_severity="critical")), _ev(severity="major"))


def test_summary_follows_raised() -> None:
    raised_only = Subscriber(None, Filters(event_types=("alarm.raised",)))
    assert matches(raised_only, _ev(event_type="alarm.summary"))
    ack_only = Subscriber(None, Filters(event_types=("alarm.acknowledged",)))
    assert not matches(ack_only, _ev(event_type="alarm.summary"))


def test_filters_round_trip_json() -> None:
    f = Filters(("alarm.raised",), ("entrapment",), "major", ("L1",))
    assert Filters.from_json(f.to_json()) == f


def test_route_picks_the_matching_subscriptions_of_an_outbox_row() -> None:
    row = OutboxRow(
        1, "al_1", "L1", "co-a", "alarm.raised", "critical", "entrapment", 0, "{}", None
    )
    subs = [
        a_subscription("wh_a", "co-a", filters={}),
        a_subscription("wh_b", "co-b", filters={}),
        a_subscription("wh_admin", None, filters={"min_severity": "major"}),
        a_subscription("wh_minor", None, filters={"codes": ["door_open_too_long"]}),
    ]
    assert [s.id for s in route(row, subs)] == ["wh_a", "wh_admin"]
