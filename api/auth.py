"""Bearer-token authentication, roles and per-company scoping.

Roles (DESIGN.md § API): ``admin`` does everything; ``inspector`` reads everything and changes
nothing (a write answers 403); ``maintainer`` is bound to one company and sees only its lifts,
alarms, webhooks and deliveries; anything else answers 404, so a maintainer cannot probe
which lift ids exist.

Routes use the dependencies here and nothing else:

- ``PrincipalDep`` (any valid token), ``AdminDep``, ``WriterDep`` (admin or maintainer), or
  ``Depends(require_role(...))``;
- ``visible_lift(db, principal, lift_id)`` and ``ensure_company_visible(principal, company_id)``
  to 404 what the principal may not see;
- ``company_scope(principal, requested)`` to narrow a listing filter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import DbDep
from api.errors import ApiError, forbidden, not_found
from api.sessions import COOKIE as SESSION_COOKIE
from api.sessions import session_principal
from liftwatch.clock import now_ms
from liftwatch.registry import Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok

Role = Literal["admin", "inspector", "maintainer"]
ROLES: tuple[Role, ...] = ("admin", "inspector", "maintainer")
TOKEN_PREFIX = "lw_"  # noqa: S105 - a public prefix, not a secret
BOOTSTRAP_ID = "bootstrap-admin"

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer lw_...`")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one token."""

    token_id: str
    name: str
    role: Role
    company_id: str | None = None
    #: set when the caller logged in (a person's session cookie, api/sessions.py): then
    #: ``token_id`` is the user's id and ``name`` the username
    session_id: str | None = None

    @property
    def actor(self) -> str:
        """How this caller is recorded in alarm transitions and audit fields: the token's
        name for people reading the history, its id because names need not be unique."""
        return f"api:{self.name} ({self.token_id})"

    def sees_company(self, company_id: str | None) -> bool:
        if self.role != "maintainer":
            return True
        return company_id is not None and company_id == self.company_id

    def sees_lift(self, lift: Lift) -> bool:
        return self.sees_company(lift.company_id)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh ``(token_id, secret, secret_hash)``; the secret is shown once, never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return "tok_" + secrets.token_hex(8), secret, hash_token(secret)


class TokenRefused(Exception):
    """A known, unrevoked token that may not be used now; the message says why."""


def authenticate(db: Database, token: str, admin_token_hash: str | None) -> Principal | None:
    """The principal for a presented token, or None. Pure apart from the store lookup, which
    runs on every request (revocation and company deactivation take effect at once, in every
    process). Raises :class:`TokenRefused` for a token of a deactivated company."""
    digest = hash_token(token)
    if admin_token_hash is not None and hmac.compare_digest(digest, admin_token_hash):
        return Principal(token_id=BOOTSTRAP_ID, name="bootstrap admin", role="admin")
    record = tok.find_active_token(db, digest)
    if record is None:
        return None
    if record.company_id is not None and not record.company_active:
        raise TokenRefused(f"the token's company {record.company_id!r} is deactivated")
    now = now_ms()
    if record.last_used_at is None or now - record.last_used_at > 60_000:
        tok.touch_token(db, record.token_id)
    role: Role = record.role  # type: ignore[assignment]  # CHECK constraint in the table
    return Principal(record.token_id, record.name, role, record.company_id)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    request: Request,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        # Bearer token first, then a person's session cookie (api/sessions.py).
        session_token = request.cookies.get(SESSION_COOKIE)
        if credentials is None and session_token:
            by_session = session_principal(request, db, session_token)
            request.state.principal = by_session
            return by_session
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    admin_hash: str | None = request.app.state.admin_token_hash
    try:
        principal = authenticate(db, credentials.credentials, admin_hash)
    except TokenRefused as exc:
        raise _unauthorized(str(exc)) from None
    if principal is None:
        raise _unauthorized("invalid or revoked token")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> object:
    """A dependency admitting only ``roles``; others get 403."""

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            if principal.role == "inspector":
                raise forbidden("inspector tokens are read-only")
            raise forbidden(f"requires role {' or '.join(roles)}")
        return principal

    return Depends(check)


AdminDep = Annotated[Principal, require_role("admin")]
WriterDep = Annotated[Principal, require_role("admin", "maintainer")]


def ensure_admin(principal: Principal) -> None:
    """For admin-only changes to a resource a maintainer can see: checked after the 404."""
    if principal.role != "admin":
        raise forbidden("requires role admin")


def ensure_company_visible(principal: Principal, company_id: str) -> None:
    if not principal.sees_company(company_id):
        raise not_found("company", company_id)


def visible_lift(db: Database, principal: Principal, lift_id: str) -> Lift:
    """The lift, or 404 when it does not exist or belongs to another company."""
    lift = reg.get_lift(db, lift_id)
    if lift is None or not principal.sees_lift(lift):
        raise not_found("lift", lift_id)
    return lift


def company_scope(principal: Principal, requested: str | None) -> tuple[str | None, bool]:
    """The company filter to apply, and whether the listing is empty by scope: a maintainer
    always lists its own company, and asking for another one yields nothing."""
    if principal.role != "maintainer":
        return requested, False
    if requested is not None and requested != principal.company_id:
        return principal.company_id, True
    return principal.company_id, False
