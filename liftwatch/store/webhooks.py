"""SQL for webhook subscriptions, deliveries and attempts (WEBHOOKS.md); the outbox rows
they are made from are read and marked through ``outbox.py``.

The dispatcher (``alerts/webhooks/dispatcher.py``) and the API route (``api/routes/webhooks.py``)
are the only callers. A delivery moves ``pending`` → ``delivering`` → ``delivered`` or back to
``pending`` (retry) or ``failed``; :func:`fan_out` turns outbox rows into deliveries and marks the
rows dispatched in one transaction, so a crash between the two can neither lose nor double them.

**Several dispatchers** (docs/webhooks.md § Several dispatchers) may share one store. A
'delivering' row is a *claim*: it names its dispatcher (``claimed_by``) and expires
(``claim_expires_at``); a claim past its expiry is put back to pending by whichever dispatcher
sweeps first (:func:`reset_stale`). Due chain heads are claimed with ``SELECT … FOR UPDATE SKIP
LOCKED`` on PostgreSQL (:func:`claim_due`), so two dispatchers never take the same head and
never wait for each other; every state change stays guarded by its ``WHERE status = …``, which
is all SQLite (one writer at a time) needs. Claims, outcomes and sweeps are row-guarded and run
in ``transaction(serialized=False)``: they do not queue behind alarm writers. The fan-out keeps
the writers' lock: a delivery's id is its place in its chain, so deliveries must be created in
outbox order.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from liftwatch import clock
from liftwatch.store import outbox
from liftwatch.store.db import Connection, Database, Row, from_row
from liftwatch.store.outbox import OutboxRow

OPEN: Final = ("pending", "delivering")
RESPONSE_KEEP: Final = 1024


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


# --- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    company_id: str | None
    url: str
    description: str
    secret: str
    previous_secret: str | None
    previous_until: int | None
    secret_rotated_at: int | None
    filters: dict[str, Any]
    enabled: bool
    disabled_reason: str | None
    created_by: str
    created_at: int
    updated_at: int

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The secrets that sign right now: the current one, then the previous one during the
        rotation grace period."""
        out = [self.secret]
        if self.previous_secret and self.previous_until and now_ms < self.previous_until:
            out.append(self.previous_secret)
        return out

    def __repr__(self) -> str:  # never let a secret reach a log line
        return f"<Subscription {self.id} company={self.company_id} enabled={self.enabled}>"


def _subscription(r: Row) -> Subscription:
    return Subscription(
        id=r["id"],
        company_id=r["company_id"],
        url=r["url"],
        description=r["description"],
        secret=r["secret"],
        previous_secret=r["previous_secret"],
        previous_until=r["previous_until"],
        secret_rotated_at=r["secret_rotated_at"],
        filters=json.loads(r["filters"]),
        enabled=bool(r["enabled"]),
        disabled_reason=r["disabled_reason"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def add_subscription(
    db: Database,
    *,
    company_id: str | None,
    url: str,
    secret: str,
    filters: dict[str, Any],
    created_by: str,
    description: str = "",
    now_ms: int | None = None,
) -> Subscription:
    now = clock.now_ms() if now_ms is None else now_ms
    sub_id = new_subscription_id()
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO webhook_subscriptions (id, company_id, url, description, secret, filters,"
            " enabled, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                sub_id,
                company_id,
                url,
                description,
                secret,
                json.dumps(filters),
                created_by,
                now,
                now,
            ),
        )
    found = get_subscription(db, sub_id)
    assert found is not None
    return found


def get_subscription(db: Database, sub_id: str) -> Subscription | None:
    row = db.conn.execute("SELECT * FROM webhook_subscriptions WHERE id = ?", (sub_id,)).fetchone()
    return None if row is None else _subscription(row)


def list_subscriptions(db: Database, *, company_id: str | None = None) -> list[Subscription]:
    """All subscriptions, or only those owned by ``company_id`` when given."""
    if company_id is None:
        rows = db.conn.execute("SELECT * FROM webhook_subscriptions ORDER BY created_at, id")
    else:
        rows = db.conn.execute(
            "SELECT * FROM webhook_subscriptions WHERE company_id = ? ORDER BY created_at, id",
            (company_id,),
        )
    return [_subscription(r) for r in rows]


def enabled_subscriptions(conn: Connection) -> list[Subscription]:
    rows = conn.execute("SELECT * FROM webhook_subscriptions WHERE enabled = 1 ORDER BY id")
    return [_subscription(r) for r in rows]


def update_subscription(
    db: Database,
    sub_id: str,
    *,
    url: str | None = None,
    description: str | None = None,
    filters: dict[str, Any] | None = None,
    enabled: bool | None = None,
    now_ms: int | None = None,
) -> Subscription | None:
    now = clock.now_ms() if now_ms is None else now_ms
    sets: list[str] = ["updated_at = ?"]
    params: list[Any] = [now]
    for column, value in (("url", url), ("description", description)):
        if value is not None:
            sets.append(f"{column} = ?")
            params.append(value)
    if filters is not None:
        sets.append("filters = ?")
        params.append(json.dumps(filters))
    if enabled is not None:
        sets.append("enabled = ?")
        params.append(int(enabled))
        if enabled:
            sets.append("disabled_reason = NULL")
    with db.transaction() as conn:
        cur = conn.execute(
            f"UPDATE webhook_subscriptions SET {', '.join(sets)} WHERE id = ?",  # noqa: S608 - fixed column names
            [*params, sub_id],
        )
        if cur.rowcount and enabled is False:
            _fail_open(conn, sub_id, "subscription disabled", now)
    return get_subscription(db, sub_id) if cur.rowcount else None


def delete_subscription(db: Database, sub_id: str) -> bool:
    with db.transaction() as conn:
        cur = conn.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (sub_id,))
    return cur.rowcount > 0


