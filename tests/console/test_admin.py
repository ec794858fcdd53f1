"""The administrator's screens in a real browser (api/console/admin.py): every change goes
through the JSON API from the page (admin.js, X-CSRF-Token), so what the API refuses is shown
with the API's reason; people other than admins are kept out, inspectors cannot write."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from alerts.webhooks import signing
from simulator.receiver import RecordingReceiver
from tests.console.conftest import Site, new_context
from tests.console.helpers import login, shot
from tests.support.harness import until
from tests.support.mqtt import publish

pytestmark = pytest.mark.integration

IMPORT_CSV = (
    "lift_id,name,address,company_id,rescue_code\n"
    "ADM-2,导入 2 号梯,管理路 2 号,co-adm,410002\n"
    "ADM-3,导入 3 号梯,管理路 3 号,co-adm,12ab\n"  # line 3: not a 6-digit rescue code
    "ADM-4,导入 4 号梯,管理路 4 号,co-adm,410004\n"
)


def test_admin_creates_a_company_and_a_lift_and_imports_a_csv(site: Site, page: Page) -> None:
    login(page, "admin")
    page.goto("/console/admin/companies")
    new = page.locator("section", has=page.get_by_role("heading", name="New company"))
    new.get_by_label("Company id").fill("co-adm")
    new.get_by_label("Name").fill("管理测试维保公司")
    new.get_by_label("Phone").fill("021-5555-0303")
    new.get_by_role("button", name="Create company").click()
    expect(page.locator('tr[data-company="co-adm"]')).to_contain_text("管理测试维保公司")

    page.goto("/console/admin/lifts")
    reg = page.locator("section", has=page.get_by_role("heading", name="Register a lift"))
    reg.get_by_label("Lift id").fill("ADM-1")
    reg.get_by_label("Name").fill("管理大厦 1 号梯")
    reg.get_by_label("Rescue code (96333)").fill("410001")
    reg.get_by_label("Company").select_option("co-adm")
    with page.expect_navigation():  # created: the page reloads with it
        reg.get_by_role("button", name="Register lift").click()
    page.get_by_role("searchbox", name="Search lifts").fill("410001")  # by rescue code
    rows = page.locator("#lift-rows tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ADM-1")
    expect(rows.first).to_contain_text("co-adm")

    # The API's refusal, in its words: the id is taken.
    reg.get_by_label("Lift id").fill("ADM-1")
    reg.get_by_role("button", name="Register lift").click()
    expect(reg.get_by_role("alert")).to_contain_text("409")
    expect(reg.get_by_role("alert")).to_contain_text("already exists")

    imp = page.locator("section", has=page.get_by_role("heading", name="Import lifts from CSV"))
    imp.get_by_label("CSV file").set_input_files(
        {"name": "台账.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV.encode()}
    )
    imp.get_by_role("button", name="Import").click()
    expect(imp.locator(".counts")).to_have_text("2 inserted, 0 updated, 0 unchanged, 1 rejected")
    rejected = imp.get_by_role("table", name="Rejected lines").locator("tbody tr")
    expect(rejected).to_have_count(1)
    expect(rejected.locator("td").nth(0)).to_have_text("3")
    expect(rejected.locator("td").nth(1)).to_have_text("ADM-3")
    expect(rejected.locator("td").nth(2)).to_contain_text("rescue_code")
    shot(page, "admin-lifts-import")
    assert site.api.get("/lifts/ADM-2").status_code == 200
    assert site.api.get("/lifts/ADM-3").status_code == 404

    # Edit: the change is the API's PATCH; the page says so and the store has it.
    page.goto("/console/admin/lifts/ADM-2")
    page.get_by_label("Floors").fill("22")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Done")).to_be_visible()
    assert site.api.get("/lifts/ADM-2").json()["floors"] == 22
    page.get_by_label("Threshold overrides (JSON; docs/alarms.md)").fill('{"no_such_timer": 5}')
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("422")
    expect(page.get_by_role("alert")).to_contain_text("no_such_timer")


def test_webhook_secret_is_shown_once_and_a_test_is_delivered(site: Site, page: Page) -> None:
    receiver = RecordingReceiver()
    try:
        login(page, "admin")
        page.goto("/console/admin/webhooks")
        new = page.locator("section", has=page.get_by_role("heading", name="New webhook"))
        new.get_by_label("URL (https)").fill(receiver.url)
        new.get_by_label("Description").fill("console test hook")
        new.get_by_role("button", name="Create webhook").click()
        secret_box = new.get_by_role("region", name="The signing secret")
        expect(secret_box).to_be_visible()
        secret = secret_box.locator("code").inner_text()
        assert secret.startswith("whsec_")
        shot(page, "admin-webhook-secret")

        page.goto("/console/admin/webhooks")  # the list: never the secret again
        assert secret not in page.content()
        row = page.locator("tr[data-webhook]", has_text="console test hook")
        row.get_by_role("button", name="Send test").click()
        expect(page).to_have_url(re.compile(r"/console/admin/webhooks/wh_[0-9a-f]+$"))
        got = receiver.wait_for(1, timeout=10)[0]
        assert signing.verify(
            secret,
            got.headers["webhook-id"],
            int(got.headers["webhook-timestamp"]),
            got.body,
            got.headers["webhook-signature"],
        )

        def delivered() -> bool:
            page.reload()
            return page.locator("tr[data-delivery].status-delivered").count() == 1

        until(delivered, timeout=10, what="the delivery shown as delivered")
        attempt = page.locator("tr[data-delivery].status-delivered details")
        attempt.locator("summary").click()
        expect(attempt.locator("li")).to_contain_text("HTTP 200")  # the receiver answered 200 "ok"
        shot(page, "admin-webhook-deliveries")
    finally:
        receiver.close()


def test_users_and_tokens(site: Site, page: Page) -> None:
    login(page, "admin")
    page.goto("/console/admin/users")
    add = page.locator("section", has=page.get_by_role("heading", name="Add a user"))
    add.get_by_label("Username").fill("h2-wang")
    add.get_by_label("Password (8 characters or more)").fill("wang-Pa55word")
    add.get_by_label("Role").select_option("maintainer")
    add.get_by_label("Company (maintainers only)").select_option("co-a")
    add.get_by_role("button", name="Add user").click()
    row = page.locator('tr[data-user="h2-wang"]')
    expect(row).to_contain_text("Maintainer")
    expect(row).to_contain_text("co-a")

    # A maintainer without a company: the API refuses, the row shows why.
    row.get_by_label("Company", exact=True).select_option("")
    row.get_by_role("button", name="Save").click()
    expect(row.get_by_role("alert")).to_contain_text("422")
    row.get_by_label("Role", exact=True).select_option("inspector")
    row.get_by_role("button", name="Save").click()
    expect(page.locator('tr[data-user="h2-wang"]')).to_contain_text("Inspector")

    page.once("dialog", lambda d: d.accept())
    page.locator('tr[data-user="h2-wang"]').get_by_role("button", name="Disable").click()
    expect(page.locator('tr[data-user="h2-wang"]')).to_contain_text("account disabled")
    r = httpx.post(
        f"{site.url}/api/v1/auth/login", json={"username": "h2-wang", "password": "wang-Pa55word"}
    )
    assert r.status_code == 401

    page.goto("/console/admin/tokens")
    new = page.locator("section", has=page.get_by_role("heading", name="Create a token"))
    new.get_by_label("Name (who holds it)").fill("h2-report-bot")
    new.get_by_label("Role").select_option("inspector")
    new.get_by_role("button", name="Create token").click()
    token = new.get_by_role("region", name="The new token").locator("code").inner_text()
    assert token.startswith("lw_")
    me = httpx.get(f"{site.url}/api/v1/tokens/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["name"] == "h2-report-bot"
    page.goto("/console/admin/tokens")
    assert token not in page.content()
    page.once("dialog", lambda d: d.accept())
    page.locator("tr[data-token]", has_text="h2-report-bot").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.locator("tr[data-token]", has_text="h2-report-bot")).to_have_count(0)
    me = httpx.get(f"{site.url}/api/v1/tokens/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


def test_others_are_kept_out_and_an_inspector_cannot_write(site: Site, browser: Browser) -> None:
    anonymous = new_context(browser, site)
    page = anonymous.new_page()
    page.goto("/console/admin/lifts")
    expect(page).to_have_url(f"{site.url}/console/login?next=%2Fconsole%2Fadmin%2Flifts")
    anonymous.close()

    for user in ("disp-a", "inspector"):
        context = new_context(browser, site)
        page = context.new_page()
        login(page, user)
        for path in ("/console/admin/users", "/console/admin/webhooks", "/console/admin/lifts"):
            page.goto(path)
            expect(page).to_have_url(f"{site.url}/console/forbidden")
            expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        if user == "inspector":
            shot(page, "admin-forbidden-inspector")
            # The browser holds a real session and its CSRF token: the API still refuses.
            status, text = page.evaluate(
                """async () => {
                  const csrf = document.querySelector('meta[name="csrf-token"]').content;
                  const r = await fetch('/api/v1/companies', {method: 'POST',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                    body: JSON.stringify({company_id: 'co-evil', name: 'Evil'})});
                  return [r.status, await r.text()];
                }"""
            )
            assert status == 403 and "read-only" in text
            assert site.api.get("/companies/co-evil").status_code == 404
        context.close()


def test_dead_letters_show_the_reason(site: Site, page: Page) -> None:
    publish(site.mqtt_url, [(f"{site.prefix}/DL-1/telemetry", b"{not json")])
    login(page, "admin")

    def listed() -> bool:
        page.goto("/console/admin/dead-letters")
        return page.locator("tbody tr", has_text="DL-1").count() >= 1

    until(listed, timeout=10, what="the rejected message listed")
    row = page.locator("tbody tr", has_text="DL-1").first
    letters = site.api.get("/dead-letters", params={"lift_id": "DL-1"}).json()["items"]
    expect(row).to_contain_text(letters[0]["reason"])
    expect(row).to_contain_text(f"{site.prefix}/DL-1/telemetry")
    page.get_by_label("Reason").select_option(letters[0]["reason"])
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"reason="))
    expect(page.locator("tbody tr", has_text="DL-1").first).to_be_visible()
