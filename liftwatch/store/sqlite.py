"""The SQLite backend: one database file, per-thread connections, WAL.

WAL mode lets the API read while alerts writes; ``synchronous=FULL`` makes a committed alarm
transition survive a power cut, not just a process crash (alarm writes are rare, so the fsync
per commit is affordable). Each thread gets its own connection: FastAPI runs sync endpoints
in a thread pool, and ``sqlite3`` connections must not be shared across threads. Every write
transaction is ``BEGIN IMMEDIATE``: SQLite has one writer at a time, which is the ordering
guarantee the PostgreSQL backend reproduces with a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from liftwatch.clock import now_ms
from liftwatch.store.db import (
    Database,
    MigrationStatus,
    StoreError,
    migrations,
    split_sql,
    sqlite_path_of,
)

_CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
)


class SqliteDatabase(Database):
    """A SQLite database file with per-thread connections."""

    dialect = "sqlite"

    def __init__(
        self, path: Path | str, *, migrate: bool = True, create: bool = True, pool_size: int = 0
    ) -> None:
        self.path = sqlite_path_of(path)
        self.display = str(self.path)
        self.target = str(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        if self.path != Path(":memory:"):
            if not create and not self.path.exists():
                raise StoreError(f"no store at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if migrate:
            self.migrate()

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; commits on success, rolls back on any exception. SQLite
        serialises every writer, so ``serialized`` changes nothing here."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.row_factory = None
        yield from cur.execute(sql, params)

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._lock, self.transaction() as conn:  # BEGIN IMMEDIATE: one migrator at a time
            conn.execute(_CREATE_MIGRATIONS)
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations(self.dialect):
                if m.version in done:
                    continue
                for statement in split_sql(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, now_ms()),
                )
                applied.append(m.name)
        return applied

    def migration_status(self) -> MigrationStatus:
        has = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        rows = (
            self.conn.execute(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
            if has
            else []
        )
        applied = [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
        done = {v for v, _, _ in applied}
        return MigrationStatus(
            applied, [m for m in migrations(self.dialect) if m.version not in done]
        )

    def ping(self) -> bool:
        try:
            self.conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
