"""SQL for alarms, their transitions, flood-control counts and per-lift marks.

The lifecycle logic lives in ``alerts/lifecycle.py``; this module only reads and writes rows.
Functions taking a store connection run inside the caller's transaction, so a transition,
its history row and its outbox row (``outbox.py``) commit together (WEBHOOKS.md § Durable).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from liftwatch import clock
from liftwatch.store import changes
from liftwatch.store.db import Connection, Database, Row, from_row

# Names callers of this module used before the outbox and maintenance-window SQL got their own
# modules (the review's reproductions among them): kept importable from here.
from liftwatch.store.maintenance import add_maintenance_window as add_maintenance_window
from liftwatch.store.maintenance import in_maintenance as in_maintenance
from liftwatch.store.outbox import OutboxRow as OutboxRow
from liftwatch.store.outbox import add_outbox
from liftwatch.store.outbox import outbox_rows as outbox_rows

STATUSES: Final = ("open", "acknowledged", "on_site", "resolved")
STATUS_RANK: Final = {s: i for i, s in enumerate(STATUSES)}
OUTCOMES: Final = ("rescued", "repaired", "false_alarm", "test")
# Transitions that step an alarm's status: each is also a change-feed row (kind "alarm").
STATUS_STEPS: Final = frozenset(STATUSES[1:])

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_alarm_id(now_ms: int | None = None) -> str:
    """``al_`` + a ULID (48-bit ms time + 80 random bits, Crockford base32): ids sort by
    raise time, and two processes never collide."""
    ms = clock.now_ms() if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "al_" + "".join(reversed(chars))


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    lift_id: str
    code: str
    subtype: str | None
    severity: str
    source: str
    status: str
    condition: str
    raised_at: int
    updated_at: int
    suspected: bool = False
    occurrences: int = 1
    evidence: dict[str, Any] = field(default_factory=dict)
    cleared_at: int | None = None
    acknowledged_at: int | None = None
    on_site_at: int | None = None
    resolved_at: int | None = None
    outcome: str | None = None
    resolved_by: str | None = None
    escalations: int = 0
    escalated_at: int | None = None
    deadline_at: int | None = None
    overdue: bool = False
    overdue_at: int | None = None
    suppressed: bool = False
    suppressed_reason: str | None = None
    unregistered: bool = False
    company_id: str | None = None
    notified_at: int | None = None  # raise, or the end of its suppression (migration 0006)

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"


_COLUMNS: Final = tuple(f.name for f in fields(Alarm))
_BOOLS: Final = frozenset({"suspected", "overdue", "suppressed", "unregistered"})


def alarm_from_row(row: Row) -> Alarm:
    values: dict[str, Any] = {c: row[c] for c in _COLUMNS}
    values["evidence"] = json.loads(values["evidence"] or "{}")
    for name in _BOOLS:
        values[name] = bool(values[name])
    return Alarm(**values)


def _row_values(alarm: Alarm) -> list[Any]:
    out: list[Any] = []
    for c in _COLUMNS:
        value = getattr(alarm, c)
        if c == "evidence":
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif c in _BOOLS:
            value = int(value)
        out.append(value)
    return out


def insert_alarm(conn: Connection, alarm: Alarm) -> None:
    """Raises a store ``IntegrityError`` when an unresolved alarm of the same (lift, code,
    subtype) exists: the unique index is the last guard against a duplicate."""
    conn.execute(
        f"INSERT INTO alarms ({', '.join(_COLUMNS)})"  # noqa: S608 - fixed column names
        f" VALUES ({', '.join('?' * len(_COLUMNS))})",
        _row_values(alarm),
    )


def save_alarm(conn: Connection, alarm: Alarm) -> None:
    cols = [c for c in _COLUMNS if c != "alarm_id"]
    values = _row_values(alarm)[1:]
    conn.execute(
        f"UPDATE alarms SET {', '.join(f'{c} = ?' for c in cols)} WHERE alarm_id = ?",  # noqa: S608
        [*values, alarm.alarm_id],
    )


def get_alarm(conn: Connection | Database, alarm_id: str) -> Alarm | None:
    c = conn.conn if isinstance(conn, Database) else conn
    row = c.execute("SELECT * FROM alarms WHERE alarm_id = ?", (alarm_id,)).fetchone()
    return None if row is None else alarm_from_row(row)


def alarm_lift(conn: Connection, alarm_id: str) -> str | None:
    row = conn.execute("SELECT lift_id FROM alarms WHERE alarm_id = ?", (alarm_id,)).fetchone()
    return None if row is None else str(row[0])


def find_unresolved(conn: Connection, lift_id: str, code: str, subtype: str | None) -> Alarm | None:
    row = conn.execute(
        "SELECT * FROM alarms WHERE lift_id = ? AND code = ? AND COALESCE(subtype, '') = ?"
        " AND status != 'resolved'",
        (lift_id, code, subtype or ""),
    ).fetchone()
    return None if row is None else alarm_from_row(row)


def unresolved_alarms(
    db: Database | Connection, lift_id: str | None = None, *, severity: str | None = None
) -> list[Alarm]:
    c = db.conn if isinstance(db, Database) else db
    sql = "SELECT * FROM alarms WHERE status != 'resolved'"
    params: list[Any] = []
    if lift_id is not None:
        sql += " AND lift_id = ?"
        params.append(lift_id)
    if severity is not None:
        sql += " AND severity = ?"
        params.append(severity)
    return [alarm_from_row(r) for r in c.execute(sql + " ORDER BY alarm_id", params)]


def alarms_raised_since(db: Database, lift_ids: Sequence[str], since_ms: int) -> list[Alarm]:
    """Alarms of ``lift_ids`` raised at or after ``since_ms``, oldest first (a takeover matches
    the signals it replays against them, docs/ha.md)."""
    out: list[Alarm] = []
    ids = list(lift_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.conn.execute(
            f"SELECT * FROM alarms WHERE raised_at >= ? AND lift_id IN ({marks})"  # noqa: S608 - placeholders only
            " ORDER BY raised_at, alarm_id",
            [since_ms, *chunk],
        )
        out.extend(alarm_from_row(r) for r in rows)
    out.sort(key=lambda a: (a.raised_at, a.alarm_id))
    return out


def lifts_with_unresolved(db: Database, code: str) -> set[str]:
    rows = db.conn.execute(
        "SELECT DISTINCT lift_id FROM alarms WHERE status != 'resolved' AND code = ?", (code,)
    )
    return {r[0] for r in rows}


def list_alarms(
    db: Database,
    *,
    lift_id: str | None = None,
    company_id: str | None = None,
    code: str | None = None,
    severity: str | None = None,
    status: str | None = None,
    unresolved: bool | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    include_suppressed: bool = True,
    before_id: str | None = None,
    after_id: str | None = None,
    limit: int = 100,
) -> list[Alarm]:
    """Alarms newest first (ids sort by raise time); page with ``before_id`` = the last id of
    the previous page. ``since_ms``/``until_ms`` bound ``raised_at`` (until exclusive)."""
    clauses: list[str] = ["1=1"]
    params: list[Any] = []
    for column, value in (
        ("lift_id", lift_id),
        ("company_id", company_id),
        ("code", code),
        ("severity", severity),
        ("status", status),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if unresolved is not None:
        clauses.append("status != 'resolved'" if unresolved else "status = 'resolved'")
    if since_ms is not None:
        clauses.append("raised_at >= ?")
        params.append(since_ms)
    if until_ms is not None:
        clauses.append("raised_at < ?")
        params.append(until_ms)
    if not include_suppressed:
        clauses.append("suppressed = 0")
    if before_id is not None:
        clauses.append("alarm_id < ?")
        params.append(before_id)
    if after_id is not None:
        clauses.append("alarm_id > ?")
        params.append(after_id)
    rows = db.conn.execute(
        f"SELECT * FROM alarms WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed clauses
        " ORDER BY alarm_id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [alarm_from_row(r) for r in rows]


# --- transitions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    alarm_id: str
    at: int
    event: str
    from_state: str | None
    to_state: str | None
    actor: str
    note: str | None = None
    id: int | None = None


def move_unresolved(conn: Connection, lift_id: str, company_id: str | None, at: int) -> list[Alarm]:
    """FAULTS.md 1.1 #6: an unresolved alarm belongs to the lift's current company. When a
    lift is registered or moves to another company, its unresolved alarms move with it (the
    new company sees them in the API, their next transitions notify its subscriptions) and
    each one already announced is announced again as ``alarm.raised`` with
    ``data.reassigned_from``, so the new company hears of it; resolved alarms stay with the
    company that handled them. Called in the caller's transaction (registry write, or the
    alerts engine's registry refresh for an alarm it raised before it saw the change)."""
    rows = conn.execute(
        "SELECT * FROM alarms WHERE lift_id = ? AND status != 'resolved'"
        " AND company_id IS DISTINCT FROM ?",
        (lift_id, company_id),
    ).fetchall()
    moved = []
    for row in rows:
        alarm = alarm_from_row(row)
        before = alarm.company_id
        alarm.company_id = company_id
        if company_id is not None:
            alarm.unregistered = False
        alarm.updated_at = at
        conn.execute(
            "UPDATE alarms SET company_id = ?, unregistered = ?, updated_at = ? WHERE alarm_id = ?",
            (alarm.company_id, int(alarm.unregistered), at, alarm.alarm_id),
        )
        if company_id is not None and alarm.notified_at is not None:
            add_outbox(conn, alarm, "alarm.raised", at, extra={"reassigned_from": before})
        moved.append(alarm)
    return moved


