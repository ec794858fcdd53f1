"""Per-lift evaluation checkpoints (``lift_checkpoints``; the bytes are alerts/checkpoint.py's).

Written by a lift's owner: in the transaction of each alarm write (so the dedup keys of a
batch are stored with its alarms) and every few seconds for lifts whose state moved. Read at
start-up. ``version`` orders writes of different owners: an older snapshot never replaces a
newer one (:func:`version_of`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from liftwatch.store.db import Connection, Database

#: (lift_id, partition, version, saved_at, handover, state)
CheckpointRow = tuple[str, int, int, int, int, bytes]

_UPSERT = (
    "INSERT INTO lift_checkpoints (lift_id, partition, version, saved_at, handover, state)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (lift_id) DO UPDATE SET partition = excluded.partition,"
    " version = excluded.version, saved_at = excluded.saved_at,"
    " handover = excluded.handover, state = excluded.state"
    " WHERE lift_checkpoints.version < excluded.version"
)


def version_of(epoch: int, counter: int) -> int:
    """A write's version: the writer's lease epoch above its own counter, so a new owner's
    (higher epoch) snapshots always win over the old owner's. Fits a signed 64-bit column."""
    return (epoch << 40) | (counter & ((1 << 40) - 1))


def save_in(conn: Connection, rows: Sequence[CheckpointRow]) -> None:
    if rows:
        conn.executemany(_UPSERT, rows)


def load(db: Database) -> Iterator[tuple[str, bytes]]:
    for lift_id, state in db.tuples("SELECT lift_id, state FROM lift_checkpoints"):
        yield lift_id, bytes(state)


def in_partitions(db: Database, partitions: Sequence[int]) -> list[tuple[str, int, int, bool]]:
    """(lift_id, partition, writer's epoch, handed over?) of the checkpoints stored for
    ``partitions``: a takeover reads these first, then only the states it adopts
    (:func:`states_of`)."""
    if not partitions:
        return []
    marks = ", ".join("?" * len(partitions))
    return [
        (str(lift_id), int(p), int(version) >> 40, bool(handover))
        for lift_id, p, version, handover in db.tuples(
            "SELECT lift_id, partition, version, handover"  # noqa: S608 - placeholders only
            f" FROM lift_checkpoints WHERE partition IN ({marks})",
            list(partitions),
        )
    ]


def states_of(db: Database, lift_ids: Sequence[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    ids = list(lift_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        for lift_id, state in db.tuples(
            f"SELECT lift_id, state FROM lift_checkpoints WHERE lift_id IN ({marks})",  # noqa: S608 - placeholders only
            chunk,
        ):
            out[str(lift_id)] = bytes(state)
    return out


def max_counter(db: Database) -> int:
    """The highest write counter stored (the low bits of ``version``): a restarted writer
    counts on from it, so its snapshots replace the ones its previous process saved."""
    row = db.conn.execute("SELECT MAX(version) FROM lift_checkpoints").fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) & ((1 << 40) - 1)
