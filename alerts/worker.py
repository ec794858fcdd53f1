"""``liftwatch alerts``: the MQTT consumer loop, the timer loop and the InfluxDB copy.

Messages come from the shared consumer (:func:`liftwatch.mqtt.consume`, own persistent QoS 1
session, ``LIFTWATCH_ALERTS_CLIENT_ID``); each batch is evaluated and its alarm transitions are
committed (in a worker thread, so the loop never waits on SQLite) before ``handle_batch``
returns, which is what lets the consumer acknowledge it. One timer task sleeps until the
scheduler's earliest deadline and is woken when an earlier one is armed: no polling loop.

Alarm transitions are also written to the InfluxDB measurement ``alarm``, best effort, through
an in-memory queue drained by its own task: an InfluxDB outage never delays an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from alerts import metrics
from alerts.engine import Engine
from alerts.lifecycle import Change
from alerts.replicas import Keeper
from liftwatch.clock import Clock, SystemClock
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.lineprotocol import line
from liftwatch.mqtt import RawMessage, consume
from liftwatch.settings import Settings
from liftwatch.store import Database, changes, leases, open_store

log = logging.getLogger("liftwatch.alerts")

# The change loop's re-read of the registry and alarm buttons, whatever the feed said.
SAFETY_REREAD_S: Final = 60.0
INFLUX_FLUSH_S: Final = 0.5
INFLUX_QUEUE_MAX: Final = 100_000
INFLUX_BATCH: Final = 5000
CHECKPOINT_S: Final = 2.0  # lifts whose state moved are checkpointed this often (docs/ha.md)


class InfluxSink:
    """Alarm transitions as line protocol, queued in memory (bounded: the oldest are dropped
    when InfluxDB stays away for long; SQLite holds the authoritative history)."""

    def __init__(self, maxlen: int = INFLUX_QUEUE_MAX) -> None:
        self.lines: deque[str] = deque(maxlen=maxlen)

    def __call__(self, changes: Sequence[Change]) -> None:
        for change in changes:
            alarm, t = change.alarm, change.transition
            self.lines.append(
                line(
                    "alarm",
                    {"lift_id": alarm.lift_id, "code": alarm.code, "severity": alarm.severity},
                    {
                        "alarm_id": alarm.alarm_id,
                        "subtype": alarm.subtype,
                        "event": t.event,
                        "transition": f"{t.from_state or ''}->{t.to_state or ''}",
                        "status": alarm.status,
                        "condition": alarm.condition,
                        "actor": t.actor,
                        "note": t.note,
                        "outcome": alarm.outcome,
                        "suppressed": alarm.suppressed,
                    },
                    # µs: transitions of one lift and code in one millisecond (several
                    # faults in one snapshot, end_of_alarm resolving two subtypes) stay
                    # distinct points; the transition's row id makes the offset stable.
                    t.at * 1000 + (t.id or 0) % 1000,
                )
            )

    async def run(self, client: InfluxClient, stop: asyncio.Event) -> None:
        backoff = INFLUX_FLUSH_S
        created = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            metrics.INFLUX_QUEUE.set(len(self.lines))
            if not self.lines:
                if stop.is_set():
                    return
                continue
            batch = [self.lines.popleft() for _ in range(min(INFLUX_BATCH, len(self.lines)))]
            try:
                if not created:
                    with contextlib.suppress(InfluxError):
                        await client.create_database()
                    created = True
                await client.write("\n".join(batch), precision="u")
                backoff = INFLUX_FLUSH_S
            except InfluxError as exc:
                if exc.retryable and not stop.is_set():
                    self.lines.extendleft(reversed(batch))
                    backoff = min(backoff * 2, 30.0)
                    log.warning(
                        "event=alarm_copy_deferred error=%r: alarm transitions not in InfluxDB yet",
                        str(exc),
                    )
                else:
                    log.error("event=alarm_copy_refused lines=%d error=%r", len(batch), str(exc))
            if stop.is_set() and not self.lines:
                return


def build_engine(
    settings: Settings, db: Database | None = None, *, clock: Clock | None = None
) -> tuple[Engine, InfluxSink]:
    sink = InfluxSink()
    engine = Engine(
        db or open_store(settings),
        clock=clock or SystemClock(),
        thresholds=settings.alerts_thresholds,
        prefix=settings.mqtt_topic_prefix,
        sink=sink,
        dead_letter_max=settings.dead_letter_max,
        replica_id=settings.alerts_replica,
    )
    return engine, sink


class _Counts:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def publish(self, engine: Engine, changes: Sequence[Change]) -> None:
        counts = dict(engine.counts)
        for key, counter in (
            ("messages", metrics.MESSAGES),
            ("rejected", metrics.REJECTED),
            ("duplicates", metrics.DUPLICATES),
            ("late", metrics.LATE),
            ("evaluation_errors", metrics.EVALUATION_ERRORS),
        ):
            delta = counts[key] - self.last.get(key, 0)
            if delta > 0:
                counter.inc(delta)
        self.last = counts
        for change in changes:
            metrics.TRANSITIONS.labels(change.transition.event).inc()
        metrics.LIFTS.set(len(engine.states))
        metrics.TIMERS.set(len(engine.scheduler))
        metrics.FLAGGED.set(len(engine.flagged))


async def _timer_loop(
    engine: Engine,
    stop: asyncio.Event,
    counts: _Counts,
    observe: Callable[[int], None] | None = None,
) -> None:
    """Sleep until the earliest deadline (or an earlier one is armed), fire what is due.
    ``observe`` receives each timer's lateness in ms (default: the metrics histogram)."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def _wake() -> None:
        loop.call_soon_threadsafe(wake.set)

    engine.wake = _wake
    stop_waiter = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            due = engine.next_due_ms()
            now = engine.clock.now_ms()
            if due is not None and due <= now:
                changes = await asyncio.to_thread(engine.run_due)
                for late_ms in engine.take_lateness():
                    if observe is not None:
                        observe(late_ms)
                    else:
                        metrics.TIMER_LATENESS.observe(late_ms / 1000)
                counts.publish(engine, changes)
                continue
            wake.clear()
            timeout = None if due is None else (due - now) / 1000
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {waiter, stop_waiter}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
    finally:
        engine.wake = None
        stop_waiter.cancel()


