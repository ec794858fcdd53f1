"""``liftwatch ingest``: run the ingest worker until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging

from prometheus_client import start_http_server

from liftwatch.runner import run_until_signal
from liftwatch.settings import Settings, settings_from

log = logging.getLogger("liftwatch.ingest")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ingest",
        help="store device messages: MQTT → InfluxDB, with outage spool and dead-letters",
        description="Subscribe to telemetry, events and status (QoS 1, persistent session), "
        "store them in InfluxDB and acknowledge each message only once it is durable. "
        "Settings: docs/configuration.md § ingest. Metrics on LIFTWATCH_INGEST_METRICS_PORT.",
    )
    p.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
    try:
        server, _ = start_http_server(
            settings.ingest_metrics_port, addr=settings.ingest_metrics_host
        )
    except OSError as exc:
        log.error(
            "event=metrics_port_unavailable port=%d error=%s", settings.ingest_metrics_port, exc
        )
        return 1
    log.info("event=metrics_listening port=%d", server.server_port)
    try:
        run_until_signal(lambda stop: _main(settings, stop))
    finally:
        server.shutdown()
    return 0


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    from ingest.worker import run_ingest

    await run_ingest(settings, stop)
