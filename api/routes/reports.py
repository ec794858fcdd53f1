"""``/reports/faults``: counts and response times over a period, by lift, code or company."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import PrincipalDep, company_scope
from api.deps import DbDep
from api.errors import invalid, responses
from api.reports import FaultGroup, GroupBy, aggregate
from api.timeparams import EXAMPLE, now_ms, parse_time
from liftwatch.protocol import format_ts
from liftwatch.store import alarm_queries as aq

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses(401, 403, 422))

DAY_MS = 86_400_000
MAX_DAYS = 400
Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class FaultReport(BaseModel):
    since: str
    until: str
    group_by: GroupBy
    totals: FaultGroup
    groups: list[FaultGroup]


@router.get(
    "/faults",
    response_model=FaultReport,
    summary="Fault report: counts, time to acknowledge and to on-site, entrapments in time",
    description=f"Alarms raised in [since, until) ({EXAMPLE}; default the last 30 days, at "
    f"most {MAX_DAYS} days). Times are seconds from raise; p90 is nearest-rank. "
    "`entrapment_on_site_share` is the share of entrapments with a technician on site "
    "within the lift's arrival deadline. Suppressed alarms are left out unless asked for.",
)
def faults(
    db: DbDep,
    principal: PrincipalDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    group_by: GroupBy = "lift",
    lift_id: Id | None = None,
    company_id: Id | None = None,
    code: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    severity: Literal["critical", "major", "minor"] | None = None,
    include_suppressed: bool = False,
) -> FaultReport:
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
    return FaultReport(
        since=format_ts(since_ms),
        until=format_ts(until_ms),
        group_by=group_by,
        totals=totals,
        groups=groups,
    )
