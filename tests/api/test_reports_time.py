"""Time as people use it (issue 17 item 4): ``+08:00`` offsets in URLs (also when the ``+``
arrived as a space), a clear 422 naming the formats otherwise, monthly reports in the site's
time zone (LIFTWATCH_TIMEZONE, default Asia/Shanghai) that say which zone and range they
cover, and the report as CSV with a BOM."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.app import create_app
from api.errors import ApiError
from api.timeparams import month_range, parse_time
from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database
from tests.support.api import World, assert_error, raise_alarm

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC_1600 = 1_796_054_400_000  # 2026-11-30T16:00:00Z = 2026-12-01T00:00:00+08:00


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T16:00:00Z",
        "2026-11-30t16:00:00.000z",
        "2026-12-01T00:00:00+08:00",
        "2026-12-01T00:00+08:00",
        "2026-12-01T00:00:00+0800",
        "2026-12-01 00:00:00+08:00",
        "2026-12-01T00:00:00 08:00",  # "+08:00" in a URL, its + decoded to a space
        "2026-11-30T11:00:00-05:00",
        str(UTC_1600),
    ],
)
def test_time_forms(text: str) -> None:
    assert parse_time(text, "since", 0) == UTC_1600


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-01T00:00:00", "needs its offset"),
        ("2026-12-01", "needs its offset"),
        ("yesterday", "not a time"),
        ("2026-12-01T00:00:00+8", "not a time"),
    ],
)
def test_bad_times_name_the_formats(text: str, says: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_time(text, "since", 0)
    message = caught.value.message
    assert message.startswith("since: ") and says in message
    assert "+08:00" in message and "%2B" in message and "epoch milliseconds" in message


def test_month_range_is_local() -> None:
    assert month_range("2026-11", "month", SHANGHAI) == (
        ms("2026-11-01T00:00:00+08:00"),
        ms("2026-12-01T00:00:00+08:00"),
    )
    assert month_range("2026-12", "month", ZoneInfo("UTC")) == (
        ms("2026-12-01T00:00:00+00:00"),
        ms("2027-01-01T00:00:00+00:00"),
    )
    # A month across a DST change is not 30 × 24 h.
    start, end = month_range("2026-03", "month", ZoneInfo("Europe/Berlin"))
    assert end - start == 31 * 86_400_000 - 3_600_000
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01"):
        with pytest.raises(ApiError, match="not a month"):
            month_range(bad, "month", SHANGHAI)


async def test_offsets_in_alarm_urls(client: httpx.AsyncClient, world: World) -> None:
    raise_alarm(world.db, world.lift_a, "entrapment", at=UTC_1600 + 60_000, company_id="co-a")
    # Typed into a URL unencoded: the server sees a space where the + was.
    raw = await client.get(
        "/api/v1/alarms?since=2026-12-01T00:00:00+08:00&until=2026-12-01T00:02:00+08:00",
        headers=world.h("admin"),
    )
    assert raw.status_code == 200, raw.text
    assert [a["lift_id"] for a in raw.json()["items"]] == [world.lift_a]
    encoded = await client.get(
        "/api/v1/alarms",
        params={"since": "2026-12-01T00:01:30+08:00"},  # httpx sends %2B
        headers=world.h("admin"),
    )
    assert encoded.json()["items"] == []
    bad = await client.get(
        "/api/v1/alarms", params={"since": "2026-12-01T00:00"}, headers=world.h("admin")
    )
    assert_error(bad, 422, "validation_error")
    assert "offset" in bad.json()["error"]["message"]


async def test_month_report_in_the_site_time_zone(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    assert settings.timezone == "Asia/Shanghai"  # the default
    db = world.db
    # October in UTC, November in Shanghai: counted.
    raise_alarm(
        db, world.lift_a, "entrapment", at=ms("2026-11-01T00:30:00+08:00"), company_id="co-a"
    )
    # November in both: counted.
    raise_alarm(
        db, world.lift_a2, "entrapment", at=ms("2026-11-30T23:30:00+08:00"), company_id="co-a"
    )
    # November in UTC, December in Shanghai: not counted.
    raise_alarm(
        db, world.lift_b, "entrapment", at=ms("2026-12-01T00:10:00+08:00"), company_id="co-b"
    )

    r = await client.get(
        "/api/v1/reports/faults", params={"month": "2026-11"}, headers=world.h("admin")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["alarms"] == 2
    assert {g["key"] for g in body["groups"]} == {world.lift_a, world.lift_a2}
    assert body["timezone"] == "Asia/Shanghai" and body["month"] == "2026-11"
    assert (body["since"], body["until"]) == (
        "2026-10-31T16:00:00.000Z",
        "2026-11-30T16:00:00.000Z",
    )
    assert body["since_local"] == "2026-11-01T00:00:00+08:00"
    assert body["until_local"] == "2026-12-01T00:00:00+08:00"

    dec = await client.get(
        "/api/v1/reports/faults", params={"month": "2026-12"}, headers=world.h("admin")
    )
    assert [g["key"] for g in dec.json()["groups"]] == [world.lift_b]

    both = await client.get(
        "/api/v1/reports/faults",
        params={"month": "2026-11", "since": "2026-11-01T00:00:00Z"},
        headers=world.h("admin"),
    )
    assert_error(both, 422)
    assert "either month or since/until" in both.json()["error"]["message"]
    assert_error(
        await client.get(
            "/api/v1/reports/faults", params={"month": "2026-13"}, headers=world.h("admin")
        ),
        422,
    )

    # The same month where the site keeps UTC: the December alarm counts, the first does not.
    utc = create_app(settings.model_copy(update={"timezone": "UTC"}), db=db, influx=None)
    transport = httpx.ASGITransport(app=utc)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        u = await c.get(
            "/api/v1/reports/faults", params={"month": "2026-11"}, headers=world.h("admin")
        )
    assert u.json()["timezone"] == "UTC"
    assert {g["key"] for g in u.json()["groups"]} == {world.lift_a2, world.lift_b}
    assert u.json()["since_local"] == "2026-11-01T00:00:00+00:00"


async def test_report_csv_has_a_bom_and_the_period(
    client: httpx.AsyncClient, world: World, db: Database, influx: InfluxClient
) -> None:
    raise_alarm(
        db, world.lift_a, "entrapment", at=ms("2026-11-03T10:00:00+08:00"), company_id="co-a"
    )
    raise_alarm(
        db, world.lift_b, "entrapment", at=ms("2026-11-04T10:00:00+08:00"), company_id="co-b"
    )
    r = await client.get(
        "/api/v1/reports/faults",
        params={"month": "2026-11", "group_by": "company", "format": "csv"},
        headers=world.h("admin"),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    assert 'filename="faults-2026-11.csv"' in r.headers["content-disposition"]
    assert r.headers["x-report-timezone"] == "Asia/Shanghai"
    assert r.headers["x-report-since"] == "2026-11-01T00:00:00+08:00"
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["company", "alarms", "critical"]
    assert {row[0]: row[1] for row in rows[1:]} == {"co-a": "1", "co-b": "1", "(total)": "2"}


def test_timezone_setting_is_validated() -> None:
    from liftwatch.settings import SettingsError, load_settings

    assert load_settings().timezone == "Asia/Shanghai"
    assert load_settings(timezone="Europe/Berlin").tz == ZoneInfo("Europe/Berlin")
    with pytest.raises(SettingsError) as caught:
        load_settings(timezone="Mars/Olympus_Mons")
    assert str(caught.value) == (
        "invalid setting LIFTWATCH_TIMEZONE: unknown time zone 'Mars/Olympus_Mons': use an "
        "IANA name such as Asia/Shanghai or UTC"
    )
    with pytest.raises(SettingsError, match="LIFTWATCH_API_URL: must not carry credentials"):
        load_settings(api_url="http://user:secret@127.0.0.1:8000")
