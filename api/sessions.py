"""People's login sessions: the cookie, its CSRF token, cross-site refusal, login rate limits
(docs/console.md § Accounts and sessions).

- **Cookie** ``liftwatch_session``: a 256-bit random token; the store keeps only its SHA-256
  (``sessions.session_id``). ``HttpOnly`` (no script reads it), ``SameSite=Lax``, ``Path=/``,
  ``Max-Age`` = the absolute lifetime, ``Secure`` when the request came over TLS (or always,
  ``LIFTWATCH_SESSION_COOKIE_SECURE=always``, behind a TLS-terminating proxy). The server
  enforces the idle timeout and the absolute lifetime itself, on every request.
- **Principal**: a valid session is a :class:`~api.auth.Principal` with the user's role and
  company, exactly like a token's, so every route's scoping applies unchanged
  (``current_principal``: bearer token first, then this cookie).
- **CSRF**: every request authenticated by the cookie whose method is not GET/HEAD/OPTIONS
  must carry ``X-CSRF-Token``, equal (``hmac.compare_digest``) to HMAC-SHA256 keyed by the
  session token — a synchronizer token the server recomputes instead of storing, which login
  and ``GET /auth/me`` return in their JSON body. A cross-site page can neither read that body
  nor set the header without a CORS preflight this API never grants. Independently, a request
  whose ``Sec-Fetch-Site`` is not ``same-origin``/``none``, or whose ``Origin`` is neither the
  request's own host nor in ``LIFTWATCH_SESSION_TRUSTED_ORIGINS``, is refused (403) — for
  cookie-authenticated writes and for login itself (login CSRF). Bearer-token requests are
  not cookie-borne and are not checked.
- **Rate limits**: failed logins per username and per client address, a moving window in
  this process (the ``limits`` library); over the limit a login answers 429 with
  ``Retry-After`` before any password is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from typing import TYPE_CHECKING, Final, Literal

from fastapi import FastAPI, Request, Response
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.errors import ApiError
from liftwatch.clock import now_ms
from liftwatch.settings import Settings
from liftwatch.store import Database, users

if TYPE_CHECKING:
    from api.auth import Principal

log = logging.getLogger("liftwatch.api")

COOKIE = "liftwatch_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE: Final[Literal["lax"]] = "lax"
_CSRF_CONTEXT = b"liftwatch csrf v1"


def new_session_token() -> tuple[str, str]:
    """A fresh ``(token, session_id)``: the token goes into the cookie, its hash into the
    store."""
    token = secrets.token_urlsafe(32)
    return token, session_id_of(token)


def session_id_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token_for(session_token: str) -> str:
    """The session's CSRF token: derived from the session token, so any API process can
    check it without storing it, and learning it reveals nothing of the session token."""
    return hmac.new(session_token.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def came_over_tls(request: Request) -> bool:
    return request.url.scheme in ("https", "wss")


def set_session_cookie(
    response: Response, request: Request, settings: Settings, token: str
) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.session_lifetime_s,
        path="/",
        httponly=True,
        samesite=SAME_SITE,
        secure=settings.session_cookie_secure == "always" or came_over_tls(request),
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        samesite=SAME_SITE,
        secure=settings.session_cookie_secure == "always" or came_over_tls(request),
    )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def cross_site(message: str) -> ApiError:
    return ApiError(403, "cross_site_refused", message)


def _netloc(scheme: str, host: str) -> str:
    """``host[:port]`` lower-case, the scheme's default port left out."""
    host = host.strip().lower()
    for default in (":80",) if scheme == "http" else (":443",) if scheme == "https" else ():
        if host.endswith(default):
            return host[: -len(default)]
    return host


def _trusted(settings: Settings) -> set[str]:
    return {
        o.rstrip("/").lower() for o in settings.session_trusted_origins.replace(",", " ").split()
    }


