"""SQL for maintenance windows (FAULTS.md § Suppression): planned work per lift, inside which
derived alarms are recorded as suppressed. The alerts engine asks :func:`in_maintenance` in
its transaction; the API creates, lists and deletes windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liftwatch.clock import now_ms
from liftwatch.store.db import Connection, Database, from_row


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    window_id: int
    lift_id: str
    starts_at: int
    ends_at: int
    reason: str
    created_by: str
    created_at: int


def add_maintenance_window(
    db: Database,
    lift_id: str,
    starts_at: int,
    ends_at: int,
    *,
    reason: str = "",
    created_by: str,
) -> MaintenanceWindow:
    if ends_at <= starts_at:
        raise ValueError("a maintenance window must end after it starts")
    now = now_ms()
    with db.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO maintenance_windows"
            " (lift_id, starts_at, ends_at, reason, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING window_id",
            (lift_id, starts_at, ends_at, reason, created_by, now),
        )
        window_id = int(cur.fetchone()[0])
    return MaintenanceWindow(window_id, lift_id, starts_at, ends_at, reason, created_by, now)


def delete_maintenance_window(db: Database, window_id: int) -> bool:
    with db.transaction() as conn:
        cur = conn.execute("DELETE FROM maintenance_windows WHERE window_id = ?", (window_id,))
        return cur.rowcount > 0


def end_maintenance_window(db: Database, window_id: int, at: int) -> MaintenanceWindow | None:
    """End a window that has begun at ``at`` (its record stays, with its new end). None: no
    such window, or it has not begun (a window not begun yet is deleted, not ended)."""
    with db.transaction() as conn:
        row = conn.execute(
            "UPDATE maintenance_windows SET ends_at = ?"
            " WHERE window_id = ? AND starts_at < ? AND ends_at > ? RETURNING *",
            (at, window_id, at, at),
        ).fetchone()
    return None if row is None else from_row(MaintenanceWindow, row)


def in_maintenance(conn: Connection, lift_id: str, at: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM maintenance_windows WHERE lift_id = ? AND starts_at <= ? AND ends_at > ?"
        " LIMIT 1",
        (lift_id, at, at),
    ).fetchone()
    return row is not None


def get_maintenance_window(db: Database, window_id: int) -> MaintenanceWindow | None:
    row = db.conn.execute(
        "SELECT * FROM maintenance_windows WHERE window_id = ?", (window_id,)
    ).fetchone()
    return None if row is None else from_row(MaintenanceWindow, row)


def search_maintenance_windows(
    db: Database,
    *,
    lift_id: str | None = None,
    company_id: str | None = None,
    ending_after: int | None = None,
    limit: int = 1000,
) -> list[MaintenanceWindow]:
    """Windows of a lift, or of every lift of a company (through the registry)."""
    clauses: list[str] = []
    params: list[Any] = []
    if lift_id is not None:
        clauses.append("w.lift_id = ?")
        params.append(lift_id)
    if company_id is not None:
        clauses.append("l.company_id = ?")
        params.append(company_id)
    if ending_after is not None:
        clauses.append("w.ends_at > ?")
        params.append(ending_after)
    where = " AND ".join(clauses) or "1=1"
    joined = "maintenance_windows w LEFT JOIN lifts l ON l.lift_id = w.lift_id"
    sql = f"SELECT w.* FROM {joined} WHERE {where} ORDER BY w.starts_at, w.window_id LIMIT ?"  # noqa: S608
    rows = db.conn.execute(sql, [*params, limit]).fetchall()
    return [from_row(MaintenanceWindow, r) for r in rows]