def rotate_secret(
    db: Database, sub_id: str, new_secret: str, *, grace_ms: int, now_ms: int | None = None
) -> Subscription | None:
    """Make ``new_secret`` current; the old one keeps signing for ``grace_ms``."""
    now = clock.now_ms() if now_ms is None else now_ms
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE webhook_subscriptions SET previous_secret = secret, previous_until = ?,"
            " secret = ?, secret_rotated_at = ?, updated_at = ? WHERE id = ?",
            (now + grace_ms, new_secret, now, now, sub_id),
        )
    return get_subscription(db, sub_id) if cur.rowcount else None


def _disable(conn: Connection, sub_id: str, reason: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE webhook_subscriptions SET enabled = 0, disabled_reason = ?, updated_at = ?"
        " WHERE id = ?",
        (reason, now_ms, sub_id),
    )
    _fail_open(conn, sub_id, reason, now_ms)


def _fail_open(conn: Connection, sub_id: str, reason: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,"
        " last_error = COALESCE(last_error || '; ', '') || ?"
        " WHERE subscription_id = ? AND status IN ('pending', 'delivering')",
        (reason, sub_id),
    )


# --- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    webhook_id: str
    subscription_id: str
    outbox_id: int | None
    alarm_id: str | None
    event_type: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: int | None
    first_attempt_at: int | None
    last_attempt_at: int | None
    last_status_code: int | None
    last_error: str | None
    created_at: int
    delivered_at: int | None
    claimed_by: str | None = None  # the dispatcher sending it now ('delivering')
    claim_expires_at: int | None = None  # after this, any dispatcher may send it again

    @property
    def chain(self) -> tuple[str, str]:
        """The ordering key: one (subscription, alarm); a test event is a chain of its own."""
        return self.subscription_id, self.alarm_id or f"#{self.id}"


def _delivery(r: Row) -> Delivery:
    return from_row(Delivery, r)


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    delivery_id: int
    at: int
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None


Router = Callable[[OutboxRow, Sequence[Subscription]], list[Subscription]]


