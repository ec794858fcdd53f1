"""The dispatcher's screens (issue 16 "Dispatcher"): the live alarm queue, an alarm, finding a
lift, a lift's page, maintenance windows.

Reads go through the store queries and scoping the API uses: ``company_scope`` for listings,
``visible_alarm`` / ``visible_lift`` (404 for another company's) for one resource, each
alarm's own ``company_id`` for a lift's alarms (``api/open_alarms.py``). Every change is a
call of the JSON API from the page (``static/console.js``, with ``X-CSRF-Token``), so the
lifecycle rules and their refusals are the API's own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from api.auth import Principal, company_scope, visible_lift
from api.console.render import PersonDep, render, require_roles
from api.deps import DbDep, InfluxDep
from api.errors import ApiError
from api.live import live_state
from api.open_alarms import open_alarms
from api.routes import history
from api.routes.alarms import visible_alarm
from liftwatch.clock import now_ms
from liftwatch.faults import CODES, names
from liftwatch.registry import Lift
from liftwatch.store import Database, maintenance
from liftwatch.store import alarm_queries as aq
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from liftwatch.store.registry import lift_from_row
from liftwatch.views import alarm_view

router = APIRouter()

ACTIVE: tuple[str, ...] = ("open", "acknowledged", "on_site")
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2}
QUEUE_LIMIT = 1000
SSE_EVENTS = ", ".join(
    f"sse:{t}"
    for t in (
        "alarm.raised",
        "alarm.acknowledged",
        "alarm.on_site",
        "alarm.resolved",
        "alarm.escalated",
        "alarm.overdue",
        "alarm.condition_cleared",
        "alarm.condition_returned",
        "alarm.summary",
    )
)
Severity = Literal["critical", "major", "minor"]
Code = Annotated[str | None, Query(pattern=r"^[a-z_]{0,40}$")]
Writer = require_roles("admin", "maintainer")
Reader = require_roles("admin", "maintainer", "inspector")


@dataclass
class Group:
    """Alarms of one site (the same address): one power cut can trap passengers in 8 lifts."""

    address: str
    alarms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lifts(self) -> int:
        return len({a["lift_id"] for a in self.alarms})


def _sort_key(view: dict[str, Any]) -> tuple[int, str]:
    # critical first, then the oldest (waiting longest) first; ISO times sort as times
    return SEVERITY_RANK.get(view["severity"], 9), view["raised_at"]


def active_alarms(
    db: Database,
    principal: Principal,
    *,
    unacknowledged: bool = False,
    severity: str | None = None,
    code: str | None = None,
) -> list[dict[str, Any]]:
    """The unresolved, unsuppressed alarms the person may see, in queue order."""
    company, empty = company_scope(principal, None)
    if empty:
        return []
    cards: dict[str, dict[str, Any] | None] = {}
    views: list[dict[str, Any]] = []
    for status in ("open",) if unacknowledged else ACTIVE:
        f = aq.AlarmFilter(
            company_id=company,
            status=status,
            severity=severity,
            code=code or None,
            include_suppressed=False,
        )
        for a in aq.search_alarms(db, f, limit=QUEUE_LIMIT):
            if not principal.sees_company(a.company_id):
                continue
            if a.lift_id not in cards:
                cards[a.lift_id] = reg.lift_card(db, a.lift_id)
            views.append(alarm_view(a, cards[a.lift_id]))
    views.sort(key=_sort_key)
    return views


def grouped(views: list[dict[str, Any]]) -> list[Group]:
    """Queue order kept; alarms of lifts at one address (two lifts or more) gathered under
    the site's first place in the queue."""
    by_address: dict[str, Group] = {}
    out: list[Group] = []
    for v in views:
        address = (v["lift"].get("address") or "").strip()
        if address and address in by_address:
            by_address[address].alarms.append(v)
            continue
        g = Group(address=address, alarms=[v])
        if address:
            by_address[address] = g
        out.append(g)
    return out


