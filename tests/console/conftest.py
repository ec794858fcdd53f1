"""Fixtures of the console's browser tests (docs/console.md § Tests).

- ``site`` (session): one real ``liftwatch serve`` (a subprocess, as deployed) on the session's
  private Mosquitto and InfluxDB, a SQLite store in a temp dir, seeded with companies ``co-a``
  and ``co-b``, lifts with names, addresses and rescue codes, and people created with
  ``liftwatch users add --password-stdin``: ``admin``, ``inspector``, ``disp-a`` (maintainer
  of co-a), ``disp-b`` (maintainer of co-b); every password is :data:`PASSWORD`.
  ``site.api`` is an admin-token client; ``site.trap(lift)`` / ``site.press(lift)`` /
  ``site.telemetry(lift, ...)`` publish device messages over MQTT.
- ``browser`` (session): headless Debian Chromium driven by Playwright
  (``executable_path=/usr/bin/chromium``: Playwright's own download does not work here).
- ``context`` / ``page``: a fresh browser profile per test (English, notifications granted, a
  hook recording every ``new Notification``); ``zh_page`` the same with the zh-CN locale.
- ``tests/console/helpers.py``: ``login(page, user)`` logs a person in through the login
  page; ``shot(page, name)`` saves a screenshot into ``$LIFTWATCH_SCREENSHOTS`` (default: a
  temp dir).

Tests poll with deadlines (Playwright's ``expect`` / ``wait_for_*``), never sleep.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from simulator.stack import ServeProcess
from tests.console.helpers import PASSWORD
from tests.support.harness import Service
from tests.support.mqtt import TRAPPED, publish

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "console-test-admin-token-0123456789"
CHROMIUM = "/usr/bin/chromium"

USERS: dict[str, tuple[str, str | None]] = {
    "admin": ("admin", None),
    "inspector": ("inspector", None),
    "disp-a": ("maintainer", "co-a"),
    "disp-b": ("maintainer", "co-b"),
}

COMPANIES = (
    {"company_id": "co-a", "name": "阿尔法电梯维保有限公司", "phone": "021-5555-0101"},
    {"company_id": "co-b", "name": "Beta Elevators", "phone": "021-5555-0202"},
)

# Three lifts of co-a at one estate (grouping), one elsewhere; one lift of co-b.
LIFTS: tuple[dict[str, Any], ...] = (
    {
        "lift_id": "A-1",
        "company_id": "co-a",
        "name": "幸福里 1 号楼 1 号梯",
        "address": "上海市浦东新区幸福路 100 弄 1 号",
        "rescue_code": "310001",
        "registration_code": "31103101012019000001",
        "rated_speed": 1.75,
        "floors": 18,
    },
    {
        "lift_id": "A-2",
        "company_id": "co-a",
        "name": "幸福里 1 号楼 2 号梯",
        "address": "上海市浦东新区幸福路 100 弄 1 号",
        "rescue_code": "310002",
        "registration_code": "31103101012019000002",
        "rated_speed": 1.75,
        "floors": 18,
    },
    {
        "lift_id": "A-3",
        "company_id": "co-a",
        "name": "幸福里 1 号楼 3 号梯",
        "address": "上海市浦东新区幸福路 100 弄 1 号",
        "rescue_code": "310003",
        "rated_speed": 1.75,
        "floors": 18,
    },
    {
        "lift_id": "A-9",
        "company_id": "co-a",
        "name": "Riverside Tower lift 9",
        "address": "88 Riverside Road",
        "rescue_code": "310009",
        "rated_speed": 2.5,
        "floors": 30,
    },
    {
        "lift_id": "B-1",
        "company_id": "co-b",
        "name": "Beta Plaza lift 1",
        "address": "1 Beta Plaza",
        "rescue_code": "320001",
        "rated_speed": 1.0,
        "floors": 10,
    },
)


@dataclass
class Site:
    """The running ``liftwatch serve`` and what was seeded into it."""

    url: str
    env: dict[str, str]
    prefix: str
    serve: ServeProcess
    api: httpx.Client
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def mqtt_url(self) -> str:
        return self.env["LIFTWATCH_MQTT_URL"]

    def publish(self, lift_id: str, kind: str, body: dict[str, Any]) -> None:
        """One device message on ``<prefix>/<lift>/<kind>`` (telemetry, event, status)."""
        now = time.time_ns() // 1_000_000
        payload = {"v": 1, "ts": now, "seq": next(self._seq), **body}
        publish(self.mqtt_url, [(f"{self.prefix}/{lift_id}/{kind}", json.dumps(payload).encode())])

    def status(self, lift_id: str, state: str = "online") -> None:
        """The device's connection status (its birth message or Last Will)."""
        body = json.dumps({"v": 1, "state": state}).encode()
        publish(self.mqtt_url, [(f"{self.prefix}/{lift_id}/status", body)])

    def telemetry(self, lift_id: str, **fields: Any) -> None:
        self.publish(lift_id, "telemetry", fields)

    def history(self, lift_id: str, points: list[tuple[int, dict[str, Any]]]) -> None:
        """Telemetry stamped in the past (``(ts_ms, fields)``, oldest first), on one connection:
        an hour of a lift's trips for its chart."""
        items = [
            (
                f"{self.prefix}/{lift_id}/telemetry",
                json.dumps({"v": 1, "ts": ts, "seq": next(self._seq), **fields}).encode(),
            )
            for ts, fields in points
        ]
        publish(self.mqtt_url, items)

    def trap(self, lift_id: str) -> None:
        """A passenger trapped between floors (the site's entrapment threshold is 1 s)."""
        self.telemetry(lift_id, **TRAPPED)

    def press(self, lift_id: str) -> None:
        """The car's alarm button pressed."""
        self.publish(lift_id, "event", {"type": "alarm_button", "pressed": True})

    def token(self, role: str, company_id: str | None = None, name: str = "test") -> str:
        """A fresh API token (for machines: webhooks, checks beside the browser)."""
        body: dict[str, Any] = {"role": role, "name": name}
        if company_id is not None:
            body["company_id"] = company_id
        r = self.api.post("/tokens", json=body)
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def add_lift(self, **lift: Any) -> dict[str, Any]:
        r = self.api.post("/lifts", json=lift)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def alarms(self, **params: Any) -> list[dict[str, Any]]:
        r = self.api.get("/alarms", params=params)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def users_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "liftwatch", "users", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _add_user(site: Site, username: str, role: str, company: str | None) -> None:
    args = ["add", username, "--role", role, "--password-stdin"]
    if company is not None:
        args += ["--company", company]
    done = site.users_cli(*args, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="package")
