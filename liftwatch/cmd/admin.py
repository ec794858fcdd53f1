"""Registry subcommands of the kernel: ``decode``, ``companies``, ``lifts``.

Every registry command says on stderr which store it uses (``store: /var/lib/liftwatch/…``),
never creates one to read from, and creates a new SQLite store to write into only with
``--create``: an installer standing in the wrong directory gets a refusal naming the path and
the settings that chose it, not lifts in a stray ``./data`` that the service never reads
(docs/registry.md § Which store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from liftwatch.protocol import Rejection, decode, format_ts
from liftwatch.registry import (
    CSV_COLUMNS,
    Company,
    EncodingProblem,
    ImportRowError,
    decode_text,
    parse_csv,
    parse_json,
)
from liftwatch.settings import Settings, settings_from
from liftwatch.store import Database, StoreError
from liftwatch.store import registry as reg
from liftwatch.store.db import is_postgres_url, sqlite_path_of

EXIT_REFUSED = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "decode",
        help="decode one device message and print it, or why it is rejected",
        description="Decode TOPIC + PAYLOAD exactly as ingest and alerts do. Exit 0 when the "
        "message is valid, 1 when it is rejected. PAYLOAD defaults to standard input.",
    )
    p.add_argument("topic", help="MQTT topic, e.g. lifts/31101201002018040001/telemetry")
    p.add_argument("payload", nargs="?", help="JSON payload (default: read standard input)")
    p.add_argument("--prefix", help="topic prefix (default: LIFTWATCH_MQTT_TOPIC_PREFIX)")
    p.set_defaults(handler=_decode)

    companies = sub.add_parser("companies", help="maintenance companies in the registry")
    csub = companies.add_subparsers(dest="companies_command", metavar="ACTION", required=True)
    add = csub.add_parser("add", help="create or update a company")
    add.add_argument("company_id")
    add.add_argument("name")
    add.add_argument("--phone")
    add.add_argument("--contact")
    _create_flag(add)
    add.set_defaults(handler=_companies_add)
    ls = csub.add_parser("list", help="list companies as JSON lines")
    ls.set_defaults(handler=_companies_list)

    lifts = sub.add_parser("lifts", help="the lift registry")
    lsub = lifts.add_subparsers(dest="lifts_command", metavar="ACTION", required=True)
    imp = lsub.add_parser(
        "import",
        help="load lifts from CSV or JSON, idempotently",
        description="Columns: "
        + ", ".join(_COLUMN_NOTES.get(c, c) for c in CSV_COLUMNS)
        + ". See docs/registry.md. Bad rows are reported with their line numbers; the "
        "good rows are still imported. Exit 0 when every row was imported, 1 otherwise.",
    )
    imp.add_argument(
        "file", type=Path, help="a .csv file, or .json with a list of lifts; - for standard input"
    )
    imp.add_argument(
        "--encoding",
        metavar="NAME",
        help="the file's encoding, e.g. utf-8 or gbk (default: UTF-8 with or without BOM "
        "when the bytes are valid UTF-8, else GB18030, which also reads GBK)",
    )
    imp.add_argument(
        "--format",
        choices=["csv", "json"],
        help="csv or json (default: from the file name; csv for standard input)",
    )
    _create_flag(imp)
    imp.set_defaults(handler=_lifts_import)
    lls = lsub.add_parser("list", help="list lifts as JSON lines")
    lls.add_argument("--company")
    lls.set_defaults(handler=_lifts_list)


def _decode(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prefix = args.prefix or settings.mqtt_topic_prefix
    payload = args.payload.encode() if args.payload is not None else sys.stdin.buffer.read()
    result = decode(args.topic, payload, prefix=prefix)
    if isinstance(result, Rejection):
        print(
            json.dumps(
                {
                    "rejected": result.reason.value,
                    "detail": result.detail,
                    "lift_id": result.lift_id,
                },
                ensure_ascii=False,
            )
        )
        return 1
    out: dict[str, Any] = {
        "lift_id": result.lift_id,
        "kind": result.kind,
        "ts": format_ts(result.ts_ms),
        "ts_corrected": result.ts_corrected,
        "body": msgspec.to_builtins(result.body),
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def _create_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the SQLite store if it does not exist yet (without it a missing store "
        "is refused, so that nothing lands in a stray ./data)",
    )


def store_origin(settings: Settings, config: Path | None) -> str:
    """Which settings chose the store, for messages: the environment, --config or a default."""
    if settings.database_url:
        where = "environment" if os.environ.get("LIFTWATCH_DATABASE_URL") else f"--config {config}"
        return f"LIFTWATCH_DATABASE_URL ({where})"
    if os.environ.get("LIFTWATCH_DATA_DIR"):
        return f"LIFTWATCH_DATA_DIR={os.environ['LIFTWATCH_DATA_DIR']} (environment)"
    if config is not None:
        return f"data_dir from --config {config} (or its default ./data)"
    return (
        f"the default LIFTWATCH_DATA_DIR=./data in {Path.cwd()}, as LIFTWATCH_DATA_DIR is "
        "not set; the systemd units use /var/lib/liftwatch"
    )


class StoreRefused(Exception):
    """The command will not open this store; the message says why and what to do."""


def open_registry(args: argparse.Namespace, *, write: bool) -> Database:
    """The store for a registry command, announced on stderr. A missing SQLite file is
    refused: always for a command that only reads, and for one that writes unless
    ``--create`` was given. A PostgreSQL database must exist (the server creates databases);
    an empty one gets its schema as the services would give it. Raises
    :class:`StoreRefused`."""
    settings = settings_from(args)
    config: Path | None = getattr(args, "config", None)
    target = settings.database
    create = False
    if not is_postgres_url(target):
        try:
            path = sqlite_path_of(target).absolute()
        except StoreError as exc:
            raise StoreRefused(str(exc)) from exc
        target = str(path)
        if not path.exists():
            origin = store_origin(settings, config)
            if not write:
                raise StoreRefused(
                    f"no store at {path} (chosen by {origin}); nothing to read. Point "
                    "LIFTWATCH_DATA_DIR (or LIFTWATCH_DATABASE_URL) at the service's store, "
                    "e.g. run as the service user with its settings (deploy/README.md)"
                )
            if not getattr(args, "create", False):
                raise StoreRefused(
                    f"no store at {path} (chosen by {origin}); refusing to create a new one. "
                    "Point LIFTWATCH_DATA_DIR (or LIFTWATCH_DATABASE_URL) at the service's "
                    "store, or pass --create to start a new store there"
                )
            create = True
    try:
        db = Database(target, create=create, pool_size=min(settings.database_pool_size, 2))
    except StoreError as exc:
        raise StoreRefused(str(exc)) from exc
    print(f"store: {db.display}" + (" (created)" if create else ""), file=sys.stderr)
    return db


def _refused(exc: Exception) -> int:
    print(f"liftwatch: {exc}", file=sys.stderr)
    return EXIT_REFUSED


def _open_db(args: argparse.Namespace, *, write: bool) -> Database:
    return open_registry(args, write=write)


def _companies_add(args: argparse.Namespace) -> int:
    company = Company(
        company_id=args.company_id, name=args.name, phone=args.phone, contact=args.contact
    )
    try:
        db = _open_db(args, write=True)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        print(reg.upsert_company(db, company))
    finally:
        db.close()
    return 0


def _companies_list(args: argparse.Namespace) -> int:
    try:
        db = _open_db(args, write=False)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        for company in reg.list_companies(db):
            print(company.model_dump_json())
    finally:
        db.close()
    return 0


def _lifts_list(args: argparse.Namespace) -> int:
    try:
        db = _open_db(args, write=False)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        after = ""
        while batch := reg.list_lifts(db, company_id=args.company, after=after):
            for lift in batch:
                print(lift.model_dump_json())
            after = batch[-1].lift_id
    finally:
        db.close()
    return 0


def _lifts_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    stdin = str(path) == "-"
    try:
        raw = sys.stdin.buffer.read() if stdin else path.read_bytes()
    except OSError as exc:
        print(f"liftwatch: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        text, encoding = decode_text(raw, args.encoding)
    except EncodingProblem as exc:
        print(f"liftwatch: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    del raw
    if encoding != "utf-8-sig" and encoding != "utf-8":
        how = "as given" if args.encoding else "detected: not UTF-8"
        print(f"read {path} as {encoding} ({how})", file=sys.stderr)
    kind = args.format or ("json" if path.suffix.lower() == ".json" else "csv")
    if kind == "json":
        try:
            rows, errors = parse_json(json.loads(text))
        except json.JSONDecodeError as exc:
            rows, errors = (
                [],
                [ImportRowError(line=exc.lineno, lift_id=None, error=f"bad JSON: {exc.msg}")],
            )
    else:
        rows, errors = parse_csv(text)
    if any(e.error.startswith("bad header") for e in errors):
        print(f"liftwatch: {path}: {errors[0].error}", file=sys.stderr)
        return 1  # no row can be read: the store is not even opened
    try:
        db = _open_db(args, write=True)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        outcomes, refused = reg.import_lifts(db, rows)
    finally:
        db.close()
    errors += [
        ImportRowError(line=line, lift_id=lift_id, error=why) for line, lift_id, why in refused
    ]
    errors.sort(key=lambda e: e.line)
    for err in errors:
        where = f"line {err.line}" + (f" ({err.lift_id})" if err.lift_id else "")
        print(f"rejected {where}: {err.error}", file=sys.stderr)
    print(
        f"inserted={len(outcomes['inserted'])} updated={len(outcomes['updated'])} "
        f"unchanged={len(outcomes['unchanged'])} rejected={len(errors)}"
    )
    return 0 if not errors else 1


_COLUMN_NOTES = {"lift_id": "lift_id (required)", "overrides": "overrides (JSON)"}
