"""Operator commands for the operational store: ``db migrate``, ``db status``, ``db copy``.

Each takes the store from the settings (``LIFTWATCH_DATABASE_URL``, else the SQLite file under
``LIFTWATCH_DATA_DIR``) unless a flag names one. Output names a store by ``db.display``: a
PostgreSQL URL with its password hidden (docs/storage.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from liftwatch.settings import settings_from
from liftwatch.store import Database, Error, StoreError
from liftwatch.store.copy import CopyRefused, copy_store
from liftwatch.store.db import is_postgres_url, migrations

log = logging.getLogger("liftwatch.cmd")

EXIT_OK = 0
#: db status: the store is not at this liftwatch's schema version (migrations pending, or a
#: store written by a newer liftwatch); db copy: the verification found a difference
EXIT_NOT_CURRENT = 1
EXIT_DIFFERENCES = 1
#: db copy refused to start (destination holds rows, the schemas differ, same store)
EXIT_REFUSED = 3
#: db copy failed while copying (a row the destination refuses, a lost connection): its
#: transaction was rolled back, the destination is unchanged
EXIT_COPY_FAILED = 4
#: the store does not exist (db status never creates one) or cannot be reached
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h

#: what opening, migrating or reading a store raises when it fails
_FAILURES: tuple[type[Exception], ...] = (StoreError, *Error)

# One command opens one or two stores and uses a connection or two of each.
POOL_SIZE = 2
CONNECT_TIMEOUT_S = 10.0

_STORE_HELP = (
    "store: sqlite:///path, a file path or postgresql://user@host:port/db "
    "(default: LIFTWATCH_DATABASE_URL, else the SQLite file under LIFTWATCH_DATA_DIR)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "db",
        help="the operational store: migrate, status, copy",
        description="Operator commands for the operational store (docs/storage.md).",
    )
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    m = dsub.add_parser(
        "migrate",
        help="apply pending migrations",
        description="Apply every migration the store has not applied yet (under a lock: two "
        "at once apply each migration once), creating a SQLite file that does not exist. "
        f"Exit {EXIT_OK} when the store is then up to date, {EXIT_UNAVAILABLE} when it "
        "cannot be opened or reached.",
    )
    m.add_argument("--database", metavar="TARGET", help=_STORE_HELP)
    m.set_defaults(handler=_migrate)

    s = dsub.add_parser(
        "status",
        help="schema version, applied and pending migrations",
        description="Show the store, its backend, its schema version and its applied and "
        "pending migrations. Never creates or changes a store. Exit "
        f"{EXIT_OK}: up to date; {EXIT_NOT_CURRENT}: migrations pending (or the store was "
        f"migrated by a newer liftwatch); {EXIT_UNAVAILABLE}: no store there, or it cannot be "
        "reached.",
    )
    s.add_argument("--database", metavar="TARGET", help=_STORE_HELP)
    s.set_defaults(handler=_status)

    c = dsub.add_parser(
        "copy",
        help="copy every table of a store into another (SQLite → PostgreSQL or back)",
        description="Copy every table of --from into --to: both are migrated to this "
        "liftwatch's schema first; the destination is written in one transaction; "
        "PostgreSQL identity sequences are set past the copied ids; then every row is "
        "compared. A destination that holds rows is refused unless --replace. Stop the "
        "writers first (docs/storage.md § Moving a site to PostgreSQL). Either side defaults "
        f"to the configured store. Exit {EXIT_OK}: copied and identical; "
        f"{EXIT_DIFFERENCES}: the verification found a difference; {EXIT_REFUSED}: refused "
        f"(destination not empty, schemas differ, same store); {EXIT_COPY_FAILED}: the copy "
        "failed and was rolled back (the destination is unchanged); "
        f"{EXIT_UNAVAILABLE}: a store cannot be opened or reached.",
    )
    c.add_argument("--from", dest="source", metavar="TARGET", help="the store to read")
    c.add_argument("--to", dest="destination", metavar="TARGET", help="the store to write")
    c.add_argument(
        "--replace",
        action="store_true",
        help="delete the destination's rows first (same transaction) instead of refusing",
    )
    c.set_defaults(handler=_copy)


def _target(args: argparse.Namespace, flag: str | None) -> str:
    if flag:
        return flag
    return settings_from(args).database


def _open(target: str, *, create: bool = True) -> Database:
    kwargs: dict[str, Any] = {"migrate": False, "create": create, "pool_size": POOL_SIZE}
    if is_postgres_url(target):
        kwargs["connect_timeout_s"] = CONNECT_TIMEOUT_S
    return Database(target, **kwargs)


def _fail(target: str, exc: BaseException) -> int:
    shown = _display(target)
    message = str(exc).replace(target, shown) if target else str(exc)
    print(f"liftwatch: store {shown}: {message}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _display(target: str) -> str:
    from liftwatch.store.db import redacted

    return redacted(target) if is_postgres_url(target) else target


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _migrate(args: argparse.Namespace) -> int:
    target = _target(args, args.database)
    try:
        db = _open(target)
    except _FAILURES as exc:
        return _fail(target, exc)
    try:
        applied = db.migrate()
        status = db.migration_status()
    except _FAILURES as exc:
        return _fail(target, exc)
    finally:
        db.close()
    print(f"store: {db.display} ({db.dialect})")
    for name in applied:
        print(f"applied: {name}")
    if not applied:
        print("applied: nothing (already up to date)")
    print(f"schema version: {status.version}")
    log.info(
        "event=db_migrated store=%s applied=%s version=%d",
        db.display,
        ",".join(applied) or "-",
        status.version,
    )
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    target = _target(args, args.database)
    try:
        db = _open(target, create=False)
    except _FAILURES as exc:
        if isinstance(exc, StoreError) and str(exc).startswith("no store at"):
            print(
                f"liftwatch: no store at {_display(target)} (`liftwatch db migrate` creates it)",
                file=sys.stderr,
            )
            return EXIT_UNAVAILABLE
        return _fail(target, exc)
    try:
        status = db.migration_status()
    except _FAILURES as exc:
        return _fail(target, exc)
    finally:
        db.close()
    known = max((m.version for m in migrations(db.dialect)), default=0)
    print(f"store: {db.display}")
    print(f"backend: {db.dialect}")
    print(f"schema version: {status.version} (this liftwatch: {known})")
    for _version, name, at in status.applied:
        print(f"applied: {name} at {_when(at)}")
    for m in status.pending:
        print(f"pending: {m.name}")
    if status.pending:
        print(f"{len(status.pending)} pending: run `liftwatch db migrate`")
        return EXIT_NOT_CURRENT
    if status.version > known:
        print(f"the store is at version {status.version}, newer than this liftwatch ({known})")
        return EXIT_NOT_CURRENT
    print("up to date")
    return EXIT_OK


def _copy(args: argparse.Namespace) -> int:
    if not args.source and not args.destination:
        print("liftwatch: db copy needs --from or --to (or both)", file=sys.stderr)
        return 2
    source = _target(args, args.source)
    destination = _target(args, args.destination)
    opened: list[Database] = []
    try:
        # A --from that names no store is a typo, not an empty site: never create it.
        for target, create in ((source, False), (destination, True)):
            try:
                opened.append(_open(target, create=create))
            except _FAILURES as exc:
                return _fail(target, exc)
        src, dst = opened
        for db in opened:  # reachable at all: else 69, not a failed copy
            try:
                db.migration_status()
            except _FAILURES as exc:
                return _fail(db.target, exc)
        print(f"from: {src.display} ({src.dialect})")
        print(f"to:   {dst.display} ({dst.dialect})")
        try:
            report = copy_store(
                src,
                dst,
                replace=args.replace,
                progress=lambda table, rows: print(f"copied: {table} {rows} rows", flush=True),
            )
        except CopyRefused as exc:
            print(f"liftwatch: copy refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except _FAILURES as exc:
            print(f"liftwatch: copy failed, the destination is unchanged: {exc}", file=sys.stderr)
            return EXIT_COPY_FAILED
    finally:
        for db in opened:
            db.close()
    for table, rows in report.replaced.items():
        print(f"replaced: {table} {rows} rows deleted first")
    for seq, next_value in report.sequences.items():
        print(f"sequence: {seq} next {next_value}")
    total = sum(report.rows.values())
    print(f"schema version: {report.version}")
    print(f"total: {len(report.rows)} tables, {total} rows")
    if not report.ok:
        for d in report.differences:
            print(f"difference: {d.table} {d.key!r} {d.problem}")
        print(
            f"verification FAILED: {report.difference_count} rows differ "
            f"({report.verified_rows} rows read back)"
        )
        return EXIT_DIFFERENCES
    print(f"verified: {report.verified_rows} rows identical")
    return EXIT_OK
