"""The web console (issue 16, docs/console.md): server-rendered pages under ``/console``.

``router`` is mounted by ``api/app.py``; it includes the login/account pages
(:mod:`api.console.account`), the dispatcher's screens (:mod:`api.console.dispatch`), the
inspector's (:mod:`api.console.inspect`) and the administrator's (:mod:`api.console.admin`).
Static files (``static/``, with ``static/vendor/`` copied from npm by scripts/setup) are served
by :func:`static_files` at ``/console/static``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from api.console import account, admin, dispatch, inspect
from api.console.render import HERE

log = logging.getLogger("liftwatch.api")

PREFIX = "/console"
VENDOR = ("htmx.min.js", "sse.min.js", "echarts.min.js")
STATIC = "/console/static"

router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(account.router)
router.include_router(dispatch.router)
router.include_router(inspect.router)
router.include_router(admin.router)


def static_files() -> StaticFiles:
    """The console's static files. Without the vendored libraries (a checkout where
    scripts/setup has not run, an image built without them) pages load but nothing is live:
    say so at start, once."""
    missing = [n for n in VENDOR if not (HERE / "static" / "vendor" / n).is_file()]
    if missing:
        log.warning(
            "event=console_assets_missing files=%s fix='run scripts/setup (npm ci + copy)'",
            ",".join(missing),
        )
    return StaticFiles(directory=HERE / "static")
