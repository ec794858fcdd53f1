"""Bearer tokens: bootstrap admin, create (shown once, stored hashed), list, revoke."""

from __future__ import annotations

import httpx
import pytest

from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN, World, assert_error, store_text

pytestmark = pytest.mark.integration


async def test_missing_and_wrong_tokens_are_401(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/api/v1/lifts")
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(await client.get("/api/v1/lifts", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(
        await client.get("/api/v1/lifts", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}), 401
    )


async def test_bootstrap_admin_creates_token_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    r = await client.post(
        "/api/v1/tokens",
        json={"name": "night shift", "role": "maintainer", "company_id": "co-a"},
        headers=world.h("admin"),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["token"]
    assert secret.startswith("lw_") and len(secret) > 40
    assert created["created_by"] == "api:bootstrap admin (bootstrap-admin)"
    # The secret is nowhere in the database, only its hash.
    assert secret not in store_text(db)
    # It works, and says who it is.
    me = await client.get("/api/v1/tokens/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert me.json()["role"] == "maintainer" and me.json()["company_id"] == "co-a"
    assert "token" not in me.json()
    # Listing never shows secrets.
    listed = (await client.get("/api/v1/tokens", headers=world.h("admin2"))).json()
    assert created["token_id"] in {t["token_id"] for t in listed}
    assert all("token" not in t for t in listed)
    assert secret not in str(listed)


async def test_revoked_token_stops_working_at_once(client: httpx.AsyncClient, world: World) -> None:
    h = world.h("inspector")
    assert (await client.get("/api/v1/lifts", headers=h)).status_code == 200
    r = await client.delete(
        f"/api/v1/tokens/{world.token_ids['inspector']}", headers=world.h("admin")
    )
    assert r.status_code == 204
    assert_error(await client.get("/api/v1/lifts", headers=h), 401)
    listed = (await client.get("/api/v1/tokens", headers=world.h("admin"))).json()
    assert world.token_ids["inspector"] not in {t["token_id"] for t in listed}
    with_revoked = await client.get(
        "/api/v1/tokens", params={"include_revoked": "true"}, headers=world.h("admin")
    )
    assert world.token_ids["inspector"] in {t["token_id"] for t in with_revoked.json()}
    assert_error(await client.delete("/api/v1/tokens/tok_nope", headers=world.h("admin")), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "m", "role": "maintainer"}, "company_id"),
        ({"name": "m", "role": "maintainer", "company_id": "co-zz"}, "company_id"),
        ({"name": "i", "role": "inspector", "company_id": "co-a"}, "company_id"),
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "", "role": "admin"}, "name"),
    ],
)
async def test_token_creation_validation_names_the_field(
    client: httpx.AsyncClient, world: World, body: dict[str, str], field: str
) -> None:
    r = await client.post("/api/v1/tokens", json=body, headers=world.h("admin"))
    assert_error(r, 422, "validation_error")
    assert field in {d["field"] for d in r.json()["error"]["detail"]}


@pytest.mark.parametrize("who", ["inspector", "maintainer_a"])
async def test_only_admins_manage_tokens(client: httpx.AsyncClient, world: World, who: str) -> None:
    h = world.h(who)
    assert_error(await client.get("/api/v1/tokens", headers=h), 403, "forbidden")
    r = await client.post("/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=h)
    assert_error(r, 403)
    r = await client.delete(f"/api/v1/tokens/{world.token_ids['admin2']}", headers=h)
    assert_error(r, 403)
    assert (await client.get("/api/v1/tokens/me", headers=h)).json()["name"] == who


async def test_created_admin_token_can_create_tokens(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.post(
        "/api/v1/tokens", json={"name": "ops", "role": "inspector"}, headers=world.h("admin2")
    )
    assert r.status_code == 201
    assert r.json()["created_by"] == f"api:admin2 ({world.token_ids['admin2']})"
