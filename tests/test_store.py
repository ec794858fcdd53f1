"""The SQLite store: migrations and pragmas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store.deadletters import DeadLetter, add_dead_letters, list_dead_letters


def test_migrations_apply_once_and_set_wal(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.sqlite3")
    names = [r[0] for r in db.conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert names[:2] == ["0001_registry.sql", "0002_dead_letters.sql"]
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert Database(tmp_path / "s.sqlite3").migrate() == []  # nothing left to apply


def test_foreign_keys_and_rollback(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        reg.upsert_lift(db, Lift(lift_id="L1", company_id="ghost"))
    assert reg.get_lift(db, "L1") is None
    assert reg.upsert_company(db, Company(company_id="c", name="C")) == "inserted"
    assert reg.upsert_company(db, Company(company_id="c", name="C")) == "unchanged"
    assert reg.upsert_lift(db, Lift(lift_id="L1", company_id="c")) == "inserted"
    assert reg.set_lift_active(db, "L1", False)
    lift = reg.get_lift(db, "L1")
    assert lift is not None and not lift.active


def test_dead_letters_are_capped_and_cut(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.sqlite3")
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


def test_a_stored_lift_with_an_override_key_refused_today_still_reads(tmp_path: Path) -> None:
    """Input refuses unknown threshold keys; a row an older version stored must still load,
    or the API and the alerts engine could not read the registry at all. The key the rules
    would ignore is left out of the entry and named as its problem (FAULTS.md 1.1 #1)."""
    db = Database(tmp_path / "s.sqlite3")
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
