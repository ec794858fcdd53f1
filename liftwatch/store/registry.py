"""SQL for companies and lifts."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from pydantic import ValidationError

from liftwatch.clock import now_ms
from liftwatch.registry import CSV_COLUMNS, STORED, Company, Lift
from liftwatch.store import alarms, changes
from liftwatch.store.db import (
    Connection,
    Database,
    IntegrityError,
    Row,
    is_foreign_key_violation,
)
from liftwatch.thresholds import unusable

log = logging.getLogger("liftwatch.store")

Outcome = Literal["inserted", "updated", "unchanged"]

# A lift import commits at least this often, so the writers' lock it holds never keeps an
# alarm transition waiting longer (about 100 rows on SQLite, 20–40 on PostgreSQL).
IMPORT_HOLD_S = 0.02


def upsert_company(db: Database, company: Company) -> Outcome:
    with db.transaction() as conn:
        return _upsert_company(conn, company)


def _upsert_company(conn: Connection, company: Company) -> Outcome:
    row = conn.execute(
        "SELECT * FROM companies WHERE company_id = ?", (company.company_id,)
    ).fetchone()
    now = now_ms()
    if row is None:
        conn.execute(
            "INSERT INTO companies"
            " (company_id, name, contact, phone, active, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                company.company_id,
                company.name,
                company.contact,
                company.phone,
                int(company.active),
                now,
                now,
            ),
        )
        changes.record_in(conn, changes.COMPANY, company.company_id, now)
        return "inserted"
    if _company_from_row(row) == company:
        return "unchanged"
    conn.execute(
        "UPDATE companies SET name = ?, contact = ?, phone = ?, active = ?, updated_at = ?"
        " WHERE company_id = ?",
        (
            company.name,
            company.contact,
            company.phone,
            int(company.active),
            now,
            company.company_id,
        ),
    )
    # A deactivated company's open event streams end at once, in every API process.
    changes.record_in(conn, changes.COMPANY, company.company_id, now)
    return "updated"


def _company_from_row(row: Row) -> Company:
    return Company(
        company_id=row["company_id"],
        name=row["name"],
        contact=row["contact"],
        phone=row["phone"],
        active=bool(row["active"]),
    )


def get_company(db: Database, company_id: str) -> Company | None:
    row = db.conn.execute("SELECT * FROM companies WHERE company_id = ?", (company_id,)).fetchone()
    return None if row is None else _company_from_row(row)


def list_companies(db: Database) -> list[Company]:
    rows = db.conn.execute("SELECT * FROM companies ORDER BY company_id").fetchall()
    return [_company_from_row(r) for r in rows]


def lift_from_row(row: Row) -> Lift:
    return checked_lift_from_row(row)[0]


def checked_lift_from_row(row: Row) -> tuple[Lift, str | None]:
    """The stored lift, and why it is not exactly as stored (None when it is).

    Stored: never refuse what an older version accepted (an unknown override key is ignored
    by the rules), and never let one bad row stop the API or the alerts engine from reading
    (FAULTS.md 1.1 #1): a field that does not validate falls back to its default, and the
    returned reason says which (the engine flags and logs that lift; the API shows it)."""
    values: dict[str, Any] = {k: row[k] for k in CSV_COLUMNS if k != "overrides"}
    values["urban"] = bool(row["urban"])
    values["active"] = bool(row["active"])
    problems: list[str] = []
    try:
        overrides = json.loads(row["overrides"])
    except (TypeError, ValueError):
        overrides = None
    if not isinstance(overrides, dict):
        problems.append("overrides")
        overrides = {}

    ignored = unusable(overrides)
    if ignored:
        # Out of range or unknown: the engine would ignore them; leaving them out of the
        # entry keeps every reader (API answers, the engine) on what is actually in force.
        overrides = {k: v for k, v in overrides.items() if k not in ignored}
        problems.append("overrides " + ", ".join(ignored))
    values["overrides"] = overrides
    try:
        lift = Lift.model_validate(values, context=STORED)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        values["lift_id"] = "L"  # a valid stand-in, put back below (ids are never rewritten)
        for name in sorted(bad - {"lift_id"}):
            values.pop(name, None)
            problems.append(name)
        try:
            lift = Lift.model_validate(values, context=STORED)
        except ValidationError:
            lift = Lift.model_validate({"lift_id": "L"}, context=STORED)
            problems.append("row")
        lift = lift.model_copy(update={"lift_id": str(row["lift_id"])})
    if not problems:
        return lift, None
    return lift, "stored " + ", ".join(problems) + " unusable: defaults apply"


def upsert_lift(db: Database, lift: Lift) -> Outcome:
    with db.transaction() as conn:
        return upsert_lift_in(conn, lift)


def upsert_lift_in(conn: Connection, lift: Lift, *, record: bool = True) -> Outcome:
    """Insert or update one lift inside an open transaction.

    Raises a store ``IntegrityError`` for an unknown company or a registration code that
    belongs to another lift. A change is also a change-feed row (kind ``registry``: the alerts
    engine of any process refreshes at once) unless ``record`` is False (an import records
    one for all its rows).
    """
    row = conn.execute("SELECT * FROM lifts WHERE lift_id = ?", (lift.lift_id,)).fetchone()
    now = now_ms()
    values: dict[str, Any] = lift.model_dump()
    values["overrides"] = json.dumps(lift.overrides, sort_keys=True)
    values["urban"] = int(lift.urban)
    values["active"] = int(lift.active)
    values["change_seq"] = next_change_seq(conn)
    cols = list(values)
    if row is None:
        conn.execute(
            f"INSERT INTO lifts ({', '.join(cols)}, created_at, updated_at)"  # noqa: S608 - fixed column names
            f" VALUES ({', '.join('?' * len(cols))}, ?, ?)",
            [*values.values(), now, now],
        )
        alarms.move_unresolved(conn, lift.lift_id, lift.company_id, now)
        if record:
            changes.record_in(conn, changes.REGISTRY, lift.lift_id, now)
        return "inserted"
    if lift_from_row(row) == lift:
        return "unchanged"
    assignments = ", ".join(f"{c} = ?" for c in cols if c != "lift_id")
    conn.execute(
        f"UPDATE lifts SET {assignments}, updated_at = ? WHERE lift_id = ?",  # noqa: S608
        [*(v for c, v in values.items() if c != "lift_id"), now, lift.lift_id],
    )
    alarms.move_unresolved(conn, lift.lift_id, lift.company_id, now)
    if record:
        changes.record_in(conn, changes.REGISTRY, lift.lift_id, now)
    return "updated"


def next_change_seq(conn: Connection) -> int:
    """The registry's next change number (migration 0008), inside the write transaction."""
    return int(conn.execute("SELECT COALESCE(MAX(change_seq), 0) + 1 FROM lifts").fetchone()[0])


def lifts_changed_chunk(
    db: Database, seq: int, limit: int
) -> tuple[list[tuple[Lift, str | None, int]], int]:
    """Up to ``limit`` lifts changed after change number ``seq`` (oldest change first), each
    as ``(lift, problem, created_at)`` (:func:`checked_lift_from_row`), and the highest
    change number among them (``seq`` when there are none)."""
    rows = db.conn.execute(
        "SELECT * FROM lifts WHERE change_seq > ? ORDER BY change_seq LIMIT ?", (seq, limit)
    ).fetchall()
    out = [(*checked_lift_from_row(r), int(r["created_at"])) for r in rows]
    return out, max((int(r["change_seq"]) for r in rows), default=seq)


def get_lift(db: Database, lift_id: str) -> Lift | None:
    row = db.conn.execute("SELECT * FROM lifts WHERE lift_id = ?", (lift_id,)).fetchone()
    return None if row is None else lift_from_row(row)


def list_lifts(
    db: Database, *, company_id: str | None = None, limit: int = 1000, after: str = ""
) -> list[Lift]:
    if company_id is None:
        rows = db.conn.execute(
            "SELECT * FROM lifts WHERE lift_id > ? ORDER BY lift_id LIMIT ?", (after, limit)
        ).fetchall()
    else:
        rows = db.conn.execute(
            "SELECT * FROM lifts WHERE company_id = ? AND lift_id > ? ORDER BY lift_id LIMIT ?",
            (company_id, after, limit),
        ).fetchall()
    return [lift_from_row(r) for r in rows]


def all_lifts(db: Database) -> list[Lift]:
    return [lift_from_row(r) for r in db.conn.execute("SELECT * FROM lifts").fetchall()]


def all_lifts_checked(db: Database) -> list[tuple[Lift, str | None]]:
    """Every lift, each with why it is not as stored (:func:`checked_lift_from_row`)."""
    return [checked_lift_from_row(r) for r in db.conn.execute("SELECT * FROM lifts").fetchall()]


def get_lift_checked(db: Database, lift_id: str) -> tuple[Lift, str | None] | None:
    row = db.conn.execute("SELECT * FROM lifts WHERE lift_id = ?", (lift_id,)).fetchone()
    return None if row is None else checked_lift_from_row(row)


def set_lift_active(db: Database, lift_id: str, active: bool) -> bool:
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE lifts SET active = ?, updated_at = ?, change_seq = ? WHERE lift_id = ?",
            (int(active), now_ms(), next_change_seq(conn), lift_id),
        )
        if cur.rowcount > 0:
            changes.record_in(conn, changes.REGISTRY, lift_id)
        return cur.rowcount > 0


