"""``/alarms``: list (filters, cursor, CSV export), detail with transitions, the lifecycle
actions acknowledge / on-site / resolve, and the server-sent-events stream.

A maintainer sees the alarms raised under its company (``company_id`` recorded on the alarm
at raise time); others are 404. Actions call ``alerts.lifecycle`` (the engine's transition
API), recorded with the token's identity; a step backwards or repeated is 409.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alerts import lifecycle
from api import csvsafe
from api.auth import BOOTSTRAP_ID, Principal, PrincipalDep, WriterDep, company_scope
from api.deps import DbDep, EngineDep
from api.errors import conflict, invalid, not_found, responses
from api.sessions import principal_in_force
from api.timeparams import EXAMPLE, parse_time
from liftwatch.protocol import format_ts
from liftwatch.store import Database, changes, outbox
from liftwatch.store import alarm_queries as aq
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from liftwatch.store.alarms import Alarm
from liftwatch.views import alarm_view

router = APIRouter(prefix="/alarms", tags=["alarms"], responses=responses(401, 403, 422))

AlarmPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Status = Literal["open", "acknowledged", "on_site", "resolved"]
Severity = Literal["critical", "major", "minor"]
Condition = Literal["active", "cleared"]
Outcome = Literal["rescued", "repaired", "false_alarm", "test"]
Note = Annotated[str, StringConstraints(max_length=2000)]
CSV_MAX_ROWS = 100_000


class Names(BaseModel):
    zh: str
    en: str


class LiftCard(BaseModel):
    name: str | None
    address: str | None
    company_id: str | None
    rescue_code: str | None


class AlarmOut(BaseModel):
    """The alarm resource: the same ``data`` object the webhooks carry (WEBHOOKS.md)."""

    model_config = ConfigDict(extra="allow")

    alarm_id: str
    lift_id: str
    code: str
    subtype: str | None
    name: Names
    severity: Severity
    source: str
    status: Status
    condition: Condition
    suspected: bool
    occurrences: int
    raised_at: str
    acknowledged_at: str | None
    on_site_at: str | None
    resolved_at: str | None
    outcome: str | None
    resolved_by: str | None
    cleared_at: str | None
    escalations: int
    deadline_at: str | None
    overdue: bool
    suppressed: bool
    suppressed_reason: str | None
    unregistered: bool
    company_id: str | None
    evidence: dict[str, Any]
    lift: LiftCard


class TransitionOut(BaseModel):
    id: int | None
    at: str
    event: str
    from_state: str | None
    to_state: str | None
    actor: str
    note: str | None


class AlarmDetail(AlarmOut):
    transitions: list[TransitionOut]


class AlarmPage(BaseModel):
    items: list[AlarmOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page")


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = None


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = Field(description="rescued, repaired, false_alarm or test")
    note: Note | None = None


def _views(db: Database, alarms: list[Alarm]) -> list[dict[str, Any]]:
    cards: dict[str, dict[str, Any] | None] = {}
    out = []
    for a in alarms:
        if a.lift_id not in cards:
            cards[a.lift_id] = reg.lift_card(db, a.lift_id)
        out.append(alarm_view(a, cards[a.lift_id]))
    return out


def visible_alarm(db: Database, principal: Principal, alarm_id: str) -> Alarm:
    alarm = store.get_alarm(db, alarm_id)
    if alarm is None or not principal.sees_company(alarm.company_id):
        raise not_found("alarm", alarm_id)
    return alarm


# --- the stream comes first: "/stream" must not be read as an alarm id --------------------


RECHECK_S = 1.0  # an open stream re-checks its token (revoked? company deactivated?)


KEEPALIVE_S = 15.0
_ENDS_STREAMS = (changes.TOKEN, changes.COMPANY)


async def _feed(
    request: Request,
    db: Database,
    company_id: str | None,
    after: int,
    poll_s: float,
    who: Principal | None,
) -> AsyncIterator[bytes]:
    """``who`` None: the bootstrap admin (not in the store, never revoked).

    Woken by the change feed (liftwatch/store/changes.py) as soon as any process commits
    outbox rows, a token revocation or a company change; ``poll_s`` and :data:`RECHECK_S` are
    only the fallback if a wake-up were lost. Ends at once when the server begins to stop
    (api/app.py ``begin_shutdown``): the client reconnects with ``Last-Event-ID``."""
    yield b": liftwatch alarm events\nretry: 2000\n\n"
    stopping: asyncio.Event = request.app.state.stopping
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        with changes.Waker(db, kinds=_ENDS_STREAMS) as waker:
            last_beat = last_check = time.monotonic()
            while True:
                if stopping.is_set():
                    yield b": liftwatch is stopping; reconnect with Last-Event-ID\n\n"
                    return
                if await request.is_disconnected():
                    return
                revoked = bool(waker.take())
                now = time.monotonic()
                if who is not None and (revoked or now - last_check >= RECHECK_S):
                    last_check = now
                    settings = request.app.state.settings
                    if not await asyncio.to_thread(principal_in_force, db, who, settings):
                        return  # the client's reconnect is answered 401 with the reason
                events = await asyncio.to_thread(
                    outbox.outbox_after, db, after, company_id=company_id
                )
                for e in events:
                    after = e.id
                    yield f"id: {e.id}\nevent: {e.event_type}\ndata: {e.payload}\n\n".encode()
                if not events:
                    now = time.monotonic()
                    if now - last_beat > KEEPALIVE_S:
                        last_beat = now
                        yield b": keep-alive\n\n"
                    timeout = min(poll_s, max(0.0, last_beat + KEEPALIVE_S - now))
                    if who is not None:
                        timeout = min(timeout, max(0.0, last_check + RECHECK_S - now))
                    woken = asyncio.ensure_future(waker.wait(timeout))
                    await asyncio.wait({woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    if not woken.done():
                        woken.cancel()
    finally:
        stopped.cancel()


MAX_EVENT_ID = 2**62


def _event_id(header: str) -> int:
    """A ``Last-Event-ID``: ASCII digits only (``str.isdigit`` admits ``²``), at most 2**62
    like ``after``; anything else is 422 rather than a 500 or a stream that dies later."""
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EVENT_ID:
        raise invalid("Last-Event-ID", f"must be an event id (an integer 0..{MAX_EVENT_ID})")
    return int(text)


@router.get(
    "/stream",
    summary="Server-sent events: alarm notifications as they happen",
    description="Each event is one notification with the webhook body (WEBHOOKS.md) as "
    "`data`, the notification type as `event` and its sequence number as `id`. Reconnect "
    "with `Last-Event-ID` (or `after`) to resume without gaps. A maintainer receives its "
    "company's alarms only; suppressed alarms are never sent.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream(
    request: Request,
    db: DbDep,
    principal: PrincipalDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    start = after
    if start is None and last_event_id:
        start = _event_id(last_event_id)
    if start is None:
        start = await asyncio.to_thread(outbox.last_outbox_id, db)
    company = principal.company_id if principal.role == "maintainer" else None
    poll_s = request.app.state.settings.api_sse_poll_ms / 1000
    who = None if principal.token_id == BOOTSTRAP_ID else principal
    return StreamingResponse(
        _feed(request, db, company, start, poll_s, who),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- listing --------------------------------------------------------------------------------

CSV_COLUMNS = (
    "alarm_id",
    "lift_id",
    "company_id",
    "code",
    "subtype",
    "name_zh",
    "name_en",
    "severity",
    "source",
    "status",
    "condition",
    "suspected",
    "occurrences",
    "raised_at",
    "acknowledged_at",
    "on_site_at",
    "resolved_at",
    "outcome",
    "resolved_by",
    "cleared_at",
    "escalations",
    "deadline_at",
    "overdue",
    "suppressed",
    "suppressed_reason",
    "lift_name",
    "lift_address",
)


def csv_row(view: dict[str, Any]) -> list[str]:
    flat = dict(view)
    flat["name_zh"], flat["name_en"] = view["name"]["zh"], view["name"]["en"]
    flat["lift_name"], flat["lift_address"] = view["lift"]["name"], view["lift"]["address"]
    return [csvsafe.cell(flat.get(c)) for c in CSV_COLUMNS]


def _csv_header() -> Iterator[str]:
    yield csvsafe.header(CSV_COLUMNS)


def _csv(
    db: Database, f: aq.AlarmFilter, order: Literal["asc", "desc"], cursor: str | None
) -> Iterator[str]:
    buf = io.StringIO()
    writer = csvsafe.writer(buf)
    buf.write(csvsafe.header(CSV_COLUMNS))  # UTF-8 BOM first: Excel shows 困人, not mojibake
    sent = 0
    while sent < CSV_MAX_ROWS:
        batch = aq.search_alarms(db, f, order=order, cursor=cursor, limit=1000)
        for view in _views(db, batch):
            writer.writerow(csv_row(view))
        sent += len(batch)
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(batch) < 1000:
            return
        cursor = batch[-1].alarm_id


@router.get(
    "",
    response_model=AlarmPage,
    summary="Alarms, newest first; filters, cursor pagination, CSV export",
    description="Time range filters `raised_at` (`since` inclusive, `until` exclusive; "
    f"{EXAMPLE}). `format=csv` streams every matching alarm (up to {CSV_MAX_ROWS}) as CSV.",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def list_alarms(
    db: DbDep,
    principal: PrincipalDep,
    lift_id: Id | None = None,
    company_id: Id | None = None,
    code: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    severity: Severity | None = None,
    status: Status | None = None,
    condition: Condition | None = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    include_suppressed: bool = True,
    order: Literal["asc", "desc"] = "desc",
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "csv"] = "json",
) -> Any:
    company, empty = company_scope(principal, company_id)
    since_ms = parse_time(since, "since", 0) if since else None
    until_ms = parse_time(until, "until", 0) if until else None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise invalid("until", "must be after since")
    f = aq.AlarmFilter(
        lift_id=lift_id,
        company_id=company,
        code=code,
        severity=severity,
        status=status,
        condition=condition,
        since_ms=since_ms,
        until_ms=until_ms,
        include_suppressed=include_suppressed,
    )
    if format == "csv":
        rows: Iterator[str] = _csv_header() if empty else _csv(db, f, order, cursor)
        return StreamingResponse(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="alarms.csv"'},
        )
    if empty:
        return AlarmPage(items=[], next_cursor=None)
    alarms = aq.search_alarms(db, f, order=order, cursor=cursor, limit=limit)
    return {
        "items": _views(db, alarms),
        "next_cursor": alarms[-1].alarm_id if len(alarms) == limit else None,
    }


@router.get(
    "/{alarm_id}",
    response_model=AlarmDetail,
    summary="One alarm with its evidence and every transition",
    responses=responses(404),
)
def get_alarm(alarm_id: AlarmPath, db: DbDep, principal: PrincipalDep) -> dict[str, Any]:
    alarm = visible_alarm(db, principal, alarm_id)
    view = alarm_view(alarm, reg.lift_card(db, alarm.lift_id))
    view["transitions"] = [
        {
            "id": t.id,
            "at": format_ts(t.at),
            "event": t.event,
            "from_state": t.from_state,
            "to_state": t.to_state,
            "actor": t.actor,
            "note": t.note,
        }
        for t in store.transitions_of(db, alarm_id)
    ]
    return view


# --- actions --------------------------------------------------------------------------------


def _act(
    db: Database,
    principal: Principal,
    engine: Any,
    alarm_id: str,
    step: Literal["acknowledged", "on_site", "resolved"],
    note: str | None,
    outcome: str | None = None,
) -> dict[str, Any]:
    visible_alarm(db, principal, alarm_id)
    listener = engine if hasattr(engine, "alarm_changed") else None
    try:
        if step == "acknowledged":
            alarm = lifecycle.acknowledge(
                db, alarm_id, actor=principal.actor, note=note, listener=listener
            )
        elif step == "on_site":
            alarm = lifecycle.mark_on_site(
                db, alarm_id, actor=principal.actor, note=note, listener=listener
            )
        else:
            assert outcome is not None
            alarm = lifecycle.resolve(
                db, alarm_id, actor=principal.actor, outcome=outcome, note=note, listener=listener
            )
    except lifecycle.AlarmNotFound as exc:
        raise not_found("alarm", alarm_id) from exc
    except lifecycle.InvalidTransition as exc:
        raise conflict(str(exc), {"status": exc.status, "wanted": exc.wanted}) from exc
    except lifecycle.InvalidOutcome as exc:
        raise invalid("outcome", str(exc)) from exc
    return alarm_view(alarm, reg.lift_card(db, alarm.lift_id))


_ACTION_ERRORS = responses(400, 404, 409, 413)


@router.post(
    "/{alarm_id}/acknowledge",
    response_model=AlarmOut,
    summary="The maintenance company takes the alarm (stops escalation)",
    responses=_ACTION_ERRORS,
)
def acknowledge(
    alarm_id: AlarmPath,
    db: DbDep,
    principal: WriterDep,
    engine: EngineDep,
    body: NoteBody | None = None,
) -> dict[str, Any]:
    return _act(db, principal, engine, alarm_id, "acknowledged", body.note if body else None)


@router.post(
    "/{alarm_id}/on-site",
    response_model=AlarmOut,
    summary="A technician arrived at the lift",
    responses=_ACTION_ERRORS,
)
@router.post("/{alarm_id}/on_site", response_model=AlarmOut, include_in_schema=False)
def on_site(
    alarm_id: AlarmPath,
    db: DbDep,
    principal: WriterDep,
    engine: EngineDep,
    body: NoteBody | None = None,
) -> dict[str, Any]:
    return _act(db, principal, engine, alarm_id, "on_site", body.note if body else None)


@router.post(
    "/{alarm_id}/resolve",
    response_model=AlarmOut,
    summary="End the alarm with an outcome (the API form of EN 81-28 end of alarm)",
    responses=_ACTION_ERRORS,
)
def resolve(
    alarm_id: AlarmPath,
    body: ResolveBody,
    db: DbDep,
    principal: WriterDep,
    engine: EngineDep,
) -> dict[str, Any]:
    return _act(db, principal, engine, alarm_id, "resolved", body.note, body.outcome)
