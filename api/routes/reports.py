"""``/reports/faults``: counts and response times over a period, by lift, code or company.

The period is ``[since, until)`` or a calendar month (``month=2026-11``) in the site's time
zone (``LIFTWATCH_TIMEZONE``); the answer names the zone and gives the range both in UTC and
in local time. ``format=csv`` answers the groups as a spreadsheet (UTF-8 with BOM)."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api import csvsafe
from api.auth import PrincipalDep, company_scope
from api.deps import DbDep, SettingsDep
from api.errors import invalid, responses
from api.reports import FaultGroup, GroupBy, aggregate
from api.timeparams import EXAMPLE, local_iso, month_range, now_ms, parse_time
from liftwatch.protocol import format_ts
from liftwatch.store import alarm_queries as aq

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses(401, 403, 422))

DAY_MS = 86_400_000
MAX_DAYS = 400
Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
CSV_COLUMNS = (
    "key",
    "alarms",
    "critical",
    "acknowledged",
    "ack_mean_s",
    "ack_p90_s",
    "on_site",
    "on_site_mean_s",
    "on_site_p90_s",
    "entrapments",
    "entrapments_on_site_in_time",
    "entrapment_on_site_share",
)


class FaultReport(BaseModel):
    since: str = Field(description="start of the period (inclusive), UTC")
    until: str = Field(description="end of the period (exclusive), UTC")
    timezone: str = Field(description="the site's time zone (LIFTWATCH_TIMEZONE)")
    since_local: str = Field(description="`since` in that zone, with its offset")
    until_local: str = Field(description="`until` in that zone, with its offset")
    month: str | None = Field(description="the calendar month asked for, if any")
    group_by: GroupBy
    totals: FaultGroup
    groups: list[FaultGroup]


@router.get(
    "/faults",
    response_model=FaultReport,
    summary="Fault report: counts, time to acknowledge and to on-site, entrapments in time",
    description=f"Alarms raised in [since, until) ({EXAMPLE}; default the last 30 days, at "
    f"most {MAX_DAYS} days), or in a calendar month `month=YYYY-MM` of the site's time zone "
    "(LIFTWATCH_TIMEZONE, default Asia/Shanghai: `month=2026-11` is "
    "2026-11-01T00:00+08:00 to 2026-12-01T00:00+08:00). The answer names the zone and the "
    "range in UTC and local time. Times are seconds from raise; p90 is nearest-rank. "
    "`entrapment_on_site_share` is the share of entrapments with a technician on site "
    "within the lift's arrival deadline. Suppressed alarms are left out unless asked for. "
    "`format=csv`: the totals and groups as CSV (UTF-8 with BOM), the period in the file name.",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def faults(
    db: DbDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    month: Annotated[str | None, Query(max_length=7, description="YYYY-MM, local")] = None,
    group_by: GroupBy = "lift",
    lift_id: Id | None = None,
    company_id: Id | None = None,
    code: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    severity: Literal["critical", "major", "minor"] | None = None,
    include_suppressed: bool = False,
    format: Literal["json", "csv"] = "json",
) -> Any:
    tz = settings.tz
    if month is not None:
        if since is not None or until is not None:
            raise invalid("month", "give either month or since/until, not both")
        since_ms, until_ms = month_range(month, "month", tz)
    else:
        until_ms = parse_time(until, "until", now_ms())
        since_ms = parse_time(since, "since", until_ms - 30 * DAY_MS)
    if until_ms <= since_ms:
        raise invalid("until", "must be after since")
    if until_ms - since_ms > MAX_DAYS * DAY_MS:
        raise invalid("since", f"a report spans at most {MAX_DAYS} days")
    company, empty = company_scope(principal, company_id)
    f = aq.AlarmFilter(
        lift_id=lift_id,
        company_id=company,
        code=code,
        severity=severity,
        since_ms=since_ms,
        until_ms=until_ms,
        include_suppressed=include_suppressed,
    )
    totals, groups = aggregate([] if empty else aq.report_rows(db, f), group_by)
    report = FaultReport(
        since=format_ts(since_ms),
        until=format_ts(until_ms),
        timezone=settings.timezone,
        since_local=local_iso(since_ms, tz),
        until_local=local_iso(until_ms, tz),
        month=month.strip() if month else None,
        group_by=group_by,
        totals=totals,
        groups=groups,
    )
    if format == "csv":
        return _csv(report)
    return report


def _csv(report: FaultReport) -> Response:
    """One row per group, then ``(total)``. The period and zone are in the file name and
    the ``X-Report-*`` headers: a line above the header row would spoil spreadsheets'
    column detection."""
    buf = io.StringIO()
    buf.write(csvsafe.header((report.group_by, *CSV_COLUMNS[1:])))
    writer = csvsafe.writer(buf)
    for group, key in [(g, g.key) for g in report.groups] + [(report.totals, "(total)")]:
        values = group.model_dump()
        writer.writerow([csvsafe.cell(key)] + [csvsafe.cell(values[c]) for c in CSV_COLUMNS[1:]])
    period = report.month or f"{report.since_local[:10]}_{report.until_local[:10]}"
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="faults-{period}.csv"',
            "X-Report-Timezone": report.timezone,
            "X-Report-Since": report.since_local,
            "X-Report-Until": report.until_local,
        },
    )
