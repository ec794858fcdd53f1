"""Dependencies that hand routes the app's shared resources (kept on ``app.state``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from liftwatch.influx import InfluxClient
from liftwatch.settings import Settings
from liftwatch.store import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_influx(request: Request) -> InfluxClient:
    # Created lazily on the serving event loop: an httpx client's connection pool belongs to
    # the loop that opened it, and test clients may run the app on a loop of their own.
    state = request.app.state
    client: InfluxClient | None = state.influx
    if client is None:
        client = InfluxClient.from_settings(state.settings)
        state.influx = client
        state.owns_influx = True
    return client


def get_engine(request: Request) -> Any:
    """The in-process alerts engine when the API runs inside ``liftwatch serve``, else None."""
    return request.app.state.engine


def registry_changed(engine: Any) -> None:
    """Tell the in-process alerts engine (``liftwatch serve``) that lifts changed, so a lift
    registered a moment ago gets its company and thresholds on its very next message, before
    the request answers. An engine in another process (``liftwatch alerts``, any host) is
    woken by the change feed the registry write recorded (liftwatch/store/changes.py) and
    refreshes within milliseconds; in ``serve`` that wake finds nothing left to do."""
    if engine is not None and hasattr(engine, "refresh_registry"):
        engine.refresh_registry()


def get_dispatcher(request: Request) -> Any:
    """The webhook dispatcher running in this process, to wake after queueing a delivery: the
    one given to ``create_app``, else the in-process alerts engine's ``outbox`` hook
    (``liftwatch serve``). None in a separate ``liftwatch api``: the dispatcher of ``liftwatch
    alerts`` then finds the delivery by its poll."""
    state = request.app.state
    if state.dispatcher is not None:
        return state.dispatcher
    return getattr(state.engine, "outbox", None)


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
InfluxDep = Annotated[InfluxClient, Depends(get_influx)]
EngineDep = Annotated[Any, Depends(get_engine)]
DispatcherDep = Annotated[Any, Depends(get_dispatcher)]
