"""The test harness: real Mosquitto, real InfluxDB and real PostgreSQL, started as child
processes on free ports in a temp dir, stopped afterwards. Services already running on the
machine (a system
Mosquitto on 1883, say) are never touched.

``LIFTWATCH_TEST_MQTT_URL`` / ``LIFTWATCH_TEST_INFLUX_URL`` point the suite at existing
servers instead; tests that must stop or restart a service then get a private one from the
``services`` factory, which always starts its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from liftwatch.influx import InfluxClient
from liftwatch.localservices import InfluxDB, Mosquitto, NatsServer, PostgreSQL
from simulator.receiver import RecordingReceiver
from tests.support.harness import External, Service, Services
from tests.support.postgres import PostgresForTests


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
def nats_mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A private nats-server with MQTT enabled (JetStream in its temp dir), shared by the
    session: the second broker liftwatch's consumer is tested against (docs/deploy.md §
    Brokers). ``LIFTWATCH_TEST_NATS_MQTT_URL`` points at an existing one instead. Tests use
    their own topic prefix, and MQTT 3.1.1 (NATS 2.9 has no MQTT 5)."""
    if url := os.environ.get("LIFTWATCH_TEST_NATS_MQTT_URL"):
        yield External(url)
        return
    # ack_wait 2 s, not NATS's 30 s: NATS sends an unacknowledged message again only when it
    # runs out, even to a new session, and the redelivery tests should not wait 30 s for it.
    svc = NatsServer(tmp_path_factory.mktemp("nats"), ack_wait="2s")
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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresForTests]:
    """A private PostgreSQL server shared by the session; each test takes its own database
    (``store_url``)."""
    svc = PostgreSQL(tmp_path_factory.mktemp("postgresql"))
    svc.start()
    yield PostgresForTests(svc)
    svc.stop()


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store a test runs on, once per backend: a fresh SQLite file, or a fresh database
    on the session's PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "liftwatch.sqlite3")
        return
    pg: PostgresForTests = request.getfixturevalue("postgres")
    url = pg.fresh_url()
    yield url
    pg.drop(url)


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