def site(
    mosquitto: Service, influxdb: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    unique = os.urandom(4).hex()
    prefix = f"c{unique}"
    env = {
        **os.environ,
        "LIFTWATCH_MQTT_URL": mosquitto.url,
        "LIFTWATCH_MQTT_TOPIC_PREFIX": prefix,
        "LIFTWATCH_INFLUX_URL": influxdb.url,
        "LIFTWATCH_INFLUX_DATABASE": f"console_{unique}",
        "LIFTWATCH_DATA_DIR": str(tmp / "data"),
        "LIFTWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIFTWATCH_INGEST_CLIENT_ID": f"ingest-{unique}",
        "LIFTWATCH_ALERTS_CLIENT_ID": f"alerts-{unique}",
        "LIFTWATCH_ALERTS_THRESHOLDS": json.dumps({"entrapment_s": 1}),
        "LIFTWATCH_WEBHOOK_ALLOW_PRIVATE": "true",
        "LIFTWATCH_INGEST_METRICS_PORT": "0",
        "LIFTWATCH_ALERTS_METRICS_PORT": "0",
        "LIFTWATCH_TIMEZONE": "Asia/Shanghai",
    }
    serve = ServeProcess(env, tmp / "serve.log")
    try:
        url = serve.wait_ready()
        api = httpx.Client(
            base_url=url + "/api/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        s = Site(url=url, env=env, prefix=prefix, serve=serve, api=api)
        for company in COMPANIES:
            r = api.post("/companies", json=company)
            assert r.status_code == 201, r.text
        for lift in LIFTS:
            s.add_lift(**lift)
        for username, (role, company_id) in USERS.items():
            _add_user(s, username, role, company_id)
        yield s
        api.close()
    finally:
        serve.stop()


# Package scope, not session: Playwright's sync API runs an event loop on the main thread
# until it is closed, and every asyncio test after this package would then fail with
# "cannot be called from a running event loop" (seen in the full suite).
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        # a new alarm's tone plays without a click first (a control room's console is set up so)
        args=["--autoplay-policy=no-user-gesture-required"],
    )
    yield b
    b.close()


# Records every Notification the page creates (headless Chromium shows none).
NOTIFICATION_HOOK = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  if (!Real) return;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      const o = options || {};
      window.__notifications.push({title, body: o.body || "", tag: o.tag || ""});
    }
  }
  Object.defineProperty(Recorded, "permission", {get: () => Real.permission});
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
})();
"""


def new_context(browser: Browser, site: Site, locale: str = "en-US") -> BrowserContext:
    context = browser.new_context(
        base_url=site.url,
        locale=locale,
        timezone_id="Asia/Shanghai",
        viewport={"width": 1280, "height": 860},
        permissions=["notifications"],
    )
    context.add_init_script(NOTIFICATION_HOOK)
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    c = new_context(browser, site)
    yield c
    c.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def zh_page(browser: Browser, site: Site) -> Iterator[Page]:
    c = new_context(browser, site, locale="zh-CN")
    yield c.new_page()
    c.close()
