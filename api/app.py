"""The FastAPI application: ``create_app(settings, ...)``.

Routers live in ``api/routes/``, one module per resource, each exposing ``router``. To add
one, put its module name in :data:`ROUTE_MODULES` (it is mounted under ``/api/v1``).
``app.state`` holds the shared resources routes reach through ``api.deps``: the
:class:`~liftwatch.store.Database`, the :class:`~liftwatch.influx.InfluxClient` (created on
the serving loop when not given) and, inside ``liftwatch serve``, the alerts engine.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

from api import apidocs, console
from api.auth import hash_token
from api.errors import BodySizeLimit, install_error_handlers
from api.httpserver import redact_access_log
from api.metrics import MetricsMiddleware
from api.readiness import Check
from api.routes import health
from api.strict_query import reject_unknown_query
from liftwatch import __version__
from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database, open_store

API_PREFIX = "/api/v1"

ROUTE_MODULES: tuple[str, ...] = (
    "tokens",
    "companies",
    "lifts",
    "history",
    "alarms",
    "reports",
    "maintenance_windows",
    "dead_letters",
    "webhooks",
    "auth",
    "users",
)

log = logging.getLogger("liftwatch.api")

DESCRIPTION = """\
Elevator fault-alarm monitoring. Every request to `/api/v1` needs `Authorization: Bearer <token>`.
Roles: **admin** (everything), **inspector** (reads everything, changes nothing: writes answer
403), **maintainer** (bound to one maintenance company; other companies' resources answer 404).
Every error answers `{"error": {"code", "message", "detail"}}`. Guide: docs/api.md.
"""


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    influx: InfluxClient | None = None,
    engine: Any = None,
    dispatcher: Any = None,
    broker_check: Check | None = None,
) -> FastAPI:
    """Build the API. Resources not given are created from ``settings`` (the InfluxDB client
    lazily, on the loop that serves requests) and closed at shutdown if created here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        yield
        if app.state.owns_influx and app.state.influx is not None:
            await app.state.influx.aclose()
            app.state.influx = None

    app = FastAPI(
        title="liftwatch API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        docs_url=None,  # /docs and /redoc from liftwatch's own files (api/apidocs.py)
        redoc_url=None,
    )
    apidocs.install(app)
    app.state.settings = settings
    # Set when the server begins to stop (begin_shutdown): open event streams end at once.
    app.state.stopping = asyncio.Event()
    app.state.loop = None
    app.state.db = db if db is not None else open_store(settings)
    app.state.influx = influx
    app.state.owns_influx = False
    app.state.engine = engine
    app.state.dispatcher = dispatcher  # else the engine's (api/deps.py get_dispatcher)
    app.state.broker_check = broker_check
    app.state.admin_token_hash = (
        hash_token(settings.admin_token.get_secret_value()) if settings.admin_token else None
    )

    install_error_handlers(app)
    redact_access_log()  # whichever server runs the app: no secrets from query strings logged
    app.add_middleware(
        BodySizeLimit,
        default=settings.api_max_body_bytes,
        limits={"/lifts/import": settings.api_max_import_bytes},
    )
    app.add_middleware(MetricsMiddleware)

    app.include_router(health.router)
    templates = {id(route): getattr(route, "path", "") for route in health.router.routes}
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"api.routes.{name}")
        app.include_router(module.router, prefix=API_PREFIX)
        templates |= {id(r): API_PREFIX + getattr(r, "path", "") for r in module.router.routes}
    app.state.route_templates = templates
    # The web console (api/console/, docs/console.md): pages, static files, / for browsers.
    app.include_router(console.router)
    app.mount(console.STATIC, console.static_files(), name="console-static")
    app.add_api_route("/", lambda: RedirectResponse("/console/"), include_in_schema=False)
    return app


def begin_shutdown(app: FastAPI) -> None:
    """The server is stopping: every open ``/alarms/stream`` ends now (its client reconnects
    with ``Last-Event-ID`` to the next server, without a gap) instead of holding the shutdown
    until the client leaves. Safe from a signal handler and from any thread."""
    loop: asyncio.AbstractEventLoop | None = getattr(app.state, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(app.state.stopping.set)
