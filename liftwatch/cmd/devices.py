"""``liftwatch devices``: MQTT credentials of devices in Mosquitto (see liftwatch.provision)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from liftwatch.cmd.admin import StoreRefused, open_registry
from liftwatch.provision import (
    DEFAULT_ACL_FILE,
    DEFAULT_PASSWORD_FILE,
    PasswordFile,
    ProvisionError,
    check_device_name,
    device_patterns,
    ensure_acl,
    new_password,
    parse_acl,
    read_text,
    reload_broker,
)
from liftwatch.settings import settings_from
from liftwatch.store import Database
from liftwatch.store import registry as reg


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--password-file",
        type=Path,
        default=DEFAULT_PASSWORD_FILE,
        help=f"Mosquitto password_file (default {DEFAULT_PASSWORD_FILE})",
    )
    common.add_argument(
        "--acl-file",
        type=Path,
        default=DEFAULT_ACL_FILE,
        help=f"Mosquitto acl_file (default {DEFAULT_ACL_FILE})",
    )
    common.add_argument(
        "--mosquitto-passwd",
        default="mosquitto_passwd",
        metavar="COMMAND",
        help="the mosquitto_passwd program (default: from PATH)",
    )
    common.add_argument(
        "--reload-pid",
        type=int,
        metavar="PID",
        help="send SIGHUP to this Mosquitto process afterwards so the change takes effect "
        "(otherwise reload it yourself: systemctl reload mosquitto)",
    )

    devices = sub.add_parser(
        "devices",
        help="MQTT credentials of devices (Mosquitto password file and ACL)",
        description="A device's MQTT username is its lift_id; the ACL lets it publish only "
        "under its own lift's topics. See docs/deploy.md.",
    )
    dsub = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    prov = dsub.add_parser(
        "provision",
        parents=[common],
        help="create credentials for registered lifts (each password is printed once)",
        description="For each LIFT_ID in the registry: make a random password, store its hash "
        "with mosquitto_passwd, make sure the ACL confines devices to their own topics, and "
        "print one JSON line {lift_id, username, password, topics}. Store the password now: "
        "it cannot be shown again. Unknown lifts are refused; nothing is written unless every "
        "LIFT_ID is acceptable.",
    )
    prov.add_argument("lift_ids", nargs="+", metavar="LIFT_ID")
    prov.add_argument(
        "--rotate",
        action="store_true",
        help="replace the password of a lift that already has one (the device must be "
        "reconfigured); without it such a lift is refused",
    )
    prov.set_defaults(handler=_provision)
    rev = dsub.add_parser(
        "revoke",
        parents=[common],
        help="delete devices' credentials (a reload disconnects them)",
    )
    rev.add_argument("lift_ids", nargs="+", metavar="LIFT_ID")
    rev.set_defaults(handler=_revoke)
    svc = dsub.add_parser(
        "service-user",
        parents=[common],
        help="create or replace the password of liftwatch's own broker users (ingest, ...)",
        description="NAME must be a `user` in the ACL file (ingest, alerts, api, healthcheck in "
        "the shipped ACL). Prints one JSON line {username, password} per NAME, once; put the "
        "password into that service's LIFTWATCH_MQTT_URL.",
    )
    svc.add_argument("names", nargs="+", metavar="NAME")
    svc.set_defaults(handler=_service_user)
    ls = dsub.add_parser(
        "list", parents=[common], help="usernames in the password file, as JSON lines"
    )
    ls.set_defaults(handler=_list)


def _fail(message: str) -> int:
    print(f"liftwatch: {message}", file=sys.stderr)
    return 1


def _password_file(args: argparse.Namespace) -> PasswordFile:
    return PasswordFile(args.password_file, shlex.split(args.mosquitto_passwd))


def _reload(args: argparse.Namespace) -> None:
    if args.reload_pid is not None:
        reload_broker(args.reload_pid)
        print(f"sent SIGHUP to Mosquitto (pid {args.reload_pid})", file=sys.stderr)
    else:
        print(
            "reload Mosquitto for this to take effect (systemctl reload mosquitto, "
            "or --reload-pid PID)",
            file=sys.stderr,
        )


def _provision(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prefix = settings.mqtt_topic_prefix
    passwords = _password_file(args)
    db: Database | None = None
    try:
        _, service_users = parse_acl(read_text(args.acl_file, "ACL file"))
        existing = passwords.users()
        db = open_registry(args, write=False)  # says which store; never creates one
        problems = []
        for lift_id in dict.fromkeys(args.lift_ids):
            try:
                check_device_name(lift_id, service_users)
            except ProvisionError as exc:
                problems.append(str(exc))
                continue
            lift = reg.get_lift(db, lift_id)
            if lift is None:
                problems.append(
                    f"unknown lift {lift_id!r}: add it to the registry first "
                    "(liftwatch lifts import)"
                )
            elif lift_id in existing and not args.rotate:
                problems.append(
                    f"{lift_id!r} already has credentials: use --rotate to replace them"
                )
            elif not lift.active:
                print(f"liftwatch: warning: lift {lift_id!r} is inactive", file=sys.stderr)
        if problems:
            for problem in problems:
                print(f"liftwatch: {problem}", file=sys.stderr)
            return _fail("nothing provisioned")
        appended = ensure_acl(args.acl_file, prefix)
        if appended:
            print(f"added to {args.acl_file}: {', '.join(appended)}", file=sys.stderr)
        topics = [t.replace("%u", "{lift_id}") for t in device_patterns(prefix)]
        for lift_id in dict.fromkeys(args.lift_ids):
            password = new_password()
            passwords.set(lift_id, password)
            record = {
                "lift_id": lift_id,
                "username": lift_id,
                "password": password,
                "topics": [t.format(lift_id=lift_id) for t in topics],
            }
            print(json.dumps(record), flush=True)
        print(
            "the passwords above are shown once: configure the devices now",
            file=sys.stderr,
        )
        _reload(args)
    except (ProvisionError, StoreRefused) as exc:
        return _fail(str(exc))
    finally:
        if db is not None:
            db.close()
    return 0


def _revoke(args: argparse.Namespace) -> int:
    passwords = _password_file(args)
    status = 0
    try:
        existing = passwords.users()
        for lift_id in dict.fromkeys(args.lift_ids):
            if lift_id not in existing:
                print(f"liftwatch: {lift_id!r} has no credentials", file=sys.stderr)
                status = 1
                continue
            passwords.delete(lift_id)
            print(f"revoked {lift_id}")
        _reload(args)
    except ProvisionError as exc:
        return _fail(str(exc))
    return status


def _service_user(args: argparse.Namespace) -> int:
    passwords = _password_file(args)
    try:
        _, service_users = parse_acl(read_text(args.acl_file, "ACL file"))
        unknown = [n for n in args.names if n not in service_users]
        if unknown:
            return _fail(
                f"not a user in {args.acl_file}: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(service_users)) or 'none'})"
            )
        for name in dict.fromkeys(args.names):
            password = new_password()
            passwords.set(name, password)
            print(json.dumps({"username": name, "password": password}), flush=True)
        _reload(args)
    except ProvisionError as exc:
        return _fail(str(exc))
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        users = _password_file(args).users()
        _, service_users = parse_acl(read_text(args.acl_file, "ACL file"))
    except ProvisionError as exc:
        return _fail(str(exc))
    for name in sorted(users):
        kind = "service" if name in service_users else "device"
        print(json.dumps({"username": name, "kind": kind}))
    return 0
