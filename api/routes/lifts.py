"""``/lifts``: the registry (admin writes, deactivate instead of delete), bulk import, and
one lift's detail with live state and open alarms."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from api.auth import AdminDep, PrincipalDep, WriterDep, company_scope, ensure_admin, visible_lift
from api.deps import DbDep, EngineDep, InfluxDep, registry_changed
from api.errors import ApiError, conflict, invalid, not_found, responses, validation_detail
from api.importer import ImportResult, charset_of, import_body
from api.live import LiveState, live_state
from api.open_alarms import open_alarms
from liftwatch.registry import (
    CompanyId,
    Lift,
    describe_errors,
)
from liftwatch.store import IntegrityError, is_foreign_key_violation, lift_queries
from liftwatch.store import registry as reg

log = logging.getLogger("liftwatch.api")

router = APIRouter(prefix="/lifts", tags=["lifts"], responses=responses(401, 403, 422))

LiftPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class LiftPage(BaseModel):
    items: list[Lift]
    next_cursor: str | None = Field(description="pass as cursor for the next page")


class LiftDetail(Lift):
    live: LiveState
    open_alarms: list[dict[str, Any]]
    problems: list[str] = Field(
        default_factory=list,
        description="why the alerts engine does not use this entry exactly as stored (stored"
        " values out of range run on the defaults; no rated_speed: no overspeed check)",
    )


def lift_problems(lift: Lift, stored: str | None) -> list[str]:
    """FAULTS.md 1.1 #1, #2: what the registry entry shows about its gaps."""
    out = [stored] if stored else []  # stored values the engine cannot use (store/registry.py)
    if lift.rated_speed is None:
        out.append("rated_speed unknown: not checked for overspeed")
    return out


class LiftPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registration_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,32}$")] | None = (
        None
    )
    rescue_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    area_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,12}$")] | None = None
    company_id: CompanyId | None = None
    rated_speed: Annotated[float, Field(gt=0, le=20)] | None = None
    floors: Annotated[int, Field(ge=2, le=300)] | None = None
    urban: bool | None = None
    active: bool | None = None
    overrides: dict[str, float] | None = None


@router.get("", response_model=LiftPage, summary="List lifts (a maintainer: its own)")
def list_lifts(
    db: DbDep,
    principal: PrincipalDep,
    company_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    active: bool | None = None,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LiftPage:
    company, empty = company_scope(principal, company_id)
    if empty:
        return LiftPage(items=[], next_cursor=None)
    items = lift_queries.search_lifts(
        db, company_id=company, active=active, after=cursor or "", limit=limit
    )
    return LiftPage(items=items, next_cursor=items[-1].lift_id if len(items) == limit else None)


def _store(db: DbDep, lift: Lift) -> str:
    try:
        return reg.upsert_lift(db, lift)
    except IntegrityError as exc:
        text = str(exc)
        if is_foreign_key_violation(exc):
            raise invalid("company_id", f"unknown company {lift.company_id!r}") from exc
        if "registration_code" in text:
            raise conflict(
                f"registration_code {lift.registration_code!r} belongs to another lift"
            ) from exc
        raise


@router.post(
    "",
    status_code=201,
    response_model=Lift,
    summary="Register a lift",
    responses=responses(400, 409, 413),
)
def create_lift(body: Lift, db: DbDep, _: AdminDep, engine: EngineDep) -> Lift:
    if reg.get_lift(db, body.lift_id) is not None:
        raise conflict(f"lift {body.lift_id!r} already exists; PATCH or PUT it instead")
    _store(db, body)
    registry_changed(engine)
    return body


@router.post(
    "/import",
    response_model=ImportResult,
    summary="Bulk import lifts from CSV or JSON (idempotent)",
    responses=responses(400, 413, 415),
    description="Send `Content-Type: text/csv` (header row; columns as in docs/registry.md) or "
    "`application/json` (a list of lift objects). Good rows are imported even when others "
    "are rejected; each rejection names its line.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def import_lifts(
    request: Request,
    db: DbDep,
    _: AdminDep,
    engine: EngineDep,
    format: Annotated[Literal["csv", "json"] | None, Query()] = None,
) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind = format or {"text/csv": "csv", "application/json": "json"}.get(media)
    if kind is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send Content-Type text/csv or application/json (or ?format=csv|json)",
        )
    raw = await request.body()
    # Parsing, validating and writing 32 MiB (about 250,000 rows) takes seconds of CPU: never
    # on the event loop, which in `liftwatch serve` also carries ingest, alerts and webhook
    # delivery (security review #4; api/importer.py).
    started = time.monotonic()
    size = len(raw)
    body = await import_body(db, kind, raw, charset_of(request.headers.get("content-type")))
    del raw
    imported = time.monotonic()
    await asyncio.to_thread(registry_changed, engine)  # SQLite reads: off the event loop
    log.info(
        "event=lift_import bytes=%d import_s=%.2f engine_refresh_s=%.2f",
        size,
        imported - started,
        time.monotonic() - imported,
    )
    return Response(body, media_type="application/json")


@router.get(
    "/{lift_id}",
    response_model=LiftDetail,
    summary="One lift: registry data, live state and open alarms",
    responses=responses(404),
)
async def get_lift(
    lift_id: LiftPath, db: DbDep, influx: InfluxDep, principal: PrincipalDep
) -> LiftDetail:
    lift = visible_lift(db, principal, lift_id)
    live = await live_state(influx, lift_id)
    checked = reg.get_lift_checked(db, lift_id)
    problems = lift_problems(lift, checked[1] if checked is not None else None)
    return LiftDetail(
        **lift.model_dump(),
        live=live,
        open_alarms=open_alarms(db, lift_id, principal),
        problems=problems,
    )


@router.put(
    "/{lift_id}",
    response_model=Lift,
    summary="Create or replace a lift",
    responses=responses(400, 404, 409, 413),
)
def put_lift(
    lift_id: LiftPath, body: Lift, db: DbDep, principal: WriterDep, engine: EngineDep
) -> Lift:
    if body.lift_id != lift_id:
        raise invalid("lift_id", "must match the lift id in the path")
    if principal.role != "admin":
        visible_lift(db, principal, lift_id)  # 404 first: existence is not disclosed
    ensure_admin(principal)
    _store(db, body)
    registry_changed(engine)
    return body


@router.patch(
    "/{lift_id}",
    response_model=Lift,
    summary="Change some of a lift's fields",
    responses=responses(400, 404, 409, 413),
)
def patch_lift(
    lift_id: LiftPath, body: LiftPatch, db: DbDep, principal: WriterDep, engine: EngineDep
) -> Lift:
    lift = visible_lift(db, principal, lift_id)
    ensure_admin(principal)
    try:
        changed = Lift.model_validate(lift.model_dump() | body.model_dump(exclude_unset=True))
    except ValidationError as exc:  # e.g. an explicit null for a required field
        raise ApiError(
            422, "validation_error", describe_errors(exc), validation_detail(exc.errors())
        ) from exc
    _store(db, changed)
    registry_changed(engine)
    return changed


@router.delete(
    "/{lift_id}",
    response_model=Lift,
    summary="Deactivate a lift (it raises no alarms; its history is kept)",
    responses=responses(404),
)
def deactivate_lift(lift_id: LiftPath, db: DbDep, principal: WriterDep, engine: EngineDep) -> Lift:
    lift = visible_lift(db, principal, lift_id)
    ensure_admin(principal)
    if not reg.set_lift_active(db, lift_id, False):
        raise not_found("lift", lift_id)
    registry_changed(engine)
    return lift.model_copy(update={"active": False})
