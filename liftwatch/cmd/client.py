"""Daily jobs without curl: ``liftwatch alarms``, ``tokens`` and ``webhooks`` over the HTTP API.

Thin commands: each is one or two API requests (docs/api.md), so the API's permissions,
validation and audit trail apply exactly as to any other client; the actor recorded for an
acknowledgement is the token's name. Where the API is and which token to send come from
``--api-url`` / ``--token`` or the settings ``LIFTWATCH_API_URL`` (default
``http://LIFTWATCH_API_HOST:LIFTWATCH_API_PORT``) and ``LIFTWATCH_API_TOKEN`` (default
``LIFTWATCH_ADMIN_TOKEN``). The token is never printed; the one secret shown is the new
token a ``tokens create`` returns (and a new webhook's signing secret), once.

Output is a table of plain text columns (times in ``LIFTWATCH_TIMEZONE``) or, with
``--json``, the API's JSON. Exit codes: 0 done, 1 the API refused (its reason is printed) or
could not be reached, 2 usage (argparse, or no token). See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from liftwatch.settings import settings_from
from liftwatch.views import EVENT_TYPES

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
API_PREFIX = "/api/v1"
OUTCOMES = ("rescued", "repaired", "false_alarm", "test")


class Refused(Exception):
    """The API answered with an error, or could not be reached; the message says which."""


# --- the parser ------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-url",
        metavar="URL",
        help="the API, e.g. http://127.0.0.1:8000 (default: LIFTWATCH_API_URL, else "
        "http://LIFTWATCH_API_HOST:LIFTWATCH_API_PORT)",
    )
    common.add_argument(
        "--token",
        metavar="TOKEN",
        help="bearer token (default: LIFTWATCH_API_TOKEN, else LIFTWATCH_ADMIN_TOKEN; the "
        "environment keeps it out of the process list)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    common.add_argument(
        "--timeout", type=float, default=15.0, metavar="S", help="seconds per request (15)"
    )
    return common


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()

    alarms = sub.add_parser(
        "alarms", help="list alarms and act on them (acknowledge, on-site, resolve) via the API"
    )
    asub = alarms.add_subparsers(dest="alarms_command", metavar="ACTION", required=True)
    ls = asub.add_parser(
        "list",
        parents=[common],
        help="alarms, newest first",
        description="Alarms as the API lists them (GET /alarms). Suppressed alarms (inspection "
        "mode, maintenance windows) are left out unless --suppressed is given.",
    )
    ls.add_argument("--status", choices=["open", "acknowledged", "on_site", "resolved"])
    ls.add_argument(
        "--active",
        action="store_true",
        help="only alarms not resolved yet (any status but resolved)",
    )
    ls.add_argument("--lift", metavar="LIFT_ID")
    ls.add_argument("--company", metavar="COMPANY_ID")
    ls.add_argument("--code", help="alarm code, e.g. entrapment")
    ls.add_argument("--severity", choices=["critical", "major", "minor"])
    ls.add_argument("--since", help="raised at or after (2026-12-01T00:00:00+08:00 or epoch ms)")
    ls.add_argument("--until", help="raised before")
    ls.add_argument("--suppressed", action="store_true", help="include suppressed alarms")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (1-1000; 50)")
    ls.add_argument("--cursor", help="continue after this alarm id (printed when more exist)")
    ls.set_defaults(handler=_alarms_list)
    for name, path, what in (
        ("ack", "acknowledge", "the maintenance company takes the alarm (stops escalation)"),
        ("on-site", "on-site", "a technician arrived at the lift"),
    ):
        act = asub.add_parser(name, parents=[common], help=what)
        act.add_argument("alarm_id", metavar="ALARM_ID")
        act.add_argument("--note", help="free text kept in the alarm's history")
        act.set_defaults(handler=_alarm_action, action_path=path)
    res = asub.add_parser(
        "resolve", parents=[common], help="end the alarm with an outcome (EN 81-28 end of alarm)"
    )
    res.add_argument("alarm_id", metavar="ALARM_ID")
    res.add_argument("--outcome", required=True, choices=OUTCOMES)
    res.add_argument("--note")
    res.set_defaults(handler=_alarm_action, action_path="resolve")

    tokens = sub.add_parser("tokens", help="API tokens: create (shown once), list, revoke")
    tsub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    tc = tsub.add_parser(
        "create",
        parents=[common],
        help="create a token; its secret is printed once",
        description="Needs an administrator's token. A maintainer token belongs to one company "
        "(--company) and sees only that company's lifts; an inspector token is read-only.",
    )
    tc.add_argument("--role", required=True, choices=["admin", "inspector", "maintainer"])
    tc.add_argument("--name", help="who holds it (recorded as the actor of what it does)")
    tc.add_argument("--company", metavar="COMPANY_ID", help="required for --role maintainer")
    tc.set_defaults(handler=_tokens_create)
    tl = tsub.add_parser("list", parents=[common], help="tokens (never their secrets)")
    tl.set_defaults(handler=_tokens_list)
    tr = tsub.add_parser("revoke", parents=[common], help="revoke a token at once")
    tr.add_argument("token_id", metavar="TOKEN_ID")
    tr.set_defaults(handler=_tokens_revoke)

    hooks = sub.add_parser("webhooks", help="webhook subscriptions: add, list, test")
    wsub = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    wa = wsub.add_parser(
        "add",
        parents=[common],
        help="subscribe a URL to alarm events; its signing secret is printed once",
        description="Every filter is optional (none: every event). docs/webhooks.md explains "
        "the signature the receiver checks with the secret printed here.",
    )
    wa.add_argument("url")
    wa.add_argument("--company", metavar="COMPANY_ID", help="admin only: a company's subscription")
    wa.add_argument("--description", default="")
    wa.add_argument("--event", action="append", choices=EVENT_TYPES, metavar="TYPE", default=[])
    wa.add_argument("--code", action="append", default=[], help="alarm code (repeatable)")
    wa.add_argument("--min-severity", choices=["critical", "major", "minor"])
    wa.add_argument("--lift", action="append", default=[], metavar="LIFT_ID")
    wa.set_defaults(handler=_webhooks_add)
    wl = wsub.add_parser("list", parents=[common], help="subscriptions (never their secrets)")
    wl.set_defaults(handler=_webhooks_list)
    wt = wsub.add_parser(
        "test", parents=[common], help="queue a webhook.test event to a subscription"
    )
    wt.add_argument("webhook_id", metavar="WEBHOOK_ID")
    wt.set_defaults(handler=_webhooks_test)


# --- talking to the API ----------------------------------------------------------------------


class Api:
    def __init__(self, args: argparse.Namespace) -> None:
        settings = settings_from(args)
        self.tz = settings.tz
        self.base = (args.api_url or settings.client_api_url).rstrip("/")
        token = args.token.strip() if args.token else settings.client_token
        if not token:
            raise UsageError(
                "no API token: set LIFTWATCH_API_TOKEN (or LIFTWATCH_ADMIN_TOKEN) or pass --token"
            )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
        self.client = httpx.Client(
            base_url=self.base + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=args.timeout,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Refused(f"cannot reach the API at {self.base}: {exc}") from None
        if r.status_code >= 400:
            raise Refused(_reason(r))
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def close(self) -> None:
        self.client.close()


class UsageError(Exception):
    pass


def _reason(r: httpx.Response) -> str:
    try:
        error = r.json()["error"]
        message, code, detail = error["message"], error["code"], error.get("detail")
    except (ValueError, KeyError, TypeError):
        return f"API refused ({r.status_code}): {r.text[:300]}"
    text = f"API refused ({r.status_code} {code}): {message}"
    if isinstance(detail, list):
        extra = [
            f"{d.get('field')}: {d.get('message')}"
            for d in detail
            if isinstance(d, dict) and f"{d.get('field')}: {d.get('message')}" not in message
        ]
        if extra:
            text += "; " + "; ".join(extra)
    return text


def _run(args: argparse.Namespace, job: Callable[[Api], int]) -> int:
    try:
        api = Api(args)
    except UsageError as exc:
        print(f"liftwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return job(api)
    except Refused as exc:
        print(f"liftwatch: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        api.close()


# --- output ----------------------------------------------------------------------------------


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain text columns, aligned for a terminal (a Chinese character is two columns)."""
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        parts = [v + " " * (w - _width(v)) for v, w in zip(row, widths, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # no line breaks or tabs inside a cell


def local(value: str | None, tz: ZoneInfo) -> str | None:
    """An API time (``…Z``) as ``YYYY-MM-DD HH:MM:SS`` in the site's zone."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _alarm_rows(api: Api, alarms: list[dict[str, Any]]) -> str:
    headers = (
        "ALARM_ID",
        "LIFT",
        "CODE",
        "NAME",
        "SEVERITY",
        "STATUS",
        "CONDITION",
        f"RAISED ({api.tz.key})",
        "OVERDUE",
        "LIFT_NAME",
    )
    rows = [
        (
            a["alarm_id"],
            a["lift_id"],
            a["code"] + (f"/{a['subtype']}" if a.get("subtype") else ""),
            a["name"]["zh"],
            a["severity"],
            a["status"] + (" (suppressed)" if a.get("suppressed") else ""),
            a["condition"],
            local(a["raised_at"], api.tz),
            a["overdue"],
            (a.get("lift") or {}).get("name"),
        )
        for a in alarms
    ]
    return table(headers, rows)


# --- alarms ----------------------------------------------------------------------------------


def _alarms_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        print("liftwatch: --limit must be 1-1000", file=sys.stderr)
        return EXIT_USAGE

    def job(api: Api) -> int:
        params: dict[str, Any] = {
            "status": args.status,
            "lift_id": args.lift,
            "company_id": args.company,
            "code": args.code,
            "severity": args.severity,
            "since": args.since,
            "until": args.until,
            "include_suppressed": "true" if args.suppressed else "false",
            "limit": args.limit,
            "cursor": args.cursor,
        }
        params = {k: v for k, v in params.items() if v}
        if args.active and not args.status:
            # Not resolved yet: one request per such status, merged newest first.
            items, more = [], None
            for status in ("open", "acknowledged", "on_site"):
                page = api.call("GET", "/alarms", params={**params, "status": status})
                items += page["items"]
                more = more or page["next_cursor"]
            items.sort(key=lambda a: (a["raised_at"], a["alarm_id"]), reverse=True)
            page = {"items": items[: args.limit], "next_cursor": None}
            if more or len(items) > args.limit:
                print(f"more than {args.limit} active alarms: raise --limit", file=sys.stderr)
        else:
            page = api.call("GET", "/alarms", params=params)
        items = page["items"]
        if args.json:
            _print_json({"items": items, "next_cursor": page["next_cursor"]})
        elif items:
            print(_alarm_rows(api, items))
        else:
            print("no alarms", file=sys.stderr)
        if page["next_cursor"] and not args.json:
            print(f"more: --cursor {page['next_cursor']}", file=sys.stderr)
        return EXIT_OK

    return _run(args, job)


def _alarm_action(args: argparse.Namespace) -> int:
    def job(api: Api) -> int:
        body: dict[str, Any] = {}
        if args.note is not None:
            body["note"] = args.note
        if args.action_path == "resolve":
            body["outcome"] = args.outcome
        alarm = api.call("POST", f"/alarms/{_segment(args.alarm_id)}/{args.action_path}", json=body)
        if args.json:
            _print_json(alarm)
        else:
            print(_alarm_rows(api, [alarm]))
        return EXIT_OK

    return _run(args, job)


def _segment(value: str) -> str:
    """An id as one path segment (the API validates it; this keeps ``/`` and ``?`` out)."""
    return quote(value, safe="")


# --- tokens ----------------------------------------------------------------------------------

_TOKEN_HEADERS = ("TOKEN_ID", "NAME", "ROLE", "COMPANY", "CREATED", "CREATED_BY", "LAST_USED")


def _token_row(t: dict[str, Any], tz: ZoneInfo) -> tuple[Any, ...]:
    return (
        t["token_id"],
        t["name"],
        t["role"],
        t.get("company_id"),
        local(t.get("created_at"), tz),
        t.get("created_by"),
        local(t.get("last_used_at"), tz),
    )


def _tokens_create(args: argparse.Namespace) -> int:
    def job(api: Api) -> int:
        body = {"role": args.role, "name": args.name, "company_id": args.company}
        created = api.call("POST", "/tokens", json={k: v for k, v in body.items() if v})
        if args.json:
            _print_json(created)
        else:
            print(
                table(
                    (*_TOKEN_HEADERS[:4], "TOKEN"),
                    [(*_token_row(created, api.tz)[:4], created["token"])],
                )
            )
        print("the token above is shown once: store it now", file=sys.stderr)
        return EXIT_OK

    return _run(args, job)


def _listing(
    args: argparse.Namespace,
    path: str,
    headers: Sequence[str],
    row: Callable[[dict[str, Any], Api], Sequence[Any]],
) -> int:
    """``GET path`` shown as a table of ``headers`` (one ``row`` per item) or as JSON."""

    def job(api: Api) -> int:
        items = api.call("GET", path)
        if args.json:
            _print_json(items)
        else:
            print(table(headers, [row(item, api) for item in items]))
        return EXIT_OK

    return _run(args, job)


def _tokens_list(args: argparse.Namespace) -> int:
    return _listing(args, "/tokens", _TOKEN_HEADERS, lambda t, api: _token_row(t, api.tz))


def _tokens_revoke(args: argparse.Namespace) -> int:
    def job(api: Api) -> int:
        api.call("DELETE", f"/tokens/{_segment(args.token_id)}")
        if args.json:
            _print_json({"token_id": args.token_id, "revoked": True})
        else:
            print(f"revoked {args.token_id}")
        return EXIT_OK

    return _run(args, job)


# --- webhooks --------------------------------------------------------------------------------

_HOOK_HEADERS = ("WEBHOOK_ID", "COMPANY", "URL", "ENABLED", "FILTERS", "DESCRIPTION")


def _hook_row(w: dict[str, Any]) -> tuple[Any, ...]:
    f = w.get("filters") or {}
    parts = [",".join(f[k]) if f.get(k) else "" for k in ("event_types", "codes", "lift_ids")]
    filters = " ".join(p for p in parts if p) + (
        f" >={f['min_severity']}" if f.get("min_severity") else ""
    )
    enabled = "yes" if w["enabled"] else f"no ({w.get('disabled_reason') or 'disabled'})"
    return (
        w["id"],
        w.get("company_id"),
        w["url"],
        enabled,
        filters.strip() or "all",
        w.get("description") or None,
    )


def _webhooks_add(args: argparse.Namespace) -> int:
    def job(api: Api) -> int:
        filters: dict[str, Any] = {
            "event_types": args.event,
            "codes": args.code,
            "lift_ids": args.lift,
        }
        if args.min_severity:
            filters["min_severity"] = args.min_severity
        body: dict[str, Any] = {
            "url": args.url,
            "description": args.description,
            "filters": filters,
        }
        if args.company:
            body["company_id"] = args.company
        created = api.call("POST", "/webhooks", json=body)
        if args.json:
            _print_json(created)
        else:
            print(
                table(
                    (*_HOOK_HEADERS[:4], "SECRET"), [(*_hook_row(created)[:4], created["secret"])]
                )
            )
        print(
            "the signing secret above is shown once: give it to the receiver now "
            "(docs/webhooks.md)",
            file=sys.stderr,
        )
        return EXIT_OK

    return _run(args, job)


def _webhooks_list(args: argparse.Namespace) -> int:
    return _listing(args, "/webhooks", _HOOK_HEADERS, lambda w, _: _hook_row(w))


def _webhooks_test(args: argparse.Namespace) -> int:
    def job(api: Api) -> int:
        d = api.call("POST", f"/webhooks/{_segment(args.webhook_id)}/test")
        if args.json:
            _print_json(d)
        else:
            print(
                table(
                    ("DELIVERY", "WEBHOOK", "EVENT", "STATUS", f"CREATED ({api.tz.key})"),
                    [
                        (
                            d["id"],
                            d["subscription_id"],
                            d["event_type"],
                            d["status"],
                            local(d["created_at"], api.tz),
                        )
                    ],
                )
            )
        return EXIT_OK

    return _run(args, job)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m liftwatch.cmd.client``: these commands alone (``liftwatch`` has them too)."""
    parser = argparse.ArgumentParser(prog="liftwatch", description="liftwatch API client")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML file with settings")
    parser.add_argument("--log-level", default="WARNING")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