Claim = Callable[[Delivery], bool]


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who claims an attempt (``owner``, a dispatcher's id) and for how long (``ttl_ms``: past
    it, another dispatcher may put the delivery back to pending and send it again)."""

    owner: str
    ttl_ms: int


def _lock_rows(db: Database) -> str:
    """The row-locking clause of a claim: PostgreSQL skips rows another dispatcher is claiming
    right now; SQLite has one writer at a time and needs none."""
    return " FOR UPDATE OF d SKIP LOCKED" if db.dialect == "postgresql" else ""


@dataclass(frozen=True, slots=True)
class FanOut:
    rows: int  # outbox rows handled
    started: list[tuple[Delivery, Subscription]]  # claimed: already 'delivering', send now
    deliveries: int = 0  # deliveries created (those not in ``started`` wait as 'pending')


def fan_out(
    db: Database,
    route: Router,
    *,
    now_ms: int,
    limit: int = 500,
    claim: Claim | None = None,
    claimant: Claimant | None = None,
) -> FanOut:
    """Turn up to ``limit`` undispatched outbox rows into one delivery per subscription that
    ``route`` picks, marking the rows dispatched, in one transaction (:func:`fan_out_in`).

    Reads first: with nothing to fan out (the usual round of an idle dispatcher, or of one
    whose rows another dispatcher or the engine already took) no write transaction is opened,
    so idle dispatchers never take the writers' lock. The transaction stays serialised: the
    ids of the deliveries it creates order their chains, so two fan-outs must not interleave
    (``SKIP LOCKED`` here would let a later row of an alarm overtake an earlier one)."""
    if not outbox.has_undispatched(db.conn):
        return FanOut(0, [])
    with db.transaction() as conn:
        return fan_out_in(conn, route, now_ms=now_ms, limit=limit, claim=claim, claimant=claimant)


def fan_out_in(
    conn: Connection,
    route: Router,
    *,
    now_ms: int,
    limit: int = 500,
    claim: Claim | None = None,
    claimant: Claimant | None = None,
) -> FanOut:
    """:func:`fan_out` inside the caller's write transaction. The alerts engine calls it (through
    the dispatcher) in the transaction that wrote the outbox rows, so an alarm, its deliveries
    and the claim of their first attempt become durable in one commit.

    New deliveries that head their chain (no earlier open delivery of the same subscription
    and alarm) and that ``claim`` accepts start their first attempt in that same transaction:
    the fast path of a fresh alarm. If the transaction then rolls back, the claims are void
    (the caller releases whatever ``claim`` reserved)."""
    rows = outbox.undispatched(conn, limit=limit)
    if not rows:
        return FanOut(0, [])
    subs = enabled_subscriptions(conn)
    by_id = {s.id: s for s in subs}
    started: list[tuple[Delivery, Subscription]] = []
    created = 0
    for event in rows:
        for sub in route(event, subs):
            cur = conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, subscription_id,"
                " outbox_id, alarm_id, event_type, payload, status, next_attempt_at,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    new_message_id(),
                    sub.id,
                    event.id,
                    event.alarm_id,
                    event.event_type,
                    event.payload,
                    now_ms,
                    now_ms,
                ),
            )
            inserted = cur.fetchone()
            if inserted is None:  # this subscription already has this notification
                continue
            created += 1
            if claim is None:
                continue
            d = _claim_head(conn, int(inserted[0]), now_ms, claim, claimant)
            if d is not None:
                started.append((d, by_id[sub.id]))
    outbox.mark_dispatched(conn, [r.id for r in rows], now_ms)
    return FanOut(len(rows), started, created)


def _claim_head(
    conn: Connection,
    delivery_id: int,
    now_ms: int,
    claim: Claim,
    claimant: Claimant | None = None,
) -> Delivery | None:
    row = conn.execute(
        "SELECT d.* FROM webhook_deliveries d WHERE d.id = ? AND NOT EXISTS ("
        " SELECT 1 FROM webhook_deliveries o WHERE o.subscription_id = d.subscription_id"
        " AND o.alarm_id = d.alarm_id AND o.id < d.id AND o.status IN ('pending', 'delivering'))",
        (delivery_id,),
    ).fetchone()
    if row is None or not claim(_delivery(row)):
        return None
    owner, expires = _claim_of(claimant, now_ms)
    found = conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1,"
        " first_attempt_at = ?, last_attempt_at = ?, claimed_by = ?, claim_expires_at = ?"
        " WHERE id = ? RETURNING *",
        (now_ms, now_ms, owner, expires, delivery_id),
    )
    return _delivery(found.fetchone())


def _claim_of(claimant: Claimant | None, now_ms: int) -> tuple[str | None, int | None]:
    if claimant is None:  # an unnamed claim (tests): expires after the attempt timeout
        return None, None
    return claimant.owner, now_ms + claimant.ttl_ms


def add_test_delivery(db: Database, sub_id: str, payload: str, now_ms: int) -> Delivery:
    with db.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO webhook_deliveries (webhook_id, subscription_id, event_type, payload,"
            " status, next_attempt_at, created_at)"
            " VALUES (?, ?, 'webhook.test', ?, 'pending', ?, ?) RETURNING id",
            (new_message_id(), sub_id, payload, now_ms, now_ms),
        )
        delivery_id = int(cur.fetchone()[0])
    found = get_delivery(db, delivery_id)
    assert found is not None
    return found


def get_delivery(db: Database, delivery_id: int) -> Delivery | None:
    row = db.conn.execute(
        "SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    return None if row is None else _delivery(row)


# The head of each open chain: the earliest open delivery per (subscription, alarm). Only a
# head may be sent, which is what keeps one alarm's events in order for one subscriber.
_HEADS = (
    "SELECT d.* FROM webhook_deliveries d JOIN ("
    " SELECT MIN(id) AS id FROM webhook_deliveries WHERE status IN ('pending', 'delivering')"
    " GROUP BY subscription_id, COALESCE(alarm_id, '#' || id)) h ON h.id = d.id"
    " WHERE d.status = 'pending'"
)


_DUE: Final = (  # constant SQL: _HEADS is a literal
    "SELECT * FROM (SELECT d.*, ROW_NUMBER() OVER ("  # noqa: S608
    " PARTITION BY d.subscription_id ORDER BY d.next_attempt_at, d.id) AS rank"
    f" FROM ({_HEADS} AND d.next_attempt_at <= ?) d) ranked"
    " WHERE rank <= ? ORDER BY next_attempt_at, id LIMIT ?"
)


def due_heads(
    db: Database, now_ms: int, *, per_subscription: int = 8, limit: int = 1000
) -> list[Delivery]:
    """Heads due by ``now_ms``, the oldest-due first, at most ``per_subscription`` of each
    subscription: a dead receiver's backlog must not crowd other subscribers out of the batch."""
    rows = db.conn.execute(_DUE, (now_ms, per_subscription, limit)).fetchall()
    return [_delivery(r) for r in rows]


