"""Regression tests for the API findings of the security review (issue 12,
../shared/reviews/security.md): client input answered 4xx with a reason, never 5xx (#8); a
lift's open alarms shown by the alarm's company (#6); a deactivated company's tokens refused
(#7); CSV cells neutralised by the OWASP rule (#9)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.errors import ApiError
from api.timeparams import now_ms, parse_time
from liftwatch.registry import Lift, parse_csv
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from tests.support.api import World, assert_error, raise_alarm

pytestmark = pytest.mark.integration


# --- #8: 5xx on client input ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["active", "name"])
async def test_company_patch_null_for_required_field_is_422(
    client: httpx.AsyncClient, world: World, field: str
) -> None:
    r = await client.patch("/api/v1/companies/co-a", json={field: None}, headers=world.h("admin"))
    assert_error(r, 422, "validation_error")
    assert r.json()["error"]["detail"][0]["field"] == field
    company = reg.get_company(world.db, "co-a")
    assert company is not None and company.active is True and company.name == "Alpha Lifts"


async def test_import_csv_with_bare_cr_line_ends_is_read_not_500(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.post(
        "/api/v1/lifts/import",
        content=b"lift_id\rcr-1\rcr-2\r",
        headers={**world.h("admin"), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 2 and r.json()["rejected"] == 0
    assert reg.get_lift(world.db, "cr-2") is not None


async def test_import_csv_row_the_csv_module_cannot_read_is_rejected_others_imported(
    client: httpx.AsyncClient, world: World
) -> None:
    body = "lift_id,name\ncsv-1,x\ncsv-2," + "n" * 140_000 + "\ncsv-3,y\n"
    r = await client.post(
        "/api/v1/lifts/import",
        content=body.encode(),
        headers={**world.h("admin"), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["inserted"] == 2 and got["rejected"] == 1
    assert "field larger than field limit" in got["errors"][0]["error"]
    assert reg.get_lift(world.db, "csv-3") is not None


def test_parse_csv_never_raises_csv_error() -> None:
    rows, errors = parse_csv("lift_id\rx\n")
    assert [lift.lift_id for _, lift in rows] == ["x"] and errors == []


@pytest.mark.parametrize(
    "value",
    [b"\xb2", "\u2460".encode(), b"99999999999999999999", str(2**62 + 1).encode(), b"-1", b"1e3"],
)
async def test_last_event_id_must_be_a_bounded_ascii_integer(
    client: httpx.AsyncClient, world: World, value: bytes
) -> None:
    r = await asyncio.wait_for(
        client.get(
            "/api/v1/alarms/stream",
            headers={
                b"authorization": world.h("admin")["Authorization"].encode(),
                b"last-event-id": value,
            },
        ),
        10,
    )
    assert_error(r, 422, "validation_error")
    assert r.json()["error"]["detail"][0]["field"] == "Last-Event-ID"


async def test_event_query_time_beyond_2100_is_422_not_503(
    client: httpx.AsyncClient, world: World
) -> None:
    for params in ({"end": "99999999999999"}, {"start": "5138-01-01T00:00:00Z"}):
        r = await client.get(
            f"/api/v1/lifts/{world.lift_a}/events", params=params, headers=world.h("admin")
        )
        assert_error(r, 422, "validation_error")
        assert r.json()["error"]["detail"][0]["field"] in params


@pytest.mark.parametrize("value", ["4102444800000", "2100-01-01T00:00:00Z", "3000-01-01T00:00:00Z"])
def test_parse_time_refuses_times_from_2100(value: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_time(value, "end", 0)
    assert err.value.status == 422 and "out of range" in err.value.message
    assert parse_time("2099-12-31T23:59:59.999Z", "end", 0) == 4102444800000 - 1


# --- #6: a lift moved to another company does not show it the previous company's alarms ------


async def test_lift_detail_open_alarms_filtered_by_alarm_company_after_move(
    client: httpx.AsyncClient, world: World
) -> None:
    alarm = raise_alarm(world.db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    r = await client.patch(
        f"/api/v1/lifts/{world.lift_a}", json={"company_id": "co-b"}, headers=world.h("admin")
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/lifts/{world.lift_a}", headers=world.h("maintainer_b"))
    assert r.status_code == 200, r.text
    shown = r.json()["open_alarms"]
    # Whatever company the alarm has now (FAULTS.md 1.1: an unresolved alarm may move with its
    # lift), B sees it only if it is B's: the same rule as GET /alarms/{id}.
    stored = store.get_alarm(world.db, alarm)
    assert stored is not None
    assert all(a["company_id"] == "co-b" for a in shown), shown
    assert [a["alarm_id"] for a in shown] == ([alarm] if stored.company_id == "co-b" else [])
    direct = await client.get(f"/api/v1/alarms/{alarm}", headers=world.h("maintainer_b"))
    assert direct.status_code == (200 if stored.company_id == "co-b" else 404)


async def test_lift_detail_hides_open_alarm_recorded_under_another_company(
    client: httpx.AsyncClient, world: World
) -> None:
    # The lift is B's; its unresolved alarm is recorded under A (raised before a move).
    alarm = raise_alarm(world.db, world.lift_b, "alarm_button", at=now_ms(), company_id="co-a")
    mine = raise_alarm(world.db, world.lift_b, "door_fault", at=now_ms(), company_id="co-b")
    r = await client.get(f"/api/v1/lifts/{world.lift_b}", headers=world.h("maintainer_b"))
    assert [a["alarm_id"] for a in r.json()["open_alarms"]] == [mine]
    assert "co-a" not in r.text
    for who in ("admin", "inspector"):
        r = await client.get(f"/api/v1/lifts/{world.lift_b}", headers=world.h(who))
        assert {a["alarm_id"] for a in r.json()["open_alarms"]} == {alarm, mine}


# --- #7: a deactivated company's tokens are refused at once, in every process ----------------


async def test_deactivated_company_tokens_refused_at_once_in_every_process(
    client: httpx.AsyncClient, world: World, settings: Settings, tmp_path: Path
) -> None:
    # A second app on its own connection to the same store: another process's view.
    other_db = Database(world.db.target)
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, db=other_db)),
        base_url="http://other.test",
    )
    h = world.h("maintainer_a")
    alarm = raise_alarm(world.db, world.lift_a, "alarm_button", at=now_ms(), company_id="co-a")
    async with other:
        for c in (client, other):
            assert (await c.get("/api/v1/lifts", headers=h)).status_code == 200
        r = await client.delete("/api/v1/companies/co-a", headers=world.h("admin"))
        assert r.status_code == 200 and r.json()["active"] is False
        for c in (client, other):
            for method, path, body in (
                ("GET", "/api/v1/lifts", None),
                ("GET", "/api/v1/alarms", None),
                ("GET", "/api/v1/tokens/me", None),
                ("POST", f"/api/v1/alarms/{alarm}/acknowledge", {}),
                (
                    "POST",
                    "/api/v1/maintenance-windows",
                    {
                        "lift_id": world.lift_a,
                        "starts_at": now_ms(),
                        "ends_at": now_ms() + 3600_000,
                    },
                ),
                ("POST", "/api/v1/webhooks", {"url": "https://example.com/hook"}),
            ):
                r = await c.request(method, path, json=body, headers=h)
                assert_error(r, 401, "unauthorized")
                assert "co-a" in r.json()["error"]["message"]
                assert "deactivated" in r.json()["error"]["message"]
        # Other companies' tokens are unaffected; reactivating restores the company's tokens.
        assert (
            await other.get("/api/v1/lifts", headers=world.h("maintainer_b"))
        ).status_code == 200
        r = await client.patch(
            "/api/v1/companies/co-a", json={"active": True}, headers=world.h("admin")
        )
        assert r.status_code == 200
        assert (await other.get("/api/v1/lifts", headers=h)).status_code == 200
    stored = store.get_alarm(world.db, alarm)
    assert stored is not None and stored.status == "open"  # the refused acknowledgement


# --- #9: CSV cells a spreadsheet would read as formulas ---------------------------------------

PAYLOADS = [
    "x;=cmd|' /C calc'!A0;",  # a device's fault namespace → the alarm's subtype
    " =1+1",
    "\u00a0@SUM(A1)",
    "\u200b=HYPERLINK(1)",
    "\ufeff=1",
    "\u2060-2+3",
    "\uff1dcmd|' /C calc'!A0",
    "\uff0b1",
    "\uff20A1",
    "a,=b",
    "a\t=b",
    "a\r=b",
    "a;\u200b+b",
    "\tx",
    "\rx",
]


_INVISIBLE = "".join(chr(c) for c in range(33)) + '\u00a0\u200b\u2060\ufeff"'


def _formula_like(text: str) -> bool:
    return text.lstrip(_INVISIBLE)[:1] in set("=+-@\uff1d\uff0b\uff0d\uff20")


def _pieces(text: str) -> list[str]:
    """Every cell a spreadsheet could make of ``text``: split on any separator."""
    return re.split(r"[,;\t\r\n]", text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_csv_cell_rule(payload: str) -> None:
    from api.csvsafe import cell

    out = cell(payload)
    assert out.startswith("'") and out.replace("'", "") == payload.replace("'", "")
    assert [p for p in _pieces(out) if _formula_like(p)] == []
    for harmless in ("door_fault", "2026-11-26T20:01:02.345Z", "1-2", "a;b", "Road 3, 2F", ""):
        assert cell(harmless) == harmless
    assert cell("x;=cmd|' /C calc'!A0;") == "'x;'=cmd|' /C calc'!A0;"


async def test_csv_export_neutralises_device_and_registry_strings(
    client: httpx.AsyncClient, world: World
) -> None:
    reg.upsert_lift(
        world.db,
        Lift(lift_id="evil-2", company_id="co-a", name=" =HYPERLINK(1)", address="x;@SUM(1)"),
    )
    ids = {
        raise_alarm(
            world.db,
            "evil-2",
            "fault_reported",
            at=now_ms(),
            severity="major",
            company_id="co-a",
            subtype=p,
        ): p
        for p in PAYLOADS
    }
    r = await client.get("/api/v1/alarms", params={"format": "csv"}, headers=world.h("admin"))
    assert r.status_code == 200
    rows = {
        row["alarm_id"]: row
        for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""))
    }
    for alarm_id, payload in ids.items():
        got = rows[alarm_id]
        assert got["subtype"].startswith("'"), got["subtype"]
        assert got["subtype"].replace("'", "") == payload.replace("'", "")
        assert got["lift_name"] == "' =HYPERLINK(1)"
        assert got["lift_address"] == "'x;'@SUM(1)"
    # The same bytes opened by a spreadsheet whose locale separates cells with ";" (or tabs),
    # or cut naively at every separator: no piece starts a formula.
    for delimiter in (";", ",", "\t"):
        for row in csv.reader(
            io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=delimiter
        ):
            assert [c for c in row if _formula_like(c)] == [], delimiter
    assert [p for p in _pieces(r.text) if _formula_like(p)] == []
