"""SQL for companies and lifts."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Literal

from liftwatch.registry import STORED, Company, Lift
from liftwatch.store import alarms
from liftwatch.store.db import Database

Outcome = Literal["inserted", "updated", "unchanged"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def upsert_company(db: Database, company: Company) -> Outcome:
    with db.transaction() as conn:
        return _upsert_company(conn, company)


def _upsert_company(conn: sqlite3.Connection, company: Company) -> Outcome:
    row = conn.execute(
        "SELECT * FROM companies WHERE company_id = ?", (company.company_id,)
    ).fetchone()
    now = _now_ms()
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
    return "updated"


def _company_from_row(row: sqlite3.Row) -> Company:
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


def lift_from_row(row: sqlite3.Row) -> Lift:
    values = {
        "lift_id": row["lift_id"],
        "registration_code": row["registration_code"],
        "rescue_code": row["rescue_code"],
        "name": row["name"],
        "address": row["address"],
        "area_code": row["area_code"],
        "company_id": row["company_id"],
        "rated_speed": row["rated_speed"],
        "floors": row["floors"],
        "urban": bool(row["urban"]),
        "active": bool(row["active"]),
        "overrides": json.loads(row["overrides"]),
    }
    # Stored: never refuse what an older version accepted (an unknown override key is ignored
    # by the rules), or one old row would stop the API and the alerts engine from reading.
    return Lift.model_validate(values, context=STORED)


def upsert_lift(db: Database, lift: Lift) -> Outcome:
    with db.transaction() as conn:
        return upsert_lift_in(conn, lift)


def upsert_lift_in(conn: sqlite3.Connection, lift: Lift) -> Outcome:
    """Insert or update one lift inside an open transaction.

    Raises ``sqlite3.IntegrityError`` for an unknown company or a registration code that
    belongs to another lift.
    """
    row = conn.execute("SELECT * FROM lifts WHERE lift_id = ?", (lift.lift_id,)).fetchone()
    now = _now_ms()
    values: dict[str, Any] = lift.model_dump()
    values["overrides"] = json.dumps(lift.overrides, sort_keys=True)
    values["urban"] = int(lift.urban)
    values["active"] = int(lift.active)
    cols = list(values)
    if lift.company_id is not None:
        alarms.adopt_unowned(conn, lift.lift_id, lift.company_id, now)
    if row is None:
        conn.execute(
            f"INSERT INTO lifts ({', '.join(cols)}, created_at, updated_at)"  # noqa: S608 - fixed column names
            f" VALUES ({', '.join('?' * len(cols))}, ?, ?)",
            [*values.values(), now, now],
        )
        return "inserted"
    if lift_from_row(row) == lift:
        return "unchanged"
    assignments = ", ".join(f"{c} = ?" for c in cols if c != "lift_id")
    conn.execute(
        f"UPDATE lifts SET {assignments}, updated_at = ? WHERE lift_id = ?",  # noqa: S608
        [*(v for c, v in values.items() if c != "lift_id"), now, lift.lift_id],
    )
    return "updated"


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


def set_lift_active(db: Database, lift_id: str, active: bool) -> bool:
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE lifts SET active = ?, updated_at = ? WHERE lift_id = ?",
            (int(active), _now_ms(), lift_id),
        )
        return cur.rowcount > 0


def import_lifts(
    db: Database, rows: list[tuple[int, Lift]]
) -> tuple[dict[str, list[int]], list[tuple[int, str, str]]]:
    """Apply validated rows idempotently in one transaction, one savepoint per row.

    Returns ``({"inserted": [lines], "updated": [...], "unchanged": [...]}, rejected)`` where
    ``rejected`` holds ``(line, lift_id, reason)`` for rows the database refused.
    """
    outcomes: dict[str, list[int]] = {"inserted": [], "updated": [], "unchanged": []}
    rejected: list[tuple[int, str, str]] = []
    with db.transaction() as conn:
        for line, lift in rows:
            conn.execute("SAVEPOINT row")
            try:
                outcome = upsert_lift_in(conn, lift)
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO row")
                rejected.append((line, lift.lift_id, _integrity_reason(exc, lift)))
            else:
                outcomes[outcome].append(line)
            conn.execute("RELEASE row")
    return outcomes, rejected


def _integrity_reason(exc: sqlite3.IntegrityError, lift: Lift) -> str:
    text = str(exc)
    if "FOREIGN KEY" in text:
        return f"unknown company_id {lift.company_id!r}: create the company first"
    if "registration_code" in text:
        return f"registration_code {lift.registration_code!r} already belongs to another lift"
    return text
