"""Telemetry, events and live state from the real InfluxDB; injection attempts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.timeparams import now_ms
from liftwatch.influx import InfluxClient
from liftwatch.lineprotocol import line
from liftwatch.protocol import format_ts
from liftwatch.settings import load_settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN, World, assert_error
from tests.support.harness import Services

pytestmark = pytest.mark.integration

MIN = 60_000


async def seed(influx: InfluxClient, world: World, t0: int) -> None:
    """10 minutes of 1 Hz telemetry for lift a (speed = i/100), a decoy lift b whose values
    are unmistakable (speed 99, floor 'B-SECRET'), events and statuses."""
    lines = [
        line(
            "lift_state",
            {"lift_id": world.lift_a},
            {
                "speed": i / 100,
                "floor": str(i // 60),
                "doors_closed": True,
                "seq": i,
                "battery": 80,
                "controller_faults": '[{"namespace":"gb24476","code":2}]',
            },
            t0 + i * 1000,
        )
        for i in range(600)
    ]
    lines += [
        line("lift_state", {"lift_id": world.lift_b}, {"speed": 99.0, "floor": "B-SECRET"}, t0 + i)
        for i in range(0, 600_000, 10_000)
    ]
    lines += [
        line(
            "lift_event",
            {"lift_id": world.lift_a, "type": "alarm_button"},
            {"seq": 1, "pressed": True},
            t0 + 5_000,
        ),
        line(
            "lift_event",
            {"lift_id": world.lift_a, "type": "fault"},
            {"seq": 2, "namespace": "gb24476", "code": "2", "active": True, "text": "door"},
            t0 + 6_000,
        ),
        line(
            "lift_event",
            {"lift_id": world.lift_b, "type": "fault"},
            {"seq": 3, "namespace": "x", "code": "B-SECRET", "active": True},
            t0 + 7_000,
        ),
        line(
            "lift_status",
            {"lift_id": world.lift_a},
            {"state": "offline", "online": False},
            t0 - 10 * MIN,
        ),
        line(
            "lift_status",
            {"lift_id": world.lift_a},
            {"state": "online", "online": True},
            t0 - 5 * MIN,
        ),
        line(
            "lift_status",
            {"lift_id": world.lift_a},
            {"state": "online", "online": True},
            t0 + 1 * MIN,
        ),
    ]
    await influx.write("\n".join(lines))


@pytest.fixture
async def t0(influx: InfluxClient, world: World) -> int:
    start = (now_ms() - 60 * MIN) // (5 * MIN) * (5 * MIN)  # bucket-aligned
    await seed(influx, world, start)
    return start


async def test_raw_telemetry_with_field_selection(
    client: httpx.AsyncClient, world: World, t0: int
) -> None:
    r = await client.get(
        f"/api/v1/lifts/{world.lift_a}/telemetry",
        params={"start": format_ts(t0), "end": str(t0 + 10_000), "fields": "speed,floor"},
        headers=world.h("inspector"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fields"] == ["speed", "floor"]
    assert len(body["points"]) == 10
    assert body["points"][0] == {"time": format_ts(t0), "speed": 0.0, "floor": "0"}
    assert isinstance(body["points"][0]["speed"], float)
    assert body["truncated"] is False


async def test_raw_telemetry_truncates_and_pages(
    client: httpx.AsyncClient, world: World, t0: int
) -> None:
    url = f"/api/v1/lifts/{world.lift_a}/telemetry"
    params = {"start": str(t0), "end": str(t0 + 600_000), "fields": "seq", "limit": "250"}
    first = (await client.get(url, params=params, headers=world.h("admin"))).json()
    assert first["truncated"] is True and len(first["points"]) == 250
    params["start"] = first["next_start"]
    second = (await client.get(url, params=params, headers=world.h("admin"))).json()
    assert second["points"][0]["seq"] == 250


async def test_downsampling_mean_max_last(client: httpx.AsyncClient, world: World, t0: int) -> None:
    url = f"/api/v1/lifts/{world.lift_a}/telemetry"
    window = {"start": str(t0), "end": str(t0 + 600_000)}
    h = world.h("maintainer_a")
    mean = (
        await client.get(url, params={**window, "every": "1m", "fields": "speed"}, headers=h)
    ).json()
    assert mean["agg"] == "mean" and len(mean["points"]) == 10
    assert mean["points"][0]["speed"] == pytest.approx(sum(range(60)) / 60 / 100)
    mx = await client.get(
        url, params={**window, "every": "1m", "agg": "max", "fields": "speed,seq"}, headers=h
    )
    assert mx.json()["points"][1] == {"time": format_ts(t0 + MIN), "speed": 1.19, "seq": 119}
    last = await client.get(
        url, params={**window, "every": "5m", "agg": "last", "fields": "floor"}, headers=h
    )
    assert [p["floor"] for p in last.json()["points"]] == ["4", "9"]
    # mean of a string field is refused, naming the field parameter.
    bad = await client.get(
        url, params={**window, "every": "1m", "agg": "mean", "fields": "floor"}, headers=h
    )
    assert_error(bad, 422)
    assert bad.json()["error"]["detail"][0]["field"] == "fields"


async def test_controller_faults_come_back_as_json(
    client: httpx.AsyncClient, world: World, t0: int
) -> None:
    r = await client.get(
        f"/api/v1/lifts/{world.lift_a}/telemetry",
        params={"start": str(t0), "end": str(t0 + 1000), "fields": "controller_faults"},
        headers=world.h("admin"),
    )
    assert r.json()["points"][0]["controller_faults"] == [{"namespace": "gb24476", "code": 2}]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00"}, "start"),  # no offset: ambiguous
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ({"every": "7m"}, "every"),
        ({"agg": "median", "every": "1m"}, "agg"),
        ({"agg": "max"}, "agg"),
        ({"fields": "speed,password"}, "fields"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "every": "10s"}, "every"),
    ],
)
async def test_bad_history_parameters_are_422_naming_the_field(
    client: httpx.AsyncClient, world: World, params: dict[str, str], field: str
) -> None:
    r = await client.get(
        f"/api/v1/lifts/{world.lift_a}/telemetry", params=params, headers=world.h("admin")
    )
    assert_error(r, 422, "validation_error")
    assert field in {d["field"] for d in r.json()["error"]["detail"]}


async def test_events_filtered_by_type(client: httpx.AsyncClient, world: World, t0: int) -> None:
    url = f"/api/v1/lifts/{world.lift_a}/events"
    window = {"start": str(t0), "end": str(t0 + 600_000)}
    every = (await client.get(url, params=window, headers=world.h("inspector"))).json()
    assert [e["type"] for e in every["events"]] == ["alarm_button", "fault"]
    assert every["events"][0] == {
        "time": format_ts(t0 + 5000),
        "type": "alarm_button",
        "seq": 1,
        "pressed": True,
    }
    faults = await client.get(url, params={**window, "type": "fault"}, headers=world.h("admin"))
    assert [e["code"] for e in faults.json()["events"]] == ["2"]
    assert_error(
        await client.get(url, params={**window, "type": "x"}, headers=world.h("admin")), 422
    )


async def test_lift_detail_has_live_state(client: httpx.AsyncClient, world: World, t0: int) -> None:
    r = await client.get(f"/api/v1/lifts/{world.lift_a}", headers=world.h("maintainer_a"))
    assert r.status_code == 200
    body = r.json()
    assert body["lift_id"] == world.lift_a and body["company_id"] == "co-a"
    live = body["live"]
    assert live["available"] is True
    assert live["connection"] == "online"
    assert live["since"] == format_ts(t0 - 5 * MIN)  # the run of "online" began there
    assert live["last_seen"] == format_ts(t0 + 599_000)
    assert live["telemetry"]["seq"] == 599 and live["telemetry"]["speed"] == 5.99
    assert "lift_id" not in live["telemetry"]
    assert body["open_alarms"] == []
    quiet = await client.get(f"/api/v1/lifts/{world.lift_a2}", headers=world.h("admin"))
    assert quiet.json()["live"]["connection"] == "unknown"
    assert quiet.json()["live"]["telemetry"] is None


INJECTIONS = [
    "' OR \"lift_id\" = 'X",
    '" OR 1=1 --',
    "x; DROP DATABASE test",
    "speed FROM lift_state; SELECT *",
    "$lift",
    "1m) fill(none); SELECT * FROM lift_state --",
    "\\' OR lift_id =~ /.*/",
    "2026-01-01T00:00:00Z' OR time > 0 OR '",
    "*",
    'floor,"floor" FROM "lift_state" WHERE lift_id =~ /.*/ --',
]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injection_through_every_parameter_never_leaks(
    client: httpx.AsyncClient, world: World, t0: int, payload: str
) -> None:
    h = world.h("admin")
    window = {"start": str(t0), "end": str(t0 + 600_000)}
    base_tele = f"/api/v1/lifts/{world.lift_a}/telemetry"
    base_events = f"/api/v1/lifts/{world.lift_a}/events"
    attempts: list[tuple[str, dict[str, str]]] = [
        (base_tele, {**window, "fields": payload}),
        (base_tele, {**window, "start": payload}),
        (base_tele, {**window, "end": payload}),
        (base_tele, {**window, "every": payload}),
        (base_tele, {**window, "every": "1m", "agg": payload}),
        (base_tele, {**window, "order": payload}),
        (base_tele, {**window, "limit": payload}),
        (base_events, {**window, "type": payload}),
        (base_events, {**window, "start": payload}),
        (base_events, {**window, "order": payload}),
        (f"/api/v1/lifts/{payload}/telemetry", window),
        (f"/api/v1/lifts/{payload}/events", window),
        (f"/api/v1/lifts/{payload}", {}),
    ]
    for url, params in attempts:
        r = await client.get(url, params=params, headers=h)
        assert r.status_code < 500, (url, params, r.text)
        assert "B-SECRET" not in r.text and "99.0" not in r.text, (url, params)
        if r.status_code == 200:
            body = r.json()
            for point in body.get("points", []) + body.get("events", []):
                assert point.get("floor") != "B-SECRET"
        else:
            assert_error(r, r.status_code)
            assert 400 <= r.status_code < 500


async def test_influxdb_down_is_503_and_detail_degrades(
    services: Services, tmp_path: Path, db: Database, world: World
) -> None:
    influxdb = services.influxdb()
    settings = load_settings(data_dir=tmp_path, influx_url=influxdb.url, admin_token=ADMIN_TOKEN)
    app = create_app(settings, db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        # The database "liftwatch" was never created: InfluxDB answers an error.
        r = await c.get(f"/api/v1/lifts/{world.lift_a}/telemetry", headers=world.h("admin"))
        assert_error(r, 503, "influxdb_unavailable")
        influxdb.stop()
        r = await c.get(f"/api/v1/lifts/{world.lift_a}/events", headers=world.h("admin"))
        assert_error(r, 503, "influxdb_unavailable")
        detail = await c.get(f"/api/v1/lifts/{world.lift_a}", headers=world.h("admin"))
        assert detail.status_code == 200
        assert detail.json()["live"]["available"] is False
        assert detail.json()["name"] == "A one"
