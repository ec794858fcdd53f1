"""``/webhooks``: subscriptions, their deliveries and attempts (WEBHOOKS.md, docs/webhooks.md).

A maintainer creates and sees only its company's subscriptions (others answer 404), and they
only ever receive its company's alarms; an administrator's subscription may span all companies
(or be made for one company with ``company_id``); inspectors read everything and change
nothing. The secret is in the answer of create and rotate-secret only, never again.
URLs are SSRF-checked here and again before every delivery attempt.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.concurrency import run_in_threadpool

from alerts.webhooks import signing, ssrf
from api.auth import Principal, PrincipalDep, WriterDep
from api.deps import DbDep, DispatcherDep, SettingsDep
from api.errors import conflict, invalid, not_found, responses
from liftwatch.clock import now_ms
from liftwatch.faults import CODES
from liftwatch.protocol import format_ts
from liftwatch.registry import CompanyId, LiftId
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Attempt, Delivery, Subscription
from liftwatch.views import EventType, ts

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=responses(401, 403, 422))

ROTATION_OVERLAP_MS = 24 * 3600 * 1000
WebhookId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{1,64}$")]
DeliveryId = Annotated[int, Path(ge=1, le=2**62)]
Url = Annotated[str, StringConstraints(min_length=8, max_length=ssrf.MAX_URL_LENGTH)]


class WebhookFilters(BaseModel):
    """Every filter is optional; an empty list means any. ``alarm.summary`` (flood control)
    comes with ``alarm.raised``."""

    model_config = ConfigDict(extra="forbid")

    event_types: list[EventType] = Field(default_factory=list, max_length=20)
    codes: list[str] = Field(default_factory=list, max_length=50)
    min_severity: Literal["critical", "major", "minor"] | None = None
    lift_ids: list[LiftId] = Field(default_factory=list, max_length=10_000)

    @field_validator("codes")
    @classmethod
    def _known_codes(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CODES]
        if unknown:
            raise ValueError(f"unknown alarm codes {unknown[:5]}; known: {sorted(CODES)}")
        return list(dict.fromkeys(value))


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    filters: WebhookFilters = Field(default_factory=WebhookFilters)
    company_id: CompanyId | None = Field(
        default=None,
        description="admin only: make the subscription a company's (it then receives only that "
        "company's alarms); a maintainer's is always its own company's",
    )


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    filters: WebhookFilters | None = None
    enabled: bool | None = Field(
        default=None, description="re-enable after a 410 Gone, or pause deliveries"
    )


class WebhookInfo(BaseModel):
    id: str
    company_id: str | None
    url: str
    description: str
    filters: WebhookFilters
    enabled: bool
    disabled_reason: str | None
    created_by: str
    created_at: str
    updated_at: str
    secret_rotated_at: str | None
    previous_secret_valid_until: str | None


class WebhookCreated(WebhookInfo):
    secret: str = Field(description="whsec_…: shown only in this answer, store it now")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new secret: shown only in this answer")
    previous_secret_valid_until: str = Field(
        description="until then every request carries signatures by both secrets"
    )


class AttemptInfo(BaseModel):
    at: str
    status_code: int | None
    latency_ms: int
    response: str | None = Field(description="the first 1 KiB of the receiver's answer")
    error: str | None


class DeliveryInfo(BaseModel):
    id: int
    webhook_id: str = Field(description="the webhook-id header; the same on every retry")
    subscription_id: str
    event_type: str
    alarm_id: str | None
    status: Literal["pending", "delivering", "delivered", "failed"]
    attempt_count: int
    created_at: str
    first_attempt_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    last_status_code: int | None
    last_error: str | None
    payload: dict[str, Any]
    attempts: list[AttemptInfo]


def _info(sub: Subscription) -> WebhookInfo:
    until = sub.previous_until if sub.previous_until and sub.previous_until > now_ms() else None
    return WebhookInfo(
        id=sub.id,
        company_id=sub.company_id,
        url=sub.url,
        description=sub.description,
        filters=WebhookFilters.model_validate(sub.filters),
        enabled=sub.enabled,
        disabled_reason=sub.disabled_reason,
        created_by=sub.created_by,
        created_at=format_ts(sub.created_at),
        updated_at=format_ts(sub.updated_at),
        secret_rotated_at=ts(sub.secret_rotated_at),
        previous_secret_valid_until=ts(until),
    )


def _delivery(d: Delivery, attempts: list[Attempt]) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id,
        webhook_id=d.webhook_id,
        subscription_id=d.subscription_id,
        event_type=d.event_type,
        alarm_id=d.alarm_id,
        status=d.status,  # type: ignore[arg-type]  # CHECK constraint in the table
        attempt_count=d.attempts,
        created_at=format_ts(d.created_at),
        first_attempt_at=ts(d.first_attempt_at),
        last_attempt_at=ts(d.last_attempt_at),
        next_attempt_at=ts(d.next_attempt_at) if d.status == "pending" else None,
        delivered_at=ts(d.delivered_at),
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        payload=json.loads(d.payload),
        attempts=[
            AttemptInfo(
                at=format_ts(a.at),
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                response=a.response,
                error=a.error,
            )
            for a in attempts
        ],
    )


def visible_subscription(db: Database, principal: Principal, sub_id: str) -> Subscription:
    """The subscription, or 404 when it does not exist or is another company's."""
    sub = store.get_subscription(db, sub_id)
    if sub is None or (principal.role == "maintainer" and sub.company_id != principal.company_id):
        raise not_found("webhook", sub_id)
    return sub