def _queue_context(
    db: Database,
    principal: Principal,
    unacknowledged: bool,
    severity: str | None,
    code: str | None,
) -> dict[str, Any]:
    views = active_alarms(
        db, principal, unacknowledged=unacknowledged, severity=severity, code=code
    )
    return {
        "groups": grouped(views),
        "count": len(views),
        "critical_open": sum(
            1 for v in views if v["severity"] == "critical" and v["status"] == "open"
        ),
        "filters": {"unack": unacknowledged, "severity": severity or "", "code": code or ""},
    }


@router.get("/")
def index(principal: PersonDep) -> Response:
    if principal.role == "inspector":
        return RedirectResponse("/console/city", status_code=303)
    return RedirectResponse("/console/alarms", status_code=303)


@router.get("/alarms")
def queue_page(
    request: Request,
    db: DbDep,
    principal: Annotated[Principal, Reader],
    unack: bool = False,
    severity: Severity | None = None,
    code: Code = None,
) -> Response:
    ctx = _queue_context(db, principal, unack, severity, code)
    # every code the engine can raise, the most severe first
    codes = sorted(CODES, key=lambda c: (SEVERITY_RANK.get(CODES[c].severity, 9), c))
    return render(
        request,
        "dispatch/queue.html",
        nav="alarms",
        sse_events=SSE_EVENTS,
        codes=codes,
        code_names={c: names(c, None) for c in codes},
        **ctx,
    )


@router.get("/alarms/queue")
def queue_fragment(
    request: Request,
    db: DbDep,
    principal: Annotated[Principal, Reader],
    unack: bool = False,
    severity: Annotated[Severity | Literal[""], Query()] = "",
    code: Code = None,
) -> Response:
    ctx = _queue_context(db, principal, unack, severity or None, code)
    return render(request, "dispatch/_queue.html", **ctx)


def _not_found(request: Request, exc: ApiError) -> Response:
    return render(request, "notfound.html", status_code=404, message=exc.message)


@router.get("/alarms/{alarm_id}")
async def alarm_page(
    alarm_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
    request: Request,
    db: DbDep,
    influx: InfluxDep,
    principal: Annotated[Principal, Reader],
) -> Response:
    try:
        alarm = await asyncio.to_thread(visible_alarm, db, principal, alarm_id)
    except ApiError as exc:
        return _not_found(request, exc)
    view = alarm_view(alarm, reg.lift_card(db, alarm.lift_id))
    lift = reg.get_lift(db, alarm.lift_id)
    transitions = store.transitions_of(db, alarm_id)
    # the floor: the evidence's (where it happened), else the lift's last reported floor
    live = await live_state(influx, alarm.lift_id)
    return render(
        request,
        "dispatch/alarm.html",
        nav="alarms",
        sse_events=SSE_EVENTS,
        alarm=view,
        lift=lift,
        live=live,
        transitions=transitions,
        can_act=principal.role in ("admin", "maintainer"),
    )


# --- finding a lift ---------------------------------------------------------------------------


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def find_lifts(db: Database, principal: Principal, q: str, limit: int = 50) -> list[Lift]:
    """Lifts the person may see matching ``q``: exactly by the 6-digit rescue code (96333),
    the registration code or the lift id; by part of the name or the address."""
    text = q.strip()
    if not text:
        return []
    company, empty = company_scope(principal, None)
    if empty:
        return []
    scope = "" if company is None else " AND company_id = ?"
    like = _like(text)
    params: list[Any] = [text, text, text, like, like]
    if company is not None:
        params.append(company)
    rows = db.conn.execute(
        "SELECT * FROM lifts WHERE (rescue_code = ? OR registration_code = ? OR lift_id = ?"  # noqa: S608 - fixed SQL, bound values
        " OR name LIKE ? ESCAPE '\\' OR address LIKE ? ESCAPE '\\')"
        f"{scope} ORDER BY lift_id LIMIT ?",
        [*params, limit],
    ).fetchall()
    found = [lift_from_row(r) for r in rows]
    exact = [x for x in found if text in (x.rescue_code, x.registration_code, x.lift_id)]
    rest = [x for x in found if x not in exact]
    return [x for x in exact + rest if principal.sees_lift(x)]


