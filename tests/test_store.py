"""The store on both backends: migrations, transactions, rows, errors — and what is
particular to each (SQLite's pragmas; PostgreSQL's placeholders, types and writers' lock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from liftwatch.registry import Company, Lift
from liftwatch.store import Database, IntegrityError, StoreError, is_foreign_key_violation
from liftwatch.store import registry as reg
from liftwatch.store.deadletters import DeadLetter, add_dead_letters, list_dead_letters


def test_migrations_apply_once_and_set_wal(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.sqlite3")
    names = [r[0] for r in db.conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert names[:2] == ["0001_registry.sql", "0002_dead_letters.sql"]
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert Database(tmp_path / "s.sqlite3").migrate() == []  # nothing left to apply


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url)
    yield database
    database.close()


def test_foreign_keys_and_rollback(db: Database) -> None:
    with pytest.raises(IntegrityError) as caught:
        reg.upsert_lift(db, Lift(lift_id="L1", company_id="ghost"))
    assert is_foreign_key_violation(caught.value)
    assert reg.get_lift(db, "L1") is None
    assert reg.upsert_company(db, Company(company_id="c", name="C")) == "inserted"
    assert reg.upsert_company(db, Company(company_id="c", name="C")) == "unchanged"
    assert reg.upsert_lift(db, Lift(lift_id="L1", company_id="c")) == "inserted"
    assert reg.set_lift_active(db, "L1", False)
    lift = reg.get_lift(db, "L1")
    assert lift is not None and not lift.active


def test_dead_letters_are_capped_and_cut(db: Database) -> None:
    letters = [
        DeadLetter(
            received_at=i,
            topic="lifts/L1/telemetry",
            lift_id="L1",
            reason="bad_json",
            detail="x",
            payload=b"y" * 5000,
        )
        for i in range(150)
    ]
    assert add_dead_letters(db, letters, keep=100) == 150
    kept = list_dead_letters(db, limit=1000)
    assert len(kept) == 100
    assert kept[0].received_at == 149 and kept[-1].received_at == 50  # oldest pruned
    assert len(kept[0].payload) == 1024
    assert isinstance(kept[0].payload, bytes) and kept[0].payload == b"y" * 1024


def test_a_stored_lift_with_an_override_key_refused_today_still_reads(db: Database) -> None:
    """Input refuses unknown threshold keys; a row an older version stored must still load,
    or the API and the alerts engine could not read the registry at all. The key the rules
    would ignore is left out of the entry and named as its problem (FAULTS.md 1.1 #1)."""
    reg.upsert_company(db, Company(company_id="c", name="C"))
    reg.upsert_lift(db, Lift(lift_id="L1", company_id="c"))
    with db.transaction() as conn:
        conn.execute("UPDATE lifts SET overrides = '{\"entrapment\": 20}' WHERE lift_id = 'L1'")
    checked = reg.get_lift_checked(db, "L1")
    assert checked is not None
    lift, problem = checked
    assert lift.overrides == {} and problem is not None and "entrapment" in problem
    with pytest.raises(ValidationError, match="unknown threshold entrapment"):
        Lift(lift_id="L2", overrides={"entrapment": 20})


# --- both backends: the contract of Database ------------------------------------------------


def test_rows_answer_by_name_and_position_and_types_match(db: Database) -> None:
    reg.upsert_company(db, Company(company_id="c", name="电梯公司"))
    row = db.conn.execute(
        "SELECT company_id, name, active, created_at FROM companies WHERE company_id = ?", ("c",)
    ).fetchone()
    assert row["name"] == row[1] == "电梯公司"
    assert list(row.keys()) == ["company_id", "name", "active", "created_at"]
    assert dict(zip(row.keys(), row, strict=True))["company_id"] == "c"
    assert row["active"] == 1 and isinstance(row["created_at"], int)
    (total,) = db.conn.execute("SELECT SUM(created_at) FROM companies").fetchone()
    assert isinstance(total, int)  # not a Decimal on PostgreSQL


def test_placeholders_booleans_and_literal_percent_and_question_marks(db: Database) -> None:
    reg.upsert_company(db, Company(company_id="c", name="C"))
    with db.transaction() as conn:
        conn.execute(
            "UPDATE companies SET active = ?, name = ? WHERE company_id = ?", (False, "50% ?", "c")
        )
    row = db.conn.execute(
        "SELECT active, name, '100%' AS pct, 'why?' AS q FROM companies WHERE name LIKE '50%'"
    ).fetchone()
    assert tuple(row) == (0, "50% ?", "100%", "why?")
    assert (
        db.conn.execute("SELECT COUNT(*) FROM companies WHERE active = ?", (True,)).fetchone()[0]
        == 0
    )


def test_a_read_inside_a_transaction_sees_its_writes_others_do_not(db: Database) -> None:
    other = Database(db.target)
    try:
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO companies (company_id, name, created_at, updated_at)"
                " VALUES ('x', 'X', 1, 1)"
            )
            assert db.conn.execute("SELECT COUNT(*) FROM companies").fetchone()[0] == 1
            assert other.conn.execute("SELECT COUNT(*) FROM companies").fetchone()[0] == 0
        assert other.conn.execute("SELECT COUNT(*) FROM companies").fetchone()[0] == 1
    finally:
        other.close()


