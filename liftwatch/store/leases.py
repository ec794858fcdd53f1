"""Partition leases of the alerts replicas (docs/ha.md § The lease protocol).

Lifts are hashed into :data:`PARTITIONS` partitions. A replica commits and notifies for a lift
only while it holds its partition's lease: a row ``(partition, owner, epoch, expires_at)``.
``epoch`` grows by one at every change of owner, and every alarm write checks, inside its own
transaction, that the rows of the partitions it writes for still carry the owner and epoch
this replica holds (:func:`fence`; on PostgreSQL ``FOR SHARE``, so a takeover waits for the
writes in flight of the old owner and every later one fails the check). Times are the
store's clock on PostgreSQL (``clock_timestamp()``), so skew between hosts cannot make two
owners; SQLite is one host and uses the caller's clock.

One :func:`lease_round` per replica and second: heartbeat, renew, take what is free or
expired up to a fair share of the live replicas, give back what is above it.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from liftwatch.store.db import Connection, Database

PARTITIONS: Final = 64
LEASE_TTL_MS: Final = 6000
# A replica that started this recently has not evaluated what happened just before it started
# (its restore is up to one checkpoint period old): while a replica running longer is alive,
# it leaves a dead owner's partitions to that one (it still takes partitions handed over,
# which come with their state).
WARMUP_MS: Final = 10_000


def partition_of(lift_id: str) -> int:
    """The partition of a lift: stable across processes, hosts and versions."""
    return zlib.crc32(lift_id.encode("utf-8", "surrogatepass")) % PARTITIONS


@dataclass
class Round:
    """What one :func:`lease_round` found and did."""

    held: dict[int, int]  # partition -> epoch held after the round
    gained: dict[int, int] = field(default_factory=dict)  # taken in this round
    previous: dict[int, str | None] = field(default_factory=dict)  # gained -> its last owner
    lost: set[int] = field(default_factory=set)  # held before, not any more
    # Held above the fair share (a replica joined): to give back (:func:`release_in`), after
    # the engine saved their lifts' state for the next owner.
    surplus: dict[int, int] = field(default_factory=dict)
    live: int = 1  # live replicas, this one included
    conflict: bool = False  # another process runs with this replica id


@dataclass(frozen=True)
class Lease:
    partition: int
    owner: str | None
    epoch: int
    expires_at: int
    acquired_at: int | None


def store_now(conn: Connection, dialect: str, fallback_ms: int) -> int:
    """The lease clock: PostgreSQL's (one clock for every host), else ``fallback_ms``."""
    if dialect == "postgresql":
        row = conn.execute(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        ).fetchone()
        return int(row[0])
    return fallback_ms


def _ensure_rows(conn: Connection) -> None:
    (count,) = conn.execute("SELECT COUNT(*) FROM alert_leases").fetchone()
    if count < PARTITIONS:
        for p in range(PARTITIONS):
            conn.execute(
                "INSERT INTO alert_leases (partition) VALUES (?)"
                " ON CONFLICT (partition) DO NOTHING",
                (p,),
            )


