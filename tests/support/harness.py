"""Test harness helpers shared by the suite: services (real Mosquitto and InfluxDB, private
or external) and polling with a deadline. Fixtures live in tests/conftest.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from liftwatch.localservices import InfluxDB, Mosquitto


class Service(Protocol):
    @property
    def url(self) -> str: ...


class External:
    """A service the suite did not start: it may be used, never stopped or restarted."""

    def __init__(self, url: str) -> None:
        self.url = url


class Services:
    """Starts private services for one test; stops every one it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Mosquitto | InfluxDB] = []

    def mosquitto(self, extra_conf: str = "") -> Mosquitto:
        svc = Mosquitto(self.root / f"mosquitto-{len(self.started)}", extra_conf=extra_conf)
        svc.start()
        self.started.append(svc)
        return svc

    def influxdb(self) -> InfluxDB:
        svc = InfluxDB(self.root / f"influxdb-{len(self.started)}")
        svc.start()
        self.started.append(svc)
        return svc

    def stop_all(self) -> None:
        for svc in reversed(self.started):
            svc.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - a poll deadline, not a cancellation scope
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true or the deadline passes (then fail, naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def until(
    check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """:func:`eventually` for synchronous tests: poll ``check`` until true or the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)
