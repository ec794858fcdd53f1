"""Copy every table of one store into another (``liftwatch db copy``, docs/storage.md).

Typical use: a site moves from its SQLite file to PostgreSQL (``sqlite:///…`` →
``postgresql://…``); the reverse works the same way. The copy is generic: tables, columns,
primary keys and foreign keys are read from the two schemas, so a table a later migration adds
is copied too. Order: :data:`ORDER` first (referenced tables before the tables that point at
them, including references the schema does not declare, such as transitions → alarms), then
any other table, each after the tables its foreign keys name.

Guarantees:

- both stores are migrated first and must then be at the same schema version, with the same
  tables and columns (else :class:`CopyRefused`);
- the destination must hold no rows in any copied table, unless ``replace`` (its rows are then
  deleted in the same transaction);
- the source is read from one snapshot (a read transaction; REPEATABLE READ on PostgreSQL);
  the destination is written in **one transaction** (on PostgreSQL under the writers' lock),
  so a failed copy leaves it as it was;
- on PostgreSQL the identity sequences are set past the copied ids, so the next insert gets
  ``max(id) + 1``; SQLite's AUTOINCREMENT counters follow explicit ids by themselves;
- after the commit every row of the destination is compared with the source snapshot
  (a digest per row, keyed by primary key): :attr:`CopyReport.differences` lists any row
  missing, extra or different.
"""

# Every identifier in the SQL below comes from the stores' own catalogues and is quoted:
# ruff: noqa: S608
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from liftwatch.store.db import Connection, Database

log = logging.getLogger("liftwatch.store")

#: Tables in a dependency order: companies before lifts and tokens, alarms before their
#: transitions and outbox rows, subscriptions before deliveries before attempts. Any table
#: not named here is copied after these (ordered by its declared foreign keys).
ORDER: tuple[str, ...] = (
    "companies",
    "lifts",
    "api_tokens",
    "alarms",
    "alarm_transitions",
    "alarm_lift_marks",
    "maintenance_windows",
    "outbox",
    "webhook_subscriptions",
    "webhook_deliveries",
    "webhook_attempts",
    "dead_letters",
)
#: Tables each store keeps for itself: the migration record (the two backends' histories
#: differ: PostgreSQL starts from a baseline at version 8), and the alerts replicas' leases
#: and heartbeats (who runs now on the source says nothing about the destination's
#: replicas; docs/ha.md).
NOT_COPIED = frozenset({"schema_migrations", "alert_leases", "alert_replicas"})

BATCH = 1000
#: How many differing rows a report names per table.
DIFFERENCES_SHOWN = 20


class CopyRefused(Exception):
    """The copy was not started: the stores are not at one schema, or the destination holds
    rows (``replace`` not given), or source and destination are the same store."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    #: per column: "int", "float", "text", "bytes" or "other" (the declared type's family)
    kinds: dict[str, str]
    primary_key: tuple[str, ...]
    references: frozenset[str]
    #: PostgreSQL columns filled by a sequence (identity or serial)
    identity: tuple[str, ...] = ()


@dataclass
class Difference:
    table: str
    key: tuple[Any, ...]
    problem: str  # "missing" (in the destination), "extra", "differs"


@dataclass
class CopyReport:
    source: str
    destination: str
    version: int
    rows: dict[str, int] = field(default_factory=dict)  # table → rows copied, in copy order
    #: "table.column" → the next value its PostgreSQL sequence hands out
    sequences: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)  # rows deleted (``replace``)
    verified_rows: int = 0
    differences: list[Difference] = field(default_factory=list)
    difference_count: int = 0

    @property
    def ok(self) -> bool:
        return self.difference_count == 0


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- schema ---------------------------------------------------------------------------


def _kind_sqlite(declared: str) -> str:
    t = declared.upper()
    if "INT" in t:
        return "int"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in t:
        return "bytes"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "float"
    return "other"


_PG_KINDS = {
    "bigint": "int",
    "integer": "int",
    "smallint": "int",
    "double precision": "float",
    "real": "float",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "bytea": "bytes",
}


def schema(db: Database) -> dict[str, Table]:
    """The store's tables (less :data:`NOT_COPIED`), read from its catalogue."""
    if db.dialect == "postgresql":
        return _schema_postgres(db)
    return _schema_sqlite(db)


