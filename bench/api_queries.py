"""API query latency on a year of alarms and a day of 1 Hz telemetry.

    .venv/bin/python bench/api_queries.py [--lifts 1000] [--telemetry-lifts 100] [--hours 24]
                                          [--backend sqlite|postgresql|both]

Loads, into a private InfluxDB and a private store started here (nothing else is touched) —
a SQLite file (``--backend sqlite``, the default) or a database on a private PostgreSQL server
in the bench's temp dir (``liftwatch.localservices.PostgreSQL``, stopped at the end;
``--backend postgresql``), or both, each loaded with the same alarms (``--backend both``):
- one year of alarms for ``--lifts`` lifts (``--alarms-per-lift`` a year, lifecycle steps
  filled in as a maintenance company would), through the alerts store's own functions;
- ``--hours`` of 1 Hz telemetry for ``--telemetry-lifts`` lifts.
Then serves the API with uvicorn on a free port and times, over real HTTP with a bearer
token, ``--requests`` calls each of: one lift's fault history for a year
(``/alarms?lift_id=…&since=…``), one hour of one lift's telemetry (all fields, raw
3,600 points), and a monthly fault report for all lifts (``/reports/faults``, grouped by lift).
As a same-run baseline, the telemetry query the API makes is also sent straight to InfluxDB
(another lift and hour each time, so it does not warm the API's range), answered as JSON and
as MessagePack: InfluxDB's own time, body received but not decoded.
With ``--backend both`` the API is served twice, once on each store, and every sample is
taken on both, the same lift, hour and month, in alternating order.

After the load the PostgreSQL store's tables are ``ANALYZE``d: what autovacuum does by itself
within a minute of a bulk load (``db copy``), done here so that the planner's statistics do not
depend on when the first query runs.

Last line: ``history_year_p95_ms=… telemetry_hour_p95_ms=… report_month_p95_ms=…``; on
PostgreSQL ``backend=postgresql`` follows; with ``--backend both`` the line is PostgreSQL's and
SQLite's figures of the same run follow with the suffix ``_sqlite``, then
``history_ratio=… report_ratio=…`` (PostgreSQL's p95 over SQLite's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from api.influxql import parse_fields, telemetry_query
from liftwatch.influx import InfluxClient
from liftwatch.lineprotocol import line
from liftwatch.localservices import InfluxDB, PostgreSQL, free_port
from liftwatch.protocol import format_ts
from liftwatch.registry import Company, Lift
from liftwatch.settings import load_settings
from liftwatch.store import Database
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg

ADMIN = "bench-admin-token-0123456789"
MSGPACK = "application/x-msgpack"
DAY = 86_400_000
HOUR = 3_600_000
CODES = [
    ("entrapment", "critical"),
    ("alarm_button", "critical"),
    ("door_open_too_long", "minor"),
    ("stopped_outside_zone", "major"),
    ("door_close_fault", "major"),
    ("device_offline", "major"),
    ("power_failure", "major"),
    ("backup_battery_low", "minor"),
]


def lift_id(i: int) -> str:
    return f"3110120100{i:010d}"


def load_registry(db: Database, lifts: int) -> None:
    for c in range(20):
        reg.upsert_company(db, Company(company_id=f"co-{c:02d}", name=f"Company {c}"))
    rows = [
        (i + 1, Lift(lift_id=lift_id(i), company_id=f"co-{i % 20:02d}", urban=i % 5 != 0))
        for i in range(lifts)
    ]
    reg.import_lifts(db, rows)


def load_alarms(db: Database, lifts: int, per_lift: int, now: int, rng: random.Random) -> int:
    """A year of resolved alarms per lift, inserted in raise-time order as the engine writes
    them in production; the store's own insert and transition functions."""
    plans = []
    for i in range(lifts):
        for _ in range(per_lift):
            plans.append((now - rng.randrange(365 * DAY), i, rng.choice(CODES)))
    plans.sort()
    with db.transaction() as conn:
        for raised, i, (code, severity) in plans:
            lid, company = lift_id(i), f"co-{i % 20:02d}"
            ack = raised + rng.randrange(30_000, 900_000)
            on_site = ack + rng.randrange(300_000, 3_000_000)
            resolved = on_site + rng.randrange(600_000, 7_200_000)
            deadline = raised + (1_800_000 if i % 5 else 3_600_000)
            alarm = store.Alarm(
                alarm_id=store.new_alarm_id(raised),
                lift_id=lid,
                code=code,
                subtype=None,
                severity=severity,
                source="rule",
                status="resolved",
                condition="cleared",
                raised_at=raised,
                updated_at=resolved,
                evidence={"car_status": "stopped", "floor": "3", "door_zone": False},
                cleared_at=resolved,
                acknowledged_at=ack,
                on_site_at=on_site,
                resolved_at=resolved,
                outcome="repaired" if severity != "critical" else "rescued",
                resolved_by="api:bench",
                deadline_at=deadline if code in ("entrapment", "alarm_button") else None,
                company_id=company,
            )
            store.insert_alarm(conn, alarm)
            for at, event, before, after in (
                (raised, "raised", None, "open"),
                (ack, "acknowledged", "open", "acknowledged"),
                (on_site, "on_site", "acknowledged", "on_site"),
                (resolved, "resolved", "on_site", "resolved"),
            ):
                store.add_transition(
                    conn, store.Transition(alarm.alarm_id, at, event, before, after, "bench")
                )
    return len(plans)


