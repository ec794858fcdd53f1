"""The shared MQTT consumer of ingest and alerts: QoS 1, persistent session, acks after work.

:func:`consume` subscribes ``{prefix}/+/{kind}`` and hands the received messages over in
**batches**, in receive order, to an async ``handle_batch``. Every message of a batch is
acknowledged (PUBACK) only after ``handle_batch`` returned, and acks go out in receive order
(MQTT 3.1.1 § 4.6.0-2 / MQTT 5 § 4.6). If ``handle_batch`` raises, nothing of that batch is
acknowledged, the connection is dropped and the exception ends :func:`consume`; the broker
redelivers the unacknowledged messages to the next session (at-least-once).

Why not aiomqtt or paho: both process one message per Python call chain (paho reads a packet
with three ``recv`` syscalls and builds an ``MQTTMessage``; aiomqtt adds a future and a queue
hop per message), which measured ~23-60 µs per message on the target machine, more than the
whole ingest budget. This module speaks the small subset of MQTT a QoS 1 subscriber needs
(CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in, PUBACK out, PINGREQ/PINGRESP, DISCONNECT) as an
``asyncio.Protocol``: one ``data_received`` call parses every complete packet of a socket read
in a tight loop, and one ``transport.write`` sends the PUBACKs of a whole batch. Figures and
the trade-off are in docs/ingest.md.

Flow control never drops: at most ``max_unacked`` messages are held in memory. MQTT 5 tells
the broker so (Receive Maximum); with 3.1.1, and as a second guard, the socket stops being
read, which pushes back through TCP to the broker, where the persistent session queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from liftwatch.settings import MqttTarget, Settings

log = logging.getLogger("liftwatch.mqtt")

SESSION_EXPIRY_S: Final = 7 * 24 * 3600  # MQTT 5: keep our queue through a week of downtime
# Reconnect backoff (chaos review D6): alerts shares this consumer, and every second it stays
# disconnected after the broker is back is a second an alarm can wait. Capped exponential with
# full jitter between the floor and the cap: attempt n waits uniform(MIN, min(MAX, MIN * 2^n)),
# so after any outage the next attempt is at most BACKOFF_MAX_S away, and the few liftwatch
# consumers do not reconnect in lockstep.
BACKOFF_MIN_S: Final = 0.2
BACKOFF_MAX_S: Final = 3.0
CONNECT_TIMEOUT_S: Final = 10.0
# The per-connection cache of decoded topics: a valid topic is short (a lift id is at most 64
# characters), so only topics up to 256 bytes are cached, at most 32 MiB of them.
TOPIC_CACHE_MAX_TOPIC_BYTES: Final = 256
TOPIC_CACHE_MAX_BYTES: Final = 32 << 20
_TOPIC_ENTRY_OVERHEAD: Final = 160  # dict slot, bytes and str headers (CPython 3.11)

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 8, 9, 12, 13, 14
_PUBACK_PACK: Final = struct.Struct(">BBH").pack
_PINGREQ_PACKET: Final = b"\xc0\x00"
_DISCONNECT_PACKET: Final = b"\xe0\x00"
_SUBSCRIBE_ID: Final = 1


@dataclass(slots=True)
class RawMessage:
    """One PUBLISH as received. ``received_ms`` is the wall-clock time of the socket read.

    ``retain`` is the PUBLISH retain flag (fixed header bit 0). A broker sets it only on a
    retained message it sends because of a (re)subscription — a message forwarded live to an
    existing subscription has it cleared (MQTT 3.1.1 § 3.3.1.3; MQTT 5 without
    retain-as-published) — so ``retain=True`` means "an old message replayed", not news
    (PROTOCOL.md § Value ranges, 1.1: a retained status)."""

    topic: str
    payload: bytes
    received_ms: int
    qos: int
    mid: int
    retain: bool = False


@dataclass(slots=True)
class ConsumerStats:
    """Live counters for metrics: read them, never write them."""

    received: int = 0
    acked: int = 0
    held: int = 0  # received, not yet acknowledged (or dropped with its connection)
    connects: int = 0
    connected: bool = False
    last_ack_lag_s: float = 0.0  # receive → ack of the oldest message of the last batch


class MqttError(Exception):
    """The broker refused us (bad credentials, not authorised, protocol error)."""


HandleBatch = Callable[[list[RawMessage]], Awaitable[None]]


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` + 1 (``attempt`` ≥ 0 failures
    so far): full jitter in [BACKOFF_MIN_S, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt)]."""
    ceiling = BACKOFF_MIN_S * 2 ** min(max(attempt, 0), 32)
    high = min(BACKOFF_MAX_S, ceiling)
    return (rng or random).uniform(BACKOFF_MIN_S, high)


