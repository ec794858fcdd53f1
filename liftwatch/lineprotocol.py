"""InfluxDB line protocol, built by hand because escaping is the whole job.

Rules (InfluxDB line protocol reference, checked against InfluxDB 1.6 in
tests/ingest/test_lineprotocol.py):
- measurement: escape ``,`` and space;
- tag keys, tag values, field keys: escape ``,``, ``=`` and space;
- string field values: wrap in ``"``, escape ``"`` and ``\\``; newlines inside are data and
  round-trip verbatim;
- outside a string field a newline ends the point and no escape exists for it, so newlines and
  other control characters in measurement, tag keys/values and field keys become spaces.
A backslash before any other character is literal, so backslashes elsewhere need no escape.
InfluxDB's parser treats *any* backslash right before a separator as an escape (it looks only
at the previous byte), so a name or tag value cannot end in a backslash: trailing backslashes
are dropped there (our tag values are lift ids and event types, which never contain one).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping

FieldValue = bool | int | float | str

# Control characters become an *escaped* space: a bare one would end the section.
_CONTROL = dict.fromkeys(range(32), "\\ ") | {0x7F: "\\ "}
_MEAS = str.maketrans(_CONTROL | {",": "\\,", " ": "\\ "})
_KEY = str.maketrans(_CONTROL | {",": "\\,", "=": "\\=", " ": "\\ "})
# Inside a quoted string field a newline is data, not a line end (checked against InfluxDB
# 1.6: it round-trips verbatim), so only the quote and the backslash are escaped.
_STR = str.maketrans({"\\": "\\\\", '"': '\\"'})


# Keys, measurements and tag values repeat endlessly (a fleet has a few field names and a
# few thousand lift ids): escaping is cached; the bound keeps memory flat.
@functools.lru_cache(maxsize=1 << 16)
def _key(text: str) -> str:
    # A trailing backslash would escape the ',' '=' or ' ' we put after it.
    return text.rstrip("\\").translate(_KEY)


@functools.lru_cache(maxsize=1024)
def escape_measurement(name: str) -> str:
    return name.rstrip("\\").translate(_MEAS)


escape_tag = _key


# The field-key scanner, unlike the tag scanner, consumes backslash pairs: a backslash right
# before a character we escape must itself be doubled there, or it would cancel our escape.
_BACKSLASHES_BEFORE_SPECIAL = re.compile(r"(\\+)(?=[,= \x00-\x1f\x7f])")


@functools.lru_cache(maxsize=4096)
def _field_key(key: str) -> str:
    key = _BACKSLASHES_BEFORE_SPECIAL.sub(lambda m: m.group(1) * 2, key.rstrip("\\"))
    out = key.translate(_KEY)
    if not out:
        raise ValueError(f"invalid field key {key!r}")
    return out


def escape_string_field(value: str) -> str:
    # str.translate is slow even when nothing changes; most values have nothing to escape.
    if "\\" in value or '"' in value:
        value = value.translate(_STR)
    return '"' + value + '"'


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
    timestamp: int,
) -> str:
    """One point; ``timestamp`` is in the precision the write request names (ms for alarm
    transitions, µs for device points). ``None`` fields are left out; at least one field
    must remain. Tags are sorted by key, as InfluxDB recommends for write performance."""
    name = escape_measurement(measurement)
    if not name:
        raise ValueError("a point needs a measurement name")
    parts = [name]
    for key in sorted(tags):
        tag_key, tag_value = _key(key), _key(tags[key])
        if tag_key and tag_value:
            parts.append(f",{tag_key}={tag_value}")
    body = ",".join(
        f"{_field_key(k)}={format_field(v)}" for k, v in fields.items() if v is not None
    )
    if not body:
        raise ValueError("a point needs at least one field")
    return f"{''.join(parts)} {body} {timestamp}"