def import_lifts(
    db: Database, rows: list[tuple[int, Lift]]
) -> tuple[dict[str, list[int]], list[tuple[int, str, str]]]:
    """Apply validated rows idempotently, one savepoint per row, in transactions that hold the
    writers' lock at most :data:`IMPORT_HOLD_S` each (an alarm transition waiting for that lock
    waits no longer than that, on either backend: on PostgreSQL a row costs several round trips).

    Returns ``({"inserted": [lines], "updated": [...], "unchanged": [...]}, rejected)`` where
    ``rejected`` holds ``(line, lift_id, reason)`` for rows the database refused.
    """
    outcomes: dict[str, list[int]] = {"inserted": [], "updated": [], "unchanged": []}
    rejected: list[tuple[int, str, str]] = []
    todo = list(rows)
    while todo:
        if len(todo) < len(rows):
            time.sleep(0.001)  # let a writer that waited for the lock in before the next part
        written = False
        began = time.monotonic()
        with db.transaction() as conn:
            while todo and time.monotonic() - began < IMPORT_HOLD_S:
                line, lift = todo.pop(0)
                conn.execute("SAVEPOINT row")
                try:
                    outcome = upsert_lift_in(conn, lift, record=False)
                except IntegrityError as exc:
                    conn.execute("ROLLBACK TO row")
                    rejected.append((line, lift.lift_id, _integrity_reason(exc, lift)))
                else:
                    outcomes[outcome].append(line)
                    written = written or outcome != "unchanged"
                conn.execute("RELEASE row")
            if written:
                changes.record_in(conn, changes.REGISTRY, "*")  # one row per transaction
    return outcomes, rejected


def _integrity_reason(exc: Exception, lift: Lift) -> str:
    text = str(exc)
    if is_foreign_key_violation(exc):
        return f"unknown company_id {lift.company_id!r}: create the company first"
    if "registration_code" in text:
        return f"registration_code {lift.registration_code!r} already belongs to another lift"
    return text


def lift_card(conn: Connection | Database, lift_id: str) -> dict[str, Any] | None:
    """The registry fields a webhook body carries about the lift; None if unregistered."""
    c = conn.conn if isinstance(conn, Database) else conn
    row = c.execute(
        "SELECT name, address, company_id, rescue_code FROM lifts WHERE lift_id = ?", (lift_id,)
    ).fetchone()
    if row is None:
        return None
    return {
        "name": row["name"],
        "address": row["address"],
        "company_id": row["company_id"],
        "rescue_code": row["rescue_code"],
    }


def lifts_with_created_at(db: Database) -> dict[str, int]:
    """Registered lifts and when they were registered (the self-test clock's origin)."""
    return {r[0]: r[1] for r in db.conn.execute("SELECT lift_id, created_at FROM lifts")}
