"""The registry entry shows what the alerts engine cannot use as stored (FAULTS.md 1.1 #1, #2):
a stored value out of range (written by an older version, or by hand) and a missing
rated_speed. The real API on a real SQLite store."""

from __future__ import annotations

import httpx

from liftwatch.store import Database
from tests.support.api import World


async def test_lift_without_rated_speed_shows_the_overspeed_gap(
    client: httpx.AsyncClient, world: World
) -> None:
    h = world.h("admin")
    r = await client.post(
        "/api/v1/lifts", json={"lift_id": "gap-1", "company_id": "co-a"}, headers=h
    )
    assert r.status_code == 201 and r.json()["rated_speed"] is None
    detail = (await client.get("/api/v1/lifts/gap-1", headers=h)).json()
    assert detail["problems"] == ["rated_speed unknown: not checked for overspeed"]
    await client.patch("/api/v1/lifts/gap-1", json={"rated_speed": 1.6}, headers=h)
    assert (await client.get("/api/v1/lifts/gap-1", headers=h)).json()["problems"] == []


async def test_out_of_range_thresholds_are_refused_on_input(
    client: httpx.AsyncClient, world: World
) -> None:
    h = world.h("admin")
    for overrides in ({"entrapment_s": 0}, {"flood_limit": 1001}, {"escalation_s": 1e308}):
        r = await client.patch(
            f"/api/v1/lifts/{world.lift_a}", json={"overrides": overrides}, headers=h
        )
        assert r.status_code == 422, overrides
        assert next(iter(overrides)) in r.text


async def test_a_stored_bad_row_is_read_and_flagged(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    with db.transaction() as conn:
        conn.execute(
            "UPDATE lifts SET overrides = ?, rated_speed = ? WHERE lift_id = ?",
            ('{"entrapment_s": Infinity, "door_open_too_long_s": 60}', 1.0, world.lift_a),
        )
    h = world.h("admin")
    r = await client.get(f"/api/v1/lifts/{world.lift_a}", headers=h)
    assert r.status_code == 200
    assert r.json()["problems"] == ["stored overrides entrapment_s unusable: defaults apply"]
    assert r.json()["overrides"] == {"door_open_too_long_s": 60}  # what is in force
    with db.transaction() as conn:
        # SQLite keeps any value in any column; PostgreSQL's typed column only a number.
        bad = "fast" if db.dialect == "sqlite" else -5.0
        conn.execute("UPDATE lifts SET rated_speed = ? WHERE lift_id = ?", (bad, world.lift_a))
    r = await client.get(f"/api/v1/lifts/{world.lift_a}", headers=h)
    assert r.status_code == 200
    problems = r.json()["problems"]
    assert any("rated_speed" in p and "defaults apply" in p for p in problems)
    listing = await client.get("/api/v1/lifts", headers=h)
    assert listing.status_code == 200
