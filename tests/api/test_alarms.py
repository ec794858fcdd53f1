"""Alarms: listing with filters and cursor, CSV, detail, lifecycle actions (409 on invalid
transitions), scoping; fault reports; maintenance windows."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from api.reports import p90
from api.timeparams import now_ms
from liftwatch.protocol import format_ts
from liftwatch.store import Database, maintenance, outbox
from tests.support.api import World, assert_error, raise_alarm

pytestmark = pytest.mark.integration

MIN = 60_000


@pytest.fixture
def alarms(world: World, db: Database) -> dict[str, str]:
    t = now_ms() - 60 * MIN
    return {
        "a_entrap": raise_alarm(
            db,
            world.lift_a,
            "entrapment",
            at=t,
            company_id="co-a",
            deadline_ms=30 * MIN,
            subtype="outside_zone",
        ),
        "a_door": raise_alarm(
            db,
            world.lift_a,
            "door_open_too_long",
            at=t + MIN,
            severity="minor",
            company_id="co-a",
        ),
        "a2_button": raise_alarm(
            db,
            world.lift_a2,
            "alarm_button",
            at=t + 2 * MIN,
            company_id="co-a",
            deadline_ms=60 * MIN,
        ),
        "b_entrap": raise_alarm(
            db,
            world.lift_b,
            "entrapment",
            at=t + 3 * MIN,
            company_id="co-b",
            deadline_ms=30 * MIN,
            subtype="outside_zone",
        ),
        "a_muted": raise_alarm(
            db,
            world.lift_a,
            "run_timeout",
            at=t + 4 * MIN,
            severity="major",
            company_id="co-a",
            suppressed_reason="maintenance_window",
        ),
    }


async def test_list_filters_and_scope(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str]
) -> None:
    async def ids(who: str, **params: str) -> list[str]:
        r = await client.get("/api/v1/alarms", params=params, headers=world.h(who))
        assert r.status_code == 200, r.text
        return [a["alarm_id"] for a in r.json()["items"]]

    everything = await ids("inspector")
    assert everything == [
        alarms[k] for k in ("a_muted", "b_entrap", "a2_button", "a_door", "a_entrap")
    ]
    assert await ids("inspector", order="asc") == everything[::-1]
    assert await ids("maintainer_a") == [
        alarms[k] for k in ("a_muted", "a2_button", "a_door", "a_entrap")
    ]
    assert await ids("maintainer_a", company_id="co-b") == []
    assert await ids("admin", code="entrapment") == [alarms["b_entrap"], alarms["a_entrap"]]
    assert await ids("admin", severity="minor") == [alarms["a_door"]]
    assert await ids("admin", lift_id=world.lift_a2) == [alarms["a2_button"]]
    assert alarms["a_muted"] not in await ids("admin", include_suppressed="false")
    assert await ids("admin", status="resolved") == []
    assert len(await ids("admin", condition="active")) == 5
    view = (await client.get("/api/v1/alarms", headers=world.h("admin"))).json()["items"][-1]
    t_raise = view["raised_at"]
    assert await ids("admin", since=t_raise, until=format_ts(now_ms())) == everything
    after = await ids("admin", since=format_ts(now_ms() - 58 * MIN))
    assert alarms["a_entrap"] not in after and alarms["b_entrap"] in after


async def test_cursor_pages_cover_everything_once(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str]
) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get("/api/v1/alarms", params=params, headers=world.h("admin"))).json()
        seen += [a["alarm_id"] for a in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert sorted(seen) == sorted(alarms.values()) and len(seen) == len(set(seen))


async def test_csv_export(client: httpx.AsyncClient, world: World, alarms: dict[str, str]) -> None:
    r = await client.get(
        "/api/v1/alarms", params={"format": "csv"}, headers=world.h("maintainer_a")
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Chinese right
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {row["alarm_id"] for row in rows} == {
        alarms[k] for k in ("a_entrap", "a_door", "a2_button", "a_muted")
    }
    entrap = next(row for row in rows if row["alarm_id"] == alarms["a_entrap"])
    assert entrap["name_zh"] == "困人" and entrap["severity"] == "critical"
    assert entrap["lift_name"] == "A one"


async def test_csv_cells_cannot_carry_formulas(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    from liftwatch.registry import Lift
    from liftwatch.store import registry as reg

    reg.upsert_lift(db, Lift(lift_id="evil-1", company_id="co-a", name="=HYPERLINK(1)"))
    raise_alarm(db, "evil-1", "run_timeout", at=now_ms(), severity="major", company_id="co-a")
    r = await client.get("/api/v1/alarms", params={"format": "csv"}, headers=world.h("admin"))
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0]["lift_name"] == "'=HYPERLINK(1)"


async def test_detail_and_lifecycle_actions(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str], db: Database
) -> None:
    alarm_id = alarms["a_entrap"]
    h = world.h("maintainer_a")
    detail = (await client.get(f"/api/v1/alarms/{alarm_id}", headers=h)).json()
    assert detail["status"] == "open" and detail["evidence"] == {
        "car_status": "stopped",
        "floor": "3",
    }
    assert [t["event"] for t in detail["transitions"]] == ["raised"]

    r = await client.post(
        f"/api/v1/alarms/{alarm_id}/acknowledge", json={"note": "on our way"}, headers=h
    )
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    # Repeating a step, or going back, is a conflict with the reason.
    again = await client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=h)
    assert_error(again, 409, "conflict")
    assert "acknowledged" in again.json()["error"]["message"]
    assert again.json()["error"]["detail"] == {"status": "acknowledged", "wanted": "acknowledged"}
    r = await client.post(f"/api/v1/alarms/{alarm_id}/on-site", headers=h)
    assert r.json()["status"] == "on_site"
    assert_error(await client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=h), 409)
    # Resolving needs an outcome from the list.
    assert_error(await client.post(f"/api/v1/alarms/{alarm_id}/resolve", json={}, headers=h), 422)
    bad = await client.post(
        f"/api/v1/alarms/{alarm_id}/resolve", json={"outcome": "auto"}, headers=h
    )
    assert_error(bad, 422)
    assert bad.json()["error"]["detail"][0]["field"] == "outcome"
    r = await client.post(
        f"/api/v1/alarms/{alarm_id}/resolve",
        json={"outcome": "rescued", "note": "passenger out at 3F"},
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["status"] == "resolved" and r.json()["outcome"] == "rescued"
    assert_error(
        await client.post(
            f"/api/v1/alarms/{alarm_id}/resolve", json={"outcome": "rescued"}, headers=h
        ),
        409,
    )
    detail = (await client.get(f"/api/v1/alarms/{alarm_id}", headers=h)).json()
    steps = detail["transitions"]
    assert [t["event"] for t in steps] == ["raised", "acknowledged", "on_site", "resolved"]
    actor = f"api:maintainer_a ({world.token_ids['maintainer_a']})"
    assert all(t["actor"] == actor for t in steps[1:])
    assert steps[1]["note"] == "on our way" and steps[3]["note"] == "passenger out at 3F"
    # The outbox got the notifications (the webhooks' source), in the same transactions.
    events = [row.event_type for row in outbox.outbox_rows(db, alarm_id=alarm_id)]
    assert events == ["alarm.raised", "alarm.acknowledged", "alarm.on_site", "alarm.resolved"]


async def test_steps_may_skip_forward(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str]
) -> None:
    r = await client.post(
        f"/api/v1/alarms/{alarms['a2_button']}/resolve",
        json={"outcome": "false_alarm"},
        headers=world.h("admin"),
    )
    assert r.status_code == 200 and r.json()["status"] == "resolved"


async def test_action_permissions(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str]
) -> None:
    a = alarms["a_entrap"]
    for action, body in (
        ("acknowledge", None),
        ("on-site", None),
        ("resolve", {"outcome": "test"}),
    ):
        url = f"/api/v1/alarms/{a}/{action}"
        assert_error(await client.post(url, json=body, headers=world.h("inspector")), 403)
        assert_error(await client.post(url, json=body, headers=world.h("maintainer_b")), 404)
    assert_error(await client.get(f"/api/v1/alarms/{a}", headers=world.h("maintainer_b")), 404)
    assert_error(await client.get("/api/v1/alarms/al_nope", headers=world.h("admin")), 404)
    assert_error(
        await client.post("/api/v1/alarms/al_nope/acknowledge", headers=world.h("admin")), 404
    )


def test_p90_is_nearest_rank() -> None:
    assert p90([]) is None
    assert p90([5.0]) == 5.0
    assert p90([float(i) for i in range(1, 11)]) == 9.0
    assert p90([float(i) for i in range(1, 101)]) == 90.0


async def test_fault_report(client: httpx.AsyncClient, world: World, db: Database) -> None:
    from alerts import lifecycle

    t = now_ms() - 10 * 24 * 60 * MIN
    ids = []
    # Three entrapments on lift a: on site after 10, 20 and 40 min (deadline 30 min).
    for i, minutes in enumerate((10, 20, 40)):
        at = t + i * 60 * MIN
        aid = raise_alarm(
            db,
            world.lift_a,
            "entrapment",
            at=at,
            company_id="co-a",
            deadline_ms=30 * MIN,
            subtype=f"s{i}",
        )
        lifecycle.acknowledge(db, aid, actor="test", at=at + minutes * MIN // 2)
        lifecycle.mark_on_site(db, aid, actor="test", at=at + minutes * MIN)
        ids.append(aid)
    raise_alarm(db, world.lift_b, "door_open_fault", at=t, severity="major", company_id="co-b")
    window = {"since": format_ts(t - MIN), "until": format_ts(now_ms())}
    r = await client.get(
        "/api/v1/reports/faults", params={**window, "group_by": "lift"}, headers=world.h("admin")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["alarms"] == 4
    lift_a = next(g for g in body["groups"] if g["key"] == world.lift_a)
    assert lift_a["alarms"] == 3 and lift_a["critical"] == 3
    assert lift_a["on_site"] == 3
    assert lift_a["on_site_mean_s"] == pytest.approx((10 + 20 + 40) * 60 / 3, abs=0.01)
    assert lift_a["on_site_p90_s"] == 40 * 60
    assert lift_a["ack_p90_s"] == 20 * 60
    assert lift_a["entrapments"] == 3 and lift_a["entrapments_on_site_in_time"] == 2
    assert lift_a["entrapment_on_site_share"] == pytest.approx(2 / 3, abs=1e-3)
    by_company = await client.get(
        "/api/v1/reports/faults",
        params={**window, "group_by": "company"},
        headers=world.h("inspector"),
    )
    assert {g["key"]: g["alarms"] for g in by_company.json()["groups"]} == {"co-a": 3, "co-b": 1}
    # A maintainer's report covers its own company only.
    mine = await client.get(
        "/api/v1/reports/faults",
        params={**window, "group_by": "code"},
        headers=world.h("maintainer_b"),
    )
    assert {g["key"] for g in mine.json()["groups"]} == {"door_open_fault"}
    assert_error(
        await client.get(
            "/api/v1/reports/faults",
            params={"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            headers=world.h("admin"),
        ),
        422,
    )


async def test_lift_detail_lists_open_alarms(
    client: httpx.AsyncClient, world: World, alarms: dict[str, str]
) -> None:
    r = await client.get(f"/api/v1/lifts/{world.lift_a}", headers=world.h("inspector"))
    open_ids = {a["alarm_id"] for a in r.json()["open_alarms"]}
    assert open_ids == {alarms["a_entrap"], alarms["a_door"], alarms["a_muted"]}


async def test_maintenance_windows(client: httpx.AsyncClient, world: World, db: Database) -> None:
    start, end = now_ms() - MIN, now_ms() + 60 * MIN
    body = {
        "lift_id": world.lift_a,
        "starts_at": format_ts(start),
        "ends_at": format_ts(end),
        "reason": "annual inspection",
    }
    url = "/api/v1/maintenance-windows"
    assert_error(await client.post(url, json=body, headers=world.h("inspector")), 403)
    assert_error(await client.post(url, json=body, headers=world.h("maintainer_b")), 404)
    r = await client.post(url, json=body, headers=world.h("maintainer_a"))
    assert r.status_code == 201, r.text
    window = r.json()
    assert window["starts_at"] == format_ts(start) and window["reason"] == "annual inspection"
    with db.transaction() as conn:
        assert maintenance.in_maintenance(conn, world.lift_a, now_ms())
    listed = (await client.get(url, headers=world.h("inspector"))).json()
    assert [w["window_id"] for w in listed] == [window["window_id"]]
    assert (await client.get(url, headers=world.h("maintainer_b"))).json() == []
    assert_error(
        await client.get(url, params={"lift_id": world.lift_a}, headers=world.h("maintainer_b")),
        404,
    )
    bad = {**body, "ends_at": format_ts(start - 1)}
    r = await client.post(url, json=bad, headers=world.h("admin"))
    assert_error(r, 422)
    assert r.json()["error"]["detail"][0]["field"] == "ends_at"
    wid = window["window_id"]
    assert_error(await client.delete(f"{url}/{wid}", headers=world.h("maintainer_b")), 404)
    assert_error(await client.delete(f"{url}/{wid}", headers=world.h("inspector")), 403)
    assert (await client.delete(f"{url}/{wid}", headers=world.h("maintainer_a"))).status_code == 204
    assert_error(await client.delete(f"{url}/{wid}", headers=world.h("admin")), 404)
    with db.transaction() as conn:
        assert not maintenance.in_maintenance(conn, world.lift_a, now_ms())


async def test_a_running_maintenance_window_is_ended_and_kept(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    url = "/api/v1/maintenance-windows"
    now = now_ms()
    running = {"lift_id": world.lift_a, "starts_at": now - MIN, "ends_at": now + 60 * MIN}
    coming = {"lift_id": world.lift_a, "starts_at": now + 30 * MIN, "ends_at": now + 90 * MIN}
    wid = (await client.post(url, json=running, headers=world.h("maintainer_a"))).json()[
        "window_id"
    ]
    later = (await client.post(url, json=coming, headers=world.h("maintainer_a"))).json()
    assert_error(await client.post(f"{url}/{wid}/end", headers=world.h("maintainer_b")), 404)
    assert_error(await client.post(f"{url}/{wid}/end", headers=world.h("inspector")), 403)
    r = await client.post(f"{url}/{wid}/end", headers=world.h("maintainer_a"))
    assert r.status_code == 200, r.text
    with db.transaction() as conn:
        assert not maintenance.in_maintenance(conn, world.lift_a, now_ms())
    kept = maintenance.get_maintenance_window(db, wid)
    assert kept is not None and now - MIN < kept.ends_at <= now_ms()
    assert_error(await client.post(f"{url}/{wid}/end", headers=world.h("maintainer_a")), 409)
    r = await client.post(f"{url}/{later['window_id']}/end", headers=world.h("maintainer_a"))
    assert_error(r, 409)
    assert "delete" in r.json()["error"]["message"]


async def test_maintenance_windows_per_lift_path(client: httpx.AsyncClient, world: World) -> None:
    url = f"/api/v1/lifts/{world.lift_a}/maintenance-windows"
    start = now_ms()
    r = await client.post(
        url, json={"start": start, "end": start + 60 * MIN}, headers=world.h("maintainer_a")
    )
    assert r.status_code == 201, r.text
    assert r.json()["lift_id"] == world.lift_a and r.json()["starts_at"] == format_ts(start)
    listed = await client.get(url, headers=world.h("inspector"))
    assert [w["window_id"] for w in listed.json()] == [r.json()["window_id"]]
    assert_error(await client.get(url, headers=world.h("maintainer_b")), 404)
    other = f"/api/v1/lifts/{world.lift_b}/maintenance-windows"
    r = await client.post(
        other, json={"starts_at": start, "ends_at": start + MIN}, headers=world.h("maintainer_a")
    )
    assert_error(r, 404)


async def test_token_name_defaults_to_role(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/tokens",
        json={"role": "maintainer", "company_id": "co-a"},
        headers=world.h("admin"),
    )
    assert r.status_code == 201 and r.json()["name"] == "maintainer co-a"
