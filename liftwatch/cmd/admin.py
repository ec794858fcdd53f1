"""Registry subcommands of the kernel: ``decode``, ``companies``, ``lifts``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from liftwatch.protocol import Rejection, decode, format_ts
from liftwatch.registry import CSV_COLUMNS, Company, ImportRowError, parse_csv, parse_json
from liftwatch.settings import settings_from
from liftwatch.store import Database, open_store
from liftwatch.store import registry as reg


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
    imp.add_argument("file", type=Path, help="a .csv file, or .json with a list of lifts")
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


def _open_db(args: argparse.Namespace) -> Database:
    return open_store(settings_from(args))


def _companies_add(args: argparse.Namespace) -> int:
    company = Company(
        company_id=args.company_id, name=args.name, phone=args.phone, contact=args.contact
    )
    print(reg.upsert_company(_open_db(args), company))
    return 0


def _companies_list(args: argparse.Namespace) -> int:
    for company in reg.list_companies(_open_db(args)):
        print(company.model_dump_json())
    return 0


def _lifts_list(args: argparse.Namespace) -> int:
    db = _open_db(args)
    after = ""
    while batch := reg.list_lifts(db, company_id=args.company, after=after):
        for lift in batch:
            print(lift.model_dump_json())
        after = batch[-1].lift_id
    return 0


def _lifts_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"liftwatch: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if path.suffix.lower() == ".json":
        try:
            rows, errors = parse_json(json.loads(text))
        except json.JSONDecodeError as exc:
            rows, errors = (
                [],
                [ImportRowError(line=exc.lineno, lift_id=None, error=f"bad JSON: {exc.msg}")],
            )
    else:
        rows, errors = parse_csv(text)
    outcomes, refused = reg.import_lifts(_open_db(args), rows)
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
