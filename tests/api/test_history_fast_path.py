"""The telemetry hot path: the points built column by column (``_telemetry_points``) and
the per-minute time formatter are checked against the plain versions they replace
(:func:`api.influxql.rows` and :func:`liftwatch.protocol.format_ts`); the InfluxDB client's
MessagePack answers against the real InfluxDB and, for servers that ignore or refuse the
format (2.x/3.x compatibility endpoints), against stand-in answers."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import httpx
import msgspec
import pytest

from api.influxql import TELEMETRY_FIELDS, rows
from api.routes.history import _telemetry_points, _time_formatter
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.lineprotocol import line
from liftwatch.protocol import format_ts

T0 = 1_795_723_199_000  # 2026-11-26T17:59:59Z: crosses a minute and an hour


def reference(
    series: list[dict[str, Any]], limit: int
) -> tuple[list[dict[str, Any]], bool, int | None]:
    """What the route did before: rows(), truncate, then format the times."""
    points = rows(copy.deepcopy(series), TELEMETRY_FIELDS)
    truncated = len(points) > limit
    points = points[:limit]
    last = points[-1]["time"] if points else None
    for p in points:
        p["time"] = format_ts(p["time"])
    return points, truncated, last


def series_like_influx(n: int, *, extra_tag: bool = False) -> dict[str, Any]:
    columns = ["time", "speed", "floor", "controller_faults", "seq", "door_zone", "load"]
    if extra_tag:
        columns.append("lift_id")
    faults = ['[{"namespace":"gb24476","code":2}]', "null", "not json", '"text"', None]
    values = []
    for i in range(n):
        row: list[Any] = [
            T0 + i * 1000,
            i % 3 if i % 2 else i / 10,  # a float field InfluxDB's JSON wrote as an int
            None if i % 4 == 0 else str(i // 60),
            faults[i % len(faults)],
            i,
            i % 2 == 0,
            None,
        ]
        if extra_tag:
            row.append("L-1")
        values.append(row)
    return {"name": "lift_state", "columns": columns, "values": values}


@pytest.mark.parametrize("limit", [1, 7, 119, 120, 121, 10_000])
def test_points_equal_rows_then_format_ts(limit: int) -> None:
    series = [series_like_influx(120), series_like_influx(30, extra_tag=True)]
    got = _telemetry_points(copy.deepcopy(series), limit)
    want = reference(series, limit)
    assert got == want
    # Same JSON: key order (time first), float typing, JSON fields parsed, "null" kept.
    assert msgspec.json.encode(got[0]) == msgspec.json.encode(want[0])
    if limit >= 4:
        assert got[0][1]["controller_faults"] is None
        assert got[0][0]["controller_faults"] == [{"namespace": "gb24476", "code": 2}]
        assert isinstance(got[0][1]["speed"], float)


def test_points_with_time_not_first_and_no_rows() -> None:
    s = series_like_influx(5)
    s["columns"] = [*s["columns"][1:], "time"]
    s["values"] = [[*v[1:], v[0]] for v in s["values"]]
    series = [{"name": "lift_state", "columns": ["time", "seq"], "values": []}, s]
    got = _telemetry_points(copy.deepcopy(series), 100)
    assert got == reference(series, 100)
    assert next(iter(got[0][0])) == "time"
    assert _telemetry_points([], 10) == ([], False, None)


def test_time_formatter_equals_format_ts() -> None:
    fmt = _time_formatter()
    rng = random.Random(5)
    times = [rng.randrange(0, 10**14) for _ in range(20_000)]
    times += list(range(T0 - 5_000, T0 + 125_000, 997))  # runs within and across minutes
    times += [0, 59_999, 60_000, 951_782_399_999, 951_782_400_000]  # 2000-02-29 ends
    assert [fmt(t) for t in times] == [format_ts(t) for t in times]


# -- InfluxDB answer formats -------------------------------------------------------------


@pytest.mark.integration
async def test_real_influxdb_answers_msgpack_with_the_same_values(influx: InfluxClient) -> None:
    lines = [
        line(
            "lift_state",
            {"lift_id": "L-1"},
            {"speed": 3.0, "floor": "B1", "seq": i, "door_zone": True, "controller_faults": "[]"},
            T0 + i * 1000,
        )
        for i in range(5)
    ]
    await influx.write("\n".join(lines))
    q = (
        'SELECT "speed", "floor", "seq", "door_zone", "position" FROM "lift_state" '
        'WHERE "lift_id" = $l'
    )
    packed = await influx.query(q, {"l": "L-1"})
    assert influx._msgpack is True  # InfluxDB 1.x honoured Accept: application/x-msgpack
    async with httpx.AsyncClient(base_url=influx.url) as http:
        r = await http.post(
            "/query",
            data={"db": influx.database, "q": q, "epoch": "ms", "params": json.dumps({"l": "L-1"})},
        )
    plain = r.json()["results"][0]["series"]
    assert packed == plain
    assert packed[0]["values"][0] == [T0, 3.0, "B1", 0, True, None]
    assert type(packed[0]["values"][0][1]) is float  # JSON would have said 3
    # Errors still carry InfluxDB's message (decoded from the MessagePack error answer).
    with pytest.raises(InfluxError) as bad:
        await influx.query('SELECT "speed" FROM "lift_state" WHERE')
    assert bad.value.status == 400 and "error parsing query" in bad.value.body


SERIES: list[dict[str, Any]] = [{"name": "m", "columns": ["time", "v"], "values": [[1, 2.5]]}]
RESULT = {"results": [{"statement_id": 0, "series": SERIES}]}


def stand_in(answer: Any) -> tuple[InfluxClient, list[str | None]]:
    """A client whose InfluxDB is ``answer(accept) -> httpx.Response``; records Accept."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        accept = request.headers.get("accept")
        seen.append(accept)
        response: httpx.Response = answer(accept)
        return response

    client = InfluxClient("http://influx.test", "db", transport=httpx.MockTransport(handler))
    return client, seen


async def test_server_that_ignores_accept_is_read_as_json() -> None:
    client, seen = stand_in(lambda accept: httpx.Response(200, json=RESULT))
    assert await client.query("SELECT v FROM m") == SERIES
    assert await client.query("SELECT v FROM m") == SERIES
    assert seen == ["application/x-msgpack", "application/x-msgpack"]
    await client.aclose()


async def test_server_that_refuses_msgpack_is_asked_in_json_from_then_on() -> None:
    def answer(accept: str | None) -> httpx.Response:
        if accept == "application/x-msgpack":
            return httpx.Response(406, text="unsupported Accept")
        return httpx.Response(200, json=RESULT)

    client, seen = stand_in(answer)
    assert await client.query("SELECT v FROM m") == SERIES
    assert await client.query("SELECT v FROM m") == SERIES
    assert seen == ["application/x-msgpack", "*/*", "*/*"]
    await client.aclose()


async def test_msgpack_answers_and_unavailable_server_are_not_retried_in_json() -> None:
    def answer(accept: str | None) -> httpx.Response:
        return httpx.Response(
            200,
            content=msgspec.msgpack.encode(RESULT),
            headers={"content-type": "application/x-msgpack"},
        )

    client, seen = stand_in(answer)
    assert await client.query("SELECT v FROM m") == SERIES
    assert seen == ["application/x-msgpack"]  # no second, JSON request
    await client.aclose()

    down, seen = stand_in(lambda accept: httpx.Response(503, text="down"))
    with pytest.raises(InfluxError) as err:
        await down.query("SELECT v FROM m")
    assert err.value.status == 503 and err.value.retryable
    assert seen == ["application/x-msgpack"]
    await down.aclose()
