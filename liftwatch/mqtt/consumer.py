"""Consumer policy over a :class:`~liftwatch.mqtt.connection.Connection`: batching in receive
order, acks after work and in order, flow control, reconnect with backoff, and :func:`consume`.

Flow control never drops: at most ``max_unacked`` messages are held in memory. MQTT 5 tells
the broker so (Receive Maximum); with 3.1.1, and as a second guard, the socket stops being
read, which pushes back through TCP to the broker, where the persistent session queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from liftwatch.mqtt.connection import Chunk, Connection, MqttError
from liftwatch.mqtt.packets import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    RawMessage,
    connect_packet,
    puback_bytes,
    subscribe_packet,
)
from liftwatch.settings import MqttTarget, Settings
from liftwatch.tls import broker_tls_context

log = logging.getLogger("liftwatch.mqtt")

# Reconnect backoff (chaos review D6): alerts shares this consumer, and every second it stays
# disconnected after the broker is back is a second an alarm can wait. Capped exponential with
# full jitter between the floor and the cap: attempt n waits uniform(MIN, min(MAX, MIN * 2^n)),
# so after any outage the next attempt is at most BACKOFF_MAX_S away, and the few liftwatch
# consumers do not reconnect in lockstep.
BACKOFF_MIN_S: Final = 0.2
BACKOFF_MAX_S: Final = 3.0
CONNECT_TIMEOUT_S: Final = 10.0


@dataclass(slots=True)
class ConsumerStats:
    """Live counters for metrics: read them, never write them."""

    received: int = 0
    acked: int = 0
    held: int = 0  # received, not yet acknowledged (or dropped with its connection)
    connects: int = 0
    connected: bool = False
    last_ack_lag_s: float = 0.0  # receive → ack of the oldest message of the last batch


HandleBatch = Callable[[list[RawMessage]], Awaitable[None]]


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` + 1 (``attempt`` ≥ 0 failures
    so far): full jitter in [BACKOFF_MIN_S, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt)]."""
    ceiling = BACKOFF_MIN_S * 2 ** min(max(attempt, 0), 32)
    high = min(BACKOFF_MAX_S, ceiling)
    return (rng or random).uniform(BACKOFF_MIN_S, high)


def topic_filters(settings: Settings, kinds: Sequence[str]) -> list[str]:
    share = f"$share/{settings.mqtt_share_group}/" if settings.mqtt_share_group else ""
    return [f"{share}{settings.mqtt_topic_prefix}/+/{kind}" for kind in kinds]


