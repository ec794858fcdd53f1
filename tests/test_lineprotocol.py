"""The line-protocol encoder against the real InfluxDB 1.6: hostile text in every position
(measurement, tag key, tag value, field key, string field) writes exactly one point, never
more, and string fields come back verbatim."""

from __future__ import annotations

import pytest

from liftwatch.influx import InfluxClient, quote_ident
from liftwatch.lineprotocol import escape_string_field, format_field, line

pytestmark = pytest.mark.integration

HOSTILE = [
    "plain",
    "comma,here",
    "space here",
    "eq=ual",
    'quo"te',
    "back\\slash",
    "trailing\\",
    "\\leading",
    "double\\\\",
    "esc\\,comma",
    "esc\\ space",
    "esc\\=eq",
    'esc\\"quote',
    "new\nline",
    "cr\rlf\n",
    "tab\there",
    'x" ,lift_id=evil seq=1i 1\nlift_state,lift_id=evil seq=2i 2',
    "lift_state,lift_id=evil seq=3i 3",
    "\n",
    " ",
    "=",
    ",",
    '"',
    "\\",
    "\\\\\\",
    "unicode ✓ 电梯",
    "\x00nul\x7f",
]


async def _points(client: InfluxClient, measurement: str) -> list[list[object]]:
    series = await client.query(f"SELECT * FROM {quote_ident(measurement)}")  # noqa: S608
    return [row for s in series for row in s["values"]]


@pytest.mark.parametrize("text", HOSTILE)
async def test_string_field_round_trips_verbatim(influx: InfluxClient, text: str) -> None:
    await influx.write(line("m", {"lift_id": "L1"}, {"s": text, "n": 1}, 1_000))
    rows = await _points(influx, "m")
    assert len(rows) == 1
    series = await influx.query('SELECT "s" FROM "m"')
    assert series[0]["values"][0][1] == text


async def test_hostile_names_write_exactly_one_point_each(influx: InfluxClient) -> None:
    body = []
    for i, text in enumerate(HOSTILE):
        # Each point is alone in its own measurement "p{i}": injection would create more.
        body.append(
            line(f"p{i}", {"lift_id": text, f"k{text}": "v"}, {f"f{text}": 1, "n": i}, 1_000)
        )
        body.append(line(f"q{i}{text}", {"lift_id": "L"}, {"n": i}, 2_000))
    await influx.write("\n".join(body))
    measurements = await influx.query("SHOW MEASUREMENTS")
    names = [v[0] for v in measurements[0]["values"]]
    assert len(names) == 2 * len(HOSTILE)
    for i in range(len(HOSTILE)):
        rows = await _points(influx, f"p{i}")
        assert len(rows) == 1
    # Tag values without trailing backslashes or control characters round-trip verbatim.
    for i, text in enumerate(HOSTILE):
        if text.endswith("\\") or any(ord(c) < 32 or ord(c) == 127 for c in text):
            continue
        query = f'SELECT "n" FROM "p{i}" WHERE "lift_id" = $t'  # noqa: S608 - i is an int
        got = await influx.query(query, {"t": text})
        assert got and got[0]["values"][0][1] == i, text


def test_field_types_never_change() -> None:
    assert format_field(True) == "true"
    assert format_field(3) == "3i"
    assert format_field(3.0) == "3.0"
    assert format_field(float(1)) == "1.0"
    with pytest.raises(ValueError, match="NaN"):
        format_field(float("nan"))
    assert escape_string_field('a"b\\') == '"a\\"b\\\\"'


def test_line_shape() -> None:
    assert line("m", {"b": "2", "a": "1", "e": ""}, {"f": 1.5, "g": None}, 7) == "m,a=1,b=2 f=1.5 7"
    with pytest.raises(ValueError, match="at least one field"):
        line("m", {}, {"f": None}, 1)
    with pytest.raises(ValueError, match="field key"):
        line("m", {}, {"\\": 1}, 1)
