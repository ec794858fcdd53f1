"""Inspector screens (issue 16): the city view, the fault report with its charts and CSV, and
one lift's fault history.

Every figure comes from what the API answers the same person: the report is
``api/routes/reports.py`` ``faults()`` itself (its validation, its company scope, its CSV), the
city view and the history use the store queries of ``/alarms`` and ``/lifts`` narrowed by
``api/auth.py`` (``company_scope``, ``Principal.sees_company``, ``visible_lift``). Inspectors
and admins see the whole city; a maintainer who opens these pages sees its own company only,
exactly as its API token would.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api import csvsafe
from api.auth import Principal, company_scope, visible_lift
from api.console.render import PersonDep, gettext_for, pick_lang, render
from api.deps import DbDep, InfluxDep, SettingsDep
from api.errors import ApiError
from api.reports import GroupBy
from api.routes.companies import list_companies
from api.routes.reports import CSV_COLUMNS, FaultReport, faults
from liftwatch.clock import now_ms
from liftwatch.faults import names
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.store import Database, lift_queries
from liftwatch.store import alarm_queries as aq
from liftwatch.store import alarms as alarm_store
from liftwatch.store import registry as reg
from liftwatch.store.alarms import Alarm

log = logging.getLogger("liftwatch.console")

router = APIRouter()

Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{0,64}$")]
LiftPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
SEVERITIES = ("critical", "major", "minor")
# The last connection status of every lift (docs/influxdb-schema.md); a fixed query, no input.
LAST_STATUS_Q = 'SELECT last("state") FROM "lift_status" GROUP BY "lift_id"'
HISTORY_PAGE = 50
LIFT_BATCH = 2000


# --- the city view --------------------------------------------------------------------------


@dataclass
class CityCounts:
    lifts: int = 0
    online: int = 0
    offline: int = 0
    never_seen: int = 0
    status_known: bool = True


def scoped_lift_ids(db: Database, principal: Principal) -> list[str]:
    """The active lifts the person may see (the ``GET /lifts?active=true`` listing)."""
    company, empty = company_scope(principal, None)
    if empty:
        return []
    out: list[str] = []
    after = ""
    while True:
        batch = lift_queries.search_lifts(
            db, company_id=company, active=True, after=after, limit=LIFT_BATCH
        )
        out += [lift.lift_id for lift in batch]
        if len(batch) < LIFT_BATCH:
            return out
        after = batch[-1].lift_id


async def last_statuses(influx: InfluxClient) -> dict[str, str] | None:
    """``{lift_id: "online" | "offline"}`` from the last ``lift_status`` point of each lift;
    None when InfluxDB cannot be asked (the page then says the connection state is unknown)."""
    try:
        series = await influx.query(LAST_STATUS_Q)
    except InfluxError as exc:
        log.warning("event=city_status_unavailable error=%r", str(exc))
        return None
    out: dict[str, str] = {}
    for s in series:
        lift = (s.get("tags") or {}).get("lift_id")
        values = s.get("values") or []
        if lift and values and values[0][-1] in ("online", "offline"):
            out[lift] = values[0][-1]
    return out


def visible_open_alarms(db: Database, principal: Principal) -> list[Alarm]:
    """Unresolved alarms the person may see: by each alarm's own company, as ``/alarms``."""
    return [a for a in alarm_store.unresolved_alarms(db) if principal.sees_company(a.company_id)]


def city_counts(
    lift_ids: list[str], statuses: dict[str, str] | None, open_alarms: list[Alarm]
) -> CityCounts:
    """Online/offline of the active lifts. Offline: the device's last status is ``offline``
    (its Last Will) or the engine holds an active ``device_offline`` alarm (silent, FAULTS.md);
    online: its last status is ``online`` and no such alarm; never seen: no status at all."""
    counts = CityCounts(lifts=len(lift_ids), status_known=statuses is not None)
    silent = {
        a.lift_id for a in open_alarms if a.code == "device_offline" and a.condition == "active"
    }
    for lift in lift_ids:
        state = (statuses or {}).get(lift)
        if state == "offline" or lift in silent:
            counts.offline += 1
        elif state == "online":
            counts.online += 1
        else:
            counts.never_seen += 1
    return counts


