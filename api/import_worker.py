"""A lift import run in a child process (``python -m api.import_worker``).

``POST /lifts/import`` hands large bodies to this process so that parsing, validating and
writing a 32 MiB registry (about 250,000 rows, seconds of CPU and a heap of a few hundred MB)
neither holds the API process's GIL nor makes its garbage collector pause the event loop that
``liftwatch serve`` shares with ingest, alerts and webhook delivery (security review #4: the
same work in a thread still stalled the loop for 60-110 ms per full collection with 6 MiB).

Protocol: stdin carries one JSON line ``{"db": "<store target>", "kind": "csv"|"json",
"charset": null|"<the upload's charset>"}`` followed by the raw request body (its bytes as
uploaded: the child decodes them, UTF-8 or GB18030 when no charset is named); stdout
receives one JSON line ``{"status": 200}`` followed by the answer (an ``ImportResult``), or
one line ``{"status": 4xx, "code", "message", "detail"}``. The child opens the same store
and writes in chunks of :data:`api.importer.CHUNK_ROWS` rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from api.errors import ApiError
from api.importer import run_import
from liftwatch.store import Database

NICE = 10


def main() -> int:
    # Background work: leave the CPU to the alarm path first. Refused where the service's
    # seccomp filter denies @resources (the systemd units: EPERM); the import then runs at
    # the service's priority.
    with contextlib.suppress(OSError):
        os.nice(NICE)
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    raw = stdin.read()
    db = Database(header["db"], migrate=False, pool_size=2)
    try:
        result = run_import(db, header["kind"], raw, header.get("charset"))
    except ApiError as exc:
        answer = {
            "status": exc.status,
            "code": exc.code,
            "message": exc.message,
            "detail": exc.detail,
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        return 0
    finally:
        db.close()
    sys.stdout.write('{"status": 200}\n')
    sys.stdout.write(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
