"""Regression tests for the API findings of the security review (issue 12,
../shared/reviews/security.md): client input answered 4xx with a reason, never 5xx (#8)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.errors import ApiError
from api.timeparams import parse_time
from liftwatch.registry import parse_csv
from liftwatch.store import registry as reg
from tests.api.conftest import World, assert_error

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