class _Consumer:
    def __init__(
        self,
        settings: Settings,
        client_id: str,
        kinds: Sequence[str],
        handle_batch: HandleBatch,
        max_unacked: int,
        max_batch: int,
        stop: asyncio.Event,
        on_connect: Callable[[], None] | None,
        concurrency: int,
        stats: ConsumerStats,
    ) -> None:
        self.settings = settings
        self.target: MqttTarget = settings.mqtt
        self.protocol = settings.mqtt_protocol
        self.client_id = client_id
        self.filters = topic_filters(settings, kinds)
        self.handle_batch = handle_batch
        self.max_unacked = max_unacked
        self.max_batch = max_batch
        self.stop = stop
        self.on_connect = on_connect
        self.concurrency = concurrency
        self.stats = stats
        self.gen = 0
        self.conn: Connection | None = None
        self.chunks: deque[Chunk] = deque()
        self.wakeup = asyncio.Event()
        self.failed = False
        self.halting = False
        # SUBACK seen on a connection of this process: until then every connection subscribes,
        # present session or not (a session left by a refused SUBSCRIBE, or made for another
        # prefix, must not be used as it is).
        self.subscribed = False

    # called by the connection
    def chunk_for(self, gen: int) -> Chunk:
        if self.chunks and self.chunks[-1].gen == gen:
            return self.chunks[-1]
        chunk = Chunk(gen)
        self.chunks.append(chunk)
        return chunk

    def on_received(self, n: int) -> None:
        stats = self.stats
        stats.received += n
        stats.held += n
        if stats.held >= self.max_unacked and self.conn is not None:
            self.conn.pause()
        self.wakeup.set()

    # the connection loop
    async def connect_loop(self) -> None:
        failures = 0
        while not self.stop.is_set() and not self.halting:
            try:
                conn = await self._connect_once()
            except (OSError, MqttError, TimeoutError, ConnectionError) as exc:
                delay = backoff_delay(failures)
                failures += 1
                log.warning(
                    "event=mqtt_connect_failed broker=%r error=%r retry_in_s=%.1f",
                    self.target,
                    str(exc) or exc.__class__.__name__,
                    delay,
                )
                await self._sleep_or_stop(delay)
                continue
            failures = 0
            keepalive = asyncio.create_task(self._keepalive(conn))
            try:
                await conn.closed
            finally:
                keepalive.cancel()
                self.stats.connected = False
                if self.conn is conn:
                    self.conn = None
            if not self.stop.is_set():
                log.warning("event=mqtt_connection_lost broker=%r", self.target)

    async def _connect_once(self) -> Connection:
        loop = asyncio.get_running_loop()
        self.gen += 1
        gen = self.gen
        conn = Connection(self, gen)
        ctx = broker_tls_context(self.settings)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await loop.create_connection(
                lambda: conn,
                self.target.host,
                self.target.port,
                ssl=ctx,
                server_hostname=self.target.host if ctx else None,
            )
        # Set before CONNACK: with a present session the broker sends queued messages right
        # after CONNACK, and their batches must be able to ack on this connection.
        self.conn = conn
        try:
            conn.write(
                connect_packet(
                    self.client_id,
                    protocol=self.protocol,
                    keepalive_s=self.settings.mqtt_keepalive_s,
                    username=self.target.username,
                    password=self.target.password,
                    receive_maximum=self.max_unacked,
                )
            )
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                session_present = await conn.connack
            # 3.1.1 re-sends every retained message on SUBSCRIBE; a present session already
            # holds the subscription once this process has seen it granted (MQTT 5 uses
            # retain handling instead, and resubscribes).
            if not session_present or self.protocol == "5" or not self.subscribed:
                conn.write(subscribe_packet(self.filters, protocol=self.protocol))
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await conn.suback
                self.subscribed = True
        except BaseException:
            conn.abort()
            if self.conn is conn:
                self.conn = None
            raise
        self.stats.connects += 1
        self.stats.connected = True
        if self.stats.held >= self.max_unacked:
            conn.pause()
        log.info(
            "event=mqtt_connected broker=%r client_id=%s protocol=%s session_present=%s",
            self.target,
            self.client_id,
            self.protocol,
            session_present,
        )
        if self.on_connect is not None:
            self.on_connect()
        return conn

    async def _keepalive(self, conn: Connection) -> None:
        interval = self.settings.mqtt_keepalive_s
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            if now - conn.last_write >= interval / 2:
                conn.write(PINGREQ_PACKET)
            if not conn.paused and now - conn.last_read > interval * 1.5:
                log.warning("event=mqtt_keepalive_timeout broker=%r", self.target)
                conn.abort()
                return

    async def _sleep_or_stop(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), delay)

    # the hand-off loop
    def _take_batch(self) -> tuple[int, list[RawMessage]] | None:
        while self.chunks:
            chunk = self.chunks[0]
            if not chunk.messages:
                if len(self.chunks) == 1:
                    return None
                self.chunks.popleft()
                continue
            if len(chunk.messages) <= self.max_batch:
                if len(self.chunks) > 1:
                    self.chunks.popleft()
                batch = chunk.messages
                chunk.messages = []
                return chunk.gen, batch
            batch = chunk.messages[: self.max_batch]
            del chunk.messages[: self.max_batch]
            return chunk.gen, batch
        return None

    async def dispatch(self) -> None:
        inflight: deque[tuple[asyncio.Future[None], int, list[RawMessage]]] = deque()
        try:
            while True:
                while len(inflight) < self.concurrency and not self.stop.is_set():
                    taken = self._take_batch()
                    if taken is None:
                        break
                    gen, batch = taken
                    task = asyncio.ensure_future(self.handle_batch(batch))
                    inflight.append((task, gen, batch))
                if not inflight:
                    if self.stop.is_set():
                        return
                    self.wakeup.clear()
                    if self._has_pending():
                        continue
                    await _wait_any(self.wakeup, self.stop)
                    continue
                waiters: set[asyncio.Future[Any]] = {inflight[0][0]}
                wake: asyncio.Task[bool] | None = None
                if len(inflight) < self.concurrency and not self.stop.is_set():
                    self.wakeup.clear()
                    if not self._has_pending():
                        wake = asyncio.create_task(self.wakeup.wait())
                        waiters.add(wake)
                    else:
                        continue
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if wake is not None and not wake.done():
                    wake.cancel()
                while inflight and inflight[0][0].done():
                    done, gen, batch = inflight.popleft()
                    done.result()  # a failed batch stops here, before any ack of it
                    self._ack(gen, batch)
        except BaseException:
            self.failed = True
            for pending, _, _ in inflight:
                pending.cancel()
            if self.conn is not None:
                self.conn.abort()  # drop unacked work: the broker redelivers it
            raise

    def _has_pending(self) -> bool:
        return any(chunk.messages for chunk in self.chunks)

    def _ack(self, gen: int, batch: list[RawMessage]) -> None:
        stats = self.stats
        conn = self.conn
        # Packet ids belong to one connection: after a reconnect the broker redelivers these
        # messages itself, and an old id might now name a different message.
        if conn is not None and conn.gen == gen:
            data = puback_bytes(batch)
            if data and conn.write(data):
                stats.acked += len(data) // 4
        stats.held -= len(batch)
        if batch:
            stats.last_ack_lag_s = max(0.0, time.time() - batch[0].received_ms / 1000)
        if conn is not None and stats.held < self.max_unacked:
            conn.resume()

    async def close(self) -> None:
        conn = self.conn
        if conn is not None:
            if not self.failed and conn.write(DISCONNECT_PACKET):
                # Keep reading until the broker closes: closing a socket with unread input
                # makes the kernel send RST, and the broker would drop our last PUBACKs.
                conn.draining = True
                conn.resume()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.closed), 5.0)
            conn.abort()


