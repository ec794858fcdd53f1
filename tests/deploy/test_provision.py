"""``liftwatch devices``: ACL and password-file logic, and the command's refusals (with the real
``mosquitto_passwd``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liftwatch.provision import (
    AclRule,
    ProvisionError,
    check_device_name,
    ensure_acl,
    missing_device_patterns,
    parse_acl,
    password_file_users,
    reload_broker,
)
from liftwatch.registry import Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from tests.deploy.broker import SHIPPED_ACL, json_lines, run_cli


def test_parse_acl_reads_patterns_users_and_default_access() -> None:
    rules, users = parse_acl(
        "# comment\n"
        "topic read public/#\n"
        "pattern write lifts/%u/telemetry\n"
        "user ingest\n"
        "  topic read lifts/#\n"
        "topic a/b c\n"  # no access word: readwrite, and the topic may contain a space
        "pattern deny x/%u\n"
    )
    assert users == {"ingest"}
    assert rules == [
        AclRule("topic", "read", "public/#", None),
        AclRule("pattern", "write", "lifts/%u/telemetry", None),
        AclRule("topic", "read", "lifts/#", "ingest"),
        AclRule("topic", "readwrite", "a/b c", "ingest"),
        AclRule("pattern", "deny", "x/%u", None),
    ]


def test_shipped_acl_covers_devices_and_names_the_service_users() -> None:
    text = SHIPPED_ACL.read_text()
    assert missing_device_patterns(text, "lifts") == []
    assert missing_device_patterns(text, "elevators") == [
        "elevators/%u/telemetry",
        "elevators/%u/event",
        "elevators/%u/status",
    ]
    _, users = parse_acl(text)
    assert users == {"ingest", "alerts", "api", "healthcheck"}
    rules, _ = parse_acl(text)
    device_rules = [r for r in rules if r.kind == "pattern"]
    assert all(r.access == "write" for r in device_rules)  # devices read nothing


def test_a_deny_pattern_is_reported_not_papered_over() -> None:
    with pytest.raises(ProvisionError, match="denies"):
        missing_device_patterns("pattern deny lifts/%u/event\n", "lifts")


def test_ensure_acl_appends_once_and_keeps_the_mode(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user ingest\ntopic read lifts/#")  # no final newline
    acl.chmod(0o640)
    assert ensure_acl(acl, "lifts") == [f"lifts/%u/{k}" for k in ("telemetry", "event", "status")]
    assert ensure_acl(acl, "lifts") == []
    text = acl.read_text()
    assert "topic read lifts/#\n" in text
    assert missing_device_patterns(text, "lifts") == []
    _, users = parse_acl(text)
    assert users == {"ingest"}
    assert acl.stat().st_mode & 0o777 == 0o640


def test_password_file_users() -> None:
    assert password_file_users("a:$7$x\n\n# c:d\nb.c:$7$y\n") == {"a", "b.c"}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("lift/1", "not a valid lift id"),
        ("lift+", "not a valid lift id"),
        ("#", "not a valid lift id"),
        ("a:b", "not a valid lift id"),
        ("", "not a valid lift id"),
        ("x" * 65, "not a valid lift id"),
        ("ingest", "service user"),
    ],
)
def test_device_names_that_would_break_the_acl_are_refused(name: str, why: str) -> None:
    with pytest.raises(ProvisionError, match=why):
        check_device_name(name, {"ingest", "alerts"})


def test_reload_refuses_a_process_that_is_not_mosquitto() -> None:
    # SIGHUP would terminate this test process: the name check must stop it.
    with pytest.raises(ProvisionError, match="not mosquitto"):
        reload_broker(os.getpid())


def test_reload_of_a_missing_process_is_a_clear_error() -> None:
    with pytest.raises(ProvisionError, match="no process"):
        reload_broker(2**22 + 12345)  # above the kernel's pid_max


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> tuple[dict[str, str], list[str], Path]:
    data = tmp_path / "data"
    db = Database(data / "liftwatch.sqlite3")
    reg.upsert_lift(db, Lift(lift_id="L-1"))
    reg.upsert_lift(db, Lift(lift_id="L-2", active=False))
    acl = tmp_path / "acl"
    acl.write_text(SHIPPED_ACL.read_text())
    passwd = tmp_path / "passwd"
    files = ["--password-file", str(passwd), "--acl-file", str(acl)]
    return {"LIFTWATCH_DATA_DIR": str(data)}, files, passwd


def test_provision_creates_a_private_password_file(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, passwd = site
    code, out, err = run_cli(["devices", "provision", "L-1", *files], env)
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["username"] == "L-1"
    assert record["topics"] == ["lifts/L-1/telemetry", "lifts/L-1/event", "lifts/L-1/status"]
    assert password_file_users(passwd.read_text()) == {"L-1"}
    assert record["password"] not in passwd.read_text()
    assert passwd.stat().st_mode & 0o777 == 0o640
    assert "reload Mosquitto" in err


def test_provision_refuses_unknown_lifts_and_writes_nothing(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, passwd = site
    code, out, err = run_cli(["devices", "provision", "L-1", "NOPE", "ingest", *files], env)
    assert code == 1
    assert out == ""
    assert "unknown lift 'NOPE'" in err
    assert "service user" in err
    assert not passwd.exists()


def test_provision_warns_about_inactive_lifts(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, _ = site
    code, _, err = run_cli(["devices", "provision", "L-2", *files], env)
    assert code == 0
    assert "inactive" in err


def test_existing_credentials_are_replaced_only_with_rotate(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, passwd = site
    assert run_cli(["devices", "provision", "L-1", *files], env)[0] == 0
    before = passwd.read_text()
    code, _, err = run_cli(["devices", "provision", "L-1", *files], env)
    assert code == 1
    assert "--rotate" in err
    assert passwd.read_text() == before
    code, out, _ = run_cli(["devices", "provision", "L-1", "--rotate", *files], env)
    assert code == 0
    assert passwd.read_text() != before
    assert len(json_lines(out)) == 1


def test_revoke_and_list(site: tuple[dict[str, str], list[str], Path]) -> None:
    env, files, passwd = site
    assert run_cli(["devices", "provision", "L-1", "L-2", *files], env)[0] == 0
    assert run_cli(["devices", "service-user", "ingest", *files], env)[0] == 0
    code, out, _ = run_cli(["devices", "list", *files], env)
    assert code == 0
    assert json_lines(out) == [
        {"username": "L-1", "kind": "device"},
        {"username": "L-2", "kind": "device"},
        {"username": "ingest", "kind": "service"},
    ]
    code, out, err = run_cli(["devices", "revoke", "L-1", "GONE", *files], env)
    assert code == 1
    assert out.strip() == "revoked L-1"
    assert "'GONE' has no credentials" in err
    assert password_file_users(passwd.read_text()) == {"L-2", "ingest"}


def test_service_user_must_be_named_in_the_acl(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, passwd = site
    code, _, err = run_cli(["devices", "service-user", "root", *files], env)
    assert code == 1
    assert "not a user in" in err
    assert not passwd.exists()


def test_missing_mosquitto_passwd_is_explained(
    site: tuple[dict[str, str], list[str], Path],
) -> None:
    env, files, _ = site
    code, out, err = run_cli(
        ["devices", "provision", "L-1", "--mosquitto-passwd", "/nonexistent/mp", *files], env
    )
    assert code == 1
    assert out == ""
    assert "not found" in err


def test_missing_acl_file_is_explained(site: tuple[dict[str, str], list[str], Path]) -> None:
    env, _, passwd = site
    code, _, err = run_cli(
        ["devices", "provision", "L-1", "--password-file", str(passwd), "--acl-file", "/no/acl"],
        env,
    )
    assert code == 1
    assert "ACL file /no/acl does not exist" in err