async def _change_loop(engine: Engine, stop: asyncio.Event) -> None:
    """Follow the change feed (liftwatch/store/changes.py): woken when any process commits a
    registry change or an alarm action, the engine applies it at once. Every
    :data:`SAFETY_REREAD_S` it also re-reads the registry and the alarm-button alarms, in case
    a wake-up was lost (the feed's ids are the truth, so nothing is, but the cost is nil)."""
    kinds = (changes.REGISTRY, changes.ALARM)
    with changes.Waker(engine.db, kinds=kinds, outbox=False) as waker:
        stop_waiter = asyncio.create_task(stop.wait())
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        try:
            woke = True  # changes committed between start() and the subscription
            while not stop.is_set():
                try:
                    if loop.time() - last_full >= SAFETY_REREAD_S:
                        last_full = loop.time()
                        await asyncio.to_thread(engine.refresh_registry)
                        await asyncio.to_thread(engine.apply_changes)
                    elif woke:
                        await asyncio.to_thread(engine.apply_changes)
                except Exception:
                    log.exception("event=change_apply_failed: keeping what is known so far")
                timeout = max(0.0, SAFETY_REREAD_S - (loop.time() - last_full))
                waiter = asyncio.create_task(waker.wait(timeout))
                await asyncio.wait({waiter, stop_waiter}, return_when="FIRST_COMPLETED")
                woke = waiter.done() and waiter.result()
                waiter.cancel()
        finally:
            stop_waiter.cancel()


async def _checkpoint_loop(engine: Engine, stop: asyncio.Event) -> None:
    """Every :data:`CHECKPOINT_S`, save the lifts whose state moved (alarm writes save theirs
    in their own transaction). A store outage defers them to the next round."""
    failing = False
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHECKPOINT_S)
        if stop.is_set():
            return  # the keeper saves the last ones before it gives its partitions back
        try:
            while await asyncio.to_thread(engine.checkpoint_dirty) > 0:
                pass
            failing = False
        except Exception as exc:
            if not failing:
                log.warning("event=checkpoint_failed error=%r: retried in 2 s", str(exc)[:200])
            failing = True


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    engine: Engine | None = None,
    sink: InfluxSink | None = None,
    influx: InfluxClient | None = None,
    on_connect: Callable[[], None] | None = None,
) -> None:
    """Run the alerts worker until ``stop`` is set. ``liftwatch serve`` passes the engine it
    shares with the API (so API transitions reach the engine at once)."""
    stop = stop or asyncio.Event()
    if engine is None:
        engine, sink = build_engine(settings)
    await asyncio.to_thread(engine.start)
    # 100,000 lifts' state is millions of long-lived objects: a full GC pass over them stalls
    # the loop for hundreds of ms (measured in bench/alerts_engine.py). Freeze what start-up
    # built so the collector only scans what came after.
    gc.collect()
    gc.freeze()
    counts = _Counts()
    keeper = Keeper(engine) if engine.held is not None else None
    if keeper is not None:
        # Take this replica's partitions before the first message (a lone replica takes all).
        await asyncio.to_thread(keeper.round)

    async def handle_batch(batch: list[RawMessage]) -> None:
        items = [(m.topic, m.payload) for m in batch]
        retained = [m.retain for m in batch]
        changes = await asyncio.to_thread(lambda: engine.handle_raw(items, retained=retained))
        counts.publish(engine, changes)

    own_influx = influx is None and sink is not None
    client = influx or (InfluxClient.from_settings(settings) if sink is not None else None)
    tasks = [
        asyncio.create_task(_timer_loop(engine, stop, counts)),
        asyncio.create_task(_change_loop(engine, stop)),
        asyncio.create_task(_checkpoint_loop(engine, stop)),
    ]
    if keeper is not None:
        tasks.append(asyncio.create_task(keeper.run(stop)))
    if sink is not None and client is not None:
        tasks.append(asyncio.create_task(sink.run(client, stop)))
    # --- webhook delivery (alerts/webhooks, docs/webhooks.md): woken by the engine after
    # every commit that may have written outbox rows; stops with the worker.
    from alerts.webhooks.dispatcher import attach

    tasks.append(asyncio.create_task(attach(engine, settings).run(stop)))
    client_id = settings.alerts_mqtt_client_id
    log.info(
        "event=alerts_consuming client_id=%s replica=%s partitions=%d",
        client_id,
        engine.replica_id or "-",
        len(engine.held or {}) if engine.held is not None else leases.PARTITIONS,
    )
    try:
        await consume(
            settings,
            client_id=client_id,
            kinds=("telemetry", "event", "status"),
            handle_batch=handle_batch,
            max_unacked=1000,
            max_batch=500,
            stop=stop,
            on_connect=on_connect,
        )
    finally:
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=5)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("event=alerts_task_failed error=%r", task.exception())
        if own_influx and client is not None:
            await client.aclose()
