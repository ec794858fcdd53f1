"""The one way a long-running command runs: its main coroutine on liftwatch's event loop until
SIGTERM or SIGINT.

``liftwatch ingest``, ``liftwatch alerts`` and ``liftwatch serve`` all run through
:func:`run_until_signal`, so the latency-critical alerts process runs the same loop standalone
as inside ``serve``. The loop is uvloop where it is installed (a dependency on Linux), else
asyncio's own: chosen by measurement, ``bench/alarm_latency.py`` on the real ``liftwatch
alerts`` process with each loop (docs/scaling.md § Event loop).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(stop)`` to completion and return its result. SIGTERM and SIGINT set
    ``stop`` (they do not interrupt): ``main`` finishes its work in hand and returns."""

    async def run() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run())
    return uvloop.run(run())
