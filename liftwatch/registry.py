"""The lift registry's records and their validation, shared by the CLI and the API.

A lift's registry entry tunes its alarms: ``rated_speed`` (overspeed), ``urban`` (arrival
deadline 30 or 60 min), ``active`` (inactive lifts raise nothing) and ``overrides`` (per-lift
thresholds, keyed like ``alerts_thresholds``).
"""

from __future__ import annotations

import csv
import io
import json
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
_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "y": True,
    "0": False,
    "false": False,
    "no": False,
    "n": False,
}


def _csv_value(column: str, raw: str) -> Any:
    value = raw.strip()
    if value == "":
        return None
    if column in ("urban", "active"):
        if value.lower() not in _BOOL:
            raise ValueError(f"{column} must be true/false, got {value[:20]!r}")
        return _BOOL[value.lower()]
    if column == "overrides":
        parsed = json.loads(value)
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
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        yield 1, ImportRowError(line=1, lift_id=None, error=f"bad header: {exc}")
        return
    missing = "lift_id" not in header
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if missing or unknown:
        detail = "missing column lift_id" if missing else f"unknown columns {unknown}"
        yield 1, ImportRowError(line=1, lift_id=None, error=f"bad header: {detail}")
        return
    rows_in = iter(reader)
    while True:
        try:
            raw = next(rows_in)
        except StopIteration:
            return
        except csv.Error as exc:  # this row only; the reader goes on with the next line
            yield (
                reader.line_num,
                ImportRowError(line=reader.line_num, lift_id=None, error=str(exc)),
            )
            continue
        line = reader.line_num
        if None in raw:
            yield (
                line,
                ImportRowError(line=line, lift_id=raw.get("lift_id"), error="too many fields"),
            )
            continue
        try:
            row = {k: _csv_value(k, v or "") for k, v in raw.items()}
        except ValueError as exc:
            yield line, ImportRowError(line=line, lift_id=raw.get("lift_id"), error=str(exc))
            continue
        yield line, {k: v for k, v in row.items() if v is not None}


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
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