def lease_round(
    db: Database,
    replica_id: str,
    incarnation: str,
    held: Mapping[int, int],
    *,
    first: bool,
    now_ms: int,
    ttl_ms: int = LEASE_TTL_MS,
    warmup_ms: int = WARMUP_MS,
    rng: random.Random | None = None,
) -> Round:
    """One round, in one transaction (outside the writers' lock: rows are guarded one by one).

    ``first``: this process's first round. It registers this incarnation and takes back the
    partitions its replica id still holds (a restart of this replica: the old process is gone,
    and the new epoch fences it if it is not)."""
    rng = rng or random.Random()
    out = Round(held={})
    with db.transaction(serialized=False) as conn:
        _ensure_rows(conn)
        now = store_now(conn, db.dialect, now_ms)
        if first:
            conn.execute(
                "INSERT INTO alert_replicas (replica_id, incarnation, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (replica_id) DO UPDATE SET"
                " incarnation = excluded.incarnation, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
                (replica_id, incarnation, now, now),
            )
        else:
            cur = conn.execute(
                "UPDATE alert_replicas SET heartbeat_at = ?, stopped_at = NULL"
                " WHERE replica_id = ? AND incarnation = ?",
                (now, replica_id, incarnation),
            )
            if cur.rowcount == 0:
                # A newer process registered with this replica id: it has taken (and fenced)
                # this one's partitions. Take nothing; the caller reports the conflict.
                out.conflict = True
                out.lost = set(held)
                return out
        started = {
            str(r[0]): int(r[1])
            for r in conn.execute(
                "SELECT replica_id, started_at FROM alert_replicas"
                " WHERE stopped_at IS NULL AND heartbeat_at > ?",
                (now - ttl_ms,),
            )
        }
        out.live = max(1, len(started))
        share = math.ceil(PARTITIONS / out.live)
        warm = {r for r, at in started.items() if at <= now - warmup_ms}
        # A dead owner's partitions go to the warm replicas, all of them if need be (the fair
        # share is restored by hand-overs, with the lifts' state, from the next round on).
        failover_share = math.ceil(PARTITIONS / max(1, len(warm)))
        cold_with_warm_peers = replica_id not in warm and bool(warm - {replica_id})
        rows = [
            Lease(int(r[0]), r[1], int(r[2]), int(r[3]), r[4])
            for r in conn.execute(
                "SELECT partition, owner, epoch, expires_at, acquired_at FROM alert_leases"
                " ORDER BY partition"
            )
        ]
        mine: dict[int, int] = {}
        stale: list[Lease] = []  # rows of this replica id at another epoch
        free: list[Lease] = []
        for row in rows:
            if row.owner == replica_id:
                if held.get(row.partition) == row.epoch:
                    mine[row.partition] = row.epoch
                else:
                    stale.append(row)
            elif row.owner is None or (row.expires_at <= now and not cold_with_warm_peers):
                free.append(row)
        out.lost = {p for p in held if p not in mine}
        candidates = [r for r in stale if first or r.expires_at <= now]
        rng.shuffle(free)  # replicas racing for free rows spread over them
        candidates += free
        dead_owners = any(r.owner is not None for r in free)
        room = max(0, (failover_share if dead_owners else share) - len(mine))
        picked = {r.partition: r for r in candidates[:room]}
        # Renewals and takeovers in one pass in partition order (see fence()).
        for p in sorted(set(mine) | set(picked)):
            if p in mine:
                conn.execute(
                    "UPDATE alert_leases SET expires_at = ?"
                    " WHERE partition = ? AND owner = ? AND epoch = ?",
                    (now + ttl_ms, p, replica_id, mine[p]),
                )
                continue
            row = picked[p]
            got = conn.execute(
                "UPDATE alert_leases SET owner = ?, epoch = epoch + 1, expires_at = ?,"
                " acquired_at = ? WHERE partition = ? AND epoch = ?"
                " AND (owner IS NULL OR owner = ? OR expires_at <= ?) RETURNING epoch",
                (replica_id, now + ttl_ms, now, p, row.epoch, replica_id, now),
            ).fetchone()
            if got is not None:
                mine[p] = int(got[0])
                out.gained[p] = int(got[0])
                out.previous[p] = row.owner
        if len(mine) > share and not out.gained:
            # Above the fair share (a replica joined): the newest partitions go back.
            extra = sorted(mine, key=lambda p: (p in out.gained, p))[share - len(mine) :]
            out.surplus = {p: mine[p] for p in extra}
        out.held = mine
    return out


def release_in(conn: Connection, replica_id: str, partitions: Mapping[int, int]) -> int:
    """Give ``partitions`` (partition -> epoch held) back, in the caller's transaction."""
    released = 0
    for p, epoch in sorted(partitions.items()):
        cur = conn.execute(
            "UPDATE alert_leases SET owner = NULL, expires_at = 0"
            " WHERE partition = ? AND owner = ? AND epoch = ?",
            (p, replica_id, epoch),
        )
        released += cur.rowcount
    return released


def leave(db: Database, replica_id: str, incarnation: str, *, now_ms: int) -> None:
    """This replica stops: it no longer counts among the live ones."""
    with db.transaction(serialized=False) as conn:
        now = store_now(conn, db.dialect, now_ms)
        conn.execute(
            "UPDATE alert_replicas SET stopped_at = ? WHERE replica_id = ? AND incarnation = ?",
            (now, replica_id, incarnation),
        )


def fence(conn: Connection, dialect: str, replica_id: str, held: Mapping[int, int]) -> set[int]:
    """Inside an alarm write's transaction: the partitions of ``held`` whose row still carries
    this replica and the epoch held. On PostgreSQL the rows are locked ``FOR SHARE`` until the
    transaction ends, so no takeover can commit between this check and this commit."""
    if not held:
        return set()
    # Every statement that locks lease rows takes them in partition order (here, the renewals,
    # the takeovers and the releases): two transactions can then never wait for each other.
    sql = "SELECT partition, epoch FROM alert_leases WHERE owner = ? ORDER BY partition"
    if dialect == "postgresql":
        sql += " FOR SHARE"
    rows = conn.execute(sql, (replica_id,))
    return {int(p) for p, epoch in rows if held.get(int(p)) == int(epoch)}


def leases(db: Database) -> list[Lease]:
    rows = db.conn.execute(
        "SELECT partition, owner, epoch, expires_at, acquired_at FROM alert_leases"
        " ORDER BY partition"
    )
    return [Lease(int(r[0]), r[1], int(r[2]), int(r[3]), r[4]) for r in rows]
