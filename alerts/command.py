"""The ``liftwatch alerts`` and ``liftwatch dispatch`` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from liftwatch.mqtt import MqttError
from liftwatch.runner import run_until_signal
from liftwatch.settings import settings_from

log = logging.getLogger("liftwatch.alerts")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "alerts",
        help="run the alerts engine: device messages → alarms, timers, outbox",
        description="Consume device messages over MQTT (own persistent session), evaluate "
        "every FAULTS.md rule, record alarms and their webhook outbox rows in SQLite, and "
        "copy alarm transitions to InfluxDB. Stops cleanly on SIGTERM/SIGINT. See "
        "docs/alarms.md.",
    )
    p.set_defaults(handler=_alerts)
    d = sub.add_parser(
        "dispatch",
        help="run a webhook dispatcher only (several may share one PostgreSQL store)",
        description="Deliver the webhook outbox of the configured store "
        "(LIFTWATCH_DATABASE_URL): signed POSTs, retries, per-alarm order. Runs beside the "
        "dispatcher inside `liftwatch alerts`; any number may share one PostgreSQL store, on "
        "any hosts. Stops cleanly on SIGTERM/SIGINT. See docs/webhooks.md § Several "
        "dispatchers.",
    )
    d.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="attempts in flight at once in this process (default 64)",
    )
    d.add_argument(
        "--per-subscription",
        type=int,
        default=8,
        help="attempts in flight at once per subscription in this process (default 8)",
    )
    d.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="how often the store is read for work other processes wrote (default 1 s)",
    )
    d.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from alerts.webhooks import service
    from liftwatch.store import StoreError, open_store

    try:
        db = open_store(settings)
    except StoreError as exc:
        print(f"liftwatch dispatch: {exc}", file=sys.stderr)
        return 1

    async def main(stop: asyncio.Event) -> None:
        await service.run(
            settings,
            stop=stop,
            db=db,
            concurrency=args.concurrency,
            per_subscription=args.per_subscription,
            poll_interval_s=args.poll_interval,
        )

    try:
        run_until_signal(main)
    finally:
        db.close()
    return 0


def _alerts(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from alerts import worker

    if settings.alerts_metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(settings.alerts_metrics_port, addr=settings.api_host)
        except OSError as exc:
            log.warning(
                "event=metrics_port_unavailable port=%d error=%r",
                settings.alerts_metrics_port,
                str(exc),
            )

    async def main(stop: asyncio.Event) -> None:
        await worker.run(settings, stop=stop)

    try:
        run_until_signal(main)
    except MqttError as exc:
        print(f"liftwatch alerts: {exc}", file=sys.stderr)
        return 1
    return 0