# A pending delivery is its chain's head when no earlier delivery of its (subscription, alarm)
# is open; a test event (no alarm) is a chain of its own. Probed through the open index.
_IS_HEAD: Final = (
    "NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.subscription_id = d.subscription_id"
    " AND o.alarm_id = d.alarm_id AND o.id < d.id AND o.status IN ('pending', 'delivering'))"
)
# One subscription's due heads, oldest-due first (the webhook_deliveries_due index).
_SUB_DUE: Final = (
    "SELECT * FROM (SELECT d.id FROM webhook_deliveries d"  # noqa: S608 - constant SQL
    " WHERE d.subscription_id = ? AND d.status = 'pending' AND d.next_attempt_at <= ?"
    f" AND {_IS_HEAD} ORDER BY d.next_attempt_at, d.id LIMIT ?) s"
)
MAX_BRANCHES: Final = 200  # subscriptions looked at per round (rotating beyond that)


def claim_due(
    db: Database,
    now_ms: int,
    *,
    claim: Claim,
    claimant: Claimant | None = None,
    want: int = 64,
    per_subscription: int = 8,
    room: Callable[[str], int] | None = None,
    rotate: int = 0,
) -> list[Delivery]:
    """Claim up to ``want`` due heads that ``claim`` accepts: each becomes 'delivering', owned
    by ``claimant``, in one row-guarded transaction. Each enabled subscription offers at most
    ``room(subscription)`` (default ``per_subscription``) of its oldest-due heads, so a
    receiver with a backlog cannot crowd the others out; beyond :data:`MAX_BRANCHES`
    subscriptions, ``rotate`` picks which ones this round looks at. On PostgreSQL the
    candidates are locked with ``FOR UPDATE SKIP LOCKED``: a head another dispatcher is
    claiming at this moment is skipped, not waited for, and one it has claimed already fails
    the re-checked ``status = 'pending'``. ``claim`` reserves in-process admission; on an
    exception the caller releases what it reserved."""
    if want <= 0:
        return []
    subs = [
        r[0]
        for r in db.conn.execute(
            "SELECT id FROM webhook_subscriptions WHERE enabled = 1 ORDER BY id"
        ).fetchall()
    ]
    if len(subs) > MAX_BRANCHES:
        start = rotate % len(subs)
        subs = (subs[start:] + subs[:start])[:MAX_BRANCHES]
    branches: list[str] = []
    params: list[Any] = []
    for sub_id in subs:
        n = min(per_subscription, want) if room is None else min(room(sub_id), want)
        if n > 0:
            branches.append(_SUB_DUE)
            params += [sub_id, now_ms, n]
    if not branches:
        return []
    sql = (
        "SELECT d.* FROM webhook_deliveries d WHERE d.id IN ("  # noqa: S608 - constant SQL
        + " UNION ALL ".join(branches)
        + ") AND d.status = 'pending' ORDER BY d.next_attempt_at, d.id LIMIT ?"
        + _lock_rows(db)
    )
    owner, expires = _claim_of(claimant, now_ms)
    with db.transaction(serialized=False) as conn:
        rows = conn.execute(sql, [*params, want]).fetchall()
        picked = [d for d in map(_delivery, rows) if claim(d)]
        if not picked:
            return []
        marks = ",".join("?" * len(picked))
        cur = conn.execute(
            "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1,"  # noqa: S608
            " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,"
            f" claimed_by = ?, claim_expires_at = ? WHERE id IN ({marks}) AND status = 'pending'"
            " RETURNING *",
            [now_ms, now_ms, owner, expires, *(d.id for d in picked)],
        )
        claimed = {d.id: d for d in map(_delivery, cur.fetchall())}
    # Picked but not updated cannot happen under the lock (or SQLite's single writer); keep
    # the order of the candidates.
    return [claimed[d.id] for d in picked if d.id in claimed]


