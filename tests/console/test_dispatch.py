"""The dispatcher's screens in a real browser against a real ``liftwatch serve``: an alarm
published over MQTT appears live in the queue (sound and notification attempted), is
acknowledged, marked on site and resolved by clicks, and the signed webhooks arrive; another
company's dispatcher sees none of it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from standardwebhooks.webhooks import Webhook

from simulator.receiver import RecordingReceiver
from tests.console.conftest import Site, new_context
from tests.console.helpers import login, poll, shot

pytestmark = pytest.mark.integration

# "a new alarm on screen within 1 s of its commit" is measured in bench/console.py; here the
# deadline only keeps a broken stream from passing through the 30 s fallback refresh.
LIVE_S = 10


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    r = RecordingReceiver()
    yield r
    r.close()


def test_alarm_lifecycle_by_clicks_with_signed_webhooks(
    site: Site, page: Page, browser: Browser, receiver: RecordingReceiver
) -> None:
    lift = "A-9"
    token = site.token("maintainer", "co-a", name="co-a hooks")
    r = site.api.post(
        "/webhooks",
        json={"url": receiver.url},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]

    login(page, "disp-a")
    expect(page).to_have_url(f"{site.url}/console/alarms")
    # another company's dispatcher, side by side
    other = new_context(browser, site)
    b_page = other.new_page()
    login(b_page, "disp-b")

    queue = page.locator("#queue")
    expect(queue).not_to_contain_text("Riverside Tower lift 9")
    # the stream is open before the alarm is raised (the page would otherwise see it only on
    # the 30 s fallback refresh)
    page.wait_for_function(
        "document.querySelector('[sse-connect]') && "
        "document.querySelector('[sse-connect]')['htmx-internal-data']"
        " && document.querySelector('[sse-connect]')['htmx-internal-data']"
        ".sseEventSource && document.querySelector('[sse-connect]')"
        "['htmx-internal-data'].sseEventSource.readyState === 1"
    )
    started = time.monotonic()
    site.press(lift)
    row = queue.locator("tr.alarm", has_text="Riverside Tower lift 9")
    expect(row).to_be_visible(timeout=LIVE_S * 1000)
    seen_after = time.monotonic() - started
    expect(row).to_contain_text("critical")
    expect(row).to_contain_text("310009")
    expect(page).to_have_title(re.compile(r"^\(\d+\) "))
    # the alert: a tone played and a notification shown for the new critical alarm
    page.wait_for_function("window.liftwatchAlerts.sounds > 0")
    notes = page.evaluate("window.__notifications")
    assert any("Riverside Tower lift 9" in n["body"] for n in notes), notes
    assert page.evaluate("window.liftwatchAlerts.errors") == []
    # and for a screen reader, an assertive live region
    announced = "New critical alarm: Car alarm button pressed"
    expect(page.locator("#announce")).to_contain_text(announced)
    shot(page, "queue")

    # company B's dispatcher: nothing of A's alarm, in the queue or by its id
    alarm_id = row.get_attribute("data-alarm-id")
    assert alarm_id
    b_page.reload()
    expect(b_page.locator("#queue")).not_to_contain_text("Riverside")
    b_page.goto(f"/console/alarms/{alarm_id}")
    expect(b_page.get_by_role("heading", name="Not found")).to_be_visible()
    b_page.goto("/console/lifts/A-9")
    expect(b_page.get_by_role("heading", name="Not found")).to_be_visible()
    b_page.goto("/console/find?q=310009")
    expect(b_page.get_by_role("status")).to_contain_text("No lift matches.")
    other.close()

    # the alarm's page: lift, address, rescue code, countdown; then the lifecycle by clicks
    row.get_by_role("link").click()
    expect(page).to_have_url(f"{site.url}/console/alarms/{alarm_id}")
    expect(page.locator("dl.facts").first).to_contain_text("88 Riverside Road")
    expect(page.locator("dl.facts").first).to_contain_text("310009")
    expect(page.locator(".countdown.big")).to_have_text(re.compile(r"\d+:\d\d left"))
    shot(page, "alarm")
    # a second console of co-a whose event stream is cut: it will not hear of the next step
    stale_context = new_context(browser, site)
    stale_context.route("**/api/v1/alarms/stream*", lambda route: route.abort())
    stale = stale_context.new_page()
    login(stale, "disp-a")
    stale.goto(f"/console/alarms/{alarm_id}")
    # a colleague acknowledges through the API: this page shows it live, without a reload
    r = site.api.post(
        f"/alarms/{alarm_id}/acknowledge",
        json={"note": "taken by the night desk"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    expect(page.locator("#alarm-status")).to_have_attribute("data-status", "acknowledged")
    expect(page.locator("#alarm-history")).to_contain_text("taken by the night desk")
    expect(page.get_by_role("button", name="Acknowledge")).to_be_disabled()
    # the stale console's click is refused, with the API's reason
    stale.get_by_label("Note").fill("team 3 on the way")
    stale.get_by_role("button", name="Acknowledge").click()
    expect(stale.locator("#action-error")).to_contain_text("is acknowledged")
    shot(stale, "alarm-refused")
    stale_context.close()
    # on site by keyboard: focus the button, Enter
    page.get_by_role("button", name="On site").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#alarm-status")).to_have_attribute("data-status", "on_site")
    page.get_by_label("Outcome").select_option("rescued")
    page.get_by_label("Note").fill("passenger out, button tested")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#alarm-status")).to_have_attribute("data-status", "resolved")
    expect(page.locator("ol.timeline")).to_contain_text("passenger out, button tested")

    # the webhooks, signed with the subscription's secret
    hook = Webhook(secret)
    wanted = ["alarm.raised", "alarm.acknowledged", "alarm.on_site", "alarm.resolved"]
    got = receiver.wait_for(
        4, 15, where=lambda g: json.loads(g.body)["data"].get("alarm_id") == alarm_id
    )
    events = [hook.verify(g.body, g.headers) for g in got]
    assert [e["type"] for e in events] == wanted
    assert events[1]["data"]["status"] == "acknowledged"
    # and the queue no longer shows it; its notification is closed
    page.goto("/console/alarms")
    expect(page.locator("#queue")).not_to_contain_text("Riverside Tower lift 9")
    print(f"alarm_on_screen_s={seen_after:.2f}")


def test_one_sites_alarms_are_grouped_in_chinese(site: Site, zh_page: Page) -> None:
    """Two lifts of one estate trapped together: one group under the address, zh-CN labels."""
    page = zh_page
    login(page, "disp-a")
    page.wait_for_function(
        "(() => { const el = document.querySelector('[sse-connect]');"
        " const d = el && el['htmx-internal-data'];"
        " return !!(d && d.sseEventSource && d.sseEventSource.readyState === 1); })()"
    )
    site.trap("A-1")
    site.trap("A-2")
    group = page.locator("#queue tbody.site", has_text="幸福路 100 弄 1 号")
    expect(group.locator("tr.site-head")).to_contain_text("2 台电梯", timeout=LIVE_S * 1000)
    expect(group.locator("tr.alarm")).to_have_count(2)
    expect(group).to_contain_text("困人")
    expect(page.get_by_role("columnheader", name="到场时限")).to_be_visible()
    expect(page).to_have_title(re.compile(r"^\(\d+\) 告警"))
    # filters: unacknowledged only, by fault code
    page.get_by_label("故障").select_option("entrapment")
    expect(page.locator("#queue tr.alarm")).to_have_count(2)
    shot(page, "queue-zh-grouped")
    # one of them, in Chinese; its countdown turns red once the deadline has passed
    group.locator("tr.alarm").first.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("困人")
    expect(page.locator("dl.facts").first).to_contain_text("救援识别码")
    countdown = page.locator(".countdown.big")
    expect(countdown).to_have_text(re.compile(r"^剩余 \d+:\d\d$"))
    expect(countdown).not_to_have_class(re.compile("overdue"))
    shot(page, "alarm-zh")
    # (the JavaScript of the countdown, given a deadline 65 s ago)
    countdown.evaluate("el => { el.dataset.deadline = new Date(Date.now() - 65e3).toISOString() }")
    expect(countdown).to_have_class(re.compile("overdue"))
    expect(countdown).to_have_text(re.compile(r"^已超时 1:0\d$"))
    page.go_back()
    for a in site.alarms(code="entrapment", status="open"):
        if a["lift_id"] in ("A-1", "A-2"):
            r = site.api.post(f"/alarms/{a['alarm_id']}/resolve", json={"outcome": "test"})
            assert r.status_code == 200, r.text
    expect(page.locator("#queue")).not_to_contain_text("幸福路", timeout=LIVE_S * 1000)


def trips(now: int) -> list[tuple[int, dict[str, Any]]]:
    """The last hour of a lift: every 20 s, stopped at a floor or running between two, ending
    stopped at floor 5."""
    stops = [1, 7, 3, 12, 18, 2, 9, 14, 5]
    out: list[tuple[int, dict[str, Any]]] = []
    start = now - 3_540_000
    for i in range(178):
        leg, phase = divmod(i, 20)
        here, there = stops[leg % len(stops)], stops[(leg + 1) % len(stops)]
        running = phase >= 16 and i < 177
        floor = there if phase >= 18 or i == 177 else here
        out.append(
            (
                start + i * 20_000,
                {
                    "service_mode": "normal",
                    "car_status": "running" if running else "stopped",
                    "direction": ("up" if there > here else "down") if running else "none",
                    "floor": str(floor if i < 177 else 5),
                    "floor_index": floor if i < 177 else 5,
                    "door_zone": not running,
                    "doors_closed": True,
                    "speed": 1.75 if running else 0.0,
                    "load": float(10 + (leg * 17) % 60),
                },
            )
        )
    return out


def test_find_by_rescue_code_and_the_lift_page(site: Site, page: Page) -> None:
    site.status("A-3", "online")
    site.history("A-3", trips(time.time_ns() // 1_000_000))
    site.press("A-3")  # an open alarm, and an event and an alarm in the timeline
    login(page, "disp-a")
    page.get_by_role("link", name="Find").click()
    page.get_by_label(re.compile("Rescue code")).fill("310003")
    page.get_by_role("button", name="Find").click()
    # one exact rescue-code match: straight to the lift
    expect(page).to_have_url(f"{site.url}/console/lifts/A-3")
    expect(page.get_by_role("heading", level=1)).to_have_text("幸福里 1 号楼 3 号梯")
    # the live state refreshes by itself once ingest has stored the telemetry
    expect(page.locator("#live-floor")).to_have_text("5", timeout=LIVE_S * 1000)
    expect(page.locator("#live-state")).to_contain_text("online")
    # the open alarm and the timeline are as of the page's load: reload once both are stored
    poll(lambda: site.alarms(lift_id="A-3", status="open"), what="A-3's alarm")
    poll(
        lambda: site.api.get("/lifts/A-3/events").json()["events"],
        what="A-3's alarm button event in InfluxDB",
    )
    page.reload()
    expect(page.locator("section", has_text="Open alarms")).to_contain_text(
        "Car alarm button pressed"
    )
    expect(page.locator("ol.timeline")).to_contain_text("event: alarm button")
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    shot(page, "lift")
    page.get_by_role("button", name="Last day").click()
    expect(page.get_by_role("button", name="Last day")).to_have_attribute("aria-pressed", "true")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    for a in site.alarms(lift_id="A-3", status="open"):
        r = site.api.post(f"/alarms/{a['alarm_id']}/resolve", json={"outcome": "test"})
        assert r.status_code == 200, r.text
    # by part of the address: the three lifts of the estate, none of another company's
    page.goto("/console/find?q=幸福路")
    expect(page.locator("table.lifts tbody tr")).to_have_count(3)
    page.goto("/console/find?q=Beta")
    expect(page.get_by_role("status")).to_contain_text("No lift matches.")


def test_maintenance_window_declared_and_ended(site: Site, page: Page) -> None:
    login(page, "disp-a")
    page.goto("/console/maintenance")
    page.get_by_label("Lift").select_option("A-9")
    page.get_by_label(re.compile("Starts in")).fill("30")
    page.get_by_label(re.compile("Duration")).fill("90")
    page.get_by_label("Reason").fill("annual inspection 年检")
    page.get_by_role("button", name="Declare").click()
    row = page.locator("table.windows tr", has_text="annual inspection 年检")
    expect(row).to_be_visible()
    expect(row).to_contain_text("A-9")
    windows = site.api.get("/maintenance-windows").json()
    [window] = [w for w in windows if w["reason"] == "annual inspection 年检"]
    starts = datetime.fromisoformat(window["starts_at"]).timestamp()
    ends = datetime.fromisoformat(window["ends_at"]).timestamp()
    assert 29 * 60 < starts - time.time() <= 30 * 60 and ends - starts == 90 * 60
    shot(page, "maintenance")
    row.get_by_role("button", name=re.compile("Cancel")).click()  # not begun: cancelled
    expect(page.locator("table.windows tr", has_text="annual inspection 年检")).to_have_count(0)
    # One that runs now is ended: it stops suppressing, and its record stays with its end.
    page.get_by_label("Lift").select_option("A-9")
    page.get_by_label(re.compile("Starts in")).fill("0")
    page.get_by_label(re.compile("Duration")).fill("60")
    page.get_by_label("Reason").fill("door motor swap")
    page.get_by_role("button", name="Declare").click()
    running = page.locator("table.windows tr", has_text="door motor swap")
    running.get_by_role("button", name=re.compile("End")).click()
    expect(page.locator("table.windows tr", has_text="door motor swap")).to_have_count(0)
    past = site.api.get("/maintenance-windows", params={"include_past": "true"}).json()
    [ended] = [w for w in past if w["reason"] == "door motor swap"]
    ended_at = datetime.fromisoformat(ended["ends_at"]).timestamp()
    assert abs(ended_at - time.time()) < 60, ended


def test_a_cross_site_post_is_refused(site: Site, page: Page) -> None:
    """A page of another site submits a logout form to liftwatch: the browser withholds the
    SameSite=Lax cookie and the API refuses; the person stays logged in."""
    login(page, "disp-a")
    evil = "http://evil.example/"
    form = (
        f'<form id="f" method="post" action="{site.url}/api/v1/auth/logout"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    with page.expect_response(f"{site.url}/api/v1/auth/logout") as answer:
        page.goto(evil)
    assert answer.value.status in (401, 403)
    page.goto(f"{site.url}/console/alarms")
    expect(page).to_have_url(f"{site.url}/console/alarms")


def test_every_request_of_the_pages_goes_to_liftwatch(site: Site, page: Page) -> None:
    """Closed networks: scripts, styles, fonts, chart library, all served by liftwatch."""
    urls: list[str] = []
    messages: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("console", lambda message: messages.append(message.text))
    login(page, "disp-a")
    for path in ("/console/find?q=A", "/console/lifts/A-1", "/console/maintenance"):
        page.goto(path, wait_until="networkidle")
    page.goto("/console/alarms", wait_until="load")  # its event stream never idles
    assert any(u.endswith("/console/static/vendor/echarts.min.js") for u in urls)
    assert any(u.endswith("/console/static/vendor/htmx.min.js") for u in urls)
    foreign = [u for u in urls if not u.startswith(site.url) and not u.startswith("data:")]
    assert foreign == []
    # and the pages say so to the browser, which found nothing of ours to refuse
    with page.expect_response(f"{site.url}/console/lifts/A-1") as answer:
        page.goto("/console/lifts/A-1", wait_until="networkidle")
    csp = answer.value.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    page.locator("#chart canvas").first.hover()  # an ECharts tooltip: HTML with inline styles
    assert not [m for m in messages if "Content Security Policy" in m], messages


def test_a_power_cut_traps_eight_lifts_of_one_estate(site: Site, page: Page) -> None:
    """Eight lifts of one estate trapped at once: one group of eight, each alarm once."""
    address = "Guangming Estate, 200 Guangming Road"
    lifts = [f"G-{n}" for n in range(1, 9)]
    for n, lift_id in enumerate(lifts, 1):
        site.add_lift(
            lift_id=lift_id,
            company_id="co-a",
            name=f"Guangming block {n}",
            address=address,
            rescue_code=f"3302{n:02d}",
        )
    login(page, "disp-a")
    page.wait_for_function(
        "(() => { const el = document.querySelector('[sse-connect]');"
        " const d = el && el['htmx-internal-data'];"
        " return !!(d && d.sseEventSource && d.sseEventSource.readyState === 1); })()"
    )
    for lift_id in lifts:
        site.trap(lift_id)
    group = page.locator("#queue tbody.site", has_text=address)
    head = group.locator("tr.site-head")
    expect(head).to_contain_text("8 lifts, 8 alarms", timeout=LIVE_S * 1000)
    expect(group.locator("tr.alarm")).to_have_count(8)
    shot(page, "queue-burst")
    for a in site.alarms(code="entrapment", status="open"):
        if a["lift_id"] in lifts:
            r = site.api.post(f"/alarms/{a['alarm_id']}/resolve", json={"outcome": "test"})
            assert r.status_code == 200, r.text
    expect(page.locator("#queue")).not_to_contain_text("Guangming", timeout=LIVE_S * 1000)
