"""``liftwatch api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
from types import FrameType

from liftwatch.settings import api_settings_from


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


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import begin_shutdown, create_app
    from api.httpserver import server_options

    settings = api_settings_from(args)
    app = create_app(settings)
    options = server_options(
        host=args.host or settings.api_host,
        port=args.port if args.port is not None else settings.api_port,
        log_level=args.log_level,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            begin_shutdown(app)  # open event streams end now, not when their clients leave
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, **options)).run()  # request deadlines etc.: api/httpserver.py
    return 0