def subscriptions_by_id(db: Database, ids: Collection[str]) -> dict[str, Subscription]:
    if not ids:
        return {}
    wanted = sorted(set(ids))
    marks = ",".join("?" * len(wanted))
    rows = db.conn.execute(
        f"SELECT * FROM webhook_subscriptions WHERE id IN ({marks})",  # noqa: S608
        wanted,
    )
    return {s.id: s for s in map(_subscription, rows)}


_NEXT_DUE: Final = (
    "SELECT d.next_attempt_at FROM webhook_deliveries d"  # noqa: S608 - constant SQL
    f" WHERE d.status = 'pending' AND {_IS_HEAD} ORDER BY d.next_attempt_at, d.id LIMIT 1"
)


def next_due_at(db: Database) -> int | None:
    """When the earliest waiting head falls due (None: nothing is waiting): pending rows in
    due order (the webhook_deliveries_next index) up to the first that heads its chain."""
    row = db.conn.execute(_NEXT_DUE).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True, slots=True)
class _Open:
    id: int
    attempts: int
    claimed_by: str | None
    claim_expires_at: int | None
    last_attempt_at: int | None


def _delivering(db: Database) -> list[_Open]:
    rows = db.conn.execute(
        "SELECT id, attempts, claimed_by, claim_expires_at, last_attempt_at"
        " FROM webhook_deliveries WHERE status = 'delivering'"
    ).fetchall()
    return [_Open(*(r[i] for i in range(5))) for r in rows]


def _release(db: Database, stale: Sequence[_Open], now_ms: int) -> int:
    """Put claims back to pending, due at ``now_ms``, each only if it is still the claim that
    was judged (same attempt count: nobody finished or re-claimed it meanwhile)."""
    if not stale:
        return 0
    reset = 0
    with db.transaction(serialized=False) as conn:
        for o in stale:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?,"
                " claimed_by = NULL, claim_expires_at = NULL"
                " WHERE id = ? AND status = 'delivering' AND attempts = ?",
                (now_ms, o.id, o.attempts),
            )
            reset += cur.rowcount
    return reset


def reset_in_flight(
    db: Database,
    *,
    alive: Callable[[str], bool] | None = None,
    now_ms: int | None = None,
) -> int:
    """At a dispatcher's start: attempts that were in flight when a dispatcher stopped go back
    to pending (sent again, with the same webhook-id: at least once).

    Without ``alive`` every 'delivering' row is reset (one dispatcher per store, as before
    several could share it). With ``alive`` (owner → whether that dispatcher still runs, as
    far as this process can tell) only claims that are unnamed, expired, or named by a
    dispatcher known to be gone: the claims of dispatchers running elsewhere are left to
    them, or to :func:`reset_stale` once they expire."""
    now = clock.now_ms() if now_ms is None else now_ms
    open_ = _delivering(db)
    if alive is not None:
        open_ = [
            o
            for o in open_
            if o.claimed_by is None
            or (o.claim_expires_at is not None and o.claim_expires_at < now)
            or not alive(o.claimed_by)
        ]
    with db.transaction(serialized=False) as conn:
        reset = 0
        for o in open_:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', claimed_by = NULL,"
                " claim_expires_at = NULL, next_attempt_at = COALESCE(next_attempt_at, 0)"
                " WHERE id = ? AND status = 'delivering' AND attempts = ?",
                (o.id, o.attempts),
            )
            reset += cur.rowcount
    return reset


