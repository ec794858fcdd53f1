"""``POST /lifts/import`` off the event loop: parse, validate and write in chunks.

A body up to :data:`CHILD_MIN_BYTES` is imported in a worker thread. A larger one is imported
by a child process (:mod:`api.import_worker`) that opens the same SQLite file: a 32 MiB file is
about 250,000 rows, and building that many objects in the API process made its garbage
collector pause the event loop (which ``liftwatch serve`` shares with ingest, alerts and
webhook delivery) even with the work in a thread. Either way rows are written
:data:`CHUNK_ROWS` at a time, each in transactions of at most 20 ms (the store's
``IMPORT_HOLD_S``), so an alarm transition waiting for the writers' lock waits that long at
most, on SQLite or PostgreSQL, not for the whole file (docs/registry.md § API import).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from pydantic import BaseModel

from api.errors import ApiError, invalid
from liftwatch.registry import (
    EncodingProblem,
    ImportRowError,
    decode_text,
    iter_csv,
    validate_rows,
)
from liftwatch.store import Database
from liftwatch.store import registry as reg

CHUNK_ROWS = 100  # rows validated together; the store commits them in parts of ≤ 20 ms
# After each chunk the write lock is left free for 4-10 ms (random, so that no other writer's
# busy-retry schedule stays in step with the chunks): SQLite's busy handler does not queue
# waiters, and back-to-back chunks starved an alarm transition for 0.5 s (measured).
PAUSE_S = (0.004, 0.010)
CHILD_MIN_BYTES = 256 * 1024
CHILD_TIMEOUT_S = 900.0


class ImportResult(BaseModel):
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[ImportRowError]


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, or None."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def decode_body(raw: bytes, charset: str | None) -> str:
    """The body as text: in ``charset`` when the upload names one, else UTF-8 (with or
    without BOM) when it is valid UTF-8, else GB18030 (which also reads GBK, what Excel on a
    Chinese system saves as "CSV"). 400 when it cannot be read."""
    try:
        return decode_text(raw, charset)[0]
    except EncodingProblem as exc:
        raise ApiError(
            400,
            "bad_request",
            f"body is {exc}"
            if charset
            else f"body is {exc}; or send Content-Type: text/csv; charset=<its encoding>",
        ) from None


def run_import(db: Database, kind: str, raw: bytes, charset: str | None = None) -> ImportResult:
    """The whole import, blocking. Raises :class:`ApiError` for a body that cannot be read
    as a whole (not text in ``charset`` or, without one, neither UTF-8 nor GB18030; not
    JSON, not a list, a CSV header without ``lift_id``). Rows are parsed, validated and
    written :data:`CHUNK_ROWS` at a time, so memory holds one chunk of row objects, not the
    whole file's."""
    text = decode_body(raw, charset)
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    errors: list[ImportRowError] = []
    seen: dict[str, int] = {}  # lift id → first line, for duplicates across chunks
    written = 0

    def flush(rows: list[Any], lines: list[int]) -> None:
        nonlocal written
        valid, bad = validate_rows(rows, lines, seen)
        errors.extend(bad)
        if not valid:
            return
        if written:
            time.sleep(random.uniform(*PAUSE_S))  # jitter, not a secret
        outcomes, refused = reg.import_lifts(db, valid)
        written += 1
        for key, done in outcomes.items():
            counts[key] += len(done)
        errors.extend(ImportRowError(line=ln, lift_id=lid, error=why) for ln, lid, why in refused)

    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(
                400, "bad_request", f"body is not JSON: {exc.msg} at line {exc.lineno}"
            ) from exc
        del text
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise invalid("body", "expected a JSON list of lift objects")
        for i in range(0, len(data), CHUNK_ROWS):
            chunk = data[i : i + CHUNK_ROWS]
            flush(chunk, list(range(i + 1, i + 1 + len(chunk))))
    else:
        rows: list[Any] = []
        lines: list[int] = []
        for line, item in iter_csv(text):
            if isinstance(item, ImportRowError):
                if item.error.startswith("bad header"):
                    # Without a usable header no row can be read: the file is refused.
                    raise invalid("body", item.error)
                errors.append(item)
                continue
            rows.append(item)
            lines.append(line)
            if len(rows) == CHUNK_ROWS:
                flush(rows, lines)
                rows, lines = [], []
        flush(rows, lines)
    errors.sort(key=lambda e: e.line)
    return ImportResult(**counts, rejected=len(errors), errors=errors)


def _in_thread(db: Database, kind: str, raw: bytes, charset: str | None) -> bytes:
    return run_import(db, kind, raw, charset).model_dump_json().encode()


async def _in_child(target: str, kind: str, raw: bytes, charset: str | None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.import_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    header = json.dumps({"db": target, "kind": kind, "charset": charset}).encode() + b"\n"
    try:
        out, err = await asyncio.wait_for(proc.communicate(header + raw), CHILD_TIMEOUT_S)
    except BaseException:  # timeout or the request was cancelled: do not leave it running
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0 or not out:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"import worker exited with {proc.returncode}: {tail[0]}")
    envelope, _, body = out.partition(b"\n")
    answer: dict[str, Any] = json.loads(envelope)
    if answer["status"] != 200:
        raise ApiError(answer["status"], answer["code"], answer["message"], answer["detail"])
    return body  # passed through as bytes: no objects built on the event loop


async def import_body(db: Database, kind: str, raw: bytes, charset: str | None = None) -> bytes:
    """Import ``raw`` (text in ``charset``, the upload's Content-Type parameter, or detected:
    :func:`decode_body`) and return the JSON answer (an :class:`ImportResult`), never
    blocking the event loop for longer than a few milliseconds."""
    if len(raw) < CHILD_MIN_BYTES or db.target == ":memory:":
        return await asyncio.to_thread(_in_thread, db, kind, raw, charset)
    return await _in_child(db.target, kind, raw, charset)
