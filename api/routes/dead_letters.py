"""``/dead-letters``: rejected device messages (PROTOCOL.md § bad input). Admin only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import AdminDep
from api.deps import DbDep
from api.errors import responses
from liftwatch.protocol import format_ts
from liftwatch.store import deadletters as dl

router = APIRouter(
    prefix="/dead-letters", tags=["dead-letters"], responses=responses(401, 403, 422)
)


class DeadLetterOut(BaseModel):
    id: int
    received_at: str
    topic: str
    lift_id: str | None
    reason: str
    detail: str
    payload: str
    payload_truncated: bool


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None
    counts: dict[str, int]


@router.get("", response_model=DeadLetterPage, summary="Rejected messages, newest first")
def list_dead_letters(
    db: DbDep,
    _: AdminDep,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    lift_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterPage:
    letters = dl.list_dead_letters(
        db,
        limit=limit,
        before_id=int(cursor) if cursor else None,
        reason=reason,
        lift_id=lift_id,
    )
    items = [
        DeadLetterOut(
            id=d.id or 0,
            received_at=format_ts(d.received_at),
            topic=d.topic,
            lift_id=d.lift_id,
            reason=d.reason,
            detail=d.detail,
            # Payloads are whatever a device sent: shown as text with bad bytes replaced.
            payload=bytes(d.payload).decode("utf-8", errors="replace"),
            payload_truncated=len(d.payload) >= dl.PAYLOAD_KEEP_BYTES,
        )
        for d in letters
    ]
    next_cursor = str(items[-1].id) if len(items) == limit else None
    return DeadLetterPage(items=items, next_cursor=next_cursor, counts=dl.count_dead_letters(db))
