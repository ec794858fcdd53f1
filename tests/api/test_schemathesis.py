"""Property-based run of the app against its own OpenAPI document (schemathesis): for every
operation, bounded generated requests (valid and invalid) must never get a 5xx and every
answer must match the documented schema, status codes and content types."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from liftwatch.settings import load_settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN, World, seed_world
from tests.support.harness import Service

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 6
# The stream never ends by design; tests/api/test_stream.py covers it with a real server.
SKIP = {"GET /api/v1/alarms/stream"}


def test_openapi_contract(tmp_path: Path, influxdb: Service, mosquitto: Service) -> None:
    database = f"schema_{uuid.uuid4().hex[:8]}"
    httpx.post(
        f"{influxdb.url}/query", data={"q": f'CREATE DATABASE "{database}"'}
    ).raise_for_status()
    db = Database(tmp_path / "liftwatch.sqlite3")
    world = seed_world(World(db=db))
    app_settings = load_settings(
        data_dir=tmp_path,
        influx_url=influxdb.url,
        influx_database=database,
        mqtt_url=mosquitto.url,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(app_settings, db=db)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    tested: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"invalid operation in our OpenAPI: {result.err()}"
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIP:
            continue
        tested.append(label)
        token = st.sampled_from(["admin", "inspector", "maintainer_a"])

        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases, who=token)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any], who: str) -> None:
            # Schema-valid bodies may still name a company that does not exist: that is a
            # 422 naming the field, which the "positive data accepted" check counts as a
            # failure, so it is left out. Every other check (no 5xx, response schema,
            # status codes, content types, auth) applies.
            # A case whose negative part is the Authorization header itself is sent as
            # generated; every other case carries a real token of the drawn role.
            header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
            bad_header = header is not None and header.mode is GenerationMode.NEGATIVE
            case.call_and_validate(
                headers=None if bad_header else world.h(who),
                excluded_checks=[positive_data_acceptance],
            )

        run()
    assert len(tested) >= 15
