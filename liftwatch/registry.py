"""The lift registry's records and their validation, shared by the CLI and the API.

A lift's registry entry tunes its alarms: ``rated_speed`` (overspeed), ``urban`` (arrival
deadline 30 or 60 min), ``active`` (inactive lifts raise nothing) and ``overrides`` (per-lift
thresholds, keyed like ``alerts_thresholds``).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from liftwatch.thresholds import ThresholdError, check

LiftId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
CompanyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Company(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company_id: CompanyId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    contact: Annotated[str, StringConstraints(max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    active: bool = True


# Validation context for lifts read back from the store (see Lift._known_thresholds).
STORED: Final = {"stored": True}


class Lift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lift_id: LiftId
    registration_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,32}$")] | None = (
        None
    )
    # 96333 rescue code: the six digits on the car's sign a trapped passenger reads out.
    rescue_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    address: Annotated[str, StringConstraints(max_length=500)] = ""
    area_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,12}$")] | None = None
    company_id: CompanyId | None = None
    # m/s; None = not known: the lift is not checked for overspeed (FAULTS.md 1.1 #2).
    rated_speed: Annotated[float, Field(gt=0, le=20)] | None = None
    floors: Annotated[int, Field(ge=2, le=300)] | None = None
    urban: bool = True
    active: bool = True
    overrides: dict[str, float] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        """A misspelt key would silently leave the default in force for this lift: refuse it
        on input (API, import). Rows read back from the store (``context=STORED``) pass."""
        if isinstance(info.context, dict) and info.context.get("stored"):
            return value

        try:
            return check(value, "overrides")
        except ThresholdError as exc:
            raise ValueError(str(exc)) from None


class ImportRowError(BaseModel):
    line: int
    lift_id: str | None
    error: str


CSV_COLUMNS = (
    "lift_id",
    "registration_code",
    "rescue_code",
    "name",
    "address",
    "area_code",
    "company_id",
    "rated_speed",
    "floors",
    "urban",
    "active",
    "overrides",
)
# Column names a Chinese registry export (特种设备/电梯 台账) uses, as aliases of CSV_COLUMNS
# (docs/registry.md). A unit in brackets after a name is ignored: 额定速度(m/s), 额定速度（m/s）.
HEADER_ALIASES: Final[dict[str, str]] = {
    "电梯编号": "lift_id",
    "设备编号": "lift_id",
    "注册代码": "registration_code",
    "设备代码": "registration_code",
    "使用登记证编号": "registration_code",
    "救援码": "rescue_code",
    "救援识别码": "rescue_code",
    "应急救援码": "rescue_code",
    "96333救援码": "rescue_code",
    "名称": "name",
    "电梯名称": "name",
    "地址": "address",
    "安装地址": "address",
    "使用地点": "address",
    "区域代码": "area_code",
    "行政区划代码": "area_code",
    "维保单位": "company_id",
    "维保单位编号": "company_id",
    "额定速度": "rated_speed",
    "层数": "floors",
    "层站数": "floors",
    "城区": "urban",
    "是否城区": "urban",
    "启用": "active",
    "是否启用": "active",
    "阈值": "overrides",
}
_UNIT_SUFFIX = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")
_INVISIBLE = "\ufeff\u200b\u00a0"

_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "y": True,
    "是": True,
    "0": False,
    "false": False,
    "no": False,
    "n": False,
    "否": False,
}
BOOL_FORMS: Final = "true/false, yes/no, 1/0 or 是/否"


def canonical_column(header: str) -> str:
    """The CSV_COLUMNS name a header cell means (English names in any case, the Chinese
    aliases of :data:`HEADER_ALIASES`, a bracketed unit ignored); unknown names come back
    stripped but otherwise unchanged."""
    name = header.strip().strip(_INVISIBLE).strip()
    if name.lower() in CSV_COLUMNS:
        return name.lower()
    bare = _UNIT_SUFFIX.sub("", name)
    return HEADER_ALIASES.get(name) or HEADER_ALIASES.get(bare) or bare.lower() if bare else name


# Encodings a spreadsheet on a Chinese system writes: GBK ("CSV (逗号分隔)" of Excel), its
# superset GB18030, and GB2312 are all read as GB18030, which decodes each of them alike.
_GB_NAMES = frozenset({"gbk", "gb2312", "gb18030", "cp936", "ms936", "euc-cn", "euccn"})


class EncodingProblem(ValueError):
    """The bytes cannot be read as text (names the encoding tried and where it failed)."""


def decode_text(raw: bytes, encoding: str | None = None) -> tuple[str, str]:
    """``(text, encoding used)`` of an import file. With ``encoding`` (a CLI flag, an upload's
    ``charset``) exactly that one (GBK and GB2312 are read as GB18030, UTF-8 drops a BOM);
    without: UTF-8 (with or without BOM) when the bytes are valid UTF-8, else GB18030.
    GB18030 maps almost any byte sequence to something, so it is only tried when strict UTF-8
    has failed. Raises :class:`EncodingProblem`."""
    if encoding is not None:
        name = _codec(encoding)
        try:
            return raw.decode(name), name
        except UnicodeDecodeError as exc:
            raise EncodingProblem(
                f"not {encoding} text: {_where(raw, exc.start)} cannot be decoded"
            ) from None
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as utf8:
        try:
            return raw.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            raise EncodingProblem(
                f"neither UTF-8 nor GB18030/GBK text (not UTF-8 at {_where(raw, utf8.start)}); "
                'save it as "CSV UTF-8" or name its encoding'
            ) from None


def _codec(encoding: str) -> str:
    wanted = encoding.strip().strip('"').lower()
    if wanted in _GB_NAMES:
        return "gb18030"
    try:
        name = codecs.lookup(wanted).name
    except LookupError:
        raise EncodingProblem(
            f"unknown encoding {encoding[:40]!r} (use utf-8 or gb18030/gbk)"
        ) from None
    return "utf-8-sig" if name == "utf-8" else name


def _where(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    return f"byte {offset} (line {line})"


def _csv_value(column: str, raw: str) -> Any:
    value = raw.strip()
    if value == "":
        return None
    if column in ("urban", "active"):
        key = value.lower()
        if key not in _BOOL:
            raise ValueError(f"{column} must be {BOOL_FORMS}, got {value[:20]!r}")
        return _BOOL[key]
    if column == "overrides":
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"overrides is not JSON: {exc.msg}") from None
        if not isinstance(parsed, dict):
            raise ValueError("overrides must be a JSON object")
        return parsed
    return value


def parse_csv(text: str) -> tuple[list[tuple[int, Lift]], list[ImportRowError]]:
    """Parse a registry CSV (header row required). Returns valid rows with their line numbers
    and the errors of the others; one bad row never stops the rest (see :func:`iter_csv`)."""
    rows: list[dict[str, Any]] = []
    errors: list[ImportRowError] = []
    lines: list[int] = []
    for line, item in iter_csv(text):
        if isinstance(item, ImportRowError):
            errors.append(item)
        else:
            rows.append(item)
            lines.append(line)
    valid, more = validate_rows(rows, lines)
    return valid, errors + more


def iter_csv(text: str) -> Iterator[tuple[int, dict[str, Any] | ImportRowError]]:
    """The rows of a registry CSV one by one, as ``(line, row)`` (the row's non-empty cells,
    not validated yet) or ``(line, error)``; a header that cannot be used yields one error
    starting "bad header" and nothing else. Lines may end in LF, CRLF or a bare CR; a row the
    csv module cannot read (say a field over its 128 KiB limit) is an error, and the rows
    after it are read on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        yield 1, ImportRowError(line=1, lift_id=None, error=f"bad header: {exc}")
        return
    columns = [canonical_column(h) for h in header]
    problems = []
    if "lift_id" not in columns:
        problems.append("missing column lift_id (or 电梯编号)")
    unknown = [h for h, c in zip(header, columns, strict=True) if c not in CSV_COLUMNS and c]
    if unknown:
        problems.append(f"unknown columns {unknown} (see docs/registry.md for the names)")
    twice = sorted({c for c in columns if c and columns.count(c) > 1})
    if twice:
        problems.append(f"more than one column for {twice}")
    if problems:
        yield 1, ImportRowError(line=1, lift_id=None, error="bad header: " + "; ".join(problems))
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # this row only; the reader goes on with the next line
            yield (
                reader.line_num,
                ImportRowError(line=reader.line_num, lift_id=None, error=str(exc)),
            )
            continue
        line = reader.line_num
        if not cells:  # a blank line, as csv.DictReader skips it
            continue
        named = dict(zip(columns, cells, strict=False))
        lift_id = (named.get("lift_id") or "").strip() or None
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
            yield line, ImportRowError(line=line, lift_id=lift_id, error="too many fields")
            continue
        row: dict[str, Any] = {}
        errors: list[str] = []
        for column, cell in named.items():
            if not column:  # an unnamed trailing column, empty in the header
                continue
            try:
                value = _csv_value(column, cell)
            except ValueError as exc:
                errors.append(str(exc))
                continue
            if value is not None:
                row[column] = value
        if errors:
            # Every problem of the row at once: the cells' and the other fields' checks.
            bad = {e.split(" ", 1)[0] for e in errors}
            errors += _field_errors(row, skip=bad)
            yield line, ImportRowError(line=line, lift_id=lift_id, error="; ".join(errors))
            continue
        yield line, row


