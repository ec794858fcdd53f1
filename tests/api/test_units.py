"""Pure parts of the API: InfluxQL building, row flattening, connection runs, time values,
and the ``liftwatch api`` command's refusal to start without an admin token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.errors import ApiError, field_name
from api.influxql import (
    TELEMETRY_FIELDS,
    QueryError,
    check_range,
    connection_since,
    events_query,
    parse_fields,
    rows,
    telemetry_query,
)
from api.timeparams import parse_time


def test_query_text_holds_only_allow_listed_names() -> None:
    q = telemetry_query(["speed", "floor"], "1m", "max", 100, "asc")
    assert q == (
        'SELECT max("speed") AS "speed", max("floor") AS "floor" FROM "lift_state" '
        'WHERE "lift_id" = $lift AND time >= $start AND time < $end '
        "GROUP BY time(1m) fill(none) ORDER BY time ASC LIMIT 100"
    )
    with pytest.raises(QueryError):
        telemetry_query(['speed" FROM x --'], None, None, 10, "asc")
    with pytest.raises(QueryError):
        telemetry_query(["speed"], "1m); DROP", "mean", 10, "asc")
    assert "$type" in events_query(True, 5, "desc") and "DESC LIMIT 5" in events_query(
        True, 5, "desc"
    )


def test_parse_fields() -> None:
    assert parse_fields(None, None) == list(TELEMETRY_FIELDS)
    assert "floor" not in parse_fields(None, "mean")
    assert parse_fields(" speed , speed,load", None) == ["speed", "load"]
    with pytest.raises(QueryError) as err:
        parse_fields("speed,lift_id", None)
    assert err.value.field == "fields"
    with pytest.raises(QueryError):
        parse_fields("door_state", "max")


def test_check_range() -> None:
    check_range(0, 3_600_000, None)
    with pytest.raises(QueryError, match="7 days"):
        check_range(0, 8 * 86_400_000, None)
    check_range(0, 8 * 86_400_000, "1h")
    with pytest.raises(QueryError) as err:
        check_range(0, 30 * 86_400_000, "10s")
    assert err.value.field == "every"


def test_rows_types_and_drops() -> None:
    series = [
        {
            "name": "lift_state",
            "columns": ["time", "lift_id", "speed", "floor", "controller_faults", "battery"],
            "values": [[1000, "L1", 3, "7", '[{"namespace":"x","code":1}]', None]],
        }
    ]
    assert rows(series, TELEMETRY_FIELDS) == [
        {
            "time": 1000,
            "speed": 3.0,
            "floor": "7",
            "controller_faults": [{"namespace": "x", "code": 1}],
        }
    ]


def test_connection_since() -> None:
    assert connection_since([]) == ("unknown", None, True)
    newest_first = [(50, "online"), (40, "online"), (30, "offline"), (20, "online")]
    assert connection_since(newest_first) == ("online", 40, True)
    assert connection_since([(50, "offline"), (40, "offline")]) == ("offline", 40, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-26T20:01:02.345Z", 1795723262345),
        ("2026-11-27T04:01:02.345+08:00", 1795723262345),
        ("1795723262345", 1795723262345),
    ],
)
def test_parse_time(value: str, expected: int) -> None:
    assert parse_time(value, "start", 0) == expected


@pytest.mark.parametrize("value", ["now", "2026-11-26", "2026-11-26T20:01:02", "-5", "9" * 20])
def test_parse_time_rejects(value: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_time(value, "start", 0)
    assert err.value.status == 422 and err.value.detail[0]["field"] == "start"


def test_field_name() -> None:
    assert field_name(("query", "limit")) == "limit"
    assert field_name(("body", "overrides", "x")) == "overrides.x"
    assert field_name(()) == "body"


def test_api_refuses_to_start_without_admin_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    env["LIFTWATCH_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "liftwatch", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 78
    assert "LIFTWATCH_ADMIN_TOKEN" in proc.stderr