# --- packet encoding (pure) ----------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    data = text.encode()
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    protocol: str,
    keepalive_s: int,
    username: str | None,
    password: str | None,
    receive_maximum: int,
) -> bytes:
    """CONNECT with clean session / clean start **off**: the broker keeps our subscription
    and queues QoS 1 messages while we are away."""
    v5 = protocol == "5"
    flags = 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    head = _str("MQTT") + bytes((5 if v5 else 4, flags)) + keepalive_s.to_bytes(2, "big")
    if v5:
        props = (
            b"\x11"
            + SESSION_EXPIRY_S.to_bytes(4, "big")
            + b"\x21"
            + min(receive_maximum, 0xFFFF).to_bytes(2, "big")
        )
        head += _varint(len(props)) + props
    body = head + _str(client_id)
    if username is not None:
        body += _str(username)
        if password is not None:
            body += _str(password)
    return _packet(_CONNECT << 4, body)


def subscribe_packet(filters: Sequence[str], *, protocol: str) -> bytes:
    body = _SUBSCRIBE_ID.to_bytes(2, "big")
    if protocol == "5":
        body += b"\x00"  # no properties
    for topic_filter in filters:
        # QoS 1. MQTT 5 options: retain handling 1 = send retained messages only when the
        # subscription is new, so a reconnect does not store every lift's status again.
        body += _str(topic_filter) + (b"\x11" if protocol == "5" else b"\x01")
    return _packet((_SUBSCRIBE << 4) | 0x02, body)


def topic_filters(settings: Settings, kinds: Sequence[str]) -> list[str]:
    share = f"$share/{settings.mqtt_share_group}/" if settings.mqtt_share_group else ""
    return [f"{share}{settings.mqtt_topic_prefix}/+/{kind}" for kind in kinds]


def puback_bytes(messages: Sequence[RawMessage]) -> bytes:
    """The PUBACKs of a batch, in order. MQTT 5 allows the 2-byte form for reason 0x00."""
    pack = _PUBACK_PACK
    return b"".join([pack(0x40, 2, m.mid) for m in messages if m.qos == 1])


_CONNACK_V3: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _connack_error(code: int, v5: bool) -> str | None:
    if code == 0:
        return None
    if not v5:
        return _CONNACK_V3.get(code, f"refused with code {code}")
    names = {0x86: "bad user name or password", 0x87: "not authorised", 0x85: "client id invalid"}
    return names.get(code, f"refused with reason code 0x{code:02x}")


