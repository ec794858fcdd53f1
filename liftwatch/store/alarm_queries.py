"""Alarm queries for the API that ``alarms.py`` (owned by the alerts engine) does not have:
filtered listing in either order with a cursor, report rows.
Read-only. (The outbox feed behind the server-sent-events stream is in ``outbox.py``.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from liftwatch.store.alarms import Alarm, alarm_from_row
from liftwatch.store.db import Database


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    lift_id: str | None = None
    company_id: str | None = None
    code: str | None = None
    severity: str | None = None
    status: str | None = None
    condition: str | None = None
    since_ms: int | None = None  # raised_at >= since
    until_ms: int | None = None  # raised_at < until
    include_suppressed: bool = True


def _where(f: AlarmFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("lift_id", f.lift_id),
        ("company_id", f.company_id),
        ("code", f.code),
        ("severity", f.severity),
        ("status", f.status),
        ("condition", f.condition),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if f.since_ms is not None:
        clauses.append("raised_at >= ?")
        params.append(f.since_ms)
    if f.until_ms is not None:
        clauses.append("raised_at < ?")
        params.append(f.until_ms)
    if not f.include_suppressed:
        clauses.append("suppressed = 0")
    return clauses, params


def search_alarms(
    db: Database,
    f: AlarmFilter,
    *,
    order: Literal["asc", "desc"] = "desc",
    cursor: str | None = None,
    limit: int = 100,
) -> list[Alarm]:
    """Alarms by raise time (alarm ids are ULIDs, so id order is time order); ``cursor`` is
    the last alarm id of the previous page."""
    clauses, params = _where(f)
    if cursor is not None:
        clauses.append("alarm_id < ?" if order == "desc" else "alarm_id > ?")
        params.append(cursor)
    where = " AND ".join(clauses) or "1=1"
    direction = "DESC" if order == "desc" else "ASC"
    rows = db.conn.execute(
        f"SELECT * FROM alarms WHERE {where}"  # noqa: S608 - fixed clauses, bound values
        f" ORDER BY alarm_id {direction} LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [alarm_from_row(r) for r in rows]


class ReportRow(NamedTuple):
    """A named tuple, not a frozen dataclass: a month of a large fleet is thousands of rows,
    and a frozen dataclass cost more to build than the SQLite scan (bench/api_queries.py)."""

    lift_id: str
    company_id: str | None
    code: str
    severity: str
    raised_at: int
    acknowledged_at: int | None
    on_site_at: int | None
    deadline_at: int | None


def report_rows(db: Database, f: AlarmFilter) -> Iterator[ReportRow]:
    """The few columns a fault report aggregates, for every alarm matching ``f``."""
    clauses, params = _where(f)
    where = " AND ".join(clauses) or "1=1"
    columns = "lift_id, company_id, code, severity, raised_at, acknowledged_at, on_site_at"
    sql = f"SELECT {columns}, deadline_at FROM alarms WHERE {where}"  # noqa: S608 - fixed clauses
    # plain tuples: this scan reads thousands of rows per report
    yield from map(ReportRow._make, db.tuples(sql, params))
