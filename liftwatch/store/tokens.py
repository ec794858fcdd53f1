"""SQL for API tokens: stored by hash, never in clear (docs/api.md § Tokens)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from liftwatch.clock import now_ms
from liftwatch.store import changes
from liftwatch.store.db import Database, Row


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    name: str
    role: str
    company_id: str | None
    created_at: int
    created_by: str
    revoked_at: int | None = None
    last_used_at: int | None = None
    # Whether the token's company is active (None: the token has no company); filled by
    # find_active_token, which authentication calls on every request.
    company_active: bool | None = None


def _record(row: Row) -> TokenRecord:
    return TokenRecord(
        token_id=row["token_id"],
        name=row["name"],
        role=row["role"],
        company_id=row["company_id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def add_token(
    db: Database,
    *,
    token_id: str,
    token_hash: str,
    name: str,
    role: str,
    company_id: str | None,
    created_by: str,
) -> TokenRecord:
    """Insert a token. Raises a store ``IntegrityError`` for an unknown company."""
    now = now_ms()
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO api_tokens"
            " (token_id, token_hash, name, role, company_id, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (token_id, token_hash, name, role, company_id, now, created_by),
        )
    return TokenRecord(token_id, name, role, company_id, now, created_by)


def find_active_token(db: Database, token_hash: str) -> TokenRecord | None:
    """The unrevoked token with this hash, with its company's ``active`` flag read in the same
    query: a deactivated company's tokens are refused on their next request, in every process
    sharing the store (no cache)."""
    row = db.conn.execute(
        "SELECT t.*, c.active AS company_active FROM api_tokens t"
        " LEFT JOIN companies c ON c.company_id = t.company_id"
        " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    record = _record(row)
    if record.company_id is None:
        return record
    active = row["company_active"]
    return replace(record, company_active=bool(active) if active is not None else False)


def token_in_force(db: Database, token_id: str) -> bool:
    """Whether the token still authenticates: not revoked, and its company (if any) active.
    Long-lived requests (the event stream) re-check with this."""
    row = db.conn.execute(
        "SELECT 1 FROM api_tokens t LEFT JOIN companies c ON c.company_id = t.company_id"
        " WHERE t.token_id = ? AND t.revoked_at IS NULL"
        " AND (t.company_id IS NULL OR c.active = 1)",
        (token_id,),
    ).fetchone()
    return row is not None


def touch_token(db: Database, token_id: str, *, min_interval_ms: int = 60_000) -> None:
    """Record use, at most once a minute per token, so reads do not each cost a write."""
    now = now_ms()
    with db.transaction() as conn:
        conn.execute(
            "UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?"
            " AND (last_used_at IS NULL OR last_used_at < ?)",
            (now, token_id, now - min_interval_ms),
        )


def get_token(db: Database, token_id: str) -> TokenRecord | None:
    row = db.conn.execute("SELECT * FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()
    return None if row is None else _record(row)


def list_tokens(db: Database, *, include_revoked: bool = False) -> list[TokenRecord]:
    sql = "SELECT * FROM api_tokens"
    if not include_revoked:
        sql += " WHERE revoked_at IS NULL"
    rows = db.conn.execute(sql + " ORDER BY created_at, token_id").fetchall()
    return [_record(r) for r in rows]


def revoke_token(db: Database, token_id: str) -> bool:
    """Revoke; returns False when no such token exists (revoking twice is not an error)."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT revoked_at FROM api_tokens WHERE token_id = ?", (token_id,)
        ).fetchone()
        if row is None:
            return False
        if row["revoked_at"] is None:
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?", (now_ms(), token_id)
            )
            # Open event streams of every API process end at once (store/changes.py).
            changes.record_in(conn, changes.TOKEN, token_id)
        return True