# --- connection ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    gen: int
    messages: list[RawMessage] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One TCP/TLS connection: parses packets, queues PUBLISHes on the consumer."""

    def __init__(self, consumer: _Consumer, gen: int) -> None:
        self.consumer = consumer
        self.gen = gen
        self.v5 = consumer.protocol == "5"
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.connack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self.draining = False
        self.last_read = time.monotonic()
        self.last_write = time.monotonic()
        self.topics: dict[bytes, str] = {}
        self.topic_bytes = 0  # estimated bytes held by ``topics``

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed by the broker"))
                fut.exception()  # mark retrieved: nobody may be waiting for it any more
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        if self.draining:
            return  # after our DISCONNECT: unacked, so the broker will send these again
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        consumer = self.consumer
        chunk = consumer.chunk_for(self.gen)
        out = chunk.messages
        before = len(out)
        now_ms = time.time_ns() // 1_000_000
        topics = self.topics
        v5 = self.v5
        while n - pos >= 2:
            # Remaining length: one byte below 128 is the common case for small payloads.
            length = buf[pos + 1]
            head = pos + 2
            if length & 0x80:
                length &= 0x7F
                shift = 7
                complete = False
                while head < n:
                    byte = buf[head]
                    head += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        self._protocol_error("remaining length longer than 4 bytes")
                        return
                if not complete:
                    break
            end = head + length
            if end > n:
                break
            first = buf[pos]
            if first >> 4 == _PUBLISH:
                qos = (first >> 1) & 3
                tlen = (buf[head] << 8) | buf[head + 1]
                p = head + 2 + tlen
                raw_topic = buf[head + 2 : p]
                topic = topics.get(raw_topic)
                if topic is None:
                    topic = raw_topic.decode("utf-8", "replace")
                    if tlen <= TOPIC_CACHE_MAX_TOPIC_BYTES:
                        self._cache_topic(raw_topic, topic)
                mid = 0
                if qos:
                    if qos > 1:
                        self._protocol_error("QoS 2 PUBLISH on a QoS 1 subscription")
                        return
                    mid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                if v5:
                    plen, p = _read_varint(buf, p)
                    p += plen
                out.append(RawMessage(topic, buf[p:end], now_ms, qos, mid, bool(first & 1)))
            else:
                self._control(first, buf[head:end])
            pos = end
        self.buf = buf[pos:] if pos < n else b""
        got = len(out) - before
        if got:
            consumer.on_received(got)

    def _cache_topic(self, raw: bytes, topic: str) -> None:
        """Remember a short topic's decoded form; start afresh at the byte budget (security
        review #10: a count-bounded cache of 60 KB topics could hold gigabytes)."""
        cost = _TOPIC_ENTRY_OVERHEAD + 2 * len(raw)
        if self.topic_bytes + cost > TOPIC_CACHE_MAX_BYTES:
            self.topics.clear()
            self.topic_bytes = 0
        self.topics[raw] = topic
        self.topic_bytes += cost

    def _control(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == _CONNACK:
            if len(body) < 2:
                self._protocol_error("short CONNACK")
                return
            err = _connack_error(body[1], self.v5)
            if self.connack.done():
                return
            if err is None:
                self.connack.set_result(bool(body[0] & 1))
            elif not self.connack.done():
                self.connack.set_exception(MqttError(f"broker refused the connection: {err}"))
        elif kind == _SUBACK:
            codes = body[2:]
            if self.v5:
                plen, p = _read_varint(body, 2)
                codes = body[p + plen :]
            bad = [c for c in codes if c >= 0x80]
            if self.suback.done():
                return
            if bad:
                self.suback.set_exception(
                    MqttError(f"broker refused the subscription (codes {bad}); check the ACL")
                )
            else:
                self.suback.set_result(None)
        elif kind == _DISCONNECT:
            reason = body[0] if body else 0
            log.warning("event=mqtt_broker_disconnect reason=0x%02x", reason)
            self.abort()
        elif kind in (_PINGRESP, _PUBACK):
            return
        else:
            self._protocol_error(f"unexpected packet type {kind}")

    def _protocol_error(self, what: str) -> None:
        log.error("event=mqtt_protocol_error detail=%r", what)
        self.abort()

    # our side
    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        self.last_write = time.monotonic()
        return True

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.last_read = time.monotonic()
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


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
        self.conn: _Connection | None = None
        self.chunks: deque[_Chunk] = deque()
        self.wakeup = asyncio.Event()
        self.failed = False
        self.halting = False

    # called by the connection
    def chunk_for(self, gen: int) -> _Chunk:
        if self.chunks and self.chunks[-1].gen == gen:
            return self.chunks[-1]
        chunk = _Chunk(gen)
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

    async def _connect_once(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self.gen += 1
        gen = self.gen
        conn = _Connection(self, gen)
        ctx: ssl.SSLContext | None = None
        if self.target.tls:
            ca = self.settings.mqtt_ca_file
            ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
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
            # holds the subscription (MQTT 5 uses retain handling instead, and resubscribes).
            if not session_present or self.protocol == "5":
                conn.write(subscribe_packet(self.filters, protocol=self.protocol))
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await conn.suback
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

    async def _keepalive(self, conn: _Connection) -> None:
        interval = self.settings.mqtt_keepalive_s
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            if now - conn.last_write >= interval / 2:
                conn.write(_PINGREQ_PACKET)
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
            if not self.failed and conn.write(_DISCONNECT_PACKET):
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
