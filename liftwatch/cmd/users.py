"""``liftwatch users add|list|disable|passwd``: people's console accounts (docs/console.md).

Like the registry commands (liftwatch/cmd/admin.py), each says on stderr which store it uses
and never creates one by accident: ``users add --create`` may start a new SQLite store (the
first admin of a new site), nothing else does. A password is read from the terminal twice
(no echo), or once from standard input with ``--password-stdin``; never from the command line,
never printed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from liftwatch.cmd.admin import StoreRefused, open_registry
from liftwatch.protocol import format_ts
from liftwatch.store import Database, IntegrityError, users
from liftwatch.store.users import UserExists, UserNotFound, UserRecord

EXIT_REFUSED = 1
CREATED_BY = "cli"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("users", help="people's console accounts (login, role, company)")
    usub = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = usub.add_parser(
        "add",
        help="create a user (the first admin: liftwatch users add NAME --role admin)",
        description="Create a user. The password is asked twice on the terminal, or read "
        "from standard input with --password-stdin; it is never taken from the command line.",
    )
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--company", help="the maintenance company (required for maintainer)")
    _password_stdin(add)
    add.add_argument(
        "--create",
        action="store_true",
        help="create the SQLite store if it does not exist yet (a new site's first admin)",
    )
    add.set_defaults(handler=_add)

    ls = usub.add_parser("list", help="list users as JSON lines (never their passwords)")
    ls.set_defaults(handler=_list)

    dis = usub.add_parser("disable", help="disable a user: its sessions end at once")
    dis.add_argument("username")
    dis.set_defaults(handler=_disable)

    pw = usub.add_parser("passwd", help="set a user's password: its sessions end at once")
    pw.add_argument("username")
    _password_stdin(pw)
    pw.set_defaults(handler=_passwd)


def _password_stdin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (scripts)",
    )


class PasswordRefused(Exception):
    pass


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise PasswordRefused(
                "no terminal to ask the password on: pass --password-stdin and pipe it in"
            )
        password = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != password:
            raise PasswordRefused("the two passwords differ; nothing changed")
    problem = users.password_problem(password)
    if problem:
        raise PasswordRefused(f"password refused: {problem}")
    return password


def _show(record: UserRecord) -> str:
    return json.dumps(
        {
            "username": record.username,
            "role": record.role,
            "company_id": record.company_id,
            "created_at": format_ts(record.created_at),
            "created_by": record.created_by,
            "disabled_at": format_ts(record.disabled_at) if record.disabled_at else None,
        },
        ensure_ascii=False,
    )


def _refused(message: object) -> int:
    print(f"liftwatch: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _open(args: argparse.Namespace, *, write: bool) -> Database:
    return open_registry(args, write=write)


def _add(args: argparse.Namespace) -> int:
    for problem in (
        users.username_problem(args.username),
        users.role_problem(args.role, args.company),
    ):
        if problem:
            return _refused(problem)
    try:
        password = read_password(args)
        db = _open(args, write=True)
    except (PasswordRefused, StoreRefused) as exc:
        return _refused(exc)
    try:
        record = users.add_user(
            db,
            username=args.username,
            password=password,
            role=args.role,
            company_id=args.company,
            created_by=CREATED_BY,
        )
    except (UserExists, ValueError) as exc:
        return _refused(exc)
    except IntegrityError:
        return _refused(f"unknown company {args.company!r} (liftwatch companies add first)")
    finally:
        db.close()
    print(_show(record))
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        db = _open(args, write=False)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        for record in users.list_users(db):
            print(_show(record))
    finally:
        db.close()
    return 0


def _disable(args: argparse.Namespace) -> int:
    try:
        db = _open(args, write=False)
    except StoreRefused as exc:
        return _refused(exc)
    try:
        record = users.disable_user(db, args.username)
    except UserNotFound as exc:
        return _refused(exc)
    finally:
        db.close()
    print(_show(record))
    return 0


def _passwd(args: argparse.Namespace) -> int:
    try:
        password = read_password(args)
        db = _open(args, write=False)
    except (PasswordRefused, StoreRefused) as exc:
        return _refused(exc)
    try:
        record = users.set_password(db, args.username, password)
    except (UserNotFound, ValueError) as exc:
        return _refused(exc)
    finally:
        db.close()
    print(_show(record))
    return 0