def _schema_sqlite(db: Database) -> dict[str, Table]:
    conn = db.conn
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        ).fetchall()
    ]
    tables: dict[str, Table] = {}
    for name in names:
        if name in NOT_COPIED:
            continue
        info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
        columns = tuple(str(r[1]) for r in info)
        kinds = {str(r[1]): _kind_sqlite(str(r[2] or "")) for r in info}
        pk = tuple(str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        refs = frozenset(str(r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({quote(name)})"))
        tables[name] = Table(name, columns, kinds, pk, refs - {name})
    return tables


def _schema_postgres(db: Database) -> dict[str, Table]:
    conn = db.conn
    names = [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            " ORDER BY table_name"
        ).fetchall()
    ]
    tables: dict[str, Table] = {}
    for name in names:
        if name in NOT_COPIED:
            continue
        info = conn.execute(
            "SELECT column_name, data_type, is_identity, column_default"
            " FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?"
            " ORDER BY ordinal_position",
            (name,),
        ).fetchall()
        columns = tuple(str(r[0]) for r in info)
        kinds = {str(r[0]): _PG_KINDS.get(str(r[1]), "other") for r in info}
        identity = tuple(
            str(r[0]) for r in info if r[2] == "YES" or str(r[3] or "").startswith("nextval(")
        )
        pk = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT kcu.column_name FROM information_schema.table_constraints tc"
                " JOIN information_schema.key_column_usage kcu"
                "   ON kcu.constraint_name = tc.constraint_name"
                "  AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name"
                " WHERE tc.constraint_type = 'PRIMARY KEY'"
                "   AND tc.table_schema = current_schema() AND tc.table_name = ?"
                " ORDER BY kcu.ordinal_position",
                (name,),
            ).fetchall()
        )
        refs = frozenset(
            str(r[0])
            for r in conn.execute(
                "SELECT referenced.relname FROM pg_constraint k"
                " JOIN pg_class referenced ON referenced.oid = k.confrelid"
                " WHERE k.contype = 'f' AND k.conrelid = to_regclass(?)",
                (quote(name),),
            ).fetchall()
        )
        tables[name] = Table(name, columns, kinds, pk, refs - {name}, identity)
    return tables


def copy_order(names: Sequence[str] | set[str], refs: dict[str, frozenset[str]]) -> list[str]:
    """:data:`ORDER`'s tables that exist, then the others, each after the tables it
    references (by name when no reference decides)."""
    present = set(names)
    out = [t for t in ORDER if t in present]
    rest = sorted(present - set(out))
    while rest:
        ready = [t for t in rest if not (refs.get(t, frozenset()) & set(rest))]
        if not ready:  # a reference cycle: keep the name order (the copy will say if it fails)
            ready = rest[:1]
        out.append(ready[0])
        rest.remove(ready[0])
    return out


def _check_same_schema(src: dict[str, Table], dst: dict[str, Table]) -> None:
    problems = []
    for name in sorted(set(src) | set(dst)):
        if name not in dst:
            problems.append(f"table {name} is missing in the destination")
        elif name not in src:
            problems.append(f"table {name} is missing in the source")
        elif set(src[name].columns) != set(dst[name].columns):
            only_src = sorted(set(src[name].columns) - set(dst[name].columns))
            only_dst = sorted(set(dst[name].columns) - set(src[name].columns))
            problems.append(
                f"table {name}: columns only in the source {only_src},"
                f" only in the destination {only_dst}"
            )
    if problems:
        raise CopyRefused("the two schemas differ: " + "; ".join(problems))


# --- values ---------------------------------------------------------------------------


def _coerce(value: Any, kind: str) -> Any:
    """A source value as the destination column's type family stores it."""
    if value is None:
        return None
    if isinstance(value, memoryview | bytearray):
        value = bytes(value)
    if value is True or value is False:
        return int(value)
    if kind == "bytes" and isinstance(value, str):
        return value.encode("utf-8")
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "float" and isinstance(value, int):
        return float(value)
    return value


