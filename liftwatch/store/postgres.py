"""The PostgreSQL backend: one database shared by every liftwatch process on every host.

Driver: psycopg 3 with its connection pool (docs/storage.md says why). The aggregate modules
write SQL once, for both backends, with ``?`` placeholders; :func:`translate` turns them into
psycopg's ``%s`` (and a literal ``%`` into ``%%``) once per statement text. Rows answer by
column name and by position, as ``sqlite3.Row`` does; Python booleans are sent as 0/1 (flags
are integer columns in both schemas) and ``numeric`` results (``SUM`` of a bigint) come back
as ``int`` when whole, never as ``Decimal``.

**Ordering and isolation.** SQLite has one writer at a time, and the store relies on that:
an outbox id, a registry ``change_seq`` and a notification id are handed out in commit order,
so a reader that follows ids never skips a row that commits late. Here every
:meth:`PostgresDatabase.transaction` takes one transaction-scoped advisory lock
(:data:`WRITE_LOCK`) before its first statement and holds it to commit: the same one-writer
order, on READ COMMITTED. Alarm and registry writes are rare and short, so the lock costs
nothing measurable; the webhook dispatchers' per-delivery updates, which are frequent and
guarded row by row (``FOR UPDATE SKIP LOCKED``, ``WHERE status = 'pending'``), opt out with
``transaction(serialized=False)``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from liftwatch.clock import now_ms
from liftwatch.store.db import (
    Database,
    MigrationStatus,
    StoreError,
    migrations,
    redacted,
    split_sql,
)

# Advisory lock keys (64-bit, ours: "lw" + a number), documented in docs/storage.md.
WRITE_LOCK = 0x6C77_0000_0000_0001
MIGRATE_LOCK = 0x6C77_0000_0000_0002

# Every open store of this process: close_all() ends them (a test's database is dropped).
_OPEN: weakref.WeakSet[PostgresDatabase] = weakref.WeakSet()

POOL_SIZE_DEFAULT = 10
LOCK_TIMEOUT_S = 30  # as SQLite's busy_timeout: a writer waits this long, then fails
# A transaction left open by a process that stopped running (paused, hung) would hold the
# writers' lock; PostgreSQL ends such a session after this long.
IDLE_IN_TRANSACTION_TIMEOUT_S = 60


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``?`` placeholders to ``%s``, and ``%`` to ``%%``, outside string literals."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(p) if p is True or p is False else p for p in params)


class PgRow:
    """One result row, by name or by position (as ``sqlite3.Row``)."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values = values
        self._names = names

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return tuple(self._values) == tuple(other._values)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=False))!r})"


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    names: dict[str, int] = {}
    for i, column in enumerate(desc or ()):
        names.setdefault(column.name, i)  # like sqlite3.Row: the first column of a name

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, names)

    return make


class _NumericLoader(Loader):
    """``numeric`` as ``int`` when whole, else ``float`` (SQLite gives the same types)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class PgConnection:
    """A psycopg connection that takes the store's ``?`` SQL."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if not params:  # no parameters: psycopg reads no placeholders, so nothing to escape
            return self.raw.execute(sql)
        return self.raw.execute(translate(sql), _params(params))

    def executemany(self, sql: str, seq: Any) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [_params(p) for p in seq])
        return cur


class _Result:
    """A read's rows, fetched before its pooled connection went back to the pool."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _ReadConnection:
    """``db.conn``: each statement on a pooled connection (autocommit), or — on a thread that
    is inside :meth:`PostgresDatabase.transaction` — on that transaction's connection."""

    __slots__ = ("_db",)

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        tx: PgConnection | None = getattr(self._db._local, "tx", None)
        if tx is not None:
            return tx.execute(sql, params)
        with self._db.pool.connection() as raw:
            cur = PgConnection(raw).execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else []
            return _Result(rows, cur.rowcount)

    def executemany(self, sql: str, seq: Any) -> Any:
        tx: PgConnection | None = getattr(self._db._local, "tx", None)
        if tx is not None:
            return tx.executemany(sql, seq)
        with self._db.pool.connection() as raw:
            return PgConnection(raw).executemany(sql, seq)


class PostgresDatabase(Database):
    """A PostgreSQL database reached through a pool of ``pool_size`` connections."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        create: bool = True,
        pool_size: int = POOL_SIZE_DEFAULT,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.target = url
        self.display = redacted(url)
        self._local = threading.local()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True},
            configure=self._configure,
            check=ConnectionPool.check_connection,  # a server restart: reconnect, not fail
            timeout=connect_timeout_s,
            name="liftwatch",
            open=True,
        )
        self._reader = _ReadConnection(self)
        _OPEN.add(self)
        if migrate:
            self.migrate()

    @staticmethod
    def _configure(raw: psycopg.Connection[Any]) -> None:
        raw.row_factory = _row_factory
        raw.adapters.register_loader("numeric", _NumericLoader)
        raw.execute(
            f"SET lock_timeout = '{LOCK_TIMEOUT_S}s';"
            f" SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT_S}s'"
        )

    @property
    def conn(self) -> Any:
        return self._reader

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[PgConnection]:
        if getattr(self._local, "tx", None) is not None:
            raise StoreError("a transaction is already open on this thread")
        with self.pool.connection() as raw:
            conn = PgConnection(raw)
            raw.execute("BEGIN")
            self._local.tx = conn
            try:
                if serialized:
                    raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield conn
            except BaseException:
                with suppress(psycopg.Error):
                    raw.execute("ROLLBACK")
                raise
            else:
                raw.execute("COMMIT")
            finally:
                self._local.tx = None

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        tx: PgConnection | None = getattr(self._local, "tx", None)
        with contextlib.ExitStack() as stack:
            raw = tx.raw if tx is not None else stack.enter_context(self.pool.connection())
            cur = raw.cursor(row_factory=tuple_row)
            cur.execute(translate(sql) if params else sql, _params(params) or None)
            rows = cur.fetchall()
        yield from rows

    def migrate(self) -> list[str]:
        applied: list[str] = []
        try:
            with self.pool.connection() as raw:
                raw.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
                try:
                    applied = self._migrate_locked(PgConnection(raw))
                finally:
                    raw.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot reach the store at {self.display}: {exc}") from exc
        return applied

    def _migrate_locked(self, conn: PgConnection) -> list[str]:
        applied: list[str] = []
        conn.execute("BEGIN")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations(self.dialect):
                if m.version in done or (done and m.version < max(done)):
                    continue
                for statement in split_sql(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, now_ms()),
                )
                applied.append(m.name)
        except BaseException:
            with suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return applied

    def migration_status(self) -> MigrationStatus:
        has = self.conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        rows = (
            self.conn.execute(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
            if has is not None and has[0] is not None
            else []
        )
        applied = [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
        top = max((v for v, _, _ in applied), default=0)
        pending = [m for m in migrations(self.dialect) if m.version > top]
        return MigrationStatus(applied, pending)

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=2.0) as raw:
                raw.execute("SELECT 1").fetchone()
        except psycopg.Error:
            return False
        return True

    def close(self) -> None:
        self.pool.close()


def close_all(url: str | None = None) -> int:
    """Close every store of this process opened on ``url`` (all if None): their pools' worker
    threads and connections end. Returns how many were closed."""
    closed = 0
    for db in list(_OPEN):
        if url is None or db.target == url:
            db.close()
            _OPEN.discard(db)
            closed += 1
    return closed
