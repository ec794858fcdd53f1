"""Login page, language switch, the 403 page and ``/console/`` itself.

Logging in and out go through the JSON API (``POST /api/v1/auth/login`` / ``logout``) from
``static/console.js``, so the page shows the API's own 401 / 429 reasons and there is one login
code path. The language switch is a cookie (``liftwatch_lang``) set by a GET that changes
nothing else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from api.console.render import LANG_COOKIE, LANGS, PersonDep, render

router = APIRouter()

Next = Annotated[str, Query(max_length=2000)]


def safe_next(target: str) -> str:
    """Only a path of this console: never another host (``//evil``, ``/\\evil``)."""
    if target.startswith("/console") and not target.startswith(("//", "/\\")):
        return target
    return "/console/"


@router.get("/login")
def login_page(request: Request, next: Next = "/console/") -> Response:
    return render(request, "login.html", next=safe_next(next))


@router.get("/lang")
def switch_lang(to: Annotated[str, Query(max_length=10)], next: Next = "/console/") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if to in LANGS:
        response.set_cookie(
            LANG_COOKIE, to, max_age=365 * 86400, samesite="lax", httponly=True, path="/"
        )
    return response


@router.get("/forbidden")
def forbidden_page(request: Request, principal: PersonDep) -> Response:
    return render(request, "forbidden.html", status_code=403)
