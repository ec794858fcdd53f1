"""Outbox throughput with one and with two ``liftwatch dispatch`` processes on one PostgreSQL
(issue 14): do several dispatchers sharing the outbox add throughput?

One command. It starts its own private PostgreSQL (``liftwatch.localservices.PostgreSQL``, in
a temp dir, stopped at the end) and a webhook receiver in its own process that answers every
POST ``200`` after ``--answer-ms`` (50 ms). For each run (1 dispatcher, then 2) a fresh
database gets ``--alarms`` lifts and ``--subscriptions`` administrator subscriptions; the
``liftwatch dispatch`` processes (real processes, ``LIFTWATCH_DATABASE_URL``) are started and
reported running; then ``--alarms`` alarms are raised in one transaction, so their outbox rows
(one ``alarm.raised`` each, every alarm its own chain) appear at once for every dispatcher,
and the bench waits until every delivery (``alarms × subscriptions``) is ``delivered``.

deliveries/s = deliveries / (last ``delivered_at`` − first ``delivered_at``), read from the
store; each run also checks that no webhook-id was answered twice. The last line is::

    deliveries_per_s_1=… deliveries_per_s_2=… ratio=…

A dispatcher has at most ``--concurrency`` attempts in flight (``liftwatch dispatch
--concurrency``), so one process tops out near ``concurrency / answer time`` (64 / 50 ms =
1,280/s) unless its CPU or the store runs out first; a second process doubles that ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alerts import lifecycle
from alerts.webhooks import signing
from liftwatch.localservices import PostgreSQL
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store

PROGRESS_S = 1.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the receiver (own process: its CPU is not the dispatchers') ---------------------------


def _receiver_main(port_out: Any, answer_s: float, stop: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                await asyncio.sleep(answer_s)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        await asyncio.to_thread(stop.wait)
        server.close()

    asyncio.run(main())


# --- one run ---------------------------------------------------------------------------------


def seed(db: Database, alarms: int, subscriptions: int, url: str) -> None:
    reg.upsert_company(db, Company(company_id="bench", name="Bench"))
    for i in range(alarms):
        reg.upsert_lift(db, Lift(lift_id=f"ob-{i:05d}", company_id="bench", name=f"L{i}"))
    for _ in range(subscriptions):
        store.add_subscription(
            db, company_id=None, url=url, secret=signing.new_secret(), filters={}, created_by="b"
        )


def raise_all(db: Database, alarms: int) -> None:
    now = time.time_ns() // 1_000_000
    out: list[lifecycle.Change] = []
    with db.transaction() as conn:
        for i in range(alarms):
            req = lifecycle.Raise(
                lift_id=f"ob-{i:05d}",
                code="alarm_button",
                subtype=None,
                severity="critical",
                source="device",
                at=now,
                evidence={"seq": 1},
                company_id="bench",
            )
            lifecycle.raise_condition(conn, req, lifecycle.Policy(), out)


def counts(db: Database) -> tuple[int, int, int | None, int | None, int]:
    """(delivered, all deliveries, first delivered_at, last delivered_at, duplicate ids)."""
    row = db.conn.execute(
        "SELECT COUNT(*) FILTER (WHERE status = 'delivered'), COUNT(*),"
        " MIN(delivered_at), MAX(delivered_at) FROM webhook_deliveries"
    ).fetchone()
    (dupes,) = db.conn.execute(
        "SELECT COUNT(*) FROM (SELECT delivery_id FROM webhook_attempts"
        " WHERE status_code BETWEEN 200 AND 299 GROUP BY delivery_id HAVING COUNT(*) > 1) x"
    ).fetchone()
    return int(row[0]), int(row[1]), row[2], row[3], int(dupes)


def measure(
    args: argparse.Namespace, root: Path, pg: PostgreSQL, processes: int, receiver_url: str
) -> float:
    url = pg.create_database(f"outbox_{processes}")
    db = Database(url)
    children: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        seed(db, args.alarms, args.subscriptions, receiver_url)
        total = args.alarms * args.subscriptions
        env = {
            **os.environ,
            "LIFTWATCH_DATABASE_URL": url,
            "LIFTWATCH_DATA_DIR": str(root / f"data-{processes}"),
            "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
        }
        for n in range(processes):
            log = root / f"dispatch-{processes}-{n}.log"
            logs.append(log)
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "liftwatch",
                        "dispatch",
                        "--concurrency",
                        str(args.concurrency),
                        "--per-subscription",
                        str(args.per_subscription),
                        "--poll-interval",
                        "0.1",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(log, "wb"),  # noqa: SIM115 - lives as long as the child
                )
            )
        deadline = time.monotonic() + 30
        while not all("event=webhook_dispatcher_started" in p.read_text() for p in logs):
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                for p in logs:
                    say(p.read_text()[-2000:])
                raise SystemExit("liftwatch dispatch did not come up")
            time.sleep(0.05)
        say(f"{processes} dispatcher(s) running; raising {args.alarms} alarms → {total} deliveries")
        raise_all(db, args.alarms)
        began = time.monotonic()
        next_report = began + PROGRESS_S
        while True:
            delivered, created, first, last, dupes = counts(db)
            if delivered >= total:
                break
            if time.monotonic() > began + args.timeout:
                raise SystemExit(f"only {delivered}/{total} delivered in {args.timeout:g} s")
            if time.monotonic() >= next_report:
                say(f"  {processes}p: {delivered}/{total} delivered ({created} fanned out)")
                next_report += PROGRESS_S
            time.sleep(0.1)
        assert first is not None and last is not None
        span_s = max((last - first) / 1000, 0.001)
        rate = float(total / span_s)
        if dupes:
            raise SystemExit(f"{dupes} deliveries answered 2xx more than once")
        sent = []
        for c in children:
            c.terminate()
        for c, p in zip(children, logs, strict=True):
            c.wait(15)
            m = re.findall(r"event=dispatcher_stopped sent=(\d+)", p.read_text())
            sent.append(m[-1] if m else "?")
        say(
            f"  {processes}p: {total} deliveries in {span_s:.2f} s = {rate:.0f}/s"
            f" (sent per process: {', '.join(sent)}; exit codes"
            f" {[c.returncode for c in children]})"
        )
        return rate
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=2000)
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--answer-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64, help="per dispatcher process")
    parser.add_argument("--per-subscription", type=int, default=8, help="per process")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    stop = ctx.Event()
    receiver = ctx.Process(target=_receiver_main, args=(ports, args.answer_ms / 1000, stop))
    receiver.start()
    rates: dict[int, float] = {}
    try:
        port = ports.get(timeout=30)
        receiver_url = f"http://127.0.0.1:{port}/hook"
        say(f"receiver on {receiver_url}, answers in {args.answer_ms:g} ms; cpus={os.cpu_count()}")
        with tempfile.TemporaryDirectory(prefix="liftwatch-outbox-") as tmp:
            root = Path(tmp)
            pg = PostgreSQL(root / "postgresql")
            pg.start()
            try:
                for processes in (1, 2):
                    rates[processes] = measure(args, root, pg, processes, receiver_url)
            finally:
                pg.stop()
    finally:
        stop.set()
        receiver.join(5)
        if receiver.is_alive():
            receiver.kill()
    ratio = rates[2] / rates[1]
    print(f"deliveries_per_s_1={rates[1]:.0f} deliveries_per_s_2={rates[2]:.0f} ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
