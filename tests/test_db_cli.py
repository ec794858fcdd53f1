"""``liftwatch db migrate|status|copy``, run as the operator runs them (``python -m liftwatch``
in a child process) against a real SQLite file and the suite's private PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts import lifecycle
from alerts.webhooks import signing
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, deadletters, maintenance, outbox, tokens
from liftwatch.store import alarms as alarm_store
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as wh
from liftwatch.store.copy import ORDER, CopyReport, copy_order, schema, verify
from liftwatch.store.db import migrations
from liftwatch.store.postgres import MIGRATE_LOCK
from tests.support.harness import eventually
from tests.support.postgres import PostgresForTests

ROOT = Path(__file__).resolve().parents[1]
EXIT_NOT_CURRENT, EXIT_REFUSED, EXIT_COPY_FAILED, EXIT_UNAVAILABLE = 1, 3, 4, 69


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    env["LIFTWATCH_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def liftwatch(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftwatch", *argv],
        cwd=tmp_path,
        env=_env(tmp_path / "data") | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _spawn(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "liftwatch", *argv],
        cwd=tmp_path,
        env=_env(tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def empty_pg(postgres: PostgresForTests) -> Iterator[str]:
    url = postgres.empty_url()
    yield url
    postgres.drop(url)


def _applied(out: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("applied: 0")]


# --- migrate and status ------------------------------------------------------------------


def test_status_of_a_missing_sqlite_store_creates_nothing(tmp_path: Path) -> None:
    r = liftwatch(tmp_path, "db", "status")
    assert r.returncode == EXIT_UNAVAILABLE, r
    assert "no store at" in r.stderr
    assert not (tmp_path / "data" / "liftwatch.sqlite3").exists()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrate_then_status(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    dialect = backend
    if backend == "sqlite":
        target = f"sqlite:///{tmp_path / 'site' / 'lw.sqlite3'}"
        shown = str(tmp_path / "site" / "lw.sqlite3")
    else:
        target = request.getfixturevalue("empty_pg")
        shown = target.replace(":liftwatch@", ":***@")
        # An empty database: every migration pending, and status changes nothing.
        before = liftwatch(tmp_path, "db", "status", "--database", target)
        assert before.returncode == EXIT_NOT_CURRENT, before
        assert "schema version: 0" in before.stdout
        with psycopg.connect(target) as c:
            assert c.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
    names = [m.name for m in migrations(dialect)]

    r = liftwatch(tmp_path, "db", "migrate", "--database", target)
    assert r.returncode == 0, r
    assert _applied(r.stdout) == names
    assert f"store: {shown} ({dialect})" in r.stdout
    top = max(m.version for m in migrations(dialect))
    assert f"schema version: {top}" in r.stdout

    status = liftwatch(tmp_path, "db", "status", "--database", target)
    assert status.returncode == 0, status
    assert f"backend: {dialect}" in status.stdout
    assert f"schema version: {top} (this liftwatch: {top})" in status.stdout
    assert [ln.split()[1] for ln in status.stdout.splitlines() if ln.startswith("applied:")] == (
        names
    )
    assert "pending:" not in status.stdout and "up to date" in status.stdout

    again = liftwatch(tmp_path, "db", "migrate", "--database", target)
    assert again.returncode == 0 and _applied(again.stdout) == []
    # Never a password in what the commands print or log.
    for out in (r, status, again):
        assert ":liftwatch@" not in out.stdout + out.stderr


def test_status_says_pending_after_a_store_lost_its_last_migration(tmp_path: Path) -> None:
    """A store one migration behind (as after an upgrade of liftwatch): status exits 1 and
    names it; migrate applies exactly it."""
    path = tmp_path / "data" / "liftwatch.sqlite3"
    db = Database(path)
    last = migrations("sqlite")[-1]
    with db.transaction() as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (last.version,))
    db.close()
    r = liftwatch(tmp_path, "db", "status")  # the store of LIFTWATCH_DATA_DIR
    assert r.returncode == EXIT_NOT_CURRENT, r
    assert f"pending: {last.name}" in r.stdout


def test_status_of_an_unreachable_postgresql(tmp_path: Path, postgres: PostgresForTests) -> None:
    url = postgres.server.url_for("no_such_database_here")
    r = liftwatch(tmp_path, "db", "status", "--database", url)
    assert r.returncode == EXIT_UNAVAILABLE, r
    assert ":liftwatch@" not in r.stdout + r.stderr


async def test_two_migrates_at_once_on_one_empty_postgresql(tmp_path: Path, empty_pg: str) -> None:
    """Both wait on the migration lock (held by the test until both are waiting), then one
    applies every migration and the other finds nothing to do."""
    holder = psycopg.connect(empty_pg, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        procs = [_spawn(tmp_path, "db", "migrate", "--database", empty_pg) for _ in range(2)]

        def both_waiting() -> bool:
            row = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            return row is not None and row[0] == 2

        await eventually(both_waiting, timeout=60, what="both migrations wait on the lock")
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        holder.close()
    assert [p.returncode for p in procs] == [0, 0], results
    applied = sorted(_applied(out) for out, _ in results)
    names = [m.name for m in migrations("postgresql")]
    assert applied == [[], names]
    with psycopg.connect(empty_pg) as c:
        rows = c.execute(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"
        ).fetchall()
    assert rows == [(m.version, 1) for m in migrations("postgresql")]


# --- copy --------------------------------------------------------------------------------

T0 = 1_764_000_000_000


def fill(db: Database) -> dict[str, Any]:
    """A site's store: what each part writes through its own functions."""
    reg.upsert_company(
        db, Company(company_id="co-sh", name="上海申菱电梯维保有限公司", phone="021-5555")
    )
    reg.upsert_company(db, Company(company_id="co-b", name="Beta", contact="王工"))
    lifts = [
        Lift(
            lift_id="31101201002018040001",
            registration_code="3110120100",
            rescue_code="123456",
            name="1号楼 客梯A",
            address="上海市浦东新区世纪大道100号",
            area_code="310115",
            company_id="co-sh",
            rated_speed=1.75,
            floors=32,
            overrides={"entrapment_s": 45.0, "alarm_button_hold_s": 12.5},
        ),
        Lift(lift_id="L-2", company_id="co-sh", name="货梯 “北”", urban=False),
        Lift(lift_id="L-3", company_id="co-b", name="Beta 3", rated_speed=None, active=False),
    ]
    for lift in lifts:
        reg.upsert_lift(db, lift)
    tokens.add_token(
        db,
        token_id="tok_admin",
        token_hash="a" * 64,
        name="运维",
        role="admin",
        company_id=None,
        created_by="bootstrap",
    )
    tokens.add_token(
        db,
        token_id="tok_co",
        token_hash="b" * 64,
        name="co-sh app",
        role="maintainer",
        company_id="co-sh",
        created_by="tok_admin",
    )
    subs = [
        wh.add_subscription(
            db,
            company_id=None,
            url="https://hooks.example.com/all",
            secret=signing.new_secret(),
            filters={},
            created_by="tok_admin",
        ),
        wh.add_subscription(
            db,
            company_id="co-sh",
            url="https://co-sh.example.cn/告警",
            secret=signing.new_secret(),
            filters={"severity": ["critical"]},
            created_by="tok_co",
        ),
    ]
    window = maintenance.add_maintenance_window(
        db, "L-2", T0 - 60_000, T0 + 3_600_000, reason="年检 annual check", created_by="tok_co"
    )
    policy = lifecycle.Policy()
    ids = []
    for n, (lift_id, company, code, severity, source, maint) in enumerate(
        [
            ("31101201002018040001", "co-sh", "alarm_button", "critical", "device", False),
            ("31101201002018040001", "co-sh", "entrapment", "critical", "rule", False),
            ("L-2", "co-sh", "door_fault", "major", "rule", True),  # in its window: suppressed
            ("L-3", "co-b", "power_loss", "minor", "device", False),
        ]
    ):
        out: list[lifecycle.Change] = []
        with db.transaction() as conn:
            alarm = lifecycle.raise_condition(
                conn,
                lifecycle.Raise(
                    lift_id=lift_id,
                    code=code,
                    subtype=None,
                    severity=severity,
                    source=source,
                    at=T0 + n * 1000,
                    evidence={"seq": n, "floor": "B1", "备注": "困人"},
                    maintenance_applies=maint,
                    company_id=company,
                    deadline_ms=1_800_000 if code == "entrapment" else None,
                ),
                policy,
                out,
            )
            alarm_store.set_first_seen(conn, lift_id, T0 - 86_400_000)
            alarm_store.set_selftest_ok(conn, lift_id, T0 - 3_600_000)
        ids.append(alarm.alarm_id)
    lifecycle.acknowledge(db, ids[0], actor="api:co-sh app", note="收到", at=T0 + 10_000)
    lifecycle.mark_on_site(db, ids[0], actor="api:co-sh app", at=T0 + 20_000)
    lifecycle.resolve(db, ids[0], actor="api:co-sh app", outcome="rescued", at=T0 + 30_000)
    lifecycle.acknowledge(db, ids[3], actor="api:运维", at=T0 + 40_000)

    # The dispatcher's part: fan-out of the outbox, attempts (one failed, one delivered).
    fan = wh.fan_out(db, lambda row, subs: list(subs), now_ms=T0 + 50_000)
    assert fan.deliveries >= 4
    delivery_ids = [d.id for s in subs for d in wh.list_deliveries(db, s.id, limit=100)]
    for i, delivery_id in enumerate(sorted(delivery_ids)[:3]):
        started = wh.start_attempt(db, delivery_id, T0 + 60_000 + i)
        assert started is not None
        wh.finish_attempt(
            db,
            delivery_id,
            at=T0 + 60_000 + i,
            latency_ms=37,
            status_code=503 if i == 0 else 200,
            response="服务不可用" if i == 0 else "ok",
            error="HTTP 503" if i == 0 else None,
            outcome="pending" if i == 0 else "delivered",
            next_attempt_at=T0 + 120_000 if i == 0 else None,
        )
    wh.add_test_delivery(db, subs[0].id, '{"type":"webhook.test"}', T0 + 70_000)

    deadletters.add_dead_letters(
        db,
        [
            deadletters.DeadLetter(
                T0 + 5, "lifts/L-9/telemetry", "L-9", "unknown_lift", "not registered", b"{}"
            ),
            deadletters.DeadLetter(
                T0 + 6,
                "lifts/L-2/telemetry",
                "L-2",
                "bad_json",
                "invalid UTF-8 at byte 1",
                b"\x00\xff\xfe\x80binary\x01" + bytes(range(256)),
            ),
        ],
        keep=1000,
    )
    return {"alarms": ids, "subs": [s.id for s in subs], "window": window.window_id}


