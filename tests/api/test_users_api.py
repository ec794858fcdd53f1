"""``/users`` (api/routes/users.py) and ``liftwatch users`` (liftwatch/cmd/users.py): admin
only, names unique ignoring case, role and company as tokens have them, passwords never
answered, printed or stored in clear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.sessions import COOKIE
from liftwatch.store import Database, users
from tests.support.api import World, assert_error, store_text

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-enough-pw"


@pytest.mark.parametrize("who", ["inspector", "maintainer_a"])
async def test_only_admins_manage_users(client: httpx.AsyncClient, world: World, who: str) -> None:
    h = world.h(who)
    assert_error(await client.get("/api/v1/users", headers=h), 403)
    body = {"username": "x1", "password": PASSWORD, "role": "inspector"}
    assert_error(await client.post("/api/v1/users", json=body, headers=h), 403)
    assert_error(await client.patch("/api/v1/users/x1", json={"disabled": True}, headers=h), 403)


async def test_admin_creates_lists_and_changes_users(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    h = world.h("admin")
    body = {"username": "Wang.Li", "password": PASSWORD, "role": "maintainer", "company_id": "co-b"}
    r = await client.post("/api/v1/users", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["username"] == "Wang.Li" and r.json()["company_id"] == "co-b"
    assert r.json()["created_by"].startswith("api:bootstrap admin")
    dup = {**body, "username": "WANG.LI"}
    assert_error(await client.post("/api/v1/users", json=dup, headers=h), 409, "conflict")

    for bad in (
        {**body, "username": "u2", "company_id": None},  # a maintainer needs a company
        {**body, "username": "u2", "role": "inspector"},  # an inspector has none
        {**body, "username": "u2", "company_id": "no-such-co"},
        {**body, "username": "u2", "password": "short"},
        {**body, "username": "has space"},
    ):
        assert_error(await client.post("/api/v1/users", json=bad, headers=h), 422)

    listed = (await client.get("/api/v1/users", headers=h)).json()
    assert [u["username"] for u in listed] == ["Wang.Li"]
    assert not any("password_hash" in u for u in listed)
    assert PASSWORD not in store_text(db)

    r = await client.patch("/api/v1/users/wang.li", json={"role": "admin"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin" and r.json()["company_id"] is None
    r = await client.patch(
        "/api/v1/users/wang.li", json={"role": "maintainer", "company_id": "co-a"}, headers=h
    )
    assert r.json()["role"] == "maintainer" and r.json()["company_id"] == "co-a"
    r = await client.patch("/api/v1/users/wang.li", json={"role": "maintainer"}, headers=h)
    assert r.json()["company_id"] == "co-a"
    assert_error(
        await client.patch("/api/v1/users/nobody", json={"disabled": True}, headers=h), 404
    )
    assert (await client.get("/api/v1/users/WANG.LI", headers=h)).json()["role"] == "maintainer"


async def test_a_logged_in_admin_manages_users_with_the_csrf_token(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    users.add_user(
        db, username="root", password=PASSWORD, role="admin", company_id=None, created_by="t"
    )
    r = await client.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
    csrf = r.json()["csrf_token"]
    assert COOKIE in client.cookies
    body = {"username": "second", "password": PASSWORD, "role": "inspector"}
    assert_error(await client.post("/api/v1/users", json=body), 403, "csrf_token_missing")
    r = await client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert r.json()["created_by"].startswith("api:root (usr_")


def _cli(tmp: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``liftwatch ARGV`` at DEBUG; its output never holds the test's passwords."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    env |= {"LIFTWATCH_DATA_DIR": str(tmp / "data"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "liftwatch", "--log-level", "DEBUG", *argv],
        cwd=tmp,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert PASSWORD not in done.stdout + done.stderr
    return done


def test_cli_creates_the_first_admin_and_manages_users(tmp_path: Path) -> None:
    # Nothing is created by accident: no store, no --create, a refusal naming the path.
    r = _cli(tmp_path, "users", "list")
    assert r.returncode == 1 and "no store at" in r.stderr
    r = _cli(
        tmp_path,
        "users",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 1 and "refusing to create" in r.stderr

    r = _cli(
        tmp_path,
        "users",
        "add",
        "admin",
        "--role",
        "admin",
        "--password-stdin",
        "--create",
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 0, r.stderr
    assert "store: " in r.stderr and "(created)" in r.stderr
    # Without a terminal and without --password-stdin the password is not guessed.
    r = _cli(tmp_path, "users", "add", "eve", "--role", "inspector")
    assert r.returncode == 1 and "--password-stdin" in r.stderr
    r = _cli(
        tmp_path,
        "users",
        "add",
        "bob",
        "--role",
        "maintainer",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert r.returncode == 1 and "needs a company" in r.stderr
    r = _cli(tmp_path, "users", "passwd", "ADMIN", "--password-stdin", stdin="new-" + PASSWORD)
    assert r.returncode == 0, r.stderr
    r = _cli(tmp_path, "users", "disable", "admin")
    assert r.returncode == 0 and '"disabled_at": "' in r.stdout
    listed = _cli(tmp_path, "users", "list")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 1
    assert '"disabled_at": null' not in listed.stdout

    db = Database(tmp_path / "data" / "liftwatch.sqlite3")
    try:
        record = users.get_user(db, "admin")
        assert record is not None and record.disabled_at is not None
        assert users.verify_hash(record.password_hash, "new-" + PASSWORD)
        text = store_text(db)
    finally:
        db.close()
    assert PASSWORD not in text


def test_cli_never_takes_a_password_from_argv() -> None:
    from liftwatch.cmd.main import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["users", "add", "x", "--role", "admin", "--password", "pw"])
