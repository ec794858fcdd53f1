"""One error shape for every 4xx/5xx, fields named, size limits, no stack traces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database
from tests.support.api import World, assert_error

pytestmark = pytest.mark.integration


async def test_validation_errors_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/api/v1/lifts", params={"limit": "many"}, headers=world.h("admin"))
    assert_error(r, 422, "validation_error")
    assert r.json()["error"]["detail"][0]["field"] == "limit"
    assert "limit" in r.json()["error"]["message"]
    r = await client.post(
        "/api/v1/lifts",
        json={"lift_id": "ok-1", "rated_speed": -1, "unknown": 1},
        headers=world.h("admin"),
    )
    assert_error(r, 422)
    fields = {d["field"] for d in r.json()["error"]["detail"]}
    assert {"rated_speed", "unknown"} <= fields


async def test_malformed_json_is_an_error_not_a_crash(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.post(
        "/api/v1/companies",
        content=b'{"company_id": "x", "name": ',
        headers={**world.h("admin"), "content-type": "application/json"},
    )
    assert_error(r, 422)


async def test_unknown_route_and_method(client: httpx.AsyncClient, world: World) -> None:
    assert_error(await client.get("/api/v1/elevators", headers=world.h("admin")), 404, "not_found")
    r = await client.put("/api/v1/companies", headers=world.h("admin"))
    assert_error(r, 405, "method_not_allowed")


async def test_oversized_body_is_413_with_or_without_content_length(
    client: httpx.AsyncClient, world: World
) -> None:
    big = b"[" + b" " * (1024 * 1024 + 10) + b"]"
    r = await client.post(
        "/api/v1/companies",
        content=big,
        headers={**world.h("admin"), "content-type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    r = await client.post(
        "/api/v1/companies",
        content=chunks(),
        headers={**world.h("admin"), "content-type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")
    # The import endpoint allows larger bodies (LIFTWATCH_API_MAX_IMPORT_BYTES).
    csv = "lift_id,name\n" + "".join(f"imp-{i:07d},{'x' * 80}\n" for i in range(13_000))
    assert len(csv) > 1024 * 1024
    r = await client.post(
        "/api/v1/lifts/import",
        content=csv,
        headers={**world.h("admin"), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 13_000


async def test_unexpected_exception_is_500_without_trace(
    settings: Settings, db: Database, influx: InfluxClient, caplog: pytest.LogCaptureFixture
) -> None:
    app: FastAPI = create_app(settings, db=db, influx=influx)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /etc/passwd")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom")
    assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text
    ref = r.json()["error"]["detail"]["ref"]
    assert any(ref in rec.getMessage() for rec in caplog.records)


async def test_unknown_query_parameter_is_refused(client: httpx.AsyncClient, world: World) -> None:
    # A typo must not silently widen a listing to every company.
    r = await client.get("/api/v1/lifts", params={"compnay_id": "co-a"}, headers=world.h("admin"))
    assert_error(r, 422, "validation_error")
    assert r.json()["error"]["detail"][0]["field"] == "compnay_id"
