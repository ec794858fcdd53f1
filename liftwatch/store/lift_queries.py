"""Lift listing queries for the API (filters the kernel's ``registry`` module lacks)."""

from __future__ import annotations

from liftwatch.registry import Lift
from liftwatch.store.db import Database
from liftwatch.store.registry import lift_from_row


def search_lifts(
    db: Database,
    *,
    company_id: str | None = None,
    active: bool | None = None,
    after: str = "",
    limit: int = 100,
) -> list[Lift]:
    """Lifts ordered by id, after ``after`` (keyset pagination)."""
    clauses = ["lift_id > ?"]
    params: list[object] = [after]
    if company_id is not None:
        clauses.append("company_id = ?")
        params.append(company_id)
    if active is not None:
        clauses.append("active = ?")
        params.append(int(active))
    rows = db.conn.execute(
        f"SELECT * FROM lifts WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed clauses
        " ORDER BY lift_id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [lift_from_row(r) for r in rows]
