"""The change feed: what one process committed, seen by every other process at once.

Writers record a :class:`Change` (``kind``, ``key``) with :func:`record_in` inside their own
write transaction (migration 0010, table ``change_feed``). Writers are serialised (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's writers' lock), so ids are in commit order and a reader
that follows them (:func:`since`) never skips a row that committed late. The table is the
truth; a notification is only a wake-up, so a listener that was away misses nothing.

:class:`Listener` (one per store and process, :func:`listener`) is the wake-up, on a thread:

- PostgreSQL: its own autocommit connection ``LISTEN liftwatch``. Triggers on
  ``change_feed`` and ``outbox`` ``NOTIFY`` at the writing transaction's commit (payload: the
  table), from whichever process on whichever host. A lost connection is re-opened; rows
  committed meanwhile are read from the table by id;
- SQLite (one host): ``PRAGMA data_version`` on its own connection every
  :data:`SQLITE_CHECK_S`; it changes when any other connection commits.

On each wake it reads the new feed rows once for the process and calls its subscribers with
them and with whether outbox rows may have been committed. It runs only while someone is
subscribed. Asyncio code waits with :class:`Waker` (the API's event stream, the alerts
worker's change loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import psycopg

from liftwatch.clock import now_ms
from liftwatch.store.db import Connection, Database

log = logging.getLogger("liftwatch.store")

CHANNEL: Final = "liftwatch"
APPLICATION_NAME: Final = "liftwatch-changes"  # the listening session, in pg_stat_activity
# Kinds. registry: a lift changed (key: lift_id, "*" for an import); company: a company was
# written (key: company_id); alarm: an alarm's status stepped (key: alarm_id); token: a
# token was revoked (key: token_id).
REGISTRY: Final = "registry"
COMPANY: Final = "company"
ALARM: Final = "alarm"
TOKEN: Final = "token"  # noqa: S105 - a change kind, not a secret
KINDS: Final = frozenset({REGISTRY, COMPANY, ALARM, TOKEN})

SQLITE_CHECK_S: Final = 0.05  # data_version checks: a wake-up within this of a commit
PG_IDLE_S: Final = 1.0  # the PostgreSQL listener checks it should still run this often
RECONNECT_MAX_S: Final = 5.0
KEEP_MS: Final = 24 * 3600 * 1000  # feed rows older than this may be pruned ...
PRUNE_EVERY: Final = 1000  # ... by every PRUNE_EVERY-th writer, keeping the last PRUNE_EVERY


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    kind: str
    key: str
    at: int


def record_in(conn: Connection, kind: str, key: str, at: int | None = None) -> int:
    """Record one change inside the caller's write transaction; returns its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    at = now_ms() if at is None else at
    new_id = int(
        conn.execute(
            "INSERT INTO change_feed (kind, key, at) VALUES (?, ?, ?) RETURNING id",
            (kind, key[:200], at),
        ).fetchone()[0]
    )
    if new_id % PRUNE_EVERY == 0:
        conn.execute(
            "DELETE FROM change_feed WHERE id <= ? AND at < ?", (new_id - PRUNE_EVERY, at - KEEP_MS)
        )
    return new_id


def last_id(db: Database | Connection) -> int:
    """The newest change id (0 when there is none): follow from here."""
    c = db.conn if isinstance(db, Database) else db
    return int(c.execute("SELECT COALESCE(MAX(id), 0) FROM change_feed").fetchone()[0])


_SINCE = "SELECT id, kind, key, at FROM change_feed WHERE id > ? ORDER BY id LIMIT ?"


def since(db: Database | Connection, after_id: int, limit: int = 1000) -> list[Change]:
    """Changes committed after ``after_id``, oldest first (at most ``limit``)."""
    c = db.conn if isinstance(db, Database) else db
    return [Change(int(r[0]), r[1], r[2], int(r[3])) for r in c.execute(_SINCE, (after_id, limit))]


# (changes read on this wake, whether outbox rows may have been committed)
Callback = Callable[[Sequence[Change], bool], None]