def reset_stale(
    db: Database,
    *,
    before_ms: int,
    keep: Collection[int],
    now_ms: int,
    owner: str | None = None,
    alive: Callable[[str], bool] | None = None,
) -> int:
    """Deliveries left 'delivering' by an attempt that no longer runs go back to pending, due
    at ``now_ms`` (ids in ``keep``, this dispatcher's own attempts in flight, never): a claim
    past its expiry, whoever made it (its dispatcher died or hung mid-attempt: another one
    sends it again); a claim of a dispatcher that ``alive`` knows to be gone (same host, no
    such process: no need to wait for the expiry); and an unnamed claim, or one of
    ``owner``'s, whose last attempt began before ``before_ms`` (this dispatcher's own claims
    with no task any more). The running dispatchers' counterpart of :func:`reset_in_flight`.
    Reads first, so an idle store sees no write transaction."""
    stale = [
        o
        for o in _delivering(db)
        if o.id not in keep
        and (
            (o.claim_expires_at is not None and o.claim_expires_at < now_ms)
            or (
                alive is not None
                and o.claimed_by is not None
                and o.claimed_by != owner
                and not alive(o.claimed_by)
            )
            or (
                (o.claimed_by is None or o.claimed_by == owner)
                and (o.last_attempt_at or 0) < before_ms
            )
        )
    ]
    return _release(db, stale, now_ms)


_PENDING_ROW: Final = (
    "SELECT d.id FROM webhook_deliveries d WHERE d.id = ? AND d.status = 'pending'"
)
_PENDING_ROW_LOCKED: Final = _PENDING_ROW + " FOR UPDATE OF d SKIP LOCKED"
_FINISH: Final = (
    "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, last_status_code = ?,"
    " last_error = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at"
    " END, claimed_by = NULL, claim_expires_at = NULL WHERE id = ? AND status = 'delivering'"
)


def start_attempt(
    db: Database, delivery_id: int, now_ms: int, *, claimant: Claimant | None = None
) -> Delivery | None:
    """Claim one pending delivery (it becomes 'delivering'); None if it is no longer pending,
    or another dispatcher is claiming it at this moment (PostgreSQL: skipped, not waited for).
    Row-guarded, so outside the writers' lock."""
    owner, expires = _claim_of(claimant, now_ms)
    lock = _PENDING_ROW_LOCKED if db.dialect == "postgresql" else _PENDING_ROW
    with db.transaction(serialized=False) as conn:
        row = conn.execute(lock, (delivery_id,)).fetchone()
        if row is None:
            return None
        cur = conn.execute(
            "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1,"
            " first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,"
            " claimed_by = ?, claim_expires_at = ? WHERE id = ? AND status = 'pending'"
            " RETURNING *",
            (now_ms, now_ms, owner, expires, delivery_id),
        )
        found = cur.fetchone()
    return None if found is None else _delivery(found)