def _field_errors(row: dict[str, Any], skip: set[str]) -> list[str]:
    """The model's complaints about a row's other fields (those not in ``skip``)."""
    try:
        Lift.model_validate(row)
    except ValidationError as exc:
        return [
            _describe_one(err)
            for err in exc.errors()
            if not err["loc"] or str(err["loc"][0]) not in skip
        ]
    return []


def parse_json(data: Any) -> tuple[list[tuple[int, Lift]], list[ImportRowError]]:
    """Parse a JSON list of lift objects; "line" numbers are 1-based list positions."""
    if not isinstance(data, list):
        return [], [ImportRowError(line=0, lift_id=None, error="expected a JSON list of lifts")]
    return validate_rows(data, list(range(1, len(data) + 1)))


def validate_rows(
    rows: Iterable[Any], lines: list[int], seen: dict[str, int] | None = None
) -> tuple[list[tuple[int, Lift]], list[ImportRowError]]:
    """Validate rows; a lift id already in ``seen`` (id → first line; pass the same dict
    to validate a file in chunks) is a duplicate."""
    valid: list[tuple[int, Lift]] = []
    errors: list[ImportRowError] = []
    seen = {} if seen is None else seen
    for line, row in zip(lines, rows, strict=True):
        lift_id = row.get("lift_id") if isinstance(row, dict) else None
        try:
            lift = Lift.model_validate(row)
        except ValidationError as exc:
            errors.append(ImportRowError(line=line, lift_id=lift_id, error=describe_errors(exc)))
            continue
        if lift.lift_id in seen:
            errors.append(
                ImportRowError(
                    line=line,
                    lift_id=lift.lift_id,
                    error=f"duplicate lift_id (first on line {seen[lift.lift_id]})",
                )
            )
            continue
        seen[lift.lift_id] = line
        valid.append((line, lift))
    return valid, errors


def describe_errors(exc: ValidationError) -> str:
    """Every error of a row, joined by "; "."""
    return "; ".join(_describe_one(err) for err in exc.errors())


def _describe_one(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "row"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}"
