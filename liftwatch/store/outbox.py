"""SQL for the webhook outbox (WEBHOOKS.md § Durable): every read and write of ``outbox``.

:func:`add_outbox` runs in the caller's transaction, so a transition, its history row and its
outbox row commit together; the webhook fan-out (``liftwatch/store/webhooks.py``) reads the
undispatched rows and marks them dispatched in its own transaction; the API's event stream
reads the feed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from liftwatch.protocol import format_ts
from liftwatch.store.db import Connection, Database, from_row
from liftwatch.views import ALARM_EVENT_TYPES, alarm_view

if TYPE_CHECKING:
    from liftwatch.store.alarms import Alarm


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbox row: a notification and the columns routing looks at."""

    id: int
    alarm_id: str
    lift_id: str
    company_id: str | None
    event_type: str
    severity: str
    code: str
    created_at: int
    payload: str
    dispatched_at: int | None


def add_outbox(
    conn: Connection,
    alarm: Alarm,
    event_type: str,
    at: int,
    *,
    extra: dict[str, Any] | None = None,
) -> int:
    """Write one notification (WEBHOOKS.md body) in the caller's transaction."""
    # Imported here: store.registry -> store.alarms -> this module (a lift moving company
    # re-announces its alarms), so a top-level import would close that loop at import time.
    from liftwatch.store import registry

    if event_type not in ALARM_EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    data = alarm_view(alarm, registry.lift_card(conn, alarm.lift_id))
    if extra:
        data.update(extra)
    body = {"type": event_type, "timestamp": format_ts(at), "data": data}
    cur = conn.execute(
        "INSERT INTO outbox"
        " (alarm_id, lift_id, company_id, event_type, severity, code, created_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            alarm.alarm_id,
            alarm.lift_id,
            alarm.company_id,
            event_type,
            alarm.severity,
            alarm.code,
            at,
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        ),
    )
    return int(cur.fetchone()[0])


def outbox_rows(
    db: Database | Connection, *, alarm_id: str | None = None, lift_id: str | None = None
) -> list[OutboxRow]:
    c = db.conn if isinstance(db, Database) else db
    sql = "SELECT * FROM outbox WHERE 1=1"
    params: list[object] = []
    if alarm_id is not None:
        sql += " AND alarm_id = ?"
        params.append(alarm_id)
    if lift_id is not None:
        sql += " AND lift_id = ?"
        params.append(lift_id)
    return [from_row(OutboxRow, r) for r in c.execute(sql + " ORDER BY id", params)]


def has_undispatched(conn: Connection) -> bool:
    """Whether any row waits for its fan-out (a read: no transaction, no lock)."""
    row = conn.execute("SELECT 1 FROM outbox WHERE dispatched_at IS NULL LIMIT 1").fetchone()
    return row is not None


def undispatched(conn: Connection, *, limit: int) -> list[OutboxRow]:
    """Up to ``limit`` rows not fanned out yet, in ``id`` order."""
    rows = conn.execute(
        "SELECT * FROM outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return [from_row(OutboxRow, r) for r in rows]


def mark_dispatched(conn: Connection, ids: Sequence[int], at: int) -> None:
    """In the caller's transaction (the fan-out that made the rows' deliveries)."""
    conn.executemany("UPDATE outbox SET dispatched_at = ? WHERE id = ?", [(at, i) for i in ids])


# --- the API's event stream --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: int
    event_type: str
    company_id: str | None
    payload: str


def last_outbox_id(db: Database) -> int:
    row = db.conn.execute("SELECT MAX(id) FROM outbox").fetchone()
    return int(row[0] or 0)


def outbox_after(
    db: Database, after_id: int, *, company_id: str | None = None, limit: int = 500
) -> list[FeedEvent]:
    """Notifications (the webhook bodies) after ``after_id``, in order; a maintainer's feed
    passes its company. Suppressed alarms never reach the outbox, so never the stream."""
    if company_id is None:
        rows = db.conn.execute(
            "SELECT id, event_type, company_id, payload FROM outbox WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (after_id, limit),
        )
    else:
        rows = db.conn.execute(
            "SELECT id, event_type, company_id, payload FROM outbox WHERE id > ?"
            " AND company_id = ? ORDER BY id LIMIT ?",
            (after_id, company_id, limit),
        )
    return [FeedEvent(*r) for r in rows]
