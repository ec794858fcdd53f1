"""Prometheus metrics of the API, on the process-wide registry so that ``liftwatch serve``
exposes ingest, alerts and API metrics on one ``/metrics``."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "liftwatch_api_requests_total",
    "API requests answered, by route template, method and status code",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "liftwatch_api_request_seconds",
    "API request latency by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0),
)
AUTH_FAILURES = Counter(
    "liftwatch_api_auth_failures_total", "Requests refused for a missing or invalid token"
)


class MetricsMiddleware:
    """Counts requests by route *template* (``/api/v1/lifts/{lift_id}``), never by raw path,
    so label cardinality stays bounded whatever clients send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401:
                    AUTH_FAILURES.inc()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _template(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - start)


def _template(scope: Scope) -> str:
    # FastAPI keeps the route object of an included router, whose ``path`` lacks the include
    # prefix; create_app records each route's full template by identity.
    route = scope.get("route")
    if route is None:
        return "unmatched"
    app = scope.get("app")
    templates: dict[int, str] = getattr(getattr(app, "state", None), "route_templates", {})
    return templates.get(id(route)) or str(getattr(route, "path", "unmatched"))
