"""CSV that a spreadsheet opens as data, never as formulas (OWASP "CSV Injection").

Every CSV the API produces is written with :func:`writer`, starts with :func:`header` (a
UTF-8 BOM, so that Excel shows Chinese text) and every cell goes through :func:`cell`. The
rule:

- a cell is prefixed with ``'`` when, after leading whitespace and invisible characters
  (spaces of any kind, zero-width characters, BOM, other format/control characters) are
  skipped, it starts with ``= + - @`` or one of their fullwidth/small forms (``＝ ＋ － ＠``,
  ``﹦ ﹢ ﹣ ﹫``), or it starts with TAB or CR;
- it is prefixed too when it contains a separator (``,`` ``;`` TAB CR LF) followed, after the
  same characters (and ``"``), by one of those: a spreadsheet whose locale separates cells
  with ``;`` (or one that reads the file as tab-separated) starts a new cell there, so a
  ``'`` is also inserted right after each such separator. ``x;=cmd|' /C calc'!A0;`` is written
  ``'x;'=cmd|' /C calc'!A0;``: every piece of it, however the line is split, is text.

Values come from devices (a fault ``namespace`` becomes the alarm's ``subtype``) and from the
registry (lift name and address), so none of them is trusted.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from typing import Any

FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b")
_SEPARATOR = re.compile(r"[,;\t\r\n]")


def _invisible(ch: str) -> bool:
    """Whitespace, or a character a spreadsheet does not show (Cf: zero-width, BOM, bidi
    marks; Cc: controls)."""
    return ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp")


def _starts_formula(text: str, start: int, *, skip_quotes: bool = False) -> bool:
    i = start
    while i < len(text) and (_invisible(text[i]) or (skip_quotes and text[i] == '"')):
        i += 1
    return i < len(text) and text[i] in FORMULA_START


def neutralise(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates (the rule above); unchanged if harmless."""
    if not text:
        return text
    cuts = [
        m.end()
        for m in _SEPARATOR.finditer(text)
        if _starts_formula(text, m.end(), skip_quotes=True)
    ]
    if not cuts and not (text[0] in ("\t", "\r") or _starts_formula(text, 0)):
        return text
    pieces, last = ["'"], 0
    for cut in cuts:
        pieces += [text[last:cut], "'"]
        last = cut
    pieces.append(text[last:])
    return "".join(pieces)


def cell(value: Any) -> str:
    """The CSV cell text for ``value``: booleans as true/false, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralise(str(value))


# Every CSV export starts with a UTF-8 byte order mark: without it Excel (on Windows, in a
# Chinese locale above all) reads UTF-8 as the ANSI code page and shows 困人 as mojibake.
BOM = "\ufeff"


def header(columns: Any) -> str:
    """The first chunk of an export: the BOM and the header row."""
    buf = io.StringIO()
    buf.write(BOM)
    writer(buf).writerow(columns)
    return buf.getvalue()


def writer(buf: Any) -> Any:
    """The csv writer every export uses (RFC 4180 quoting: cells holding a comma, quote or
    line break are quoted)."""
    return csv.writer(buf)
