"""``/maintenance-windows``: declared maintenance suppresses derived alarms on a lift
(FAULTS.md § Suppression). Admins and the lift's maintainer create and delete them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import PrincipalDep, WriterDep, company_scope, visible_lift
from api.deps import DbDep
from api.errors import ApiError, invalid, not_found, responses
from api.timeparams import EXAMPLE, now_ms, parse_time
from liftwatch.protocol import format_ts
from liftwatch.store import alarm_queries as aq
from liftwatch.store import alarms as store
from liftwatch.store.alarms import MaintenanceWindow

router = APIRouter(
    prefix="/maintenance-windows",
    tags=["maintenance-windows"],
    responses=responses(401, 403, 422),
)

MAX_WINDOW_MS = 31 * 86_400_000


class WindowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lift_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    starts_at: Annotated[str, StringConstraints(max_length=40)] = Field(
        description=f"time ({EXAMPLE})"
    )
    ends_at: Annotated[str, StringConstraints(max_length=40)] = Field(
        description="after starts_at; at most 31 days later"
    )
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


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


@router.get("", response_model=list[WindowOut], summary="Maintenance windows")
def list_windows(
    db: DbDep,
    principal: PrincipalDep,
    lift_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    include_past: bool = False,
) -> list[WindowOut]:
    company, _ = company_scope(principal, None)
    if lift_id is not None:
        visible_lift(db, principal, lift_id)
    windows = aq.search_maintenance_windows(
        db,
        lift_id=lift_id,
        company_id=company,
        ending_after=None if include_past else now_ms(),
    )
    return [_out(w) for w in windows]


@router.post(
    "",
    status_code=201,
    response_model=WindowOut,
    summary="Declare a maintenance window on a lift",
    responses=responses(400, 404, 413),
)
def create_window(body: WindowCreate, db: DbDep, principal: WriterDep) -> WindowOut:
    visible_lift(db, principal, body.lift_id)
    starts = parse_time(body.starts_at, "starts_at", 0)
    ends = parse_time(body.ends_at, "ends_at", 0)
    if ends <= starts:
        raise invalid("ends_at", "must be after starts_at")
    if ends - starts > MAX_WINDOW_MS:
        raise invalid("ends_at", "a window lasts at most 31 days")
    window = store.add_maintenance_window(
        db, body.lift_id, starts, ends, reason=body.reason, created_by=principal.actor
    )
    return _out(window)


@router.delete(
    "/{window_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a maintenance window (alarms are no longer suppressed by it)",
    responses=responses(404),
)
def delete_window(
    window_id: Annotated[int, Path(ge=1, le=2**62)], db: DbDep, principal: WriterDep
) -> Response:
    window = aq.get_maintenance_window(db, window_id)
    if window is None:
        raise not_found("maintenance window", str(window_id))
    try:
        visible_lift(db, principal, window.lift_id)
    except ApiError as exc:  # another company's lift: the window does not exist for you
        raise not_found("maintenance window", str(window_id)) from exc
    store.delete_maintenance_window(db, window_id)
    return Response(status_code=204)
