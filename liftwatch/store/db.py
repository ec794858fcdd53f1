"""The store's connection handling and versioned migrations, for either backend.

``Database(target)`` opens the operational store named by ``target``: a file path or a
``sqlite:///path`` URL (SQLite, the embedded default — :mod:`liftwatch.store.sqlite`) or a
``postgresql://`` URL (several processes on several hosts — :mod:`liftwatch.store.postgres`).
Both give the same two ways in, so the SQL of the aggregate modules runs unchanged on either:

- :meth:`Database.transaction` — one write transaction (commit on success, rollback on any
  exception). Writers of the operational aggregates are serialised, as SQLite's
  ``BEGIN IMMEDIATE`` does, so that ids and change numbers are handed out in commit order;
- :attr:`Database.conn` — reads outside a transaction (inside one, on the same thread, the
  transaction's own connection, so a read sees the transaction's writes).

SQL is written once, with ``?`` placeholders, in the common dialect of SQLite ≥ 3.35 and
PostgreSQL ≥ 12 (``COALESCE``, ``ON CONFLICT``, ``RETURNING``, window functions). Nothing
above the store imports a driver: it catches :data:`Error`, :data:`IntegrityError` and
:data:`OperationalError` from here (docs/storage.md).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

# The driver errors, by DB-API class, of both backends: what code above the store catches.
Error: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
# Locked or busy beyond the timeout, disk full, connection lost, serialisation failure: a
# write worth retrying as a whole.
OperationalError: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
)


class Row(Protocol):
    """A result row: by column name or by position (``sqlite3.Row`` and the PostgreSQL
    backend's rows both are)."""

    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the aggregate modules use of a connection: ``execute`` and ``executemany``."""

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq: Any, /) -> Any: ...


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def from_row(cls: type[D], row: Row) -> D:
    """The dataclass ``cls`` built from the columns of ``row`` named like its fields: the one
    row-to-record mapping of the store (a record whose columns need converting, JSON or
    booleans, has its own function)."""
    return cls(**{name: row[name] for name in _field_names(cls)})


def is_foreign_key_violation(exc: BaseException) -> bool:
    """An :data:`IntegrityError` that names a missing referenced row (either backend)."""
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "FOREIGN KEY" in str(exc)


class StoreError(Exception):
    """The store cannot be opened or migrated."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` ("sqlite" or "postgresql"), in version order. Versions
    are one sequence for both: PostgreSQL's first file is a baseline at version 8 (the schema
    SQLite reaches through 0001–0008); every later change adds the same version to both."""
    folder = resources.files("liftwatch.store").joinpath("migrations")
    if dialect == "postgresql":
        folder = folder.joinpath("postgresql")
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        found.append(Migration(int(name.split("_", 1)[0]), name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a version number: {sorted(versions)}")
    return found


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[tuple[int, str, int]]  # (version, name, applied_at ms)
    pending: list[Migration]

    @property
    def version(self) -> int:
        return max((v for v, _, _ in self.applied), default=0)


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def sqlite_path_of(target: str | Path) -> Path:
    """The file of a SQLite target: a path, or ``sqlite:///relative/path`` and
    ``sqlite:////absolute/path`` (the URL form SQLAlchemy and others use)."""
    text = str(target)
    if text.startswith("sqlite://"):
        rest = text[len("sqlite://") :]
        if not rest.startswith("/"):
            raise StoreError(f"not a SQLite URL (sqlite:///path): {text!r}")
        return Path(rest[1:] or ":memory:")
    return Path(text)


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``: for logs and for what a command prints."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Database:
    """The operational store. ``Database(target)`` returns the backend's implementation."""

    dialect: str = ""
    #: what to show an operator (path, or URL with the password hidden)
    display: str = ""
    #: a target string that opens this store again (another process: the import child)
    target: str = ""

    def __new__(cls, target: str | Path = "", *args: Any, **kwargs: Any) -> Database:
        if cls is Database:
            if is_postgres_url(str(target)):
                from liftwatch.store.postgres import PostgresDatabase

                return super().__new__(PostgresDatabase)
            from liftwatch.store.sqlite import SqliteDatabase

            return super().__new__(SqliteDatabase)
        return super().__new__(cls)

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    def transaction(self, *, serialized: bool = True) -> AbstractContextManager[Connection]:
        """One write transaction. ``serialized=False`` is for writes guarded row by row (the
        webhook deliveries of several dispatchers): they skip the writers' lock."""
        raise NotImplementedError

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """A read's rows as plain tuples: for scans of thousands of rows (reports), where a
        row object per row is the largest cost."""
        raise NotImplementedError

    def migrate(self) -> list[str]:
        """Apply every migration not applied yet, in version order, under a lock that two
        processes starting at once cannot both hold. Returns the names applied."""
        raise NotImplementedError

    def migration_status(self) -> MigrationStatus:
        raise NotImplementedError

    def ping(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display}>"


def split_sql(sql: str) -> list[str]:
    """Split a migration file into statements (our migrations contain no triggers)."""
    out, buf = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        out.append(tail)
    return out
