"""``/auth``: people log in with a username and password and get a session cookie
(api/sessions.py, docs/console.md § Accounts and sessions); ``/auth/me`` tells any caller who
it is and, for a session, its CSRF token."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from api.auth import PrincipalDep, Role
from api.deps import DbDep
from api.errors import ApiError, ErrorResponse, responses
from api.sessions import (
    COOKIE,
    check_same_origin,
    clear_session_cookie,
    csrf_token_for,
    login_limiter,
    new_session_token,
    session_id_of,
    set_session_cookie,
)
from liftwatch.protocol import format_ts
from liftwatch.settings import Settings
from liftwatch.store import registry as reg
from liftwatch.store import users

log = logging.getLogger("liftwatch.api")

router = APIRouter(prefix="/auth", tags=["auth"])

REFUSED = "wrong username or password, or the account is disabled"

_429: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "Too many failed logins for this username or address; see Retry-After",
    }
}


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=users.MAX_PASSWORD_LENGTH)]

    def __repr__(self) -> str:  # never the password, wherever a model gets logged
        return f"Login(username={self.username!r})"

    __str__ = __repr__


class Me(BaseModel):
    via: Literal["session", "token"]
    name: str
    role: Role
    company_id: str | None
    csrf_token: str | None = None
    expires_at: str | None = None
    idle_timeout_s: int | None = None


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/login",
    response_model=Me,
    summary="Log in: sets the session cookie",
    description="Answers the session's `csrf_token`: send it as `X-CSRF-Token` with every "
    "change made with the cookie. A wrong username, a wrong password and a disabled account "
    "get the same 401.",
    responses={**responses(400, 401, 403, 413, 422), **_429},
)
def login(body: Login, request: Request, response: Response, db: DbDep) -> Me:
    settings: Settings = request.app.state.settings
    check_same_origin(request, settings)  # login CSRF: a login from another site is refused
    key = users.username_key(body.username)
    address = _address(request)
    limiter = login_limiter(request.app)
    wait = limiter.retry_after(key, address)
    if wait is not None:
        log.warning("event=login_rate_limited addr=%s retry_after_s=%d", address, wait)
        raise ApiError(
            429,
            "too_many_requests",
            f"too many failed logins: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = users.get_user(db, body.username)
    if user is None:
        users.burn_verification(body.password)
        ok = False
    else:
        ok = users.check_password(db, user, body.password) and user.disabled_at is None
    if not ok or user is None:
        limiter.failed(key, address)
        log.info(
            "event=login_refused user=%s addr=%s",
            user.username if user is not None else "(unknown)",
            address,
        )
        raise ApiError(401, "unauthorized", REFUSED)
    if user.company_id is not None:
        company = reg.get_company(db, user.company_id)
        if company is None or not company.active:
            raise ApiError(401, "unauthorized", f"the company {user.company_id!r} is deactivated")
    limiter.succeeded(key)
    old = request.cookies.get(COOKIE)
    if old and len(old) <= 200:
        users.revoke_session(db, session_id_of(old))  # a new login never keeps an old id
    token, session_id = new_session_token()
    expires = users.create_session(
        db,
        session_id=session_id,
        user_id=user.user_id,
        lifetime_ms=settings.session_lifetime_s * 1000,
    )
    set_session_cookie(response, request, settings, token)
    log.info("event=login user=%s role=%s addr=%s", user.username, user.role, address)
    return Me(
        via="session",
        name=user.username,
        role=user.role,  # type: ignore[arg-type]
        company_id=user.company_id,
        csrf_token=csrf_token_for(token),
        expires_at=format_ts(expires),
        idle_timeout_s=settings.session_idle_timeout_s,
    )


@router.post(
    "/logout",
    status_code=204,
    summary="Log out: the session ends at once",
    description="Cookie-authenticated, so it needs `X-CSRF-Token`. A bearer token has no "
    "session to end (400); revoke a token with `DELETE /tokens/{token_id}`.",
    responses=responses(400, 401, 403),
)
def logout(request: Request, db: DbDep, principal: PrincipalDep) -> Response:
    if principal.session_id is None:
        raise ApiError(400, "bad_request", "not a login session: nothing to log out")
    users.revoke_session(db, principal.session_id)
    log.info("event=logout user=%s", principal.name)
    response = Response(status_code=204)
    clear_session_cookie(response, request, request.app.state.settings)
    return response


@router.get(
    "/me",
    response_model=Me,
    summary="Who is calling: the logged-in user (with its CSRF token) or the token",
    responses=responses(401, 403),
)
def me(request: Request, db: DbDep, principal: PrincipalDep) -> Me:
    if principal.session_id is None:
        return Me(
            via="token", name=principal.name, role=principal.role, company_id=principal.company_id
        )
    settings: Settings = request.app.state.settings
    record = users.find_session(db, principal.session_id)
    token = request.cookies.get(COOKIE, "")
    return Me(
        via="session",
        name=principal.name,
        role=principal.role,
        company_id=principal.company_id,
        csrf_token=csrf_token_for(token),
        expires_at=format_ts(record.expires_at) if record is not None else None,
        idle_timeout_s=settings.session_idle_timeout_s,
    )