def through_the_store(db: Database, seeded: dict[str, Any]) -> dict[str, Any]:
    """Everything the parts read back, through the store's own functions."""
    subs = seeded["subs"]
    deliveries = [d for s in subs for d in wh.list_deliveries(db, s, limit=1000)]
    return {
        "companies": reg.list_companies(db),
        "lifts": reg.all_lifts_checked(db),
        "tokens": [tokens.find_active_token(db, h) for h in ("a" * 64, "b" * 64)],
        "alarms": [alarm_store.get_alarm(db, a) for a in seeded["alarms"]],
        "transitions": [alarm_store.transitions_of(db, a) for a in seeded["alarms"]],
        "marks": alarm_store.lift_marks(db),
        "outbox": outbox.outbox_rows(db),
        "subscriptions": wh.list_subscriptions(db),
        "deliveries": deliveries,
        "attempts": wh.attempts_of(db, [d.id for d in deliveries]),
        "window": maintenance.get_maintenance_window(db, seeded["window"]),
        "dead_letters": deadletters.list_dead_letters(db),
    }


def raw_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """SELECT * of every table (columns by name, rows by primary key)."""
    out = {}
    for name, table in schema(db).items():
        cols = sorted(table.columns)
        key = ", ".join(table.primary_key)
        rows = db.tuples(f"SELECT {', '.join(cols)} FROM {name} ORDER BY {key}")  # noqa: S608
        out[name] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
    return out


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Database, dict[str, Any]]]:
    db = Database(tmp_path / "site" / "liftwatch.sqlite3")
    seeded = fill(db)
    yield db, seeded
    db.close()


