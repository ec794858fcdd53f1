"""Load mode: thousands of lifts with a realistic traffic mix from one process.

Buildings differ (6 to 33 floors, rated speed by height), and so does traffic: calls per
hour are drawn from a log-normal distribution (median 12, from a quiet house to a busy
office). ``rate`` is the target number of messages per second for the whole fleet: it sets
each lift's idle heartbeat (``lifts / rate`` seconds, 1–60 s as PROTOCOL.md allows); runs,
door cycles and events come on top. Heartbeats are staggered so the fleet does not pulse.

Lifts sit in a heap keyed by their next event, so an idle lift costs nothing until its
heartbeat is due (:meth:`LiftModel.next_event_ms`).
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from liftwatch import clock
from simulator.model import LiftConfig, LiftModel
from simulator.runner import Sink, lift_rng

_BUILDINGS = (6, 10, 18, 26, 33)


@dataclass(frozen=True)
class LoadOptions:
    lifts: int = 1000
    rate: float = 1000.0
    duration_s: float = 60.0
    seed: int = 0
    id_prefix: str = "LOAD-"
    running_interval_s: float = 2.0
    qos: int = 1

    def lift_id(self, i: int) -> str:
        return f"{self.id_prefix}{i:06d}"

    @property
    def idle_interval_s(self) -> float:
        return min(60.0, max(1.0, self.lifts / self.rate)) if self.rate > 0 else 60.0


def build_fleet(opts: LoadOptions, start_ms: int) -> list[LiftModel]:
    """The lifts, deterministic for a seed."""
    fleet = []
    idle = opts.idle_interval_s
    for i in range(opts.lifts):
        lift_id = opts.lift_id(i)
        rng = lift_rng(opts.seed, lift_id)
        floors = rng.choice(_BUILDINGS)
        speed = 1.0 if floors <= 10 else 1.6 if floors <= 18 else 2.0 if floors <= 26 else 2.5
        calls = min(120.0, max(0.5, math.exp(rng.gauss(math.log(12), 1.0))))
        cfg = LiftConfig(
            lift_id=lift_id,
            floor_labels=tuple(str(f) for f in range(1, floors + 1)),
            landings_mm=tuple(f * 3000 for f in range(floors)),
            rated_speed=speed,
            calls_per_hour=calls,
            telemetry_running_s=opts.running_interval_s,
            telemetry_idle_s=idle,
            telemetry_qos=opts.qos,
            selftest_at_start=False,
            step_ms=250,
            start_floor=rng.randrange(floors),
        )
        model = LiftModel(cfg, rng, start_ms)
        model.next_telemetry_ms = start_ms + round(rng.uniform(0, idle) * 1000)
        model.next_selftest_ms = start_ms + round(rng.uniform(0, cfg.selftest_interval_s) * 1000)
        fleet.append(model)
    return fleet


@dataclass
class LoadResult:
    sent: int = 0
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Progress:
    """One status line, rewritten in place on a terminal, printed every 5 s otherwise."""

    def __init__(self, out: TextIO, target_rate: float, total_lifts: int) -> None:
        self.out = out
        self.tty = out.isatty()
        self.target = target_rate
        self.total = total_lifts
        self._last = 0.0
        self._last_sent = 0
        self._t_last = time.monotonic()

    def update(
        self, elapsed: float, sent: int, connected: int, errors: int, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self._t_last < (1.0 if self.tty else 5.0):
            return
        rate = (sent - self._last_sent) / max(1e-6, now - self._t_last)
        self._t_last, self._last_sent = now, sent
        line = (
            f"[{elapsed:7.1f}s] rate {rate:9,.0f} msg/s (target {self.target:,.0f}) | "
            f"lifts connected {connected:,}/{self.total:,} | sent {sent:,} | errors {errors:,}"
        )
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def run_load(
    opts: LoadOptions,
    sink: Sink,
    *,
    connected: Callable[[], int],
    errors: Callable[[], int],
    should_stop: Callable[[], bool] = lambda: False,
    out: TextIO = sys.stderr,
) -> LoadResult:
    start_ms = clock.now_ms()
    fleet = build_fleet(opts, start_ms)
    heap = [(m.next_event_ms(), i) for i, m in enumerate(fleet)]
    heapq.heapify(heap)
    progress = Progress(out, opts.rate, opts.lifts)
    result = LoadResult()
    t0 = time.monotonic()
    end_ms = start_ms + round(opts.duration_s * 1000)
    while not should_stop():
        now_ms = start_ms + round((time.monotonic() - t0) * 1000)
        if now_ms >= end_ms:
            break
        slice_end = time.monotonic() + 0.05  # keep polling the sockets while catching up
        while heap and heap[0][0] <= now_ms and time.monotonic() < slice_end:
            _, i = heapq.heappop(heap)
            model = fleet[i]
            model.advance(now_ms)
            for item in model.drain():
                sink.send(item)
                result.sent += 1
            heapq.heappush(heap, (model.next_event_ms(), i))
        wait_ms = heap[0][0] - now_ms if heap else 50
        sink.poll(max(0.0, min(wait_ms, 50) / 1000))
        progress.update(time.monotonic() - t0, result.sent, connected(), errors())
    result.elapsed_s = time.monotonic() - t0
    result.errors = errors()
    progress.update(result.elapsed_s, result.sent, connected(), result.errors, force=True)
    progress.done()
    return result
