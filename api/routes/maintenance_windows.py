"""``/maintenance-windows``: declared maintenance suppresses derived alarms on a lift
(FAULTS.md § Suppression). Admins and the lift's maintainer create and delete them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

from api.auth import Principal, PrincipalDep, WriterDep, company_scope, visible_lift
from api.deps import DbDep
from api.errors import ApiError, conflict, invalid, not_found, responses
from api.timeparams import EXAMPLE, now_ms, parse_time
from liftwatch.protocol import format_ts
from liftwatch.store import Database, maintenance
from liftwatch.store.maintenance import MaintenanceWindow

router = APIRouter(tags=["maintenance-windows"], responses=responses(401, 403, 422))
LiftPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]

MAX_WINDOW_MS = 31 * 86_400_000


TimeValue = Annotated[str, StringConstraints(max_length=40)] | Annotated[int, Field(ge=0)]


class WindowInput(BaseModel):
    """The body under ``/lifts/{lift_id}/maintenance-windows`` (the path names the lift)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    starts_at: TimeValue = Field(
        description=f"time ({EXAMPLE})", validation_alias=AliasChoices("starts_at", "start")
    )
    ends_at: TimeValue = Field(
        description="after starts_at; at most 31 days later",
        validation_alias=AliasChoices("ends_at", "end"),
    )
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class WindowCreate(WindowInput):
    # The body of POST /maintenance-windows: WindowInput and the lift (a comment, not a
    # docstring, so the schema's description stays as it was).

    lift_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = Field(
        default=None, description="required here unless the path names the lift"
    )


class WindowOut(BaseModel):
    window_id: int
    lift_id: str
    starts_at: str
    ends_at: str
    reason: str
    created_by: str
    created_at: str


def _out(w: MaintenanceWindow) -> WindowOut:
    return WindowOut(
        window_id=w.window_id,
        lift_id=w.lift_id,
        starts_at=format_ts(w.starts_at),
        ends_at=format_ts(w.ends_at),
        reason=w.reason,
        created_by=w.created_by,
        created_at=format_ts(w.created_at),
    )


@router.get(
    "/maintenance-windows",
    response_model=list[WindowOut],
    summary="Maintenance windows",
    responses=responses(404),  # ?lift_id= names a lift that does not exist (or is not yours)
)
def list_windows(
    db: DbDep,
    principal: PrincipalDep,
    lift_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    include_past: bool = False,
) -> list[WindowOut]:
    company, _ = company_scope(principal, None)
    if lift_id is not None:
        visible_lift(db, principal, lift_id)
    windows = maintenance.search_maintenance_windows(
        db,
        lift_id=lift_id,
        company_id=company,
        ending_after=None if include_past else now_ms(),
    )
    return [_out(w) for w in windows]


@router.get(
    "/lifts/{lift_id}/maintenance-windows",
    response_model=list[WindowOut],
    summary="One lift's maintenance windows",
    responses=responses(404),
)
def list_lift_windows(
    lift_id: LiftPath, db: DbDep, principal: PrincipalDep, include_past: bool = False
) -> list[WindowOut]:
    return list_windows(db, principal, lift_id, include_past)


def _time(value: str | int, field: str) -> int:
    return parse_time(str(value), field, 0)


def _create(
    db: Database,
    principal: Principal,
    lift_id: str,
    starts_at: str | int,
    ends_at: str | int,
    reason: str,
) -> WindowOut:
    visible_lift(db, principal, lift_id)
    starts = _time(starts_at, "starts_at")
    ends = _time(ends_at, "ends_at")
    if ends <= starts:
        raise invalid("ends_at", "must be after starts_at")
    if ends - starts > MAX_WINDOW_MS:
        raise invalid("ends_at", "a window lasts at most 31 days")
    window = maintenance.add_maintenance_window(
        db, lift_id, starts, ends, reason=reason, created_by=principal.actor
    )
    return _out(window)


@router.post(
    "/maintenance-windows",
    status_code=201,
    response_model=WindowOut,
    summary="Declare a maintenance window on a lift",
    responses=responses(400, 404, 413),
)
def create_window(body: WindowCreate, db: DbDep, principal: WriterDep) -> WindowOut:
    if body.lift_id is None:
        raise invalid("lift_id", "required")
    return _create(db, principal, body.lift_id, body.starts_at, body.ends_at, body.reason)


@router.post(
    "/lifts/{lift_id}/maintenance-windows",
    status_code=201,
    response_model=WindowOut,
    summary="Declare a maintenance window on this lift",
    responses=responses(400, 404, 413),
)
def create_lift_window(
    lift_id: LiftPath, body: WindowInput, db: DbDep, principal: WriterDep
) -> WindowOut:
    return _create(db, principal, lift_id, body.starts_at, body.ends_at, body.reason)


def _visible_window(db: Database, principal: Principal, window_id: int) -> MaintenanceWindow:
    window = maintenance.get_maintenance_window(db, window_id)
    if window is None:
        raise not_found("maintenance window", str(window_id))
    try:
        visible_lift(db, principal, window.lift_id)
    except ApiError as exc:  # another company's lift: the window does not exist for you
        raise not_found("maintenance window", str(window_id)) from exc
    return window


@router.post(
    "/maintenance-windows/{window_id}/end",
    response_model=WindowOut,
    summary="End a maintenance window now (its record stays; alarms are no longer suppressed)",
    responses=responses(404, 409),
)
def end_window(
    window_id: Annotated[int, Path(ge=1, le=2**62)], db: DbDep, principal: WriterDep
) -> WindowOut:
    window = _visible_window(db, principal, window_id)
    now = now_ms()
    ended = maintenance.end_maintenance_window(db, window_id, now)
    if ended is None:
        if window.starts_at >= now:
            raise conflict("the window has not begun: delete it instead")
        raise conflict("the window has already ended")
    return _out(ended)


@router.delete(
    "/maintenance-windows/{window_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a maintenance window (alarms are no longer suppressed by it)",
    responses=responses(404),
)
def delete_window(
    window_id: Annotated[int, Path(ge=1, le=2**62)], db: DbDep, principal: WriterDep
) -> Response:
    _visible_window(db, principal, window_id)
    maintenance.delete_maintenance_window(db, window_id)
    return Response(status_code=204)