def test_copy_sqlite_to_postgresql_row_for_row(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], empty_pg: str
) -> None:
    src, seeded = site
    source = f"sqlite:///{src.display}"
    r = liftwatch(tmp_path, "db", "copy", "--from", source, "--to", empty_pg)
    assert r.returncode == 0, r
    assert ":liftwatch@" not in r.stdout + r.stderr
    expected_raw = raw_rows(src)
    counts = {t: len(rows) for t, rows in expected_raw.items()}
    assert all(counts[t] for t in ORDER), counts  # the mix has rows in every table
    for table, n in counts.items():
        assert f"copied: {table} {n} rows" in r.stdout
    assert f"verified: {sum(counts.values())} rows identical" in r.stdout

    dst = Database(empty_pg, migrate=False)
    try:
        assert through_the_store(dst, seeded) == through_the_store(src, seeded)
        assert raw_rows(dst) == expected_raw
        # Ids go on after the copied ones.
        top_transition = max(row[0] for row in dst.tuples("SELECT id FROM alarm_transitions"))
        top_outbox = max(row[0] for row in dst.tuples("SELECT id FROM outbox"))
        top_window = max(w[0] for w in dst.tuples("SELECT window_id FROM maintenance_windows"))
        lifecycle.acknowledge(dst, seeded["alarms"][1], actor="api:after-copy")
        new = alarm_store.transitions_of(dst, seeded["alarms"][1])[-1]
        assert new.id is not None and new.id > top_transition
        assert outbox.outbox_rows(dst)[-1].id > top_outbox
        window = maintenance.add_maintenance_window(dst, "L-3", T0, T0 + 1, created_by="t")
        assert window.window_id > top_window
        letters = deadletters.add_dead_letters(
            dst, [deadletters.DeadLetter(T0, "t", None, "r", "d", b"\x00")], keep=1000
        )
        assert letters == 1
        ids = [row[0] for row in dst.tuples("SELECT id FROM dead_letters ORDER BY id")]
        assert ids[-1] > ids[-2]
    finally:
        dst.close()


