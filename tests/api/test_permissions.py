"""The permission matrix: 3 roles × every resource.

Each row names an endpoint on a resource of company ``co-a`` and the status each caller
gets: admin, inspector, the maintainer of co-a ("own") and the maintainer of co-b
("other"). Writes by an inspector are 403; another company's resources are 404 for a
maintainer, whatever the method, so existence is never disclosed. Non-admin callers run
first, so the admin's change cannot mask their answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.timeparams import now_ms
from liftwatch.store import Database, maintenance
from tests.support.api import World, assert_error, raise_alarm

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Row:
    method: str
    url: Callable[[World], str]
    admin: int
    inspector: int
    own: int
    other: int
    body: Callable[[World], Any] | None = None
    content_type: str | None = None


def lift(w: World) -> str:
    return f"/api/v1/lifts/{w.lift_a}"


MATRIX: dict[str, Row] = {
    "companies.list": Row("GET", lambda w: "/api/v1/companies", 200, 200, 200, 200),
    "companies.create": Row(
        "POST",
        lambda w: "/api/v1/companies",
        201,
        403,
        403,
        403,
        body=lambda w: {"company_id": "co-new", "name": "New"},
    ),
    "companies.get": Row("GET", lambda w: "/api/v1/companies/co-a", 200, 200, 200, 404),
    "companies.patch": Row(
        "PATCH",
        lambda w: "/api/v1/companies/co-a",
        200,
        403,
        403,
        404,
        body=lambda w: {"phone": "12345"},
    ),
    "companies.deactivate": Row("DELETE", lambda w: "/api/v1/companies/co-a", 200, 403, 403, 404),
    "lifts.list": Row("GET", lambda w: "/api/v1/lifts", 200, 200, 200, 200),
    "lifts.create": Row(
        "POST",
        lambda w: "/api/v1/lifts",
        201,
        403,
        403,
        403,
        body=lambda w: {"lift_id": "fresh-1", "company_id": "co-a"},
    ),
    "lifts.import": Row(
        "POST",
        lambda w: "/api/v1/lifts/import",
        200,
        403,
        403,
        403,
        body=lambda w: "lift_id,company_id\nfresh-2,co-a\n",
        content_type="text/csv",
    ),
    "lifts.get": Row("GET", lift, 200, 200, 200, 404),
    "lifts.put": Row(
        "PUT",
        lift,
        200,
        403,
        403,
        404,
        body=lambda w: {"lift_id": w.lift_a, "company_id": "co-a", "name": "renamed"},
    ),
    "lifts.patch": Row("PATCH", lift, 200, 403, 403, 404, body=lambda w: {"name": "x"}),
    "lifts.deactivate": Row("DELETE", lift, 200, 403, 403, 404),
    "lifts.telemetry": Row("GET", lambda w: lift(w) + "/telemetry", 200, 200, 200, 404),
    "lifts.events": Row("GET", lambda w: lift(w) + "/events", 200, 200, 200, 404),
    "tokens.list": Row("GET", lambda w: "/api/v1/tokens", 200, 403, 403, 403),
    "tokens.me": Row("GET", lambda w: "/api/v1/tokens/me", 200, 200, 200, 200),
    "tokens.create": Row(
        "POST",
        lambda w: "/api/v1/tokens",
        201,
        403,
        403,
        403,
        body=lambda w: {"name": "x", "role": "inspector"},
    ),
    "tokens.revoke": Row(
        "DELETE", lambda w: f"/api/v1/tokens/{w.token_ids['admin2']}", 204, 403, 403, 403
    ),
    "dead_letters.list": Row("GET", lambda w: "/api/v1/dead-letters", 200, 403, 403, 403),
    "alarms.list": Row("GET", lambda w: "/api/v1/alarms", 200, 200, 200, 200),
    "alarms.csv": Row("GET", lambda w: "/api/v1/alarms?format=csv", 200, 200, 200, 200),
    "alarms.get": Row("GET", lambda w: f"/api/v1/alarms/{w.alarm_a}", 200, 200, 200, 404),
    "alarms.acknowledge": Row(
        "POST", lambda w: f"/api/v1/alarms/{w.alarm_a}/acknowledge", 409, 403, 200, 404
    ),
    "alarms.on_site": Row(
        "POST", lambda w: f"/api/v1/alarms/{w.alarm_a}/on-site", 409, 403, 200, 404
    ),
    "alarms.resolve": Row(
        "POST",
        lambda w: f"/api/v1/alarms/{w.alarm_a}/resolve",
        409,
        403,
        200,
        404,
        body=lambda w: {"outcome": "test"},
    ),
    "reports.faults": Row("GET", lambda w: "/api/v1/reports/faults", 200, 200, 200, 200),
    "maintenance_windows.list": Row(
        "GET", lambda w: "/api/v1/maintenance-windows", 200, 200, 200, 200
    ),
    "maintenance_windows.list_lift": Row(
        "GET", lambda w: f"/api/v1/maintenance-windows?lift_id={w.lift_a}", 200, 200, 200, 404
    ),
    "maintenance_windows.create": Row(
        "POST",
        lambda w: "/api/v1/maintenance-windows",
        201,
        403,
        201,
        404,
        body=lambda w: {
            "lift_id": w.lift_a,
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2026-01-01T04:00:00Z",
        },
    ),
    "maintenance_windows.delete": Row(
        "DELETE", lambda w: f"/api/v1/maintenance-windows/{w.window_a}", 404, 403, 204, 404
    ),
}


async def call(client: httpx.AsyncClient, world: World, row: Row, who: str) -> httpx.Response:
    headers = world.h(who)
    kwargs: dict[str, Any] = {}
    if row.body is not None:
        body = row.body(world)
        if isinstance(body, str):
            kwargs["content"] = body
            headers = {**headers, "content-type": row.content_type or "text/plain"}
        else:
            kwargs["json"] = body
    return await client.request(row.method, row.url(world), headers=headers, **kwargs)


@pytest.mark.parametrize("name", list(MATRIX))
async def test_permission_matrix(
    client: httpx.AsyncClient, world: World, db: Database, name: str
) -> None:
    # One open alarm and one maintenance window of company a. The maintainer of a acts
    # before the admin, so the admin's repeat of a lifecycle step is the 409 conflict.
    world.alarm_a = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    world.window_a = maintenance.add_maintenance_window(
        db, world.lift_a, now_ms(), now_ms() + 3_600_000, created_by="test"
    ).window_id
    row = MATRIX[name]
    for who, expected in (
        ("inspector", row.inspector),
        ("maintainer_b", row.other),
        ("maintainer_a", row.own),
        ("admin", row.admin),
    ):
        r = await call(client, world, row, who)
        if expected >= 400:
            assert_error(r, expected)
        else:
            assert r.status_code == expected, (name, who, r.text)


async def test_maintainer_sees_only_its_company(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("maintainer_a")
    lifts = (await client.get("/api/v1/lifts", headers=h)).json()["items"]
    assert {lift["lift_id"] for lift in lifts} == {world.lift_a, world.lift_a2}
    other = await client.get("/api/v1/lifts", params={"company_id": "co-b"}, headers=h)
    assert other.json()["items"] == []
    companies = (await client.get("/api/v1/companies", headers=h)).json()
    assert [c["company_id"] for c in companies] == ["co-a"]
    # A lift with no company is nobody's: 404 to every maintainer.
    assert_error(await client.get(f"/api/v1/lifts/{world.lift_none}", headers=h), 404)
    # Another company's lift and a lift that does not exist answer identically.
    a = await client.get(f"/api/v1/lifts/{world.lift_b}", headers=h)
    b = await client.get("/api/v1/lifts/no-such-lift", headers=h)
    assert a.status_code == b.status_code == 404
    assert a.json()["error"]["code"] == b.json()["error"]["code"]
    put_other = await client.put(
        f"/api/v1/lifts/{world.lift_b}", json={"lift_id": world.lift_b}, headers=h
    )
    put_missing = await client.put(
        "/api/v1/lifts/no-such-lift", json={"lift_id": "no-such-lift"}, headers=h
    )
    assert put_other.status_code == put_missing.status_code == 404


async def test_inspector_reads_everything(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("inspector")
    lifts = (await client.get("/api/v1/lifts", headers=h)).json()["items"]
    assert len(lifts) == 4
    for lift_id in (world.lift_a, world.lift_b, world.lift_none):
        assert (await client.get(f"/api/v1/lifts/{lift_id}", headers=h)).status_code == 200
