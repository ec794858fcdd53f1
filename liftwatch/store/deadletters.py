"""SQL for dead-letters: rejected messages kept for administrators (PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from liftwatch.store.db import Connection, Database, from_row

PAYLOAD_KEEP_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: int
    topic: str
    lift_id: str | None
    reason: str
    detail: str
    payload: bytes
    id: int | None = None


def add_dead_letters(db: Database, letters: Iterable[DeadLetter], *, keep: int) -> int:
    """Insert letters (payload cut to 1 KiB) and prune the oldest beyond ``keep`` rows, in one
    transaction. Returns the number inserted."""
    with db.transaction() as conn:
        return add_dead_letters_in(conn, letters, keep=keep)


def add_dead_letters_in(conn: Connection, letters: Iterable[DeadLetter], *, keep: int) -> int:
    """:func:`add_dead_letters` inside an open transaction (alerts: with the batch's alarms)."""
    rows = [
        (
            d.received_at,
            d.topic[:512],
            d.lift_id,
            d.reason,
            d.detail[:1000],
            bytes(d.payload[:PAYLOAD_KEEP_BYTES]),
        )
        for d in letters
    ]
    if not rows:
        return 0
    conn.executemany(
        "INSERT INTO dead_letters (received_at, topic, lift_id, reason, detail, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute(
        "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?", (keep,)
    )
    return len(rows)


def list_dead_letters(
    db: Database,
    *,
    limit: int = 100,
    before_id: int | None = None,
    reason: str | None = None,
    lift_id: str | None = None,
) -> list[DeadLetter]:
    """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
    clauses: list[str] = ["1=1"]
    params: list[object] = []
    if before_id is not None:
        clauses.append("id < ?")
        params.append(before_id)
    if reason is not None:
        clauses.append("reason = ?")
        params.append(reason)
    if lift_id is not None:
        clauses.append("lift_id = ?")
        params.append(lift_id)
    rows = db.conn.execute(
        f"SELECT * FROM dead_letters WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed clauses
        " ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [from_row(DeadLetter, r) for r in rows]


def count_dead_letters(db: Database) -> dict[str, int]:
    rows = db.conn.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason")
    return {r[0]: r[1] for r in rows}