async def _check_url(url: str, settings: Settings, company_id: str | None) -> None:
    """The same rule the dispatcher applies before every attempt (alerts/webhooks/ssrf.py)."""
    try:
        private = ssrf.PrivateTargets.from_settings(settings)
        await ssrf.check_url(url, private, company_id=company_id)
    except ssrf.UrlRefused as exc:
        raise invalid("url", str(exc)) from exc
    except LookupError as exc:
        raise invalid("url", str(exc)) from exc


def _check_lifts(db: Database, owner: str | None, lift_ids: list[str]) -> None:
    """A company's subscription may only name that company's lifts (an unknown lift or
    another company's is the same answer, so nothing leaks)."""
    if owner is None:
        return
    for lift_id in lift_ids:
        lift = reg.get_lift(db, lift_id)
        if lift is None or lift.company_id != owner:
            raise invalid("filters.lift_ids", f"no lift {lift_id!r} in company {owner!r}")


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Create a subscription (the secret is shown once)",
    responses=responses(400, 413),
)
async def create_webhook(
    body: WebhookCreate, db: DbDep, settings: SettingsDep, principal: WriterDep
) -> WebhookCreated:
    if principal.role == "maintainer":
        if body.company_id is not None and body.company_id != principal.company_id:
            raise invalid("company_id", "a maintainer's subscription is its own company's")
        owner = principal.company_id
    else:
        owner = body.company_id
        if owner is not None and reg.get_company(db, owner) is None:
            raise invalid("company_id", f"unknown company {owner!r}")
    await _check_url(body.url, settings, owner)
    _check_lifts(db, owner, body.filters.lift_ids)
    secret = signing.new_secret()
    sub = await run_in_threadpool(
        lambda: store.add_subscription(
            db,
            company_id=owner,
            url=body.url,
            secret=secret,
            filters=body.filters.model_dump(),
            created_by=principal.actor,
            description=body.description,
        )
    )
    return WebhookCreated(**_info(sub).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookInfo], summary="List subscriptions (never secrets)")
def list_webhooks(db: DbDep, principal: PrincipalDep) -> list[WebhookInfo]:
    if principal.role == "maintainer":
        subs = store.list_subscriptions(db, company_id=principal.company_id)
    else:
        subs = store.list_subscriptions(db)
    return [_info(s) for s in subs]


