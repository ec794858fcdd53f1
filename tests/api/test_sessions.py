"""People's logins (api/sessions.py, api/routes/auth.py, docs/console.md): the session cookie,
its flags, CSRF and cross-site refusal, rate limits, and sessions ending at once — each on
SQLite and on PostgreSQL, through the real app and store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from api.app import create_app
from api.routes.auth import REFUSED
from api.sessions import COOKIE, CSRF_HEADER
from liftwatch.clock import now_ms
from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database, users
from tests.support.api import World, assert_error, raise_alarm, store_text

PASSWORD = "dispatch-Pa55word"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
LOGOUT = "/api/v1/auth/logout"

Factory = Callable[..., Any]


@pytest.fixture
def app_client(settings: Settings, db: Database, influx: InfluxClient) -> Callable[..., Any]:
    """A client on an app with some settings changed, over http or https."""

    @asynccontextmanager
    async def make(
        base_url: str = "http://api.test", **changes: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update=changes), db=db, influx=influx)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            yield c

    return make


def add_user(
    db: Database, name: str, role: str = "maintainer", company: str | None = "co-a"
) -> None:
    users.add_user(
        db, username=name, password=PASSWORD, role=role, company_id=company, created_by="test"
    )


async def login(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Log in; returns the session's CSRF token (the cookie stays in the client)."""
    r = await client.post(LOGIN, json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["csrf_token"]
    return token


async def replayed(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """GET /auth/me with this session token as the only cookie."""
    client.cookies.clear()
    client.cookies.set(COOKIE, token)
    return await client.get(ME)


def set_cookie_header(r: httpx.Response) -> str:
    cookies = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


async def test_login_sets_an_httponly_lax_cookie_and_me_answers_the_user(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "Dispatcher.A")
    # Names ignore case.
    r = await client.post(LOGIN, json={"username": "dispatcher.a", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["via"] == "session" and body["name"] == "Dispatcher.A"
    assert body["role"] == "maintainer" and body["company_id"] == "co-a"
    assert len(body["csrf_token"]) == 64 and body["idle_timeout_s"] == 7200
    flags = [f.strip().lower() for f in set_cookie_header(r).split(";")]
    assert flags[0].startswith(f"{COOKIE}=")
    assert {"httponly", "samesite=lax", "path=/", "max-age=43200"} <= set(flags)
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    # The store keeps the token's hash only.
    token = client.cookies[COOKIE]
    assert token not in store_text(db)

    me = await client.get(ME)
    assert me.status_code == 200, me.text
    assert me.json()["via"] == "session" and me.json()["csrf_token"] == body["csrf_token"]
    # Without the cookie: 401 as before.
    client.cookies.clear()
    assert_error(await client.get(ME), 401, "unauthorized")


async def test_wrong_password_unknown_user_and_disabled_user_get_one_answer(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "alice")
    add_user(db, "carol")
    users.disable_user(db, "carol")
    answers = []
    for name, password in (
        ("alice", "not-her-password"),
        ("nobody-at-all", PASSWORD),
        ("carol", PASSWORD),  # the right password of a disabled account
    ):
        r = await client.post(LOGIN, json={"username": name, "password": password})
        assert_error(r, 401, "unauthorized")
        assert "set-cookie" not in r.headers
        answers.append(r.json())
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["error"]["message"] == REFUSED
    await login(client, "alice")  # and the right one works


@pytest.mark.parametrize(
    ("base_url", "mode", "secure"),
    [
        ("https://api.test", "auto", True),
        ("http://api.test", "auto", False),
        ("http://api.test", "always", True),  # behind a TLS-terminating proxy
    ],
)
async def test_cookie_is_secure_exactly_when_served_over_tls(
    app_client: Factory, world: World, db: Database, base_url: str, mode: str, secure: bool
) -> None:
    add_user(db, "tls-user")
    async with app_client(base_url, session_cookie_secure=mode) as c:
        r = await c.post(LOGIN, json={"username": "tls-user", "password": PASSWORD})
        assert r.status_code == 200, r.text
        flags = [f.strip().lower() for f in set_cookie_header(r).split(";")]
        assert ("secure" in flags) is secure
        assert "httponly" in flags
        if base_url.startswith("https"):
            assert (await c.get(ME)).status_code == 200  # the Secure cookie comes back


async def test_a_session_is_scoped_like_a_token_of_its_company(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    alarm_a = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    alarm_b = raise_alarm(db, world.lift_b, "entrapment", at=now_ms(), company_id="co-b")
    add_user(db, "disp-a", company="co-a")
    add_user(db, "disp-b", company="co-b")

    await login(client, "disp-b")
    alarms = (await client.get("/api/v1/alarms")).json()["items"]
    assert [a["alarm_id"] for a in alarms] == [alarm_b]
    lifts = (await client.get("/api/v1/lifts")).json()["items"]
    assert {lift["lift_id"] for lift in lifts} == {world.lift_b}
    assert_error(await client.get(f"/api/v1/alarms/{alarm_a}"), 404)
    assert_error(await client.get(f"/api/v1/lifts/{world.lift_a}"), 404)
    other = await client.get("/api/v1/lifts", params={"company_id": "co-a"})
    assert other.json()["items"] == []
    assert_error(await client.get("/api/v1/users"), 403)  # admin only

    client.cookies.clear()
    await login(client, "disp-a")
    alarms = (await client.get("/api/v1/alarms")).json()["items"]
    assert [a["alarm_id"] for a in alarms] == [alarm_a]


async def test_cookie_writes_need_the_csrf_token_and_the_same_origin(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    alarm = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    add_user(db, "disp-a")
    csrf = await login(client, "disp-a")
    ack = f"/api/v1/alarms/{alarm}/acknowledge"

    assert_error(await client.post(ack, json={}), 403, "csrf_token_missing")
    r = await client.post(ack, json={}, headers={CSRF_HEADER: "0" * 64})
    assert_error(r, 403, "csrf_token_invalid")
    for cross in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = await client.post(ack, json={}, headers={CSRF_HEADER: csrf, **cross})
        assert_error(r, 403, "cross_site_refused")
    # Reads need no token.
    assert (await client.get(f"/api/v1/alarms/{alarm}")).json()["status"] == "open"

    same = {CSRF_HEADER: csrf, "Origin": "http://api.test", "Sec-Fetch-Site": "same-origin"}
    r = await client.post(ack, json={"note": "team on the way"}, headers=same)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"


async def test_bearer_writes_need_no_csrf_token(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    alarm = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    headers = {**world.h("maintainer_a"), "Origin": "https://elsewhere.example"}
    r = await client.post(f"/api/v1/alarms/{alarm}/acknowledge", json={}, headers=headers)
    assert r.status_code == 200, r.text


async def test_a_login_from_another_site_is_refused(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    r = await client.post(
        LOGIN,
        json={"username": "disp-a", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert_error(r, 403, "cross_site_refused")
    assert COOKIE not in client.cookies


async def test_trusted_origins_may_write(app_client: Factory, world: World, db: Database) -> None:
    alarm = raise_alarm(db, world.lift_a, "entrapment", at=now_ms(), company_id="co-a")
    add_user(db, "disp-a")
    async with app_client(session_trusted_origins="https://console.example") as c:
        csrf = await login(c, "disp-a")
        headers = {CSRF_HEADER: csrf, "Origin": "https://console.example"}
        r = await c.post(f"/api/v1/alarms/{alarm}/acknowledge", json={}, headers=headers)
        assert r.status_code == 200, r.text


async def test_failed_logins_are_limited_per_username_and_per_address(
    app_client: Factory, world: World, db: Database
) -> None:
    add_user(db, "alice")
    add_user(db, "bob")
    async with app_client(
        login_limit_per_user="3 per minute", login_limit_per_address="5 per minute"
    ) as c:
        for _ in range(3):
            r = await c.post(LOGIN, json={"username": "alice", "password": "wrong-one"})
            assert_error(r, 401)
        # The 4th try of that name is refused before the password is checked, right or not.
        for password in ("wrong-one", PASSWORD):
            r = await c.post(LOGIN, json={"username": "ALICE", "password": password})
            assert_error(r, 429, "too_many_requests")
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        # Another name from the same address still may, until the address's limit.
        await login(c, "bob")
        for _ in range(2):
            assert_error(await c.post(LOGIN, json={"username": "bob", "password": "x"}), 401)
        r = await c.post(LOGIN, json={"username": "bob", "password": PASSWORD})
        assert_error(r, 429, "too_many_requests")


async def test_logout_ends_the_session_at_once(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    csrf = await login(client, "disp-a")
    token = client.cookies[COOKIE]
    assert_error(await client.post(LOGOUT), 403, "csrf_token_missing")
    r = await client.post(LOGOUT, headers={CSRF_HEADER: csrf})
    assert r.status_code == 204, r.text
    assert COOKIE not in client.cookies  # the answer cleared it
    # The old cookie, replayed: 401 at once.
    r = await replayed(client, token)
    assert_error(r, 401, "unauthorized")
    # A bearer token has no session to end.
    assert_error(await client.post(LOGOUT, headers=world.h("maintainer_a")), 400)


async def test_disabling_a_user_ends_its_sessions_at_once(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    await login(client, "disp-a")
    token = client.cookies[COOKIE]
    assert (await client.get(ME)).status_code == 200
    r = await client.patch(
        "/api/v1/users/DISP-A", json={"disabled": True}, headers=world.h("admin")
    )
    assert r.status_code == 200, r.text
    assert r.json()["disabled_at"] is not None
    assert_error(await replayed(client, token), 401)
    r = await client.post(LOGIN, json={"username": "disp-a", "password": PASSWORD})
    assert_error(r, 401)
    assert r.json()["error"]["message"] == REFUSED
    # Re-enabled, the user may log in again (a new session; the old one stays ended).
    await client.patch("/api/v1/users/disp-a", json={"disabled": False}, headers=world.h("admin"))
    await login(client, "disp-a")
    assert_error(await replayed(client, token), 401)


async def test_a_role_or_password_change_ends_the_sessions_too(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    for change in ({"role": "inspector"}, {"password": "a-new-Pa55word"}):
        client.cookies.clear()
        await login(client, "disp-a")
        token = client.cookies[COOKIE]
        r = await client.patch("/api/v1/users/disp-a", json=change, headers=world.h("admin"))
        assert r.status_code == 200, r.text
        assert_error(await replayed(client, token), 401)
    client.cookies.clear()
    csrf = await login(client, "disp-a", "a-new-Pa55word")
    me = (await client.get(ME)).json()
    assert me["role"] == "inspector" and me["company_id"] is None and csrf


async def test_idle_timeout_and_absolute_lifetime(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    await login(client, "disp-a")
    with db.transaction() as conn:  # two hours without a request
        conn.execute("UPDATE sessions SET last_seen_at = last_seen_at - 7200000")
    r = await client.get(ME)
    assert_error(r, 401)
    assert "inactivity" in r.json()["error"]["message"]

    client.cookies.clear()
    await login(client, "disp-a")
    with db.transaction() as conn:  # past the absolute lifetime, though active a moment ago
        conn.execute(
            "UPDATE sessions SET expires_at = ? WHERE revoked_at IS NULL AND expires_at > ?",
            (now_ms() - 1, now_ms()),
        )
    r = await client.get(ME)
    assert_error(r, 401)
    assert "expired" in r.json()["error"]["message"]


async def test_a_deactivated_company_ends_its_users_sessions(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "disp-a")
    await login(client, "disp-a")
    r = await client.delete("/api/v1/companies/co-a", headers=world.h("admin"))
    assert r.status_code == 200, r.text
    r = await client.get(ME)
    assert_error(r, 401)
    assert "deactivated" in r.json()["error"]["message"]


async def test_old_argon2_parameters_are_rehashed_at_login(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    add_user(db, "old-hash")
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    with db.transaction() as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE username_key = 'old-hash'", (weak,))
    await login(client, "old-hash")
    stored = users.get_user(db, "old-hash")
    assert stored is not None and stored.password_hash != weak
    assert stored.password_hash.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(stored.password_hash)


async def test_passwords_are_never_logged_or_stored(
    client: httpx.AsyncClient, world: World, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_new = "Brand-new-secret-77"
    r = await client.post(
        "/api/v1/users",
        json={"username": "newbie", "password": secret_new, "role": "inspector"},
        headers=world.h("admin"),
    )
    assert r.status_code == 201, r.text
    assert secret_new not in r.text and "hash" not in r.text
    r = await client.post(LOGIN, json={"username": "newbie", "password": "typo-" + secret_new})
    assert_error(r, 401)
    # A password typed into the username field is not logged either.
    r = await client.post(LOGIN, json={"username": secret_new, "password": secret_new})
    assert_error(r, 401)
    await login(client, "newbie", secret_new)
    r = await client.post(LOGIN, json={"username": "newbie", "password": ""})
    assert_error(r, 422)
    assert "event=login user=newbie" in caplog.text  # the log did capture the logins
    assert "event=login_refused user=newbie" in caplog.text
    assert secret_new not in caplog.text
    assert secret_new not in store_text(db)
    assert users.get_user(db, "newbie").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]


async def test_principal_in_force_follows_the_session_and_the_token(
    client: httpx.AsyncClient, world: World, db: Database, settings: Settings
) -> None:
    """What the event stream re-checks with (api/routes/alarms.py, paste-text pending)."""
    from api.auth import Principal
    from api.sessions import principal_in_force, session_id_of

    add_user(db, "disp-a")
    await login(client, "disp-a")
    record = users.find_session(db, session_id_of(client.cookies[COOKIE]))
    assert record is not None
    session = Principal(record.user_id, "disp-a", "maintainer", "co-a", record.session_id)
    assert principal_in_force(db, session, settings)
    users.disable_user(db, "disp-a")
    assert not principal_in_force(db, session, settings)
    token = Principal(world.token_ids["maintainer_a"], "maintainer_a", "maintainer", "co-a")
    assert principal_in_force(db, token, settings)
    bootstrap = Principal("bootstrap-admin", "bootstrap admin", "admin")
    assert principal_in_force(db, bootstrap, settings)