def _by_severity(alarms: list[Alarm]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {s: Counter() for s in SEVERITIES}
    for a in alarms:
        out.setdefault(a.severity, Counter())[a.status] += 1
    return out


def _seconds(later: int | None, start: int) -> float | None:
    return None if later is None else (later - start) / 1000


def on_site_in_time(a: Alarm, now: int) -> bool | None:
    """For an entrapment: on site within its arrival deadline (the report's rule); None for
    other alarms and while nobody is on site yet and the deadline has not passed."""
    if a.code != "entrapment":
        return None
    if a.on_site_at is None:
        return None if a.deadline_at is not None and now <= a.deadline_at else False
    return a.deadline_at is None or a.on_site_at <= a.deadline_at


def _title(a: Alarm, lang: str) -> str:
    title = names(a.code, a.subtype)
    return str(title["zh"] if lang.startswith("zh") else title["en"])


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _alarm_row(
    a: Alarm, lang: str, now: int, cards: dict[str, Any], db: Database
) -> dict[str, Any]:
    if a.lift_id not in cards:
        cards[a.lift_id] = reg.lift_card(db, a.lift_id) or {}
    card = cards[a.lift_id]
    return {
        "alarm": a,
        "title": _title(a, lang),
        "lift_name": card.get("name") or "",
        "address": card.get("address") or "",
        "age_s": max(0, (now - a.raised_at) // 1000),
        "overdue": a.overdue
        or (a.deadline_at is not None and a.on_site_at is None and now > a.deadline_at),
    }


@router.get("/city", summary="Inspector: the city at a glance")
async def city(request: Request, db: DbDep, influx: InfluxDep, principal: PersonDep) -> Response:
    lift_ids = scoped_lift_ids(db, principal)
    statuses = await last_statuses(influx)
    alarms = visible_open_alarms(db, principal)
    now = now_ms()
    lang = pick_lang(request)
    cards: dict[str, Any] = {}
    entrapments = sorted((a for a in alarms if a.code == "entrapment"), key=lambda a: a.raised_at)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    listed = sorted(alarms, key=lambda a: (order.get(a.severity, 9), a.raised_at))[:200]
    return render(
        request,
        "inspect/city.html",
        counts=city_counts(lift_ids, statuses, alarms),
        by_severity=_by_severity(alarms),
        severities=SEVERITIES,
        open_total=len(alarms),
        entrapments=[_alarm_row(a, lang, now, cards, db) for a in entrapments],
        alarms=[_alarm_row(a, lang, now, cards, db) for a in listed],
        more_alarms=max(0, len(alarms) - len(listed)),
        generated_at=now,
    )


# --- the fault report -----------------------------------------------------------------------


def day_start_ms(day: str, tz: ZoneInfo, field: str) -> int:
    try:
        d = date.fromisoformat(day.strip())
    except ValueError:
        raise ApiError(
            422, "validation_error", f"{field}: not a date: use YYYY-MM-DD, e.g. 2026-11-01"
        ) from None
    return round(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def report_period(
    month: str | None, since: str | None, until: str | None, tz: ZoneInfo
) -> dict[str, str | None]:
    """The report form's period as ``faults()`` parameters: a month, or a range of local
    dates with ``until`` inclusive (the day after it, 00:00 local, is the exclusive end).
    Neither: the current month."""
    if since or until:
        if not (since and until):
            raise ApiError(422, "validation_error", "give both the first and the last day")
        start = day_start_ms(since, tz, "since")
        end_day = date.fromisoformat(until.strip()) + timedelta(days=1)
        end = day_start_ms(end_day.isoformat(), tz, "until")
        return {"month": None, "since": str(start), "until": str(end)}
    if not month:
        month = datetime.fromtimestamp(now_ms() / 1000, tz).strftime("%Y-%m")
    return {"month": month, "since": None, "until": None}


def run_report(
    db: Database,
    principal: Principal,
    settings: Any,
    period: dict[str, str | None],
    group_by: GroupBy,
    company_id: str | None,
    fmt: Literal["json", "csv"] = "json",
) -> Any:
    """``GET /reports/faults`` for this person: the API's own function, so its checks and
    company scope apply unchanged."""
    return faults(
        db=db,
        principal=principal,
        settings=settings,
        since=period["since"],
        until=period["until"],
        month=period["month"],
        group_by=group_by,
        lift_id=None,
        company_id=company_id or None,
        code=None,
        severity=None,
        include_suppressed=False,
        format=fmt,
    )


def chart_data(report: FaultReport, label: dict[str, str]) -> dict[str, Any]:
    """What inspect.js hands ECharts: the twenty groups with most alarms."""
    groups = report.groups[:20]
    return {
        "keys": [g.key or "-" for g in groups],
        "series": [
            {"name": label["alarms"], "type": "bar", "data": [g.alarms for g in groups]},
            {"name": label["entrapments"], "type": "bar", "data": [g.entrapments for g in groups]},
            {
                "name": label["ack_mean_s"],
                "type": "line",
                "yAxisIndex": 1,
                "data": [_minutes(g.ack_mean_s) for g in groups],
            },
            {
                "name": label["on_site_mean_s"],
                "type": "line",
                "yAxisIndex": 1,
                "data": [_minutes(g.on_site_mean_s) for g in groups],
            },
        ],
        "axis": [label["count"], label["minutes"]],
    }


def column_labels(_: Any) -> dict[str, str]:
    """Report column names in the page's language (also the CSV header in zh_CN)."""
    return {
        "lift": _("Lift"),
        "code": _("Alarm code"),
        "company": _("Company"),
        "alarms": _("Alarm count"),
        "critical": _("Critical"),
        "acknowledged": _("Acknowledged count"),
        "ack_mean_s": _("Mean time to acknowledge"),
        "ack_p90_s": _("Time to acknowledge, p90"),
        "on_site": _("On-site count"),
        "on_site_mean_s": _("Mean time to on site"),
        "on_site_p90_s": _("Time to on site, p90"),
        "entrapments": _("Entrapments"),
        "entrapments_on_site_in_time": _("Entrapments on site in time"),
        "entrapment_on_site_share": _("Share on site in time"),
        "count": _("Count"),
        "minutes": _("Minutes"),
    }


@router.get("/reports", summary="Inspector: the fault report")
def reports(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    principal: PersonDep,
    month: Annotated[str | None, Query(max_length=7)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    group_by: GroupBy = "company",
    company_id: Id | None = None,
) -> Response:
    _ = gettext_for(request)
    labels = column_labels(_)
    error: str | None = None
    report: FaultReport | None = None
    period: dict[str, str | None] = {"month": month, "since": None, "until": None}
    try:
        period = report_period(month, since, until, settings.tz)
        report = run_report(db, principal, settings, period, group_by, company_id)
    except ApiError as exc:
        error = exc.message
    query = {k: v for k, v in period.items() if v} | {"group_by": group_by}
    if company_id:
        query["company_id"] = company_id
    return render(
        request,
        "inspect/reports.html",
        status_code=200 if error is None else 422,
        report=report,
        error=error,
        form={
            "month": period["month"] or "",
            "since": since or "",
            "until": until or "",
            "group_by": group_by,
            "company_id": company_id or "",
        },
        query=query,
        labels=labels,
        columns=CSV_COLUMNS[1:],
        companies=list_companies(db, principal),
        # in a <script type="application/json">: no "</script>" can end it early
        chart=json.dumps(chart_data(report, labels) if report else None).replace("<", "\\u003c"),
    )


@router.get("/reports/faults.csv", summary="The fault report as CSV, headed in the page's language")
def reports_csv(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    principal: PersonDep,
    month: Annotated[str | None, Query(max_length=7)] = None,
    since: Annotated[str | None, Query(max_length=20)] = None,
    until: Annotated[str | None, Query(max_length=20)] = None,
    group_by: GroupBy = "company",
    company_id: Id | None = None,
) -> Response:
    """The API's CSV (``format=csv``: UTF-8 with BOM, every cell neutralised, the period in
    the file name and headers) with its header row in the reader's language: a Chinese
    inspector's Excel shows 告警数, not ``alarms``. The rows are the API's bytes."""
    period = {"month": month or None, "since": since or None, "until": until or None}
    if not any(period.values()):
        period = report_period(None, None, None, settings.tz)
    answer: Response = run_report(db, principal, settings, period, group_by, company_id, "csv")
    _ = gettext_for(request)
    labels = column_labels(_)
    text = bytes(answer.body).decode("utf-8")
    assert text.startswith(csvsafe.BOM)
    _head, _sep, rows = text.partition("\r\n")
    header = csvsafe.header([labels[group_by], *(labels[c] for c in CSV_COLUMNS[1:])])
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    return Response(header + rows, media_type="text/csv; charset=utf-8", headers=headers)


# --- a lift's fault history -----------------------------------------------------------------


@router.get("/reports/lifts/{lift_id}", summary="Inspector: one lift's fault history")
def lift_history(
    request: Request,
    lift_id: LiftPath,
    db: DbDep,
    principal: PersonDep,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> Response:
    try:
        lift = visible_lift(db, principal, lift_id)  # another company's lift: 404, as the API
    except ApiError as exc:
        return render(request, "notfound.html", status_code=404, message=exc.message)
    company, _empty = company_scope(principal, None)
    found = aq.search_alarms(
        db,
        aq.AlarmFilter(lift_id=lift_id, company_id=company),
        order="desc",
        cursor=cursor,
        limit=HISTORY_PAGE,
    )
    lang = pick_lang(request)
    now = now_ms()
    rows = [
        {
            "alarm": a,
            "title": _title(a, lang),
            "ack_s": _seconds(a.acknowledged_at, a.raised_at),
            "on_site_s": _seconds(a.on_site_at, a.raised_at),
            "in_time": on_site_in_time(a, now),
        }
        for a in found
    ]
    return render(
        request,
        "inspect/lift.html",
        lift=lift,
        rows=rows,
        next_cursor=found[-1].alarm_id if len(found) == HISTORY_PAGE else None,
    )