async def _wait_any(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def consume(
    settings: Settings,
    *,
    client_id: str,
    kinds: Sequence[str] = ("telemetry", "event", "status"),
    handle_batch: HandleBatch,
    max_unacked: int = 20_000,
    max_batch: int = 5000,
    stop: asyncio.Event | None = None,
    on_connect: Callable[[], None] | None = None,
    concurrency: int = 1,
    stats: ConsumerStats | None = None,
) -> None:
    """Consume until ``stop`` is set (then finish the batches in hand, ack them, disconnect).

    ``concurrency`` > 1 lets that many ``handle_batch`` calls overlap (ingest uses it to keep
    InfluxDB busy); batches are still started and acknowledged in receive order. Alerts keeps
    the default 1: one batch at a time, strictly sequential.
    """
    if max_batch < 1 or max_unacked < 1 or concurrency < 1:
        raise ValueError("max_batch, max_unacked and concurrency must be positive")
    stop = stop if stop is not None else asyncio.Event()
    consumer = _Consumer(
        settings,
        client_id,
        kinds,
        handle_batch,
        max_unacked,
        max_batch,
        stop,
        on_connect,
        concurrency,
        stats if stats is not None else ConsumerStats(),
    )
    connector = asyncio.create_task(consumer.connect_loop())
    dispatcher = asyncio.create_task(consumer.dispatch())
    try:
        await asyncio.wait({connector, dispatcher}, return_when=asyncio.FIRST_COMPLETED)
        if dispatcher.done():
            dispatcher.result()  # raises the handler's exception
        await dispatcher
    finally:
        consumer.halting = True
        if not dispatcher.done():
            dispatcher.cancel()
        await consumer.close()
        connector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connector
        if dispatcher.done() and not dispatcher.cancelled() and dispatcher.exception():
            log.error(
                "event=mqtt_handler_failed client_id=%s error=%r",
                client_id,
                dispatcher.exception(),
            )
