"""Fixtures for the API tests: the app on a real store (each test runs on SQLite and on
PostgreSQL) and the harness's real InfluxDB
(and Mosquitto, for ``/readyz``), called in-process through ``httpx.ASGITransport``.

``world`` seeds two companies with lifts and one token per role, so permission tests can
ask "as whom" with ``world.h("maintainer_a")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings, load_settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN, World, seed_world
from tests.support.harness import Service


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    """The store, once per backend (SQLite file, private PostgreSQL)."""
    database = Database(store_url)
    yield database
    database.close()


@pytest.fixture
def settings(
    tmp_path: Path, influxdb: Service, mosquitto: Service, influx: InfluxClient, db: Database
) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        database_url=db.target if db.dialect == "postgresql" else None,
        influx_url=influxdb.url,
        influx_database=influx.database,
        mqtt_url=mosquitto.url,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
async def client(
    settings: Settings, db: Database, influx: InfluxClient
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db=db, influx=influx)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c


@pytest.fixture
def world(db: Database, unique: str) -> World:
    w = World(
        db=db,
        lift_a=f"LA1-{unique}",
        lift_a2=f"LA2-{unique}",
        lift_b=f"LB1-{unique}",
        lift_none=f"LX1-{unique}",
    )
    return seed_world(w)
