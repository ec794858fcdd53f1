"""A lift's live state from InfluxDB: the last ``lift_state`` point and its connection
status (online/offline and since when, from ``lift_status``)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel

from api.influxql import TELEMETRY_FIELDS, connection_since, live_query, rows
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.protocol import format_ts

log = logging.getLogger("liftwatch.api")


class LiveState(BaseModel):
    available: bool
    """False when InfluxDB could not be asked: the rest of the answer is then unknown."""
    connection: Literal["online", "offline", "unknown"]
    since: str | None
    since_exact: bool
    last_seen: str | None
    telemetry: dict[str, Any] | None


async def live_state(influx: InfluxClient, lift_id: str) -> LiveState:
    try:
        results = await influx.query_all(live_query(), {"lift": lift_id})
    except InfluxError as exc:
        log.warning("event=live_state_unavailable lift_id=%s error=%r", lift_id, str(exc))
        return LiveState(
            available=False,
            connection="unknown",
            since=None,
            since_exact=False,
            last_seen=None,
            telemetry=None,
        )
    state_series = results[0] if results else []
    status_series = results[1] if len(results) > 1 else []
    points = rows(state_series, TELEMETRY_FIELDS)
    telemetry: dict[str, Any] | None = None
    last_seen: str | None = None
    if points:
        point = points[0]
        last_seen = format_ts(point.pop("time"))
        telemetry = {k: v for k, v in point.items() if v is not None}
        telemetry["time"] = last_seen
    statuses = [
        (int(ts), str(state))
        for s in status_series
        for ts, state in s.get("values", [])
        if state in ("online", "offline")
    ]
    connection, since_ms, exact = connection_since(statuses)
    return LiveState(
        available=True,
        connection=connection,  # type: ignore[arg-type]
        since=format_ts(since_ms) if since_ms is not None else None,
        since_exact=exact,
        last_seen=last_seen,
        telemetry=telemetry,
    )
