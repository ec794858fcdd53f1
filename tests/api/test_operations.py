"""/healthz, /readyz (each dependency reported), /metrics, dead-letters."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from liftwatch.settings import load_settings
from liftwatch.store import Database
from liftwatch.store.deadletters import DeadLetter, add_dead_letters
from tests.support.api import ADMIN_TOKEN, World, assert_error
from tests.support.harness import Services

pytestmark = pytest.mark.integration


async def test_healthz_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert set(checks) == {"broker", "influxdb", "store"}
    assert all(c["ok"] for c in checks.values())


async def test_readyz_names_what_is_down(services: Services, tmp_path: Path, db: Database) -> None:
    broker = services.mosquitto()
    influxdb = services.influxdb()
    settings = load_settings(
        data_dir=tmp_path,
        influx_url=influxdb.url,
        mqtt_url=broker.url,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings, db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        assert (await c.get("/readyz")).status_code == 200
        influxdb.stop()
        r = await c.get("/readyz")
        assert_error(r, 503, "not_ready")
        body = r.json()
        assert "influxdb" in body["error"]["message"]
        assert body["checks"]["influxdb"]["ok"] is False
        assert body["checks"]["broker"]["ok"] is True
        assert body["checks"]["store"]["ok"] is True
        broker.stop()
        r = await c.get("/readyz")
        assert r.json()["checks"]["broker"]["ok"] is False
        assert "broker" in r.json()["error"]["message"]
        influxdb.start()
        broker.start()
        assert (await c.get("/readyz")).status_code == 200


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, world: World
) -> None:
    await client.get(f"/api/v1/lifts/{world.lift_a}/events", headers=world.h("admin"))
    await client.get("/api/v1/lifts", headers={"Authorization": "Bearer wrong"})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'route="/api/v1/lifts/{lift_id}/events"' in text
    assert world.lift_a not in text  # raw paths never become labels
    assert "liftwatch_api_auth_failures_total" in text


async def test_dead_letters_listed_for_admins_only(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    letters = [
        DeadLetter(
            received_at=1_700_000_000_000 + i,
            topic=f"lifts/{world.lift_a}/telemetry",
            lift_id=world.lift_a if i % 2 else None,
            reason="bad_json" if i % 3 else "missing_field",
            detail="expecting value",
            payload=b"\xff{not json" * (200 if i == 0 else 1),
        )
        for i in range(7)
    ]
    add_dead_letters(db, letters, keep=1000)
    h = world.h("admin")
    page = (await client.get("/api/v1/dead-letters", params={"limit": 4}, headers=h)).json()
    assert len(page["items"]) == 4 and page["next_cursor"] is not None
    assert page["counts"] == {"bad_json": 4, "missing_field": 3}
    rest = await client.get(
        "/api/v1/dead-letters", params={"limit": 4, "cursor": page["next_cursor"]}, headers=h
    )
    items = page["items"] + rest.json()["items"]
    assert len(items) == 7 and len({i["id"] for i in items}) == 7
    oldest = items[-1]
    assert oldest["payload_truncated"] is True and "\ufffd" in oldest["payload"]
    only = await client.get("/api/v1/dead-letters", params={"reason": "missing_field"}, headers=h)
    assert {i["reason"] for i in only.json()["items"]} == {"missing_field"}
    for who in ("inspector", "maintainer_a"):
        assert_error(await client.get("/api/v1/dead-letters", headers=world.h(who)), 403)
