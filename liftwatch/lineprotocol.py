"""InfluxDB line protocol, built by hand because escaping is the whole job.

Rules (InfluxDB line protocol reference):
- measurement: escape ``,`` and space;
- tag keys, tag values, field keys: escape ``,``, ``=`` and space;
- string field values: wrap in ``"``, escape ``"`` and ``\\``; newlines inside are data;
- outside a string field a newline ends the point and no escape exists for it, so newlines and
  other control characters in measurement, tag keys/values and field keys become spaces.
A backslash before any other character is literal, so backslashes elsewhere need no escape;
a trailing backslash in a key or tag value would escape our own separator, so it is doubled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = bool | int | float | str

_CONTROL = dict.fromkeys(range(32), " ") | {0x7F: " "}
_MEAS = str.maketrans(_CONTROL | {",": "\\,", " ": "\\ "})
_KEY = str.maketrans(_CONTROL | {",": "\\,", "=": "\\=", " ": "\\ "})
# Inside a quoted string field a newline is data, not a line end (checked against InfluxDB
# 1.6: it round-trips verbatim), so only the quote and the backslash are escaped.
_STR = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _key(text: str) -> str:
    out = text.translate(_KEY)
    # A lone trailing backslash would escape the ',' '=' or ' ' we put after it.
    if out.endswith("\\") and not out.endswith("\\\\"):
        out += "\\"
    return out


def escape_measurement(name: str) -> str:
    out = name.translate(_MEAS)
    if out.endswith("\\") and not out.endswith("\\\\"):
        out += "\\"
    return out


escape_tag = _key


def escape_string_field(value: str) -> str:
    return '"' + value.translate(_STR) + '"'


def format_field(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int in Python.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("InfluxDB cannot store NaN or Infinity")
        return repr(value)
    return escape_string_field(value)


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    ts_ms: int,
) -> str:
    """One point, millisecond precision. ``None`` fields are left out; at least one field
    must remain. Tags are sorted by key, as InfluxDB recommends for write performance."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value != "":
            parts.append(f",{_key(key)}={_key(value)}")
    body = ",".join(f"{_key(k)}={format_field(v)}" for k, v in fields.items() if v is not None)
    if not body:
        raise ValueError("a point needs at least one field")
    return f"{''.join(parts)} {body} {ts_ms}"
