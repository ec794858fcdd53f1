"""Dependency checks for ``/readyz``: the broker, InfluxDB and the store, each reported."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import aiomqtt

from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.tls import broker_tls_context

CheckResult = tuple[bool, str]
Check = Callable[[], Awaitable[CheckResult]]

CHECK_TIMEOUT_S = 3.0


def broker_check(settings: Settings) -> Check:
    """Connect to the broker with liftwatch's credentials and disconnect: proves the broker
    is up *and* accepts us, which a bare TCP probe would not."""

    async def check() -> CheckResult:
        target = settings.mqtt
        tls = broker_tls_context(settings)
        try:
            async with aiomqtt.Client(
                target.host,
                target.port,
                username=target.username,
                password=target.password,
                identifier=f"liftwatch-api-ready-{uuid.uuid4().hex[:8]}",
                tls_context=tls,
                timeout=CHECK_TIMEOUT_S,
            ):
                pass
        except aiomqtt.MqttError as exc:
            return False, f"broker unreachable: {exc}"
        except OSError as exc:
            return False, f"broker unreachable: {exc.strerror or exc}"
        return True, "connected"

    return check


def influx_check(get_client: Callable[[], InfluxClient]) -> Check:
    async def check() -> CheckResult:
        ok = await get_client().ping()
        return (True, "ping ok") if ok else (False, "InfluxDB did not answer /ping")

    return check


def store_check(db: Database) -> Check:
    async def check() -> CheckResult:
        ok = await asyncio.to_thread(db.ping)
        return (True, "ok") if ok else (False, "SQLite store not readable")

    return check


async def run_checks(checks: dict[str, Check]) -> dict[str, dict[str, object]]:
    """Run every check concurrently, each bounded by a timeout."""

    async def one(check: Check) -> dict[str, object]:
        start = time.perf_counter()
        try:
            ok, detail = await asyncio.wait_for(check(), CHECK_TIMEOUT_S + 0.5)
        except TimeoutError:
            ok, detail = False, f"no answer within {CHECK_TIMEOUT_S} s"
        except Exception as exc:  # a check must report, never crash /readyz
            ok, detail = False, f"{exc.__class__.__name__}: {exc}"[:300]
        return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - start) * 1000, 1)}

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    return dict(zip(names, results, strict=True))
