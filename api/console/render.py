"""Rendering console pages: one Jinja2 environment per language, gettext catalogs merged from
every ``.po`` file of the language, Babel-formatted times in the site's zone, and the
``require_person`` dependency (docs/console.md § Approach).

Pages get their data from the same store queries and scoping helpers as the API
(``api/auth.py`` ``company_scope``, ``visible_lift``; ``api/routes/alarms.py``
``visible_alarm``), with the logged-in person as the :class:`~api.auth.Principal`: a page can
never show what the API would refuse the same person.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from babel.core import negotiate_locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api.auth import Principal, Role
from api.deps import DbDep
from api.errors import ApiError
from api.sessions import COOKIE, csrf_token_for, session_principal
from liftwatch.clock import now_ms

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
LOCALES = HERE / "locale"
LANGS: tuple[str, ...] = ("zh_CN", "en")  # the first one Accept-Language may not name wins never
DEFAULT_LANG = "en"
LANG_COOKIE = "liftwatch_lang"
LOGIN = "/console/login"
# Every console page: scripts, styles, fonts, images and connections from liftwatch only (a closed
# network shows the same page as an open one), never framed (a hidden "Acknowledge" click).
# Inline styles stay allowed: ECharts writes its tooltips as HTML with style attributes.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@cache
def translations(lang: str) -> NullTranslations:
    """Every ``locale/<lang>/LC_MESSAGES/*.po`` merged (console.po, inspect.po, admin.po, ...),
    compiled in memory: no compiled ``.mo`` files to keep in step with their sources."""
    merged: NullTranslations | None = None
    for po in sorted((LOCALES / lang / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        one = Translations(buf)
        if merged is None or not isinstance(merged, Translations):
            merged = one
        else:
            merged.merge(one)
    return merged if merged is not None else NullTranslations()


def pick_lang(request: Request) -> str:
    """The language switch (cookie) first, then the browser's ``Accept-Language``."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGS:
        return chosen
    header = request.headers.get("accept-language", "")
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag.strip()))
    for _, _, tag in sorted(ranked):
        found = negotiate_locale([tag.replace("-", "_")], list(LANGS), sep="_")
        if found is None and tag.lower().startswith("zh"):
            found = "zh_CN"  # "zh", "zh-Hans", "zh-TW": Chinese is what there is in Chinese
        if found is not None:
            return found
    return DEFAULT_LANG


def _to_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    return datetime.fromisoformat(str(value))


@cache
def _environment(lang: str) -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    # The filters call the page's own helpers (its language, the site's zone): one environment
    # serves every request and app of a language, concurrently.
    env.filters["localtime"] = pass_context(lambda c, v, *a: c["localtime"](v, *a))
    env.filters["ago"] = pass_context(lambda c, v: c["ago"](v))
    return Jinja2Templates(env=env)


def filters(lang: str, tz: Any) -> dict[str, Callable[..., str]]:
    def localtime(value: Any, format: str = "medium") -> str:
        """An epoch-ms number or an RFC 3339 string, in the site's zone, the page's language."""
        at = _to_datetime(value)
        if at is None:
            return ""
        return format_datetime(at, format, tzinfo=tz, locale=lang)

    def ago(value: Any) -> str:
        at = _to_datetime(value)
        if at is None:
            return ""
        seconds = math.floor(now_ms() / 1000 - at.timestamp())
        # Babel's direction: negative is the past ("2 minutes ago"), positive the future
        return format_timedelta(timedelta(seconds=-seconds), add_direction=True, locale=lang)

    return {"localtime": localtime, "ago": ago}


def session_token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> Response:
    """``template`` rendered in the request's language: ``_``/``gettext``/``ngettext`` (the
    environment's newstyle gettext: ``_("%(n)s left", n=3)`` formats), ``principal`` (None
    on the login page), ``csrf_token``, ``lang``, ``localtime``, ``ago``."""
    lang = pick_lang(request)
    settings = request.app.state.settings
    token = session_token(request)
    principal = getattr(request.state, "principal", None)
    helpers = filters(lang, settings.tz)
    templates = _environment(lang)
    context: dict[str, Any] = {
        "principal": principal,
        "csrf_token": csrf_token_for(token) if token and principal is not None else "",
        "lang": lang,
        "html_lang": lang.replace("_", "-"),
        "timezone": settings.timezone,
        **helpers,
        **ctx,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def gettext_for(request: Request) -> Callable[[str], str]:
    """``_`` for messages built in Python (a page's flash text)."""
    return translations(pick_lang(request)).gettext


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"{LOGIN}?next={quote(target, safe='')}"
    # htmx (a fragment refresh of an expired session) follows HX-Redirect with a full page
    return HTTPException(303, headers={"Location": location, "HX-Redirect": location})


def require_person(request: Request, db: DbDep) -> Principal:
    """The logged-in person (a session cookie; bearer tokens are for machines), or a redirect
    to the login page: no cookie, an expired or ended session, a disabled user."""
    token = session_token(request)
    if not token:
        raise _login_redirect(request)
    try:
        principal = session_principal(request, db, token)
    except ApiError:
        raise _login_redirect(request) from None
    request.state.principal = principal
    return principal


PersonDep = Annotated[Principal, Depends(require_person)]


def require_roles(*roles: Role) -> Any:
    """A dependency admitting only people of ``roles``; others see the 403 page."""

    def check(principal: PersonDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(303, headers={"Location": "/console/forbidden"})
        return principal

    return Depends(check)