def _canonical(value: Any) -> Any:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if value is True or value is False:
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _digest(row: Sequence[Any]) -> bytes:
    return hashlib.blake2b(
        repr(tuple(_canonical(v) for v in row)).encode("utf-8", "surrogatepass"),
        digest_size=16,
    ).digest()


def _scan(db: Database, table: Table, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Every row of ``table`` (``columns`` in that order), in primary-key batches."""
    cols = ", ".join(quote(c) for c in columns)
    if not table.primary_key:
        yield from db.tuples(f"SELECT {cols} FROM {quote(table.name)}")
        return
    key = ", ".join(quote(c) for c in table.primary_key)
    at = [columns.index(c) for c in table.primary_key]
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            sql = f"SELECT {cols} FROM {quote(table.name)} ORDER BY {key} LIMIT ?"
            params: tuple[Any, ...] = (BATCH,)
        else:
            marks = ", ".join("?" for _ in last)
            sql = (
                f"SELECT {cols} FROM {quote(table.name)} WHERE ({key}) > ({marks})"
                f" ORDER BY {key} LIMIT ?"
            )
            params = (*last, BATCH)
        rows = list(db.tuples(sql, params))
        yield from rows
        if len(rows) < BATCH:
            return
        last = tuple(rows[-1][i] for i in at)


@contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """Reads of ``db`` on this thread from one snapshot, until the block ends."""
    if db.dialect == "postgresql":
        with db.transaction(serialized=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    conn = db.conn
    conn.execute("BEGIN")  # deferred: a WAL read snapshot from the first read on
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


def _write(
    db: Database,
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> None:
    cols = ", ".join(quote(c) for c in columns)
    raw = getattr(conn, "raw", None)
    if db.dialect == "postgresql" and raw is not None:
        with raw.cursor().copy(f"COPY {quote(table.name)} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({marks})", rows)


def _set_sequences(conn: Connection, table: Table) -> dict[str, int]:
    out = {}
    for column in table.identity:
        row = conn.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX({quote(column)}), 0)"
            f" + 1, false) FROM {quote(table.name)}",
            (quote(table.name), column),
        ).fetchone()
        if row is not None and row[0] is not None:
            out[f"{table.name}.{column}"] = int(row[0])
    return out


# --- the copy -------------------------------------------------------------------------


def copy_store(
    src: Database,
    dst: Database,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of ``src`` into ``dst`` and verify it (module docstring). Raises
    :class:`CopyRefused` before writing anything when the copy must not start; returns the
    report (check :attr:`CopyReport.ok`) otherwise."""
    if src.dialect == dst.dialect and _same_store(src, dst):
        raise CopyRefused("source and destination are the same store")
    for db in (src, dst):
        db.migrate()
    versions = {db.display: db.migration_status() for db in (src, dst)}
    src_status, dst_status = versions[src.display], versions[dst.display]
    if src_status.version != dst_status.version or src_status.pending or dst_status.pending:
        raise CopyRefused(
            f"schema versions differ after migrating: source {src_status.version},"
            f" destination {dst_status.version} (run the same liftwatch on both)"
        )
    report = CopyReport(src.display, dst.display, src_status.version)
    src_tables = schema(src)
    dst_tables = schema(dst)
    _check_same_schema(src_tables, dst_tables)
    order = copy_order(set(dst_tables), {n: t.references for n, t in dst_tables.items()})

    with _snapshot(src):
        session = _session_of(src)
        with dst.transaction() as conn:
            if session is not None and _sees_session(conn, session):
                raise CopyRefused("source and destination are the same store")
            held = {}
            for name in order:
                row = conn.execute(f"SELECT COUNT(*) FROM {quote(name)}").fetchone()
                if row[0]:
                    held[name] = int(row[0])
            if held and not replace:
                raise CopyRefused(
                    "the destination already holds rows ("
                    + ", ".join(f"{n}: {c}" for n, c in held.items())
                    + "); pass --replace to delete them first"
                )
            for name in reversed(order):
                if held.get(name):
                    conn.execute(f"DELETE FROM {quote(name)}")
                    report.replaced[name] = held[name]
            for name in order:
                table = dst_tables[name]
                columns = table.columns
                kinds = [table.kinds[c] for c in columns]
                count = 0
                batch: list[tuple[Any, ...]] = []
                for row in _scan(src, src_tables[name], columns):
                    batch.append(tuple(_coerce(v, k) for v, k in zip(row, kinds, strict=True)))
                    if len(batch) >= BATCH:
                        _write(dst, conn, table, columns, batch)
                        count += len(batch)
                        batch = []
                if batch:
                    _write(dst, conn, table, columns, batch)
                    count += len(batch)
                report.rows[name] = count
                log.info("event=db_copy_table table=%s rows=%d", name, count)
                if progress is not None:
                    progress(name, count)
            if dst.dialect == "postgresql":
                for name in order:
                    report.sequences.update(_set_sequences(conn, dst_tables[name]))
        log.info(
            "event=db_copy_committed source=%s destination=%s tables=%d rows=%d",
            src.display,
            dst.display,
            len(report.rows),
            sum(report.rows.values()),
        )
        verify(src, dst, src_tables, dst_tables, order, report)
    return report


def _session_of(db: Database) -> tuple[int, Any] | None:
    """PostgreSQL: the process id and start time of the session holding ``db``'s snapshot
    (two URLs may name one database: another host name, a proxy)."""
    if db.dialect != "postgresql":
        return None
    row = db.conn.execute(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    ).fetchone()
    return None if row is None else (int(row[0]), row[1])


def _sees_session(conn: Connection, session: tuple[int, Any]) -> bool:
    if not hasattr(conn, "raw"):  # a SQLite destination: not the PostgreSQL source
        return False
    row = conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid = ? AND backend_start = ?"
        " AND datname = current_database()",
        session,
    ).fetchone()
    return row is not None


