"""Probes and metrics, outside ``/api/v1`` and without authentication (load balancers and
Prometheus call them): ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from api.deps import get_influx
from api.errors import ErrorResponse, error_json
from api.readiness import broker_check, influx_check, run_checks, store_check

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class CheckOutcome(BaseModel):
    ok: bool
    detail: str
    ms: float


class Readiness(BaseModel):
    status: str
    checks: dict[str, CheckOutcome]


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Broker, InfluxDB and store reachable (each reported)",
    responses={503: {"model": ErrorResponse, "description": "A dependency is down"}},
)
async def readyz(request: Request) -> Any:
    state = request.app.state
    checks = {
        "broker": state.broker_check or broker_check(state.settings),
        "influxdb": influx_check(lambda: get_influx(request)),
        "store": store_check(state.db),
    }
    results = await run_checks(checks)
    if all(r["ok"] for r in results.values()):
        return Readiness(status="ready", checks=results)  # type: ignore[arg-type]
    down = ", ".join(name for name, r in results.items() if not r["ok"])
    body = error_json(503, "not_ready", f"not ready: {down} unavailable", results)
    body["status"] = "not_ready"
    body["checks"] = results
    return JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
