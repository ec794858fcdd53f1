"""``liftwatch serve``: ingest, alerts (with webhook delivery) and the API in one process.

One asyncio loop runs the three parts exactly as their own commands do (DESIGN.md: small
sites, the demo). They share one alerts engine, so an acknowledgement through the API stops
the escalation timer and wakes the webhook dispatcher at once, and one Prometheus registry,
served by the API at ``/metrics``. SIGTERM or SIGINT stops all three cleanly: the API stops
accepting requests, ingest flushes what it holds, the alerts worker finishes its batch. If one
part fails (say the broker refuses the credentials), the others are stopped too and the exit
code is 1, so a supervisor restarts the whole process instead of running it half-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator
from typing import Any

from liftwatch.runner import run_until_signal
from liftwatch.settings import Settings, api_settings_from

log = logging.getLogger("liftwatch.serve")
# After SIGTERM, parts still running this long are cancelled; the units' TimeoutStopSec is
# above it (tests/deploy/test_systemd.py), so systemd never SIGKILLs a clean stop.
PART_STOP_TIMEOUT_S = 30


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run ingest, alerts (with webhook delivery) and the API in one process",
        description="Run `liftwatch ingest`, `liftwatch alerts` and `liftwatch api` in one "
        "asyncio process sharing one alerts engine (small sites, the demo). Same settings as "
        "the three commands; metrics of all three at the API's /metrics. Stops cleanly on "
        "SIGTERM/SIGINT.",
    )
    p.add_argument("--host", help="override LIFTWATCH_API_HOST")
    p.add_argument("--port", type=int, help="override LIFTWATCH_API_PORT (0: any free port)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    settings = api_settings_from(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port

    async def main(stop: asyncio.Event) -> bool:
        return await serve(settings, stop, host=host, port=port, log_level=args.log_level)

    return 0 if run_until_signal(main) else 1


def _api_server(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    from api.httpserver import server_options

    class Server(uvicorn.Server):
        # The process's signals belong to serve(), which stops all three parts together.
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    # Request head and body deadlines, keep-alive, header size: api/httpserver.py.
    return Server(uvicorn.Config(app, **server_options(host=host, port=port, log_level=log_level)))


async def _serve_api(server: Any) -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits when it cannot bind; stop the other parts instead
        raise RuntimeError(f"the API server could not start (exit code {exc.code})") from None


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    host: str,
    port: int,
    log_level: str = "INFO",
    on_ready: Callable[[str], None] | None = None,
) -> bool:
    """Run the three parts until ``stop`` is set or one of them ends on its own (a failure).
    ``on_ready`` receives the API's base URL once it listens and both MQTT consumers are
    subscribed (also logged as ``event=serve_ready``). True if stopped cleanly."""
    from alerts import worker as alerts_worker
    from api.app import begin_shutdown, create_app
    from ingest.worker import run_ingest

    engine, sink = alerts_worker.build_engine(settings)
    ingest_subscribed, alerts_subscribed = asyncio.Event(), asyncio.Event()
    app = create_app(settings, engine=engine)
    server = _api_server(app, host, port, log_level)
    parts = {
        asyncio.create_task(
            run_ingest(settings, stop, on_connect=ingest_subscribed.set), name="ingest"
        ),
        asyncio.create_task(
            alerts_worker.run(
                settings, stop=stop, engine=engine, sink=sink, on_connect=alerts_subscribed.set
            ),
            name="alerts",
        ),
        asyncio.create_task(_serve_api(server), name="api"),
    }

    async def announce() -> None:
        # Ready = the API listens and both consumers hold their subscriptions (what a device
        # publishes from then on is stored and evaluated).
        await ingest_subscribed.wait()
        await alerts_subscribed.wait()
        while not server.started:  # uvicorn offers no event for this
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()
        url = f"http://{bound[0]}:{bound[1]}"
        log.info("event=serve_ready api=%s docs=%s/docs", url, url)
        if on_ready is not None:
            on_ready(url)

    announcer = asyncio.create_task(announce())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*parts, stopper}, return_when=asyncio.FIRST_COMPLETED)
    clean = stopper in done
    for task in done - {stopper}:
        error = None if task.cancelled() else task.exception()
        log.error(
            "event=part_stopped part=%s error=%r; stopping the others", task.get_name(), error
        )
    stop.set()
    begin_shutdown(app)  # open event streams end now, not when their clients leave
    server.should_exit = True
    announcer.cancel()
    finished, pending = await asyncio.wait(parts, timeout=PART_STOP_TIMEOUT_S)
    for task in pending:
        log.error("event=part_stop_timeout part=%s", task.get_name())
        task.cancel()
    for task in finished:
        if not task.cancelled() and task.exception() is not None and task not in done:
            clean = False
            log.error("event=part_failed part=%s error=%r", task.get_name(), task.exception())
    return clean
