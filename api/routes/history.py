"""``/lifts/{id}/telemetry`` and ``/lifts/{id}/events``: history from InfluxDB.

Query text comes only from :mod:`api.influxql` (allow-listed names, bound values), so no
parameter can reach another lift's series or alter the query.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from api.auth import PrincipalDep, visible_lift
from api.deps import DbDep, InfluxDep
from api.errors import ApiError, invalid, responses
from api.influxql import (
    EVENT_FIELDS,
    INTERVALS,
    MAX_POINTS,
    MAX_RANGE_MS,
    TELEMETRY_FIELDS,
    Aggregate,
    QueryError,
    check_range,
    events_query,
    parse_fields,
    rows,
    telemetry_query,
)
from api.timeparams import EXAMPLE, now_ms, parse_time
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.protocol import format_ts

log = logging.getLogger("liftwatch.api")

router = APIRouter(
    prefix="/lifts/{lift_id}", tags=["history"], responses=responses(401, 403, 404, 422, 503)
)

LiftPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Every = Literal["10s", "30s", "1m", "5m", "15m", "30m", "1h", "6h", "12h", "1d"]
EventType = Literal["alarm_button", "fault", "selftest", "end_of_alarm"]
Order = Literal["asc", "desc"]
TimeQuery = Annotated[str | None, Query(max_length=40, description=f"time: {EXAMPLE}")]

HOUR_MS = 3_600_000
assert set(INTERVALS) == set(Every.__args__)  # type: ignore[attr-defined]


class TelemetryAnswer(BaseModel):
    lift_id: str
    start: str
    end: str
    every: str | None
    agg: str | None
    fields: list[str]
    points: list[dict[str, Any]]
    truncated: bool
    next_start: str | None


class EventsAnswer(BaseModel):
    lift_id: str
    start: str
    end: str
    events: list[dict[str, Any]]
    truncated: bool


async def _query(influx: InfluxClient, q: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return await influx.query(q, params)
    except InfluxError as exc:
        # Our queries are well-formed by construction, so an error here is InfluxDB's state
        # (down, database missing): the operator's problem, logged; the client may retry.
        log.warning("history query failed: %s %s", exc, exc.body[:300])
        raise ApiError(
            503, "influxdb_unavailable", "InfluxDB cannot answer right now; retry later"
        ) from exc


def _bad(exc: QueryError) -> ApiError:
    return invalid(exc.field, exc.message)


@router.get(
    "/telemetry",
    response_model=TelemetryAnswer,
    summary="Telemetry history: time range, field selection, optional downsampling",
    description=f"Raw points span at most 7 days and {MAX_POINTS} points per answer "
    "(`truncated` and `next_start` page on). With `every` the range may reach 400 days; "
    "`agg` mean/max/min apply to numeric fields, last to any. Field names: "
    + ", ".join(TELEMETRY_FIELDS),
)
async def telemetry(
    lift_id: LiftPath,
    db: DbDep,
    influx: InfluxDep,
    principal: PrincipalDep,
    start: TimeQuery = None,
    end: TimeQuery = None,
    fields: Annotated[
        str | None, Query(max_length=1000, description="comma-separated field names")
    ] = None,
    every: Every | None = None,
    agg: Aggregate | None = None,
    order: Order = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = MAX_POINTS,
) -> Response:
    visible_lift(db, principal, lift_id)
    end_ms = parse_time(end, "end", now_ms())
    start_ms = parse_time(start, "start", end_ms - HOUR_MS)
    if agg is not None and every is None:
        raise invalid("agg", "needs every (the downsampling interval)")
    if every is not None and agg is None:
        agg = "mean"
    try:
        check_range(start_ms, end_ms, every)
        names = parse_fields(fields, agg)
        q = telemetry_query(names, every, agg, limit + 1, order)
    except QueryError as exc:
        raise _bad(exc) from exc
    params = {"lift": lift_id, "start": format_ts(start_ms), "end": format_ts(end_ms)}
    points = rows(await _query(influx, q, params), TELEMETRY_FIELDS)
    truncated = len(points) > limit
    points = points[:limit]
    next_start = None
    if truncated and order == "asc" and points:
        step = INTERVALS[every] if every else 1
        next_start = format_ts(points[-1]["time"] + step)
    for p in points:
        p["time"] = format_ts(p["time"])
    answer = {
        "lift_id": lift_id,
        "start": format_ts(start_ms),
        "end": format_ts(end_ms),
        "every": every,
        "agg": agg,
        "fields": names,
        "points": points,
        "truncated": truncated,
        "next_start": next_start,
    }
    # Up to 10,000 points: encoded directly (msgspec) rather than re-validated through the
    # response model, which cost more than the InfluxDB query itself (bench/api_queries.py).
    return Response(msgspec.json.encode(answer), media_type="application/json")


@router.get(
    "/events",
    response_model=EventsAnswer,
    summary="Device events (alarm button, faults, self-tests, end of alarm)",
    description="The range spans at most 400 days; default the last 24 h.",
)
async def events(
    lift_id: LiftPath,
    db: DbDep,
    influx: InfluxDep,
    principal: PrincipalDep,
    start: TimeQuery = None,
    end: TimeQuery = None,
    type: EventType | None = None,
    order: Order = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
) -> EventsAnswer:
    visible_lift(db, principal, lift_id)
    end_ms = parse_time(end, "end", now_ms())
    start_ms = parse_time(start, "start", end_ms - 24 * HOUR_MS)
    if end_ms <= start_ms:
        raise invalid("end", "must be after start")
    if end_ms - start_ms > MAX_RANGE_MS:
        raise invalid("start", "a query spans at most 400 days")
    params: dict[str, Any] = {
        "lift": lift_id,
        "start": format_ts(start_ms),
        "end": format_ts(end_ms),
    }
    if type is not None:
        params["type"] = type
    series = await _query(influx, events_query(type is not None, limit + 1, order), params)
    found = rows(series, EVENT_FIELDS, keep=("type",))
    truncated = len(found) > limit
    out = []
    for e in found[:limit]:
        e["time"] = format_ts(e["time"])
        out.append({k: v for k, v in e.items() if v is not None})
    return EventsAnswer(
        lift_id=lift_id,
        start=format_ts(start_ms),
        end=format_ts(end_ms),
        events=out,
        truncated=truncated,
    )
