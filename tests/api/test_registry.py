"""Companies and lifts: CRUD (admin), deactivate instead of delete, bulk import, paging."""

from __future__ import annotations

import json

import httpx
import pytest

from liftwatch.store import Database
from liftwatch.store import registry as reg
from tests.support.api import World, assert_error

pytestmark = pytest.mark.integration


async def test_company_lifecycle(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("admin")
    r = await client.post(
        "/api/v1/companies", json={"company_id": "co-c", "name": "Gamma", "phone": "110"}, headers=h
    )
    assert r.status_code == 201
    assert_error(
        await client.post("/api/v1/companies", json={"company_id": "co-c", "name": "G"}, headers=h),
        409,
        "conflict",
    )
    r = await client.patch("/api/v1/companies/co-c", json={"contact": "Ms Wang"}, headers=h)
    assert r.json() == {
        "company_id": "co-c",
        "name": "Gamma",
        "contact": "Ms Wang",
        "phone": "110",
        "active": True,
    }
    r = await client.delete("/api/v1/companies/co-c", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False
    got = await client.get("/api/v1/companies/co-c", headers=h)
    assert got.json()["active"] is False  # kept, not deleted
    listed = await client.get("/api/v1/companies", headers=h)
    assert {c["company_id"] for c in listed.json()} == {"co-a", "co-b", "co-c"}
    assert_error(await client.get("/api/v1/companies/co-zz", headers=h), 404)


async def test_lift_create_put_patch_deactivate(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    h = world.h("admin")
    body = {"lift_id": "new-1", "company_id": "co-a", "rated_speed": 2.5, "rescue_code": "123456"}
    r = await client.post("/api/v1/lifts", json=body, headers=h)
    assert r.status_code == 201 and r.json()["rated_speed"] == 2.5
    assert_error(await client.post("/api/v1/lifts", json=body, headers=h), 409)
    r = await client.patch(
        "/api/v1/lifts/new-1", json={"urban": False, "overrides": {"entrapment_s": 20}}, headers=h
    )
    assert r.status_code == 200
    stored = reg.get_lift(db, "new-1")
    assert stored is not None and stored.urban is False and stored.overrides == {"entrapment_s": 20}
    assert stored.rescue_code == "123456"  # PATCH leaves other fields alone
    # A misspelt threshold would leave the default in force unnoticed: refused, named.
    r = await client.patch("/api/v1/lifts/new-1", json={"overrides": {"entrapment": 20}}, headers=h)
    assert_error(r, 422)
    assert "entrapment" in r.text and "overrides" in r.text
    stored = reg.get_lift(db, "new-1")
    assert stored is not None and stored.overrides == {"entrapment_s": 20}
    r = await client.put(
        "/api/v1/lifts/new-2", json={"lift_id": "new-2", "company_id": "co-b"}, headers=h
    )
    assert r.status_code == 200 and reg.get_lift(db, "new-2") is not None
    assert_error(await client.put("/api/v1/lifts/new-2", json={"lift_id": "other"}, headers=h), 422)
    r = await client.patch("/api/v1/lifts/new-1", json={"company_id": "co-zz"}, headers=h)
    assert_error(r, 422)
    assert r.json()["error"]["detail"][0]["field"] == "company_id"
    r = await client.delete("/api/v1/lifts/new-1", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False
    stored = reg.get_lift(db, "new-1")
    assert stored is not None and stored.active is False
    inactive = await client.get("/api/v1/lifts", params={"active": "false"}, headers=h)
    assert [lift["lift_id"] for lift in inactive.json()["items"]] == ["new-1"]


async def test_registration_code_conflict_is_409(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("admin")
    await client.patch(f"/api/v1/lifts/{world.lift_a}", json={"registration_code": "R1"}, headers=h)
    r = await client.patch(
        f"/api/v1/lifts/{world.lift_b}", json={"registration_code": "R1"}, headers=h
    )
    assert_error(r, 409)


async def test_lift_listing_pages_with_cursor(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("admin")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/lifts", params=params, headers=h)).json()
        seen += [lift["lift_id"] for lift in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted([world.lift_a, world.lift_a2, world.lift_b, world.lift_none])
    only_b = await client.get("/api/v1/lifts", params={"company_id": "co-b"}, headers=h)
    assert [lift["lift_id"] for lift in only_b.json()["items"]] == [world.lift_b]


async def test_import_csv_reports_rows_and_is_idempotent(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    csv = (
        "lift_id,company_id,rated_speed,urban,overrides\n"
        "imp-1,co-a,1.75,true,\n"
        'imp-2,co-b,1.0,no,"{""entrapment_s"": 20}"\n'
        "bad id!,co-a,1.0,true,\n"
        "imp-3,co-nope,1.0,true,\n"
    )
    h = {**world.h("admin"), "content-type": "text/csv; charset=utf-8"}
    r = await client.post("/api/v1/lifts/import", content=csv, headers=h)
    assert r.status_code == 200
    out = r.json()
    assert (out["inserted"], out["updated"], out["unchanged"], out["rejected"]) == (2, 0, 0, 2)
    assert [e["line"] for e in out["errors"]] == [4, 5]
    assert "co-nope" in out["errors"][1]["error"]
    lift = reg.get_lift(db, "imp-2")
    assert lift is not None and lift.overrides == {"entrapment_s": 20.0} and lift.urban is False
    again = (await client.post("/api/v1/lifts/import", content=csv, headers=h)).json()
    assert (again["inserted"], again["unchanged"]) == (0, 2)


async def test_import_json_and_bad_bodies(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("admin")
    rows = [{"lift_id": "j-1", "company_id": "co-a"}, {"lift_id": "j-2", "rated_speed": "fast"}]
    r = await client.post("/api/v1/lifts/import", json=rows, headers=h)
    assert r.json()["inserted"] == 1 and r.json()["errors"][0]["line"] == 2
    assert "rated_speed" in r.json()["errors"][0]["error"]
    r = await client.post(
        "/api/v1/lifts/import",
        content=json.dumps({"lift_id": "x"}),
        headers={**h, "content-type": "application/json"},
    )
    assert_error(r, 422)  # not a list
    r = await client.post(
        "/api/v1/lifts/import", content="name\nx\n", headers={**h, "content-type": "text/csv"}
    )
    assert_error(r, 422)
    assert "lift_id" in r.json()["error"]["message"]
    r = await client.post(
        "/api/v1/lifts/import", content="{", headers={**h, "content-type": "application/json"}
    )
    assert_error(r, 400)
    r = await client.post(
        "/api/v1/lifts/import", content="x", headers={**h, "content-type": "text/plain"}
    )
    assert_error(r, 415)
    r = await client.post(
        "/api/v1/lifts/import",
        params={"format": "csv"},
        content=b"lift_id\n\xff\xfe",
        headers={**h, "content-type": "text/plain"},
    )
    assert_error(r, 400)
