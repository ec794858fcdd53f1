"""``liftwatch api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
import sys

from liftwatch.cli import EXIT_CONFIG, settings_from
from liftwatch.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "api",
        help="serve the HTTP API (/api/v1, /docs, /healthz, /readyz, /metrics)",
        description="Serve the HTTP API on LIFTWATCH_API_HOST:LIFTWATCH_API_PORT. "
        "LIFTWATCH_ADMIN_TOKEN must be set: it is the bootstrap administrator's token, "
        "used to create the other tokens (docs/api.md).",
    )
    p.add_argument("--host", help="override LIFTWATCH_API_HOST")
    p.add_argument("--port", type=int, help="override LIFTWATCH_API_PORT")
    p.set_defaults(handler=_api)


def admin_token_problem(settings: Settings) -> str | None:
    """Why the API must not start with these settings (the bootstrap admin token), or None."""
    token = settings.admin_token.get_secret_value().strip() if settings.admin_token else ""
    if not token:
        return (
            "LIFTWATCH_ADMIN_TOKEN is not set; the API refuses to start without a "
            "bootstrap administrator token. Generate one, e.g. "
            '`export LIFTWATCH_ADMIN_TOKEN=$(python3 -c "import secrets; '
            'print(secrets.token_urlsafe(32))")`'
        )
    if len(token) < 16:
        return "LIFTWATCH_ADMIN_TOKEN is too short (16+ characters)"
    return None


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.httpserver import server_options

    settings = settings_from(args)
    problem = admin_token_problem(settings)
    if problem:
        print(f"liftwatch: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    app = create_app(settings)
    options = server_options(
        host=args.host or settings.api_host,
        port=args.port if args.port is not None else settings.api_port,
        log_level=args.log_level,
    )
    uvicorn.run(app, **options)  # request deadlines etc.: api/httpserver.py
    return 0