@router.get(
    "/{webhook_id}",
    response_model=WebhookInfo,
    summary="One subscription",
    responses=responses(404),
)
def get_webhook(webhook_id: WebhookId, db: DbDep, principal: PrincipalDep) -> WebhookInfo:
    return _info(visible_subscription(db, principal, webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookInfo,
    summary="Change URL, description, filters, or enable/disable",
    responses=responses(400, 404, 413),
)
async def update_webhook(
    webhook_id: WebhookId,
    body: WebhookUpdate,
    db: DbDep,
    settings: SettingsDep,
    principal: WriterDep,
) -> WebhookInfo:
    sub = visible_subscription(db, principal, webhook_id)
    if body.url is not None:
        await _check_url(body.url, settings, sub.company_id)
    if body.filters is not None:
        _check_lifts(db, sub.company_id, body.filters.lift_ids)
    updated = await run_in_threadpool(
        lambda: store.update_subscription(
            db,
            webhook_id,
            url=body.url,
            description=body.description,
            filters=None if body.filters is None else body.filters.model_dump(),
            enabled=body.enabled,
        )
    )
    if updated is None:
        raise not_found("webhook", webhook_id)
    return _info(updated)


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a subscription and its delivery history",
    responses=responses(404),
)
def delete_webhook(webhook_id: WebhookId, db: DbDep, principal: WriterDep) -> Response:
    visible_subscription(db, principal, webhook_id)
    if not store.delete_subscription(db, webhook_id):
        raise not_found("webhook", webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=SecretRotated,
    summary="New secret (shown once); the old one keeps signing for 24 h",
    responses=responses(404),
)
def rotate_secret(webhook_id: WebhookId, db: DbDep, principal: WriterDep) -> SecretRotated:
    visible_subscription(db, principal, webhook_id)
    secret = signing.new_secret()
    sub = store.rotate_secret(db, webhook_id, secret, grace_ms=ROTATION_OVERLAP_MS)
    if sub is None or sub.previous_until is None:
        raise not_found("webhook", webhook_id)
    return SecretRotated(
        id=sub.id, secret=secret, previous_secret_valid_until=format_ts(sub.previous_until)
    )


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryInfo,
    summary="Queue a webhook.test event to this subscription",
    responses=responses(404, 409),
)
def send_test(
    webhook_id: WebhookId,
    request: Request,
    db: DbDep,
    principal: WriterDep,
    dispatcher: DispatcherDep,
) -> DeliveryInfo:
    sub = visible_subscription(db, principal, webhook_id)
    if not sub.enabled:
        raise conflict(f"webhook {webhook_id!r} is disabled; enable it first")
    now = now_ms()
    body = {
        "type": "webhook.test",
        "timestamp": format_ts(now),
        "data": {
            "webhook": sub.id,
            "company_id": sub.company_id,
            "requested_by": principal.actor,
            "note": "test event from liftwatch: no alarm is involved",
        },
    }
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    delivery = store.add_test_delivery(db, sub.id, payload, now)
    _wake(dispatcher)
    return _delivery(delivery, [])


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryInfo],
    summary="Recent deliveries, newest first, each with every attempt",
    responses=responses(404),
)
def list_deliveries(
    webhook_id: WebhookId,
    db: DbDep,
    principal: PrincipalDep,
    status: Literal["pending", "delivering", "delivered", "failed"] | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="ids below this")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryInfo]:
    visible_subscription(db, principal, webhook_id)
    found = store.list_deliveries(db, webhook_id, status=status, before_id=before, limit=limit)
    attempts = store.attempts_of(db, [d.id for d in found])
    return [_delivery(d, attempts[d.id]) for d in found]


def _visible_delivery(
    db: Database, principal: Principal, webhook_id: str, delivery_id: int
) -> Delivery:
    visible_subscription(db, principal, webhook_id)
    d = store.get_delivery(db, delivery_id)
    if d is None or d.subscription_id != webhook_id:
        raise not_found("delivery", str(delivery_id))
    return d


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryInfo,
    summary="One delivery with every attempt",
    responses=responses(404),
)
def get_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, db: DbDep, principal: PrincipalDep
) -> DeliveryInfo:
    d = _visible_delivery(db, principal, webhook_id, delivery_id)
    return _delivery(d, store.attempts_of(db, [d.id])[d.id])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryInfo,
    summary="Send a failed delivery again (same webhook-id)",
    responses=responses(404, 409),
)
def redeliver(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    db: DbDep,
    principal: WriterDep,
    dispatcher: DispatcherDep,
) -> DeliveryInfo:
    sub = visible_subscription(db, principal, webhook_id)
    d = _visible_delivery(db, principal, webhook_id, delivery_id)
    if not sub.enabled:
        raise conflict(f"webhook {webhook_id!r} is disabled; enable it first")
    queued = store.redeliver(db, d.id, now_ms())
    if queued is None:
        raise conflict(f"delivery {delivery_id} is {d.status}; only failed ones are redelivered")
    _wake(dispatcher)
    return _delivery(queued, store.attempts_of(db, [d.id])[d.id])


def _wake(dispatcher: Any) -> None:
    """A delivery was queued: wake this process's dispatcher (none: its poll finds it)."""
    if dispatcher is not None:
        dispatcher.notify()