def check_same_origin(request: Request, settings: Settings) -> None:
    """Refuse (403) a request a browser marks as coming from another site. Requests from
    non-browser clients carry neither header and pass (they carry no ambient cookie either
    unless their user put it there)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        raise cross_site(f"refused: a {fetch_site} request (Sec-Fetch-Site) may not do this")
    origin = request.headers.get("origin")
    if origin is None:
        return
    origin = origin.strip().rstrip("/").lower()
    if origin in _trusted(settings):
        return
    scheme, _, rest = origin.partition("://")
    host = request.headers.get("host", "")
    if origin == "null" or not rest or _netloc(scheme, rest) != _netloc(scheme, host):
        raise cross_site(
            "refused: Origin is another site (allow it with LIFTWATCH_SESSION_TRUSTED_ORIGINS)"
        )


def check_csrf(request: Request, session_token: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        raise ApiError(
            403,
            "csrf_token_missing",
            f"a change made with the session cookie needs the {CSRF_HEADER} header "
            "(its value is csrf_token from the login answer or GET /auth/me)",
        )
    if not hmac.compare_digest(sent.encode("utf-8"), csrf_token_for(session_token).encode()):
        raise ApiError(403, "csrf_token_invalid", f"the {CSRF_HEADER} header is not this session's")


def session_principal(request: Request, db: Database, token: str) -> Principal:
    """The principal of a session cookie's token, or 401 with the reason; 403 for a
    state-changing request without this session's CSRF token or from another site."""
    from api.auth import Principal

    settings: Settings = request.app.state.settings
    record = users.find_session(db, session_id_of(token)) if len(token) <= 200 else None
    if record is None:
        raise _unauthorized("unknown or ended session: log in again")
    now = now_ms()
    idle_ms = settings.session_idle_timeout_s * 1000
    problem = users.session_problem(record, now=now, idle_ms=idle_ms)
    if problem is not None:
        raise _unauthorized(problem)
    if request.method.upper() not in SAFE_METHODS:
        check_same_origin(request, settings)
        check_csrf(request, token)
    users.touch_session(db, record.session_id, now=now, min_interval_ms=min(60_000, idle_ms // 10))
    return Principal(
        token_id=record.user_id,
        name=record.username,
        role=record.role,  # type: ignore[arg-type]  # CHECK constraint in the table
        company_id=record.company_id,
        session_id=record.session_id,
    )


class LoginLimiter:
    """Failed logins per username and per client address, in a moving window. In-process:
    each API process counts its own attempts (docs/console.md says what that means)."""

    def __init__(self, per_user: str, per_address: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_user: RateLimitItem = parse(per_user)
        self.per_address: RateLimitItem = parse(per_address)

    def _checks(self, username_key: str, address: str) -> tuple[tuple[RateLimitItem, str], ...]:
        return ((self.per_user, "user:" + username_key), (self.per_address, "addr:" + address))

    def retry_after(self, username_key: str, address: str) -> int | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        wait = 0.0
        for limit, key in self._checks(username_key, address):
            if not self._limiter.test(limit, key):
                reset = self._limiter.get_window_stats(limit, key).reset_time
                wait = max(wait, reset - time.time(), 1.0)
        return math.ceil(wait) if wait else None

    def failed(self, username_key: str, address: str) -> None:
        for limit, key in self._checks(username_key, address):
            self._limiter.hit(limit, key)

    def succeeded(self, username_key: str) -> None:
        self._limiter.clear(self.per_user, "user:" + username_key)


_LIMITER_LOCK = threading.Lock()


def login_limiter(app: FastAPI) -> LoginLimiter:
    """The app's limiter, made on first use (one per app, so per process)."""
    with _LIMITER_LOCK:
        limiter: LoginLimiter | None = getattr(app.state, "login_limiter", None)
        if limiter is None:
            settings: Settings = app.state.settings
            limiter = LoginLimiter(settings.login_limit_per_user, settings.login_limit_per_address)
            app.state.login_limiter = limiter
        return limiter


def principal_in_force(db: Database, principal: Principal, settings: Settings) -> bool:
    """Whether ``principal`` still authenticates, for long-lived requests (the event stream
    re-checks with this): a token not revoked and its company active, or a session not
    ended, expired or idle, its user enabled and company active. An open stream counts as
    the session's activity (a dispatcher watching the queue is not idle)."""
    from api.auth import BOOTSTRAP_ID
    from liftwatch.store import tokens

    if principal.session_id is None:
        return principal.token_id == BOOTSTRAP_ID or tokens.token_in_force(db, principal.token_id)
    now = now_ms()
    idle_ms = settings.session_idle_timeout_s * 1000
    if not users.session_in_force(db, principal.session_id, now=now, idle_ms=idle_ms):
        return False
    users.touch_session(
        db, principal.session_id, now=now, min_interval_ms=min(60_000, idle_ms // 10)
    )
    return True