def finish_attempt(
    db: Database,
    delivery_id: int,
    *,
    at: int,
    latency_ms: int,
    status_code: int | None,
    response: str | None,
    error: str | None,
    outcome: str,
    next_attempt_at: int | None = None,
    disable_reason: str | None = None,
    drain_spacing_ms: int | None = None,
    owner: str | None = None,
) -> int:
    """Record one attempt and the delivery's new state (``outcome``: delivered, pending or
    failed) in one transaction; with ``disable_reason`` also disable the subscription (and
    fail its other open deliveries). A delivery deleted meanwhile is skipped.

    With ``drain_spacing_ms``, a delivered outcome also pulls the subscription's waiting
    retries forward in the same transaction (:func:`pull_forward`); returns how many.

    With ``owner``, only while the claim is still that dispatcher's: an outcome that comes
    after its claim expired and another dispatcher took the delivery over is dropped (the
    other dispatcher's attempt decides; at least once). Row-guarded, so outside the writers'
    lock."""
    if outcome not in ("delivered", "pending", "failed"):
        raise ValueError(f"unknown outcome {outcome!r}")
    done_at = at + latency_ms
    finish = _FINISH if owner is None else _FINISH + " AND claimed_by = ?"
    with db.transaction(serialized=False) as conn:
        cur = conn.execute(
            finish,
            (outcome, next_attempt_at, status_code, error, outcome, done_at, delivery_id)
            + (() if owner is None else (owner,)),
        )
        if cur.rowcount:
            conn.execute(
                "INSERT INTO webhook_attempts"
                " (delivery_id, at, status_code, latency_ms, response, error)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    at,
                    status_code,
                    latency_ms,
                    None if response is None else response[:RESPONSE_KEEP],
                    error,
                ),
            )
            row = conn.execute(
                "SELECT subscription_id FROM webhook_deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if disable_reason is not None:
                _disable(conn, row[0], disable_reason, done_at)
            if outcome == "delivered" and drain_spacing_ms is not None:
                return pull_forward(conn, row[0], done_at, drain_spacing_ms)
    return 0


def pull_forward(conn: Connection, sub_id: str, now_ms: int, spacing_ms: int) -> int:
    """The subscription's receiver answered 2xx: its deliveries waiting for a retry (pending,
    due after ``now_ms``) become due now, oldest first, ``spacing_ms`` apart so that a
    recovered receiver is not flooded. Deliveries already in that queue (due within the
    window the queue spans) keep their slot, so later 2xx answers of the drain do not
    shorten the spacing; none is made later than it was. Only chain heads ever wait for a
    retry, so each chain keeps its order. Returns how many moved."""
    waiting = (
        "FROM webhook_deliveries WHERE subscription_id = ?"
        " AND status IN ('pending', 'delivering') AND status = 'pending' AND next_attempt_at > ?"
    )
    (count,) = conn.execute("SELECT COUNT(*) " + waiting, (sub_id, now_ms)).fetchone()
    if not count:
        return 0
    horizon = now_ms + (count + 1) * spacing_ms  # beyond it: not queued yet
    (last,) = conn.execute(
        "SELECT MAX(next_attempt_at) " + waiting + " AND next_attempt_at <= ?",
        (sub_id, now_ms, horizon),
    ).fetchone()
    slot = now_ms if last is None else max(now_ms, int(last) + spacing_ms)
    moves: list[tuple[int, int]] = []
    for delivery_id, due in conn.execute(
        "SELECT id, next_attempt_at " + waiting + " AND next_attempt_at > ? ORDER BY id",
        (sub_id, now_ms, horizon),
    ).fetchall():
        if slot < due:
            moves.append((slot, delivery_id))
            slot += spacing_ms
    conn.executemany(
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
        moves,
    )
    return len(moves)


def redeliver(db: Database, delivery_id: int, now_ms: int) -> Delivery | None:
    """Queue a failed delivery again (same webhook-id, a fresh 24 h retry window). None
    when it is not failed."""
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?,"
            " first_attempt_at = NULL WHERE id = ? AND status = 'failed'",
            (now_ms, delivery_id),
        )
    return get_delivery(db, delivery_id) if cur.rowcount else None


def list_deliveries(
    db: Database,
    sub_id: str,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Newest first."""
    sql = "SELECT * FROM webhook_deliveries WHERE subscription_id = ?"
    params: list[Any] = [sub_id]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if before_id is not None:
        sql += " AND id < ?"
        params.append(before_id)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_delivery(r) for r in db.conn.execute(sql, params)]


def attempts_of(db: Database, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    out: dict[int, list[Attempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return out
    marks = ",".join("?" * len(delivery_ids))
    rows = db.conn.execute(
        f"SELECT * FROM webhook_attempts WHERE delivery_id IN ({marks}) ORDER BY id",  # noqa: S608
        list(delivery_ids),
    )
    for r in rows:
        out[r["delivery_id"]].append(from_row(Attempt, r))
    return out


def count_open(db: Database) -> int:
    row = db.conn.execute(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'delivering')"
    ).fetchone()
    return int(row[0])
