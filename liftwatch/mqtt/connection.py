"""One TCP/TLS connection to the broker as an ``asyncio.Protocol``: one ``data_received`` call
parses every complete packet of a socket read in a tight loop and queues the PUBLISHes on its
:class:`Receiver` (the consumer); control packets resolve the CONNACK/SUBACK futures."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Final, Protocol, cast

from liftwatch import clock
from liftwatch.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    RawMessage,
    connack_error,
    read_varint,
)

log = logging.getLogger("liftwatch.mqtt")

# The per-connection cache of decoded topics: a valid topic is short (a lift id is at most 64
# characters), so only topics up to 256 bytes are cached, at most 32 MiB of them.
TOPIC_CACHE_MAX_TOPIC_BYTES: Final = 256
TOPIC_CACHE_MAX_BYTES: Final = 32 << 20
_TOPIC_ENTRY_OVERHEAD: Final = 160  # dict slot, bytes and str headers (CPython 3.11)


class MqttError(Exception):
    """The broker refused us (bad credentials, not authorised, protocol error)."""


@dataclass(slots=True)
class Chunk:
    gen: int
    messages: list[RawMessage] = field(default_factory=list)


class Receiver(Protocol):
    """The consumer side of a connection: where received PUBLISHes go."""

    @property
    def protocol(self) -> str: ...

    def chunk_for(self, gen: int) -> Chunk: ...

    def on_received(self, n: int) -> None: ...


class Connection(asyncio.Protocol):
    """One TCP/TLS connection: parses packets, queues PUBLISHes on the consumer."""

    def __init__(self, consumer: Receiver, gen: int) -> None:
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
        now_ms = clock.now_ms()
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
            if first >> 4 == PUBLISH:
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
                    plen, p = read_varint(buf, p)
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
        if kind == CONNACK:
            if len(body) < 2:
                self._protocol_error("short CONNACK")
                return
            err = connack_error(body[1], self.v5)
            if self.connack.done():
                return
            if err is None:
                self.connack.set_result(bool(body[0] & 1))
            elif not self.connack.done():
                self.connack.set_exception(MqttError(f"broker refused the connection: {err}"))
        elif kind == SUBACK:
            codes = body[2:]
            if self.v5:
                plen, p = read_varint(body, 2)
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
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            log.warning("event=mqtt_broker_disconnect reason=0x%02x", reason)
            self.abort()
        elif kind in (PINGRESP, PUBACK):
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