def test_copy_refuses_a_destination_that_holds_rows(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], postgres: PostgresForTests
) -> None:
    src, _ = site
    url = postgres.fresh_url()
    try:
        dst = Database(url)
        reg.upsert_company(dst, Company(company_id="already-here", name="X"))
        r = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", url)
        assert r.returncode == EXIT_REFUSED, r
        assert "companies: 1" in r.stderr and "--replace" in r.stderr
        assert [c.company_id for c in reg.list_companies(dst)] == ["already-here"]
        assert list(dst.tuples("SELECT count(*) FROM lifts")) == [(0,)]

        replaced = liftwatch(
            tmp_path, "db", "copy", "--from", src.display, "--to", url, "--replace"
        )
        assert replaced.returncode == 0, replaced
        assert "replaced: companies 1 rows deleted first" in replaced.stdout
        assert raw_rows(dst) == raw_rows(src)
        dst.close()
    finally:
        postgres.drop(url)


def test_copy_postgresql_back_to_sqlite(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], empty_pg: str
) -> None:
    src, seeded = site
    there = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", empty_pg)
    assert there.returncode == 0, there
    back_path = tmp_path / "back" / "liftwatch.sqlite3"
    # --from defaults to the configured store: here LIFTWATCH_DATABASE_URL.
    back = liftwatch(
        tmp_path, "db", "copy", "--to", f"sqlite:///{back_path}", LIFTWATCH_DATABASE_URL=empty_pg
    )
    assert back.returncode == 0, back
    copy = Database(back_path, migrate=False)
    try:
        assert raw_rows(copy) == raw_rows(src)
        assert through_the_store(copy, seeded) == through_the_store(src, seeded)
        top = max(row[0] for row in copy.tuples("SELECT id FROM alarm_transitions"))
        lifecycle.acknowledge(copy, seeded["alarms"][1], actor="api:after-copy")
        assert alarm_store.transitions_of(copy, seeded["alarms"][1])[-1].id == top + 1
    finally:
        copy.close()


def test_verification_finds_a_changed_missing_or_extra_row(
    tmp_path: Path, site: tuple[Database, dict[str, Any]]
) -> None:
    src, _ = site
    target = tmp_path / "copy.sqlite3"
    r = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", str(target))
    assert r.returncode == 0, r
    dst = Database(target, migrate=False)
    try:
        with dst.transaction() as conn:
            conn.execute("UPDATE dead_letters SET payload = ? WHERE lift_id = 'L-2'", (b"\x00",))
            conn.execute("DELETE FROM alarm_lift_marks WHERE lift_id = 'L-3'")
            conn.execute("INSERT INTO companies VALUES ('extra', 'E', NULL, NULL, 1, 0, 0)")
        src_tables, dst_tables = schema(src), schema(dst)
        order = copy_order(set(dst_tables), {n: t.references for n, t in dst_tables.items()})
        report = CopyReport(src.display, dst.display, 0)
        verify(src, dst, src_tables, dst_tables, order, report)
        found = {(d.table, d.problem) for d in report.differences}
        assert found == {
            ("dead_letters", "differs"),
            ("alarm_lift_marks", "missing"),
            ("companies", "extra"),
        }
        assert not report.ok
    finally:
        dst.close()


