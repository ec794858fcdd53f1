"""``/lifts/{id}/telemetry`` and ``/lifts/{id}/events``: history from InfluxDB.

Query text comes only from :mod:`api.influxql` (allow-listed names, bound values), so no
parameter can reach another lift's series or alter the query.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

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
        log.warning("event=history_query_failed error=%r body=%r", str(exc), exc.body[:300])
        raise ApiError(
            503, "influxdb_unavailable", "InfluxDB cannot answer right now; retry later"
        ) from exc


_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def _time_formatter() -> Callable[[int], str]:
    """:func:`format_ts` for a run of nearby times: the text up to the minute is worked out
    once per minute (``time.strftime`` per point was the largest Python cost of an hour of
    1 Hz telemetry)."""
    minute_now = -1
    prefix = ""

    def fmt(ts_ms: int) -> str:
        nonlocal minute_now, prefix
        minute, rest = divmod(ts_ms, 60_000)
        if minute != minute_now:
            minute_now = minute
            prefix = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        return prefix + _SECONDS[rest // 1000] + _MILLIS[rest % 1000]

    return fmt


def _telemetry_points(
    series: list[dict[str, Any]], limit: int
) -> tuple[list[dict[str, Any]], bool, int | None]:
    """``(points, truncated, time in ms of the last point)``: the first ``limit`` rows as
    ``{"time": RFC 3339, field: value, ...}``, the same points as :func:`api.influxql.rows`
    with formatted times (nulls left out, floats as floats, JSON fields parsed), worked
    out column by column and built with one comprehension per row."""
    points: list[dict[str, Any]] = []
    truncated = False
    last_ms: int | None = None
    fmt = _time_formatter()
    for s in series:
        columns: list[str] = s.get("columns", [])
        values: list[list[Any]] = s.get("values", [])
        room = limit - len(points)
        if len(values) > room:
            truncated = True
            values = values[:room]
        if not values:
            continue
        json_columns = []
        for i, col in enumerate(columns):
            kind = TELEMETRY_FIELDS.get(col)
            if kind == "float":
                for v in values:
                    x = v[i]
                    if type(x) is int:
                        v[i] = float(x)  # InfluxDB's JSON writes 3.0 as 3
            elif kind == "json":
                json_columns.append(col)
        keys: list[str | None] = [col if col in TELEMETRY_FIELDS else None for col in columns]
        t = columns.index("time") if "time" in columns else None
        first = len(points)
        if t is not None:
            last_ms = values[-1][t]
            for v in values:
                v[t] = fmt(v[t])
        if t in (None, 0):
            if t == 0:
                keys[0] = "time"  # first, as in rows()
            if None in keys:
                points.extend(
                    {k: x for k, x in zip(keys, v, strict=True) if x is not None and k is not None}
                    for v in values
                )
            else:
                names = cast("list[str]", keys)
                points.extend(
                    {k: x for k, x in zip(names, v, strict=True) if x is not None} for v in values
                )
        else:
            points.extend(
                {
                    "time": v[t],
                    **{
                        k: x
                        for k, x in zip(keys, v, strict=True)
                        if x is not None and k is not None
                    },
                }
                for v in values
            )
        for col in json_columns:  # after the nulls are left out: a JSON "null" stays, as null
            for p in points[first:]:
                x = p.get(col)
                if isinstance(x, str):
                    with contextlib.suppress(ValueError):
                        p[col] = json.loads(x)
    return points, truncated, last_ms


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
    points, truncated, last_ms = _telemetry_points(await _query(influx, q, params), limit)
    next_start = None
    if truncated and order == "asc" and last_ms is not None:
        step = INTERVALS[every] if every else 1
        next_start = format_ts(last_ms + step)
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
    # response model, which cost more than the InfluxDB query itself (bench/api_queries.py);
    # the documented schema is still TelemetryAnswer (response_model above).
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
