"""``liftwatch alarms|tokens|webhooks`` (issue 17 item 6) against a real ``liftwatch api``
process on a free port and a SQLite store: tables and ``--json``, exit codes 0/1/2, the
token never printed except the one ``tokens create`` returns."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from liftwatch.cmd import main as cli_main
from liftwatch.localservices import free_port
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from tests.support.api import raise_alarm
from tests.support.harness import eventually
from tests.support.processes import Child

ADMIN = "cli-admin-token-0123456789abcdef"
T0 = 1_796_054_400_000  # 2026-11-30T16:00:00Z = 2026-12-01 00:00:00 in Asia/Shanghai

COMMAND = ["-m", "liftwatch"]


def test_the_commands_are_part_of_liftwatch() -> None:
    assert any(part.__name__ == "liftwatch.cmd.client" for part in cli_main.PARTS)


@dataclass
class Site:
    url: str
    env: dict[str, str]
    alarms: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, *COMMAND, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert ADMIN not in out.stdout + out.stderr  # the caller's token is never shown
        return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("cli-client")
    db = Database(data / "liftwatch.sqlite3")
    reg.upsert_company(db, Company(company_id="co-a", name="甲电梯维保"))
    reg.upsert_company(db, Company(company_id="co-b", name="Beta"))
    reg.upsert_lift(db, Lift(lift_id="LA-1", company_id="co-a", name="一号梯"))
    reg.upsert_lift(db, Lift(lift_id="LB-1", company_id="co-b", name="B one"))
    alarms = {
        "trapped": raise_alarm(db, "LA-1", "entrapment", at=T0, company_id="co-a"),
        "door": raise_alarm(
            db, "LB-1", "door_open_fault", at=T0 + 60_000, severity="major", company_id="co-b"
        ),
        "quiet": raise_alarm(
            db,
            "LA-1",
            "power_failure",
            at=T0 + 120_000,
            company_id="co-a",
            suppressed_reason="inspection",
        ),
    }
    db.close()
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    server_env = {
        **base,
        "LIFTWATCH_DATA_DIR": str(data),
        "LIFTWATCH_ADMIN_TOKEN": ADMIN,
        "LIFTWATCH_INFLUX_URL": "http://127.0.0.1:9",
        "LIFTWATCH_WEBHOOK_PRIVATE_ALLOW": "127.0.0.1",
    }
    api = Child(["api", "--port", str(port)], server_env)
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        assert api.proc.poll() is None, api.output
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{url}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        asyncio.run(eventually(up, timeout=60, what="liftwatch api answering"))
        client_env = {
            **base,
            "LIFTWATCH_API_URL": url,
            "LIFTWATCH_API_TOKEN": ADMIN,
            "LIFTWATCH_TIMEZONE": "Asia/Shanghai",
        }
        yield Site(url=url, env=client_env, alarms=alarms)
    finally:
        api.proc.terminate()
        api.proc.wait(timeout=30)


def test_alarms_list_as_table_and_json(site: Site) -> None:
    out = site.run("alarms", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["ALARM_ID", "LIFT", "CODE"]
    assert "RAISED (Asia/Shanghai)" in lines[0]
    trapped = next(x for x in lines if x.startswith(site.alarms["trapped"]))
    assert "困人" in trapped and "一号梯" in trapped and "2026-12-01 00:00:00" in trapped
    assert site.alarms["quiet"] not in out.stdout  # suppressed: only with --suppressed
    # Columns line up although 困人 is two terminal columns per character.
    assert len({x.index("critical") if "critical" in x else -1 for x in lines[1:]} - {-1}) == 1

    every = site.run("alarms", "list", "--suppressed", "--json")
    ids = {a["alarm_id"] for a in json.loads(every.stdout)["items"]}
    assert ids == set(site.alarms.values())
    since = site.run("alarms", "list", "--since", "2026-12-01T00:00:30+08:00", "--json")
    assert [a["lift_id"] for a in json.loads(since.stdout)["items"]] == ["LB-1"]
    bad = site.run("alarms", "list", "--since", "2026-12-01T00:00:30")
    assert bad.returncode == 1 and "API refused (422" in bad.stderr and "offset" in bad.stderr


def test_alarm_lifecycle_and_refusals(site: Site) -> None:
    alarm = site.alarms["door"]
    ack = site.run("alarms", "ack", alarm, "--note", "电话已联系")
    assert ack.returncode == 0, ack.stderr
    assert "acknowledged" in ack.stdout
    again = site.run("alarms", "ack", alarm)
    assert again.returncode == 1
    assert "API refused (409" in again.stderr
    usage = site.run("alarms", "resolve", alarm)  # --outcome is required
    assert usage.returncode == 2 and "--outcome" in usage.stderr
    on_site = site.run("alarms", "on-site", alarm, "--json")
    assert on_site.returncode == 0 and json.loads(on_site.stdout)["status"] == "on_site"
    active = site.run("alarms", "list", "--active", "--json")
    assert alarm in {a["alarm_id"] for a in json.loads(active.stdout)["items"]}
    done = site.run("alarms", "resolve", alarm, "--outcome", "repaired", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "repaired"
    active = site.run("alarms", "list", "--active", "--json")
    assert alarm not in {a["alarm_id"] for a in json.loads(active.stdout)["items"]}
    assert site.alarms["trapped"] in {a["alarm_id"] for a in json.loads(active.stdout)["items"]}
    missing = site.run("alarms", "ack", "no-such-alarm")
    assert missing.returncode == 1 and "API refused (404" in missing.stderr


def test_tokens_create_list_use_revoke(site: Site) -> None:
    made = site.run("tokens", "create", "--role", "maintainer", "--company", "co-a", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret, token_id = created["token"], created["token_id"]
    assert "shown once" in made.stderr
    table = site.run("tokens", "create", "--role", "inspector", "--name", "检验员")
    assert table.returncode == 0 and "TOKEN" in table.stdout.splitlines()[0]

    listed = site.run("tokens", "list")
    assert listed.returncode == 0 and token_id in listed.stdout and "检验员" in listed.stdout
    assert secret not in listed.stdout + listed.stderr
    as_json = json.loads(site.run("tokens", "list", "--json").stdout)
    assert all("token" not in t for t in as_json)

    # The new token from --token: a maintainer of co-a sees only co-a's alarms.
    mine = site.run("alarms", "list", "--json", "--token", secret)
    assert mine.returncode == 0, mine.stderr
    assert {a["company_id"] for a in json.loads(mine.stdout)["items"]} == {"co-a"}
    assert secret not in mine.stdout + mine.stderr
    refused = site.run("tokens", "list", "--token", secret)
    assert refused.returncode == 1 and "API refused (403" in refused.stderr

    gone = site.run("tokens", "revoke", token_id)
    assert gone.returncode == 0 and f"revoked {token_id}" in gone.stdout
    after = site.run("alarms", "list", "--token", secret)
    assert after.returncode == 1 and "API refused (401" in after.stderr


def test_webhooks_add_list_test(site: Site) -> None:
    added = site.run(
        "webhooks", "add", "http://127.0.0.1:9/hook", "--event", "alarm.raised", "--json"
    )
    assert added.returncode == 0, added.stderr
    hook = json.loads(added.stdout)
    assert hook["secret"].startswith("whsec_") and "shown once" in added.stderr
    listed = site.run("webhooks", "list")
    assert hook["id"] in listed.stdout and "alarm.raised" in listed.stdout
    assert hook["secret"] not in listed.stdout
    tested = site.run("webhooks", "test", hook["id"])
    assert tested.returncode == 0, tested.stderr
    assert "webhook.test" in tested.stdout and "pending" in tested.stdout
    unknown = site.run("webhooks", "test", "wh_0000")
    assert unknown.returncode == 1 and "API refused (404" in unknown.stderr
    refused = site.run("webhooks", "add", "ftp://example.invalid/x")
    assert refused.returncode == 1 and "API refused (422" in refused.stderr


def test_no_token_is_usage_and_no_api_is_refused(site: Site) -> None:
    env = {k: v for k, v in site.env.items() if k != "LIFTWATCH_API_TOKEN"}
    out = subprocess.run(
        [sys.executable, *COMMAND, "alarms", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "LIFTWATCH_API_TOKEN" in out.stderr
    dead = site.run("alarms", "list", "--api-url", f"http://127.0.0.1:{free_port()}")
    assert dead.returncode == 1 and "cannot reach the API" in dead.stderr


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, *COMMAND, "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    for command in ("alarms", "tokens", "webhooks"):
        assert command in out.stdout