class Listener:
    """Wakes this process's subscribers when any process commits (see the module doc)."""

    def __init__(self, db: Database, *, check_s: float = SQLITE_CHECK_S) -> None:
        # Not the Database itself: the shared registry below must not keep a store alive.
        self._db = weakref.ref(db)
        self.dialect = db.dialect
        self.display = db.display
        self._target = db.target
        self._path: Path | None = getattr(db, "path", None)
        self.check_s = check_s
        self._lock = threading.Lock()
        self._subs: dict[int, Callback] = {}
        self._serial = 0
        self._stop: threading.Event | None = None
        self._cursor: int | None = None
        self.wakes = 0
        self.reconnects = 0

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` (on the listener's thread) on every wake from now on; the first
        call comes once the listener is connected. Returns the unsubscribe function."""
        with self._lock:
            self._serial += 1
            token = self._serial
            self._subs[token] = callback
            if self._stop is None:
                self._stop = threading.Event()
                threading.Thread(
                    target=self._run, args=(self._stop,), name="liftwatch-changes", daemon=True
                ).start()

        def unsubscribe() -> None:
            with self._lock:
                if self._subs.pop(token, None) is not None and not self._subs and self._stop:
                    self._stop.set()
                    self._stop = None

        return unsubscribe

    @property
    def running(self) -> bool:
        with self._lock:
            return self._stop is not None

    def _closed(self) -> bool:
        db = self._db()
        if db is None:
            return True
        pool = getattr(db, "pool", None)
        return bool(pool is not None and pool.closed)

    def _run(self, stop: threading.Event) -> None:
        backoff = 0.1
        while not stop.is_set() and not self._closed():
            try:
                if self.dialect == "postgresql":
                    self._run_pg(stop)
                else:
                    self._run_sqlite(stop)
                return
            except (psycopg.Error, sqlite3.Error, OSError) as exc:
                if stop.is_set() or self._closed():
                    return
                self.reconnects += 1
                log.warning(
                    "event=change_listener_lost store=%s error=%r retry_in_s=%.1f",
                    self.display,
                    str(exc)[:200],
                    backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)

    def _dispatch(self, conn: Any, sql: str, outbox: bool) -> None:
        rows: list[Change] = []
        assert self._cursor is not None
        while True:
            got = [
                Change(int(r[0]), r[1], r[2], int(r[3]))
                for r in conn.execute(sql, (self._cursor, 1000)).fetchall()
            ]
            rows.extend(got)
            if got:
                self._cursor = got[-1].id
            if len(got) < 1000:
                break
        self.wakes += 1
        with self._lock:
            subs = list(self._subs.values())
        for callback in subs:
            try:
                callback(rows, outbox)
            except Exception:
                log.exception("event=change_subscriber_failed")

    def _start_cursor(self, conn: Any) -> None:
        if self._cursor is None:  # kept across reconnects: what came meanwhile is read
            self._cursor = int(
                conn.execute("SELECT COALESCE(MAX(id), 0) FROM change_feed").fetchone()[0]
            )

    def _run_pg(self, stop: threading.Event) -> None:
        sql = _SINCE.replace("?", "%s")
        with psycopg.connect(
            self._target, autocommit=True, connect_timeout=10, application_name=APPLICATION_NAME
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._start_cursor(conn)
            log.info("event=change_listener_connected store=%s", self.display)
            self._dispatch(conn, sql, True)  # the ready wake: re-read what came before LISTEN
            while not stop.is_set() and not self._closed():
                payloads = {n.payload for n in conn.notifies(timeout=PG_IDLE_S, stop_after=1)}
                if not payloads:
                    continue
                # Whatever else is queued already (a burst of commits: one wake).
                payloads.update(n.payload for n in conn.notifies(timeout=0.001))
                self._dispatch(conn, sql, "outbox" in payloads)

    def _run_sqlite(self, stop: threading.Event) -> None:
        if self._path is None or str(self._path) == ":memory:":
            stop.wait()  # nobody else can commit to a private in-memory store
            return
        conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._start_cursor(conn)
            self._dispatch(conn, _SINCE, True)
            while not stop.wait(self.check_s) and not self._closed():
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now != version:
                    version = now
                    self._dispatch(conn, _SINCE, True)
        finally:
            conn.close()


_LISTENERS: weakref.WeakKeyDictionary[Database, Listener] = weakref.WeakKeyDictionary()
_LISTENERS_LOCK = threading.Lock()


def listener(db: Database) -> Listener:
    """The process's listener for ``db`` (one per store object, created on first use)."""
    with _LISTENERS_LOCK:
        found = _LISTENERS.get(db)
        if found is None:
            found = _LISTENERS[db] = Listener(db)
        return found


class Waker:
    """An asyncio task's view of :func:`listener`: :meth:`wait` returns True as soon as a
    wake it cares about came (feed rows of ``kinds``, all if None; with ``outbox``, any commit
    that may have written outbox rows), else False after ``timeout``. Use it as a context
    manager (the subscription ends with it)."""

    def __init__(
        self, db: Database, *, kinds: Collection[str] | None = None, outbox: bool = True
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._changes: list[Change] = []
        self._kinds = None if kinds is None else frozenset(kinds)
        self._outbox = outbox
        self._unsubscribe = listener(db).subscribe(self._on)

    def _on(self, changes: Sequence[Change], outbox: bool) -> None:
        hit = [c for c in changes if self._kinds is None or c.kind in self._kinds]
        if hit or (outbox and self._outbox):
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._set, hit)

    def _set(self, hit: list[Change]) -> None:
        self._changes.extend(hit)
        self._event.set()

    async def wait(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - a poll fallback
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        woke = self._event.is_set()
        self._event.clear()
        return woke

    def take(self) -> list[Change]:
        """The feed rows of ``kinds`` received since the last call."""
        out, self._changes = self._changes, []
        return out

    def close(self) -> None:
        self._unsubscribe()

    def __enter__(self) -> Waker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