def test_copy_order_puts_unknown_tables_after_their_references() -> None:
    order = copy_order(
        {"zz_feed", "aa_child", "companies", "lifts", "outbox"},
        {"aa_child": frozenset({"zz_feed"}), "lifts": frozenset({"companies"})},
    )
    assert order == ["companies", "lifts", "outbox", "zz_feed", "aa_child"]


def test_copy_into_itself_is_refused(tmp_path: Path, site: tuple[Database, dict[str, Any]]) -> None:
    src, _ = site
    r = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", f"sqlite:///{src.display}")
    assert r.returncode == EXIT_REFUSED, r
    assert "same store" in r.stderr


def test_copy_into_the_same_postgresql_under_another_url_is_refused(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], empty_pg: str
) -> None:
    src, _ = site
    assert (
        liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", empty_pg).returncode == 0
    )
    before = raw_rows(src)
    other_spelling = empty_pg + "?application_name=copy-target"
    r = liftwatch(tmp_path, "db", "copy", "--from", empty_pg, "--to", other_spelling, "--replace")
    assert r.returncode == EXIT_REFUSED, r
    assert "same store" in r.stderr
    pg = Database(empty_pg, migrate=False)
    try:
        assert raw_rows(pg) == before
    finally:
        pg.close()


def test_a_copy_that_fails_half_way_leaves_the_destination_unchanged(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], empty_pg: str
) -> None:
    """SQLite keeps what a column's type does not fit; PostgreSQL refuses it: the copy stops
    at that table, after companies, lifts and tokens were written, and rolls all back."""
    src, _ = site
    with src.transaction() as conn:
        conn.execute("UPDATE alarm_transitions SET at = 'yesterday' WHERE id = 1")
    r = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", empty_pg)
    assert r.returncode == EXIT_COPY_FAILED, r
    assert "copied: companies 2 rows" in r.stdout and "destination is unchanged" in r.stderr
    dst = Database(empty_pg, migrate=False)
    try:
        assert all(rows == [] for rows in raw_rows(dst).values())
    finally:
        dst.close()


def test_a_table_a_later_migration_adds_is_copied_too(
    tmp_path: Path, site: tuple[Database, dict[str, Any]], empty_pg: str
) -> None:
    """Tables come from the schema: one the copy has never heard of (as a change feed of a
    later migration would be) is copied after the tables it references, its ids go on."""
    src, seeded = site
    with src.transaction() as conn:
        conn.execute(
            "CREATE TABLE zz_feed (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " alarm_id TEXT NOT NULL REFERENCES alarms(alarm_id), kind TEXT, body BLOB)"
        )
        conn.executemany(
            "INSERT INTO zz_feed (alarm_id, kind, body) VALUES (?, ?, ?)",
            [(a, "变更", bytes([i, 255])) for i, a in enumerate(seeded["alarms"])],
        )
    assert liftwatch(tmp_path, "db", "migrate", "--database", empty_pg).returncode == 0
    with psycopg.connect(empty_pg, autocommit=True) as c:
        c.execute(
            "CREATE TABLE zz_feed (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            ' alarm_id TEXT COLLATE "C" NOT NULL REFERENCES alarms(alarm_id),'
            " kind TEXT, body BYTEA)"
        )
    r = liftwatch(tmp_path, "db", "copy", "--from", src.display, "--to", empty_pg)
    assert r.returncode == 0, r
    copied = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("copied:")]
    assert copied.index("zz_feed") > copied.index("alarms")
    assert "sequence: zz_feed.seq next 5" in r.stdout
    dst = Database(empty_pg, migrate=False)
    try:
        assert raw_rows(dst)["zz_feed"] == raw_rows(src)["zz_feed"]
        with dst.transaction() as conn:
            row = conn.execute(
                "INSERT INTO zz_feed (alarm_id) VALUES (?) RETURNING seq", (seeded["alarms"][0],)
            ).fetchone()
        assert row[0] == 5
    finally:
        dst.close()


def test_copy_from_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, empty_pg: str
) -> None:
    missing = tmp_path / "typo" / "liftwatch.sqlite3"
    r = liftwatch(tmp_path, "db", "copy", "--from", str(missing), "--to", empty_pg)
    assert r.returncode == EXIT_UNAVAILABLE, r
    assert not missing.exists()
    with psycopg.connect(empty_pg) as c:  # the destination was not even migrated
        assert c.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
