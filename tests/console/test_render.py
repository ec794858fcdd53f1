"""The console framework without services: times in the site's zone in the page's language,
redirects for people without a session (htmx fragments included), headers of every page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.console.render import filters
from liftwatch.clock import now_ms
from liftwatch.settings import load_settings


def test_times_in_the_site_zone_and_the_pages_language() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    zh, en = filters("zh_CN", shanghai), filters("en", shanghai)
    assert zh["localtime"](0) == "1970年1月1日 08:00:00"
    assert en["localtime"]("1970-01-01T00:00:00Z") == "Jan 1, 1970, 8:00:00\u202fAM"
    assert en["localtime"](0, "HH:mm") == "08:00"
    assert filters("en", ZoneInfo("UTC"))["localtime"](0, "HH:mm") == "00:00"
    assert zh["localtime"](None) == ""
    assert en["ago"](now_ms() - 125_000) == "2 minutes ago"
    assert zh["ago"](now_ms() - 125_000) == "2分钟前"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path, influx_url="http://127.0.0.1:9")
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        yield c


def test_people_without_a_session_are_sent_to_login(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/console/")
    r = client.get("/console/alarms?unack=true", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Falarms%3Funack%3Dtrue"
    # an htmx fragment refresh of an expired session: a full-page redirect, not a swap
    r = client.get("/console/alarms/queue", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.headers["hx-redirect"].startswith("/console/login?next=")
    # a bearer token is for machines: it opens no console page
    r = client.get(
        "/console/alarms", headers={"Authorization": "Bearer lw_x"}, follow_redirects=False
    )
    assert r.status_code == 303


def test_every_page_has_its_headers_and_the_language_switch(client: TestClient) -> None:
    r = client.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert r.status_code == 200
    assert '<h1 id="login-title">登录</h1>' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client.get("/console/lang?to=en&next=/console/login", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/console/login")
    assert "liftwatch_lang=en" in r.headers["set-cookie"]
    r = client.get("/console/login", headers={"Accept-Language": "zh-CN"})
    assert '<h1 id="login-title">Log in</h1>' in r.text
    # the switch never leads off the console
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        r = client.get("/console/lang", params={"to": "en", "next": target}, follow_redirects=False)
        assert r.headers["location"] == "/console/", target
