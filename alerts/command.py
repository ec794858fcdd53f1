"""The ``liftwatch alerts`` subcommand."""

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
