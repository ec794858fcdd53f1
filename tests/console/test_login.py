"""The login page in a real browser: a wrong password shows the API's reason, a good one
leads to the role's start page, logout and an ended session send the person back to login,
the page is Chinese for a browser that prefers Chinese."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import Site
from tests.console.helpers import login, shot

pytestmark = pytest.mark.integration


def test_wrong_password_shows_the_apis_reason(site: Site, page: Page) -> None:
    page.goto("/console/alarms")
    expect(page).to_have_url(f"{site.url}/console/login?next=%2Fconsole%2Falarms")
    page.get_by_label("Username").fill("disp-a")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text(
        "wrong username or password, or the account is disabled"
    )
    expect(page).to_have_url(f"{site.url}/console/login?next=%2Fconsole%2Falarms")
    shot(page, "login-refused")


def test_login_leads_back_and_logout_ends_the_session(site: Site, page: Page) -> None:
    page.goto("/console/find")
    # by keyboard alone: the username field has the focus, Tab to the password, Enter
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type("disp-a")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.url}/console/find")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Alarms")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{site.url}/console/login")
    page.goto("/console/alarms")  # the cookie's session ended on the server
    expect(page).to_have_url(f"{site.url}/console/login?next=%2Fconsole%2Falarms")


def test_too_many_failed_logins_show_the_wait(site: Site, page: Page) -> None:
    """Over the per-username limit (10 per 15 min) the page shows the API's 429 reason."""
    with httpx.Client(base_url=site.url, timeout=10) as c:
        for _ in range(10):
            r = c.post("/api/v1/auth/login", json={"username": "mallory", "password": "guess1234"})
            assert r.status_code == 401, r.text
    page.goto("/console/login")
    page.get_by_label("Username").fill("mallory")
    page.get_by_label("Password").fill("guess12345")
    page.get_by_role("button", name="Log in").click()
    wait = re.compile(r"too many failed logins: try again in \d+ s")
    expect(page.get_by_role("alert")).to_contain_text(wait)


def test_a_session_ended_elsewhere_sends_the_page_to_login(site: Site, page: Page) -> None:
    login(page, "disp-a")
    expect(page).to_have_url(f"{site.url}/console/alarms")
    # The person's password changed (an admin, the CLI): every session of theirs ends at once.
    done = site.users_cli("passwd", "disp-a", "--password-stdin", stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    # the queue's event stream ends with the session: the page goes to login by itself
    expect(page).to_have_url(f"{site.url}/console/login?next=%2Fconsole%2Falarms")


def test_chinese_browser_gets_chinese_and_the_switch_overrides(site: Site, zh_page: Page) -> None:
    zh_page.goto("/console/login")
    expect(zh_page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(zh_page.get_by_role("heading", name="登录")).to_be_visible()
    expect(zh_page.get_by_label("用户名")).to_be_visible()
    shot(zh_page, "login-zh")
    zh_page.get_by_role("link", name="English").click()
    expect(zh_page.get_by_role("heading", name="Log in")).to_be_visible()
    zh_page.get_by_role("link", name="中文").click()
    expect(zh_page.get_by_role("heading", name="登录")).to_be_visible()


def test_an_inspector_starts_on_the_city_view_and_may_not_act(site: Site, page: Page) -> None:
    login(page, "inspector")
    expect(page).to_have_url(f"{site.url}/console/city")
    page.goto("/console/maintenance")
    expect(page.locator("#mw-form")).to_have_count(0)
