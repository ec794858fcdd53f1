"""InfluxQL for the history endpoints, built without splicing user input into query text.

User values (lift id, event type, time range) travel as **bound parameters** (``$lift``,
``$start``, ``$end``, ``$type``). The only other things placed in the text are chosen from
fixed sets here: field names from :data:`TELEMETRY_FIELDS` (the schema of
docs/influxdb-schema.md), aggregate functions from :data:`AGGREGATES`, the interval from
:data:`INTERVALS`, and integer limits. Pure functions, no I/O.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from liftwatch.influx import quote_ident

FieldKind = Literal["float", "int", "bool", "string", "json"]

# lift_state fields and their InfluxDB types (docs/influxdb-schema.md; fixed).
TELEMETRY_FIELDS: dict[str, FieldKind] = {
    "service_mode": "string",
    "car_status": "string",
    "direction": "string",
    "floor": "string",
    "floor_index": "int",
    "door_zone": "bool",
    "doors_closed": "bool",
    "door_state": "string",
    "passenger_present": "bool",
    "speed": "float",
    "position": "int",
    "load": "float",
    "safety_circuit": "string",
    "door_lock_circuit": "string",
    "up_limit": "bool",
    "down_limit": "bool",
    "power_source": "string",
    "alarm_button": "bool",
    "battery": "int",
    "controller_faults": "json",
    "total_running_time": "float",
    "run_count": "int",
    "machine_room_temp": "float",
    "rssi": "int",
    "seq": "int",
    "ts_corrected": "bool",
}
NUMERIC = frozenset(k for k, v in TELEMETRY_FIELDS.items() if v in ("float", "int"))

EVENT_TYPES = ("alarm_button", "fault", "selftest", "end_of_alarm")
EVENT_FIELDS: dict[str, FieldKind] = {
    "seq": "int",
    "pressed": "bool",
    "namespace": "string",
    "code": "string",
    "active": "bool",
    "text": "string",
    "result": "string",
    "detail": "string",
    "by": "string",
}

Aggregate = Literal["mean", "max", "min", "last"]
AGGREGATES: tuple[Aggregate, ...] = ("mean", "max", "min", "last")
# mean/max/min are numeric in InfluxDB 1.x ("unsupported mean iterator type" otherwise).
_NUMERIC_ONLY = frozenset({"mean", "max", "min"})

INTERVALS: dict[str, int] = {
    "10s": 10_000,
    "30s": 30_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}

MAX_POINTS = 10_000
MAX_RAW_RANGE_MS = 7 * 86_400_000
MAX_RANGE_MS = 400 * 86_400_000


class QueryError(ValueError):
    """A request the history endpoints refuse; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_fields(raw: str | None, agg: Aggregate | None) -> list[str]:
    """Comma-separated field names, each from the allow-list; default: every field the
    aggregate can handle."""
    allowed = NUMERIC if agg in _NUMERIC_ONLY else TELEMETRY_FIELDS.keys()
    if raw is None or not raw.strip():
        return [f for f in TELEMETRY_FIELDS if f in allowed]
    names = list(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in TELEMETRY_FIELDS]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise QueryError("fields", f"unknown field {shown}; known: {', '.join(TELEMETRY_FIELDS)}")
    if agg in _NUMERIC_ONLY:
        wrong = [n for n in names if n not in NUMERIC]
        if wrong:
            raise QueryError(
                "fields", f"{agg} needs numeric fields; {', '.join(wrong)} are not (use agg=last)"
            )
    return names


def check_range(start_ms: int, end_ms: int, every: str | None) -> None:
    if end_ms <= start_ms:
        raise QueryError("end", "must be after start")
    span = end_ms - start_ms
    if every is None:
        if span > MAX_RAW_RANGE_MS:
            raise QueryError(
                "start", "raw telemetry spans at most 7 days; downsample with every=1m or more"
            )
        return
    if span > MAX_RANGE_MS:
        raise QueryError("start", "a query spans at most 400 days")
    if span // INTERVALS[every] > MAX_POINTS:
        raise QueryError(
            "every", f"{span // INTERVALS[every]} buckets exceed {MAX_POINTS}; use a larger every"
        )