async def load_telemetry(influx: InfluxClient, lifts: int, hours: int, end: int) -> int:
    start = end - hours * HOUR
    sem = asyncio.Semaphore(3)
    tasks: list[asyncio.Task[None]] = []
    total = 0

    async def send(body: str) -> None:
        async with sem:
            await influx.write(body)

    for i in range(lifts):
        lid = lift_id(i)
        batch: list[str] = []
        for s in range(hours * 3600):
            t = start + s * 1000
            running = (s // 20) % 3 == 0
            batch.append(
                line(
                    "lift_state",
                    {"lift_id": lid},
                    {
                        "service_mode": "normal",
                        "car_status": "running" if running else "stopped",
                        "direction": "up" if running else "none",
                        "floor": str((s // 60) % 18 + 1),
                        "floor_index": (s // 60) % 18,
                        "door_zone": not running,
                        "doors_closed": True,
                        "speed": 1.5 if running else 0.0,
                        "load": 12.5,
                        "seq": s,
                    },
                    t,
                )
            )
            if len(batch) == 10_000:
                tasks.append(asyncio.create_task(send("\n".join(batch))))
                total += len(batch)
                batch = []
                if len(tasks) > 6:
                    await asyncio.gather(*tasks)
                    tasks = []
        if batch:
            tasks.append(asyncio.create_task(send("\n".join(batch))))
            total += len(batch)
    await asyncio.gather(*tasks)
    return total


async def timed(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = await client.get(url, params=params)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise SystemExit(f"{url} answered {r.status_code}: {r.text[:300]}")
    return elapsed


async def timed_influx(http: httpx.AsyncClient, lid: str, start: int, accept: str | None) -> float:
    """The API's raw telemetry query (every field, bound parameters), straight to InfluxDB."""
    form = {
        "db": "bench",
        "q": telemetry_query(parse_fields(None, None), None, None, 10_001, "asc"),
        "epoch": "ms",
        "params": json.dumps(
            {"lift": lid, "start": format_ts(start), "end": format_ts(start + HOUR)}
        ),
    }
    headers = {"Accept": accept} if accept else None
    t0 = time.perf_counter()
    r = await http.post("/query", data=form, headers=headers)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise SystemExit(f"InfluxDB answered {r.status_code}: {r.text[:300]}")
    return elapsed


def summary(name: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(f"{name}: n={len(ordered)} p50={p50:.1f} ms p95={p95:.1f} ms max={ordered[-1]:.1f} ms")
    return p95


@dataclass
class Served:
    """One backend's store, the API served on it, and its samples."""

    backend: str
    db: Database
    client: httpx.AsyncClient | None = None
    history: list[float] = field(default_factory=list)
    telemetry: list[float] = field(default_factory=list)
    report: list[float] = field(default_factory=list)


def analyze(db: Database) -> None:
    """Planner statistics after the bulk load (see the module docstring); PostgreSQL only."""
    if db.dialect == "postgresql":
        with db.transaction() as conn:
            conn.execute("ANALYZE")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--lifts", type=int, default=1000)
    ap.add_argument("--alarms-per-lift", type=int, default=100)
    ap.add_argument("--telemetry-lifts", type=int, default=100)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rng = random.Random(7)
    now = time.time_ns() // 1_000_000

    with tempfile.TemporaryDirectory(prefix="liftwatch-bench-") as tmp:
        root = Path(tmp)
        influxd = InfluxDB(root / "influxdb")
        pg = PostgreSQL(root / "postgresql") if "postgresql" in backends else None
        served: list[Served] = []
        influxd.start()
        try:
            if pg is not None:
                pg.start()
            seeded = rng.getstate()
            for backend in backends:
                # Every backend gets the same alarms: the same generator state for each load.
                rng.setstate(seeded)
                target = pg.url if pg is not None and backend == "postgresql" else None
                db = Database(target or root / "liftwatch.sqlite3")
                served.append(Served(backend, db))
                t0 = time.perf_counter()
                load_registry(db, args.lifts)
                n_alarms = load_alarms(db, args.lifts, args.alarms_per_lift, now, rng)
                analyze(db)
                print(
                    f"{backend}: loaded {n_alarms} alarms for {args.lifts} lifts in "
                    f"{time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
            influx = InfluxClient(influxd.url, "bench", timeout=120)
            await influx.create_database()
            t0 = time.perf_counter()
            points = await load_telemetry(influx, args.telemetry_lifts, args.hours, now)
            print(
                f"loaded {points} telemetry points in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
            servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
            headers = {"Authorization": f"Bearer {ADMIN}"}
            for s in served:
                settings = load_settings(
                    data_dir=root,
                    influx_url=influxd.url,
                    influx_database="bench",
                    admin_token=ADMIN,
                    database_url=s.db.target if s.backend == "postgresql" else None,
                )
                app = create_app(settings, db=s.db, influx=influx)
                port = free_port()
                server = uvicorn.Server(
                    uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
                )
                servers.append((server, asyncio.create_task(server.serve())))
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no start event
                    await asyncio.sleep(0.05)
                s.client = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
                )
            async with httpx.AsyncClient(base_url=influxd.url, timeout=60) as direct:
                year_ago = format_ts(now - 365 * DAY)
                influx_json: list[float] = []
                influx_msgpack: list[float] = []
                base_rng = random.Random(11)  # the API calls sample the same ranges as before
                # One warm-up of each, not counted (first-touch page cache, connection).
                for s in served:
                    assert s.client is not None
                    await timed(
                        s.client, "/api/v1/alarms", {"lift_id": lift_id(0), "limit": "1000"}
                    )
                for k in range(args.requests):
                    # Alternate which backend is asked first.
                    order = served if k % 2 == 0 else served[::-1]
                    lid = lift_id(rng.randrange(args.lifts))
                    params = {"lift_id": lid, "since": year_ago, "limit": "1000"}
                    for s in order:
                        assert s.client is not None
                        s.history.append(await timed(s.client, "/api/v1/alarms", params))
                    lid = lift_id(rng.randrange(args.telemetry_lifts))
                    start = now - args.hours * HOUR + rng.randrange((args.hours - 1) * 3600) * 1000
                    params = {"start": format_ts(start), "end": format_ts(start + HOUR)}
                    for s in order:
                        assert s.client is not None
                        s.telemetry.append(
                            await timed(s.client, f"/api/v1/lifts/{lid}/telemetry", params)
                        )
                    for accept, samples in ((None, influx_json), (MSGPACK, influx_msgpack)):
                        lid = lift_id(base_rng.randrange(args.telemetry_lifts))
                        start = now - args.hours * HOUR
                        start += base_rng.randrange((args.hours - 1) * 3600) * 1000
                        samples.append(await timed_influx(direct, lid, start, accept))
                    month_start = now - rng.randrange(30, 365) * DAY
                    params = {
                        "since": format_ts(month_start),
                        "until": format_ts(month_start + 30 * DAY),
                        "group_by": "lift",
                    }
                    for s in order:
                        assert s.client is not None
                        s.report.append(await timed(s.client, "/api/v1/reports/faults", params))
            for s in served:
                if s.client is not None:
                    await s.client.aclose()
            for server, serving in servers:
                server.should_exit = True
                await serving
            await influx.aclose()
        finally:
            for s in served:
                s.db.close()
            if pg is not None:
                pg.stop()
            influxd.stop()
    p95: dict[str, tuple[float, float, float]] = {}
    for s in served:
        on = f" on {s.backend}" if len(served) > 1 or s.backend != "sqlite" else ""
        p95[s.backend] = (
            summary(f"history_year{on} (one lift, a year of alarms)", s.history),
            summary(f"telemetry_hour{on} (one lift, 3600 raw points, all fields)", s.telemetry),
            summary(f"report_month{on} (all lifts, grouped by lift)", s.report),
        )
    summary("baseline: the telemetry hour straight to InfluxDB, JSON", influx_json)
    summary("baseline: the telemetry hour straight to InfluxDB, MessagePack", influx_msgpack)
    main_backend = "postgresql" if "postgresql" in p95 else "sqlite"
    h, t, r = p95[main_backend]
    line = f"history_year_p95_ms={h:.1f} telemetry_hour_p95_ms={t:.1f} report_month_p95_ms={r:.1f}"
    if main_backend == "postgresql":
        line += " backend=postgresql"
    if "sqlite" in p95 and main_backend != "sqlite":
        hs, ts, rs = p95["sqlite"]
        line += (
            f" history_year_p95_ms_sqlite={hs:.1f} telemetry_hour_p95_ms_sqlite={ts:.1f}"
            f" report_month_p95_ms_sqlite={rs:.1f} history_ratio={h / hs:.2f}"
            f" report_ratio={r / rs:.2f}"
        )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
