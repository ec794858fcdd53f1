"""MQTT reconnect backoff (chaos review D6): a low cap with jitter, so that alerts (which shares
the consumer) is deaf for at most a few seconds after the broker returns."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from liftwatch.mqtt import BACKOFF_MAX_S, BACKOFF_MIN_S, ConsumerStats, backoff_delay
from tests.support.harness import eventually
from tests.support.mqtt import Collector, run, settings_for


def test_cap_is_low_for_the_alarm_path() -> None:
    assert 2.0 <= BACKOFF_MAX_S <= 5.0  # 678cc9a: 30 s


def test_backoff_grows_from_the_floor_and_never_exceeds_the_cap() -> None:
    rng = random.Random(12)
    for attempt in range(200):
        ceiling = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt)
        for _ in range(50):
            delay = backoff_delay(attempt, rng)
            assert BACKOFF_MIN_S <= delay <= ceiling
    assert backoff_delay(0, rng) == pytest.approx(BACKOFF_MIN_S)
    assert backoff_delay(10**6, rng) <= BACKOFF_MAX_S  # no overflow on a week-long outage


def test_backoff_is_jittered_over_the_whole_range_once_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(50, rng) for _ in range(2000)]
    assert min(delays) < BACKOFF_MIN_S + 0.3 and max(delays) > BACKOFF_MAX_S - 0.3
    assert len({round(d, 3) for d in delays}) > 500  # consumers do not retry in lockstep
    mean = sum(delays) / len(delays)
    middle = (BACKOFF_MIN_S + BACKOFF_MAX_S) / 2
    assert middle - 0.15 < mean < middle + 0.15


@pytest.mark.integration
async def test_reconnects_within_the_cap_after_a_long_broker_outage(
    services: object, unique: str
) -> None:
    """Chaos D6 against the real Mosquitto: after an outage long enough for the old backoff
    to reach 6+ s, the consumer is back within the cap (+ connect time) of the broker's return."""
    broker = services.mosquitto()  # type: ignore[attr-defined]
    settings = settings_for(broker.url, unique)
    c = Collector(until=1)
    stats = ConsumerStats()
    task = asyncio.create_task(run(settings, f"c-{unique}", c, stats=stats))
    await c.connected.wait()
    await asyncio.to_thread(broker.stop)
    await eventually(lambda: not stats.connected, what="the disconnect")
    await asyncio.sleep(9)  # the outage itself: several failed attempts, backoff at its cap
    await asyncio.to_thread(broker.start)
    back = time.monotonic()
    await eventually(lambda: stats.connects == 2, timeout=20, what="the reconnect")
    assert time.monotonic() - back <= BACKOFF_MAX_S + 1.0
    c.stop.set()
    await asyncio.wait_for(task, 10)