@router.get("/find")
def find_page(
    request: Request,
    db: DbDep,
    principal: Annotated[Principal, Reader],
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    lifts = find_lifts(db, principal, q)
    if len(lifts) == 1 and q.strip() in (lifts[0].rescue_code, lifts[0].registration_code):
        return RedirectResponse(f"/console/lifts/{lifts[0].lift_id}", status_code=303)
    return render(request, "dispatch/find.html", nav="find", q=q, lifts=lifts)


# --- a lift -----------------------------------------------------------------------------------


async def _events(
    lift_id: str, db: Database, influx: Any, principal: Principal
) -> list[dict[str, Any]] | None:
    """The last day's device events through the API's own query; None when InfluxDB could
    not answer (the page says so instead of failing)."""
    try:
        answer = await history.events(lift_id, db, influx, principal, order="desc", limit=200)
    except ApiError:
        return None
    return answer.events


@router.get("/lifts/{lift_id}")
async def lift_page(
    lift_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
    request: Request,
    db: DbDep,
    influx: InfluxDep,
    principal: Annotated[Principal, Reader],
) -> Response:
    try:
        lift = await asyncio.to_thread(visible_lift, db, principal, lift_id)
    except ApiError as exc:
        return _not_found(request, exc)
    live, events = await asyncio.gather(
        live_state(influx, lift_id), _events(lift_id, db, influx, principal)
    )
    active = await asyncio.to_thread(open_alarms, db, lift_id, principal)
    week_ago = now_ms() - 7 * 86_400_000
    recent = [
        a
        for a in await asyncio.to_thread(
            aq.search_alarms, db, aq.AlarmFilter(lift_id=lift_id, since_ms=week_ago), limit=50
        )
        if principal.sees_company(a.company_id)
    ]
    timeline: list[dict[str, Any]] = [
        {"at": e["time"], "kind": "event", "what": e.get("type", ""), "detail": e}
        for e in events or []
    ]
    for a in recent:
        n = names(a.code, a.subtype)
        timeline.append(
            {"at": alarm_view(a, None)["raised_at"], "kind": "alarm", "what": n, "alarm": a}
        )
    timeline.sort(key=lambda x: x["at"], reverse=True)
    return render(
        request,
        "dispatch/lift.html",
        nav="find",
        lift=lift,
        live=live,
        open_alarms=active,
        timeline=timeline,
        events_available=events is not None,
    )


@router.get("/lifts/{lift_id}/live")
async def lift_live_fragment(
    lift_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
    request: Request,
    db: DbDep,
    influx: InfluxDep,
    principal: Annotated[Principal, Reader],
) -> Response:
    """The live state alone, refreshed by the lift page every few seconds."""
    try:
        await asyncio.to_thread(visible_lift, db, principal, lift_id)
    except ApiError as exc:
        return _not_found(request, exc)
    return render(request, "dispatch/_live.html", live=await live_state(influx, lift_id))


# --- maintenance windows ------------------------------------------------------------------------


@router.get("/maintenance")
def maintenance_page(
    request: Request,
    db: DbDep,
    principal: Annotated[Principal, Reader],
    include_past: bool = False,
) -> Response:
    company, empty = company_scope(principal, None)
    windows = (
        []
        if empty
        else maintenance.search_maintenance_windows(
            db, company_id=company, ending_after=None if include_past else now_ms()
        )
    )
    lifts = [] if empty else reg.list_lifts(db, company_id=company, limit=1000)
    return render(
        request,
        "dispatch/maintenance.html",
        nav="maintenance",
        windows=windows,
        lifts=[x for x in lifts if principal.sees_lift(x)],
        now=now_ms(),
        include_past=include_past,
        can_act=principal.role in ("admin", "maintainer"),
    )