def _same_store(a: Database, b: Database) -> bool:
    if a.dialect == "sqlite":
        path_a, path_b = getattr(a, "path", None), getattr(b, "path", None)
        if path_a is None or path_b is None:
            return False
        try:
            return bool(path_a.resolve() == path_b.resolve())
        except OSError:
            return False
    return a.target == b.target


def verify(
    src: Database,
    dst: Database,
    src_tables: dict[str, Table],
    dst_tables: dict[str, Table],
    order: Sequence[str],
    report: CopyReport,
) -> None:
    """Compare every row of ``dst`` with ``src`` (a digest of the whole row, keyed by primary
    key, or by the digest itself for a table without one); adds to ``report``."""
    for name in order:
        table = dst_tables[name]
        columns = table.columns
        kinds = [table.kinds[c] for c in columns]
        key_at = [columns.index(c) for c in table.primary_key]
        expected: dict[tuple[Any, ...], tuple[bytes, int]] = {}
        for row in _scan(src, src_tables[name], columns):
            coerced = tuple(_coerce(v, k) for v, k in zip(row, kinds, strict=True))
            digest = _digest(coerced)
            key = _key_of(coerced, digest, key_at)
            seen = expected.get(key)
            expected[key] = (digest, (seen[1] if seen else 0) + 1)
        for row in _scan(dst, table, columns):
            report.verified_rows += 1
            digest = _digest(row)
            key = _key_of(tuple(row), digest, key_at)
            seen = expected.get(key)
            if seen is None:
                _differ(report, name, key, "extra")
                continue
            if seen[0] != digest:
                _differ(report, name, key, "differs")
            if seen[1] > 1:
                expected[key] = (seen[0], seen[1] - 1)
            else:
                del expected[key]
        for key in expected:
            _differ(report, name, key, "missing")
    log.info(
        "event=db_copy_verified rows=%d differences=%d",
        report.verified_rows,
        report.difference_count,
    )


def _key_of(row: tuple[Any, ...], digest: bytes, key_at: Sequence[int]) -> tuple[Any, ...]:
    if not key_at:
        return (digest,)
    return tuple(_canonical(row[i]) for i in key_at)


def _differ(report: CopyReport, table: str, key: tuple[Any, ...], problem: str) -> None:
    report.difference_count += 1
    if sum(1 for d in report.differences if d.table == table) < DIFFERENCES_SHOWN:
        report.differences.append(Difference(table, key, problem))