def add_transition(conn: Connection, t: Transition) -> Transition:
    """Insert ``t``; returns it with its row id (unique, increasing)."""
    cur = conn.execute(
        "INSERT INTO alarm_transitions (alarm_id, at, event, from_state, to_state, actor, note)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (t.alarm_id, t.at, t.event, t.from_state, t.to_state, t.actor[:200], t.note),
    )
    out = replace(t, id=int(cur.fetchone()[0]))
    if t.event in STATUS_STEPS:
        # Acknowledged, on site, resolved (the API's actions, an end of alarm, an automatic
        # resolution): the alerts engine of whichever process re-arms its timers and the
        # alarm-button filter from it at once (store/changes.py; ../shared/repros r13).
        changes.record_in(conn, changes.ALARM, t.alarm_id, t.at)
    return out


def transitions_of(db: Database | Connection, alarm_id: str) -> list[Transition]:
    c = db.conn if isinstance(db, Database) else db
    rows = c.execute(
        "SELECT * FROM alarm_transitions WHERE alarm_id = ? ORDER BY id", (alarm_id,)
    ).fetchall()
    return [from_row(Transition, r) for r in rows]


# --- flood control --------------------------------------------------------------------------


def recent_raises(conn: Connection, lift_id: str, code: str, since_ms: int) -> int:
    """Raises of ``code`` on ``lift_id`` since ``since_ms`` that count towards flood control:
    notified ones and flood-collapsed ones (not those muted for another reason)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM alarms WHERE lift_id = ? AND code = ? AND raised_at >= ?"
        " AND (suppressed = 0 OR suppressed_reason = 'flood_control')",
        (lift_id, code, since_ms),
    ).fetchone()
    return int(row[0])


def flood_collapsed(conn: Connection, lift_id: str, code: str) -> list[Alarm]:
    """Flood-controlled alarms of ``code`` on ``lift_id`` no summary has covered yet."""
    rows = conn.execute(
        "SELECT * FROM alarms WHERE lift_id = ? AND code = ?"
        " AND suppressed_reason = 'flood_control' AND notified_at IS NULL ORDER BY raised_at",
        (lift_id, code),
    ).fetchall()
    return [alarm_from_row(r) for r in rows]


def flood_pending(db: Database) -> list[Alarm]:
    """Every flood-controlled alarm waiting for its summary (re-armed at start-up)."""
    rows = db.conn.execute(
        "SELECT * FROM alarms WHERE suppressed_reason = 'flood_control' AND notified_at IS NULL"
    ).fetchall()
    return [alarm_from_row(r) for r in rows]


def mark_notified(conn: Connection, alarm_ids: Sequence[str], at: int) -> None:
    conn.executemany(
        "UPDATE alarms SET notified_at = ? WHERE alarm_id = ? AND notified_at IS NULL",
        [(at, a) for a in alarm_ids],
    )


# --- per-lift marks ---------------------------------------------------------------------------


def set_selftest_ok(conn: Connection, lift_id: str, at: int) -> None:
    conn.execute(
        "INSERT INTO alarm_lift_marks (lift_id, selftest_ok_at, first_seen_at) VALUES (?, ?, ?)"
        " ON CONFLICT(lift_id) DO UPDATE SET selftest_ok_at = CASE"
        " WHEN COALESCE(alarm_lift_marks.selftest_ok_at, 0) > excluded.selftest_ok_at"
        " THEN alarm_lift_marks.selftest_ok_at ELSE excluded.selftest_ok_at END",
        (lift_id, at, at),
    )


def set_first_seen(conn: Connection, lift_id: str, at: int) -> None:
    conn.execute(
        "INSERT INTO alarm_lift_marks (lift_id, first_seen_at) VALUES (?, ?)"
        " ON CONFLICT(lift_id) DO NOTHING",
        (lift_id, at),
    )


def lift_marks(db: Database) -> dict[str, tuple[int | None, int | None]]:
    """``lift_id -> (selftest_ok_at, first_seen_at)``."""
    rows = db.conn.execute("SELECT lift_id, selftest_ok_at, first_seen_at FROM alarm_lift_marks")
    return {r[0]: (r[1], r[2]) for r in rows}
