"""The inspector's screens in a real browser (api/console/inspect.py): the month's fault report
with its chart and a CSV that Excel opens in Chinese, the city view with a live entrapment and
the lifts' connection state, a lift's fault history — every figure the API's own."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import Site
from tests.console.helpers import login, shot
from tests.support.harness import until

pytestmark = pytest.mark.integration

COMPANY = {"company_id": "co-insp", "name": "检验测试维保公司"}
LIFTS = (
    {
        "lift_id": "INSP-1",
        "company_id": "co-insp",
        "name": "检验大厦 1 号梯",
        "address": "检验路 1 号",
    },
    {
        "lift_id": "INSP-2",
        "company_id": "co-insp",
        "name": "检验大厦 2 号梯",
        "address": "检验路 1 号",
    },
)


def ensure_lifts(site: Site) -> None:
    """This file's own company and lifts (other files' dispatchers never see them)."""
    if site.api.get(f"/companies/{COMPANY['company_id']}").status_code == 404:
        assert site.api.post("/companies", json=COMPANY).status_code == 201
    for lift in LIFTS:
        if site.api.get(f"/lifts/{lift['lift_id']}").status_code == 404:
            site.add_lift(**lift)


def raised(site: Site, lift_id: str, code: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = site.alarms(lift_id=lift_id, code=code)
        return bool(found)

    until(check, timeout=15, what=f"a {code} alarm on {lift_id}")
    return found[0]


def this_month() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


def test_month_report_has_a_chart_and_a_chinese_csv(site: Site, zh_page: Page) -> None:
    ensure_lifts(site)
    site.press("INSP-1")
    alarm = raised(site, "INSP-1", "alarm_button")
    r = site.api.post(f"/alarms/{alarm['alarm_id']}/acknowledge", json={"note": "接警"})
    assert r.status_code in (200, 409), r.text  # 409: acknowledged by an earlier run's press
    month = this_month()
    api = site.api.get("/reports/faults", params={"month": month, "group_by": "lift"}).json()
    mine = next(g for g in api["groups"] if g["key"] == "INSP-1")

    login(zh_page, "inspector")
    zh_page.goto("/console/reports?group_by=lift")
    expect(zh_page.get_by_role("heading", name="故障报表")).to_be_visible()
    row = zh_page.locator("#report-table tbody tr", has_text="INSP-1")
    # the page's figures are the API's: alarms, acknowledged
    expect(row.locator("td").nth(0)).to_have_text(str(mine["alarms"]))
    expect(row.locator("td").nth(2)).to_have_text(str(mine["acknowledged"]))
    chart = zh_page.locator("#report-chart")
    expect(chart).to_have_attribute("data-rendered", "true")
    expect(chart.locator("svg")).to_be_visible()
    expect(chart).to_contain_text("INSP-1")  # an axis label of ECharts' SVG
    shot(zh_page, "inspect-report-zh")

    with zh_page.expect_download() as download:
        zh_page.get_by_role("link", name="下载 CSV").click()
    assert download.value.suggested_filename == f"faults-{month}.csv"
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8, not the ANSI page
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["电梯", "告警数", "严重告警数"]
    assert rows[0][-1] == "困人按时到场率"
    line = next(r for r in rows if r[0] == "INSP-1")
    assert int(line[1]) == mine["alarms"] and int(line[3]) == mine["acknowledged"]
    assert rows[-1][0] == "(total)" and int(rows[-1][1]) == api["totals"]["alarms"]


def test_english_csv_is_the_apis_own(site: Site, page: Page) -> None:
    login(page, "inspector")
    month = this_month()
    answer = page.request.get(f"/console/reports/faults.csv?month={month}&group_by=code")
    direct = site.api.get(
        "/reports/faults", params={"month": month, "group_by": "code", "format": "csv"}
    )
    assert answer.status == 200 and answer.headers["x-report-timezone"] == "Asia/Shanghai"
    body = answer.body()
    assert body.startswith(b"\xef\xbb\xbf")
    head, _, rest = body.decode("utf-8").partition("\r\n")
    assert head.lstrip("\ufeff").startswith("Alarm code,Alarm count,")
    assert rest == direct.text.partition("\r\n")[2]  # the rows: the API's bytes


def test_city_view_shows_an_entrapment_its_age_and_the_lifts_state(site: Site, page: Page) -> None:
    ensure_lifts(site)
    site.publish("INSP-2", "status", {"state": "online"})
    site.trap("INSP-2")
    alarm = raised(site, "INSP-2", "entrapment")
    active = site.api.get("/lifts", params={"active": "true", "limit": 1000}).json()["items"]

    login(page, "inspector")
    page.goto("/console/city")
    expect(page.get_by_role("heading", name="City", exact=True)).to_be_visible()
    expect(page.locator('td[data-count="lifts"]')).to_have_text(str(len(active)))
    row = page.locator(f'section[aria-labelledby="trapped-h"] tr[data-alarm="{alarm["alarm_id"]}"]')
    expect(row).to_contain_text("检验大厦 2 号梯")
    expect(row).to_contain_text(" s")  # its age
    critical = page.locator('tr[data-severity="critical"] td').last
    assert int(critical.inner_text()) >= 1

    def online() -> bool:
        page.reload()
        return int(page.locator('td[data-count="online"]').inner_text()) >= 1

    until(online, timeout=10, what="the lift's online status counted")
    shot(page, "inspect-city")

    row.get_by_role("link").click()
    expect(page).to_have_url(f"{site.url}/console/reports/lifts/INSP-2")
    expect(page.locator(f'tr[data-alarm="{alarm["alarm_id"]}"]')).to_contain_text(
        "Passenger entrapment"
    )


def test_a_maintainer_reports_on_its_own_company_only(site: Site, page: Page) -> None:
    ensure_lifts(site)
    login(page, "disp-b")
    page.goto("/console/reports?group_by=company")
    keys = page.locator("#report-table tbody th").all_inner_texts()
    assert set(keys) <= {"co-b"}, keys
    page.goto("/console/reports/lifts/INSP-1")  # another company's lift: as the API, 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "检验大厦" not in page.content() and "检验路" not in page.content()


def test_a_date_range_report_by_code(site: Site, page: Page) -> None:
    ensure_lifts(site)
    site.press("INSP-1")
    raised(site, "INSP-1", "alarm_button")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    login(page, "inspector")
    page.goto("/console/reports")
    page.get_by_label("Month").fill("")
    page.locator("#r-since").fill(today)
    page.get_by_label("to", exact=True).fill(today)
    page.get_by_label("by", exact=True).select_option("code")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"since={today}&until={today}&group_by=code"))
    # [today 00:00, tomorrow 00:00) in the site's zone, as the period line says
    expect(page.locator(".period")).to_contain_text("(Asia/Shanghai)")
    row = page.locator("#report-table tbody tr", has_text="alarm_button")
    assert int(row.locator("td").nth(0).inner_text()) >= 1
    page.goto("/console/reports?since=2026-12-05&until=2026-11-01")  # the API's own refusal
    expect(page.get_by_role("alert")).to_contain_text("until: must be after since")
