"""The test harness: real Mosquitto and real InfluxDB, started as child processes on free
ports in a temp dir, stopped afterwards. Services already running on the machine (a system
Mosquitto on 1883, say) are never touched.

``LIFTWATCH_TEST_MQTT_URL`` / ``LIFTWATCH_TEST_INFLUX_URL`` point the suite at existing
servers instead; tests that must stop or restart a service then get a private one from the
``services`` factory, which always starts its own.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from liftwatch.influx import InfluxClient
from liftwatch.localservices import InfluxDB, Mosquitto
from tests.receiver import RecordingReceiver


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


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A broker shared by the session. Tests must use their own topic prefix or lift ids."""
    if url := os.environ.get("LIFTWATCH_TEST_MQTT_URL"):
        yield External(url)
        return
    svc = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An InfluxDB shared by the session. Tests use their own database (``influx``)."""
    if url := os.environ.get("LIFTWATCH_TEST_INFLUX_URL"):
        yield External(url)
        return
    svc = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Private services for tests that stop, kill or restart them mid-test."""
    factory = Services(tmp_path / "services")
    yield factory
    factory.stop_all()


@pytest.fixture
def unique() -> str:
    """A short unique token for topic prefixes, database names and lift ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def influx(influxdb: Service, unique: str) -> AsyncIterator[InfluxClient]:
    """A client on a fresh, empty database of the session's InfluxDB."""
    client = InfluxClient(influxdb.url, f"test_{unique}")
    await client.create_database()
    yield client
    await client.aclose()


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    recv = RecordingReceiver()
    yield recv
    recv.close()


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