def test_an_exception_rolls_the_whole_transaction_back(db: Database) -> None:
    def write_then_fail() -> None:
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO companies (company_id, name, created_at, updated_at)"
                " VALUES ('x', 'X', 1, 1)"
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert db.conn.execute("SELECT COUNT(*) FROM companies").fetchone()[0] == 0


def test_a_savepoint_recovers_from_a_failed_statement(db: Database) -> None:
    """The engine isolates each lift in a savepoint: after a failed statement, PostgreSQL
    refuses everything until ROLLBACK TO (SQLite does not care) — both must commit the rest."""
    reg.upsert_company(db, Company(company_id="c", name="C"))
    with db.transaction() as conn:
        conn.execute("SAVEPOINT lift")
        with pytest.raises(IntegrityError):
            conn.execute(
                "INSERT INTO lifts (lift_id, company_id, created_at, updated_at)"
                " VALUES ('L1', 'ghost', 1, 1)"
            )
        conn.execute("ROLLBACK TO lift")
        conn.execute("RELEASE lift")
        conn.execute(
            "INSERT INTO lifts (lift_id, company_id, created_at, updated_at)"
            " VALUES ('L2', 'c', 1, 1)"
        )
    assert reg.get_lift(db, "L2") is not None and reg.get_lift(db, "L1") is None


def test_writers_are_serialised_so_ids_follow_commit_order(db: Database) -> None:
    """The ordering guarantee both backends give (SQLite: one writer; PostgreSQL: the writers'
    advisory lock): a second writer waits for the first to commit, so an id taken later is
    never committed earlier — the SSE stream and the registry refresh follow ids."""
    other = Database(db.target)
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with db.transaction() as conn:
            entered.set()
            release.wait(10)
            conn.execute(
                "INSERT INTO companies (company_id, name, created_at, updated_at)"
                " VALUES ('first', 'F', 1, 1)"
            )
            order.append("first")

    t = threading.Thread(target=first)
    t.start()
    try:
        assert entered.wait(10)
        began = time.monotonic()
        threading.Timer(0.3, release.set).start()
        with other.transaction() as conn:
            waited = time.monotonic() - began
            order.append("second")
            conn.execute(
                "INSERT INTO companies (company_id, name, created_at, updated_at)"
                " VALUES ('second', 'S', 1, 1)"
            )
    finally:
        release.set()
        t.join(10)
        other.close()
    assert order == ["first", "second"]
    assert waited >= 0.25  # the second writer waited for the first one's commit


def test_a_nested_transaction_is_refused(db: Database) -> None:
    with db.transaction(), pytest.raises(Exception), db.transaction():  # noqa: B017, PT011
        pass  # SQLite: "cannot start a transaction within a transaction"; PostgreSQL: StoreError


def test_migrations_are_recorded_once_and_status_is_current(db: Database) -> None:
    status = db.migration_status()
    assert status.pending == [] and status.version >= 8
    assert db.migrate() == []
    versions = [v for v, _, _ in status.applied]
    assert len(versions) == len(set(versions))


def test_the_display_never_shows_a_password(db: Database) -> None:
    assert "liftwatch:liftwatch@" not in db.display and "liftwatch:liftwatch@" not in repr(db)
    if db.dialect == "postgresql":
        assert ":***@" in db.display


def test_an_unreachable_postgresql_is_a_clear_store_error() -> None:
    from liftwatch.localservices import free_port

    url = f"postgresql://u:secret@127.0.0.1:{free_port()}/x"
    with pytest.raises(StoreError, match=r"cannot reach the store at postgresql://u:\*\*\*@") as e:
        Database(url, connect_timeout_s=1.0)
    assert "secret" not in str(e.value)


def test_postgresql_restart_the_pool_reconnects_and_a_failed_write_is_retryable(
    tmp_path: Path,
) -> None:
    """A PostgreSQL restart (failover, upgrade) must not need a liftwatch restart: the write
    that meets the dead connection fails with an OperationalError (which the alerts engine and
    the dispatcher retry), and the next one succeeds on a fresh connection."""
    from liftwatch.localservices import PostgreSQL
    from liftwatch.store import OperationalError

    server = PostgreSQL(tmp_path / "pg")
    server.start()
    try:
        db = Database(server.url, pool_size=2, connect_timeout_s=2.0)
        reg.upsert_company(db, Company(company_id="before", name="B"))
        server.stop()
        with pytest.raises(OperationalError):
            reg.upsert_company(db, Company(company_id="during", name="D"))
        server.start()
        reg.upsert_company(db, Company(company_id="after", name="A"))
        ids = {r[0] for r in db.conn.execute("SELECT company_id FROM companies").fetchall()}
        assert ids == {"before", "after"}
        db.close()
    finally:
        server.stop()
