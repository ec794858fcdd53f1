"""The change feed (liftwatch/store/changes.py), on both backends: writes record their change
in their own transaction, ids follow commit order, and a listener on one store object is woken
by commits made through another (another process, as far as the store can tell) at once;
on PostgreSQL a listener whose connection is killed reconnects and misses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest

from alerts import lifecycle
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, changes
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok
from tests.support.api import raise_alarm
from tests.support.postgres import PostgresForTests

pytestmark = pytest.mark.integration


@pytest.fixture
def two(store_url: str) -> Iterator[tuple[Database, Database]]:
    """Two store objects on one store: their own connections, as two processes have."""
    a, b = Database(store_url), Database(store_url)
    yield a, b
    a.close()
    b.close()


class Seen:
    """A subscriber that remembers every wake (on the listener's thread)."""

    def __init__(self) -> None:
        self.changes: list[changes.Change] = []
        self.outbox_wakes = 0
        self.lock = threading.Lock()

    def __call__(self, got: Sequence[changes.Change], outbox: bool) -> None:
        with self.lock:
            self.changes.extend(got)
            self.outbox_wakes += outbox

    def kinds(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(c.kind, c.key) for c in self.changes]


def test_writes_record_their_change_in_their_own_transaction(store_url: str) -> None:
    db = Database(store_url)
    try:
        start = changes.last_id(db)
        reg.upsert_company(db, Company(company_id="acme", name="Acme"))
        reg.upsert_company(db, Company(company_id="acme", name="Acme"))  # unchanged: none
        reg.upsert_lift(db, Lift(lift_id="L1", company_id="acme"))
        reg.set_lift_active(db, "L1", False)
        reg.import_lifts(db, [(2, Lift(lift_id="L2", company_id="acme")), (3, Lift(lift_id="L3"))])
        alarm_id = raise_alarm(db, "L1", "alarm_button", at=1_000, company_id="acme")
        lifecycle.acknowledge(db, alarm_id, actor="test", at=2_000)
        lifecycle.resolve(db, alarm_id, actor="test", outcome="test", at=3_000)
        with pytest.raises(RuntimeError):
            rolled_back(db)
        got = changes.since(db, start)
        assert [(c.kind, c.key) for c in got] == [
            ("company", "acme"),
            ("registry", "L1"),
            ("registry", "L1"),
            ("registry", "*"),  # one row for a whole import
            ("alarm", alarm_id),
            ("alarm", alarm_id),
        ]
        assert [c.id for c in got] == sorted(c.id for c in got)
        assert changes.last_id(db) == got[-1].id
        assert changes.since(db, got[2].id) == got[3:]
        with db.transaction() as conn, pytest.raises(ValueError, match="unknown change kind"):
            changes.record_in(conn, "nonsense", "x")
    finally:
        db.close()


def rolled_back(db: Database) -> None:
    with db.transaction() as conn:
        reg.upsert_lift_in(conn, Lift(lift_id="L9"))
        raise RuntimeError("rolled back: its change with it")


def test_a_commit_through_another_store_object_wakes_the_listener(
    two: tuple[Database, Database], unique: str
) -> None:
    watcher, writer = two
    seen = Seen()
    listener = changes.listener(watcher)
    unsubscribe = listener.subscribe(seen)
    try:
        # The first wake comes once the listener is connected: what came before it is read.
        wait_for(lambda: listener.wakes >= 1, "listener connected")
        wakes = listener.wakes
        t0 = time.monotonic()
        reg.upsert_company(writer, Company(company_id="acme", name="Acme"))
        wait_for(lambda: ("company", "acme") in seen.kinds(), "company change seen")
        assert time.monotonic() - t0 < 1.0
        assert listener.wakes > wakes
        # An outbox row alone (an alarm raised by the engine) wakes it as an outbox commit.
        before = seen.outbox_wakes
        raise_alarm(writer, "L1", "entrapment", at=1_000)
        wait_for(lambda: seen.outbox_wakes > before, "outbox commit seen")
        tok.revoke_token(writer, "no-such-token")  # nothing revoked: nothing recorded
        reg.upsert_lift(writer, Lift(lift_id=f"L-{unique}"))
        wait_for(lambda: ("registry", f"L-{unique}") in seen.kinds(), "registry change")
        assert [k for k, _ in seen.kinds()] == ["company", "registry"]
    finally:
        unsubscribe()
    wait_for(lambda: not listener.running, "listener stopped without subscribers")


def test_pg_listener_reconnects_and_reads_what_came_meanwhile(
    postgres: PostgresForTests,
) -> None:
    url = postgres.fresh_url()
    watcher, writer = Database(url), Database(url)
    seen = Seen()
    listener = changes.listener(watcher)
    unsubscribe = listener.subscribe(seen)
    try:
        wait_for(lambda: listener.wakes >= 1, "listener connected")
        # Kill the listening session (a network cut, a server failover) ...
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (changes.APPLICATION_NAME,),
            )
        # ... and commit while it is away: the feed's ids, not the notification, are the truth.
        reg.upsert_company(writer, Company(company_id="away", name="Away"))
        wait_for(lambda: ("company", "away") in seen.kinds(), "change made meanwhile")
        assert listener.reconnects >= 1
        reg.upsert_company(writer, Company(company_id="back", name="Back"))
        wait_for(lambda: ("company", "back") in seen.kinds(), "change after reconnect")
        assert seen.kinds() == [("company", "away"), ("company", "back")]
    finally:
        unsubscribe()
        watcher.close()
        writer.close()
        postgres.drop(url)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``check`` from a plain thread until true (these tests run no event loop), as
    tests/support/harness.py ``eventually`` does."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        time.sleep(0.01)