def telemetry_query(
    fields: Sequence[str], every: str | None, agg: Aggregate | None, limit: int, order: str
) -> str:
    """The query text; binds ``$lift``, ``$start`` and ``$end``."""
    if any(f not in TELEMETRY_FIELDS for f in fields) or not fields:
        raise QueryError("fields", "field outside the allow-list")
    direction = "DESC" if order == "desc" else "ASC"
    where = 'WHERE "lift_id" = $lift AND time >= $start AND time < $end'
    if every is None:
        cols = ", ".join(quote_ident(f) for f in fields)
        return (
            f'SELECT {cols} FROM "lift_state" {where} '  # noqa: S608 - allow-listed names only
            f"ORDER BY time {direction} LIMIT {int(limit)}"
        )
    if every not in INTERVALS or agg not in AGGREGATES:
        raise QueryError("every", "interval or aggregate outside the allow-list")
    cols = ", ".join(f"{agg}({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
    return (
        f'SELECT {cols} FROM "lift_state" {where} '  # noqa: S608 - allow-listed names only
        f"GROUP BY time({every}) fill(none) ORDER BY time {direction} LIMIT {int(limit)}"
    )


def events_query(with_type: bool, limit: int, order: str) -> str:
    """Binds ``$lift``, ``$start``, ``$end`` and, when ``with_type``, ``$type``."""
    direction = "DESC" if order == "desc" else "ASC"
    type_clause = ' AND "type" = $type' if with_type else ""
    head = 'SELECT * FROM "lift_event" WHERE "lift_id" = $lift AND time >= $start AND time < $end'
    return f"{head}{type_clause} ORDER BY time {direction} LIMIT {int(limit)}"


def live_query() -> str:
    """Last state point and the recent connection statuses; binds ``$lift``."""
    return (
        'SELECT * FROM "lift_state" WHERE "lift_id" = $lift ORDER BY time DESC LIMIT 1; '
        'SELECT "state" FROM "lift_status" WHERE "lift_id" = $lift ORDER BY time DESC LIMIT 50'
    )


def rows(
    series: Iterable[dict[str, Any]], kinds: dict[str, FieldKind], *, keep: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Flatten InfluxDB series into ``[{"time": ms, field: value, ...}]``, typed per schema.
    Null fields (not sent in that message) are left out; columns outside ``kinds`` and
    ``keep`` (e.g. the lift_id tag) are dropped. Hot path of ``/telemetry``: the per-column
    plan is worked out once per series, not per cell."""
    kept = set(keep)
    out: list[dict[str, Any]] = []
    for s in series:
        columns: list[str] = s.get("columns", [])
        t_index = columns.index("time") if "time" in columns else None
        plan = [
            (i, col, kinds.get(col))
            for i, col in enumerate(columns)
            if col != "time" and (col in kinds or col in kept)
        ]
        for values in s.get("values", []):
            point: dict[str, Any] = {} if t_index is None else {"time": values[t_index]}
            for i, col, kind in plan:
                value = values[i]
                if value is None:
                    continue
                if kind == "float" and type(value) is int:
                    value = float(value)  # InfluxDB's JSON writes 3.0 as 3
                elif kind == "json" and isinstance(value, str):
                    with contextlib.suppress(ValueError):
                        value = json.loads(value)
                point[col] = value
            out.append(point)
    return out


def connection_since(statuses: Sequence[tuple[int, str]]) -> tuple[str, int | None, bool]:
    """From statuses newest first: ``(state, since_ms, exact)``. ``since`` is the first
    message of the current unbroken run of that state (retained statuses repeat after every
    consumer reconnect). ``exact`` is False when the run may reach back beyond the window."""
    if not statuses:
        return "unknown", None, True
    state = statuses[0][1]
    since = statuses[0][0]
    for ts, value in statuses:
        if value != state:
            return state, since, True
        since = ts
    return state, since, False
