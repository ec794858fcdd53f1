"""Topic caches are bounded by bytes, not by count (security review #10: 1,500 distinct 60 KB
topics added 330 MB; at the old count caps that is about 22 GB)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from liftwatch import protocol
from liftwatch.mqtt import connection, packet
from liftwatch.mqtt.connection import Chunk, Connection
from liftwatch.protocol import Rejection, parse_topic, topic_cache_bytes


def _grown_by(work: object) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()  # type: ignore[operator]
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_parse_topic_never_keeps_long_topics() -> None:
    def flood() -> None:
        for i in range(1500):
            result = parse_topic(f"lifts/{i}{'x' * 60_000}/telemetry")
            assert isinstance(result, Rejection) and result.reason == "bad_topic"

    assert _grown_by(flood) < 2 << 20  # 678cc9a: ~90 MB (the LRU kept every topic)


def test_parse_topic_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "TOPIC_CACHE_MAX_BYTES", 200_000)
    for i in range(20_000):
        lift = f"L{i:020d}"
        assert parse_topic(f"lifts/{lift}/event") == (lift, "event")
        assert topic_cache_bytes() <= 200_000
    assert parse_topic("lifts/L00000000000000019999/event") == ("L00000000000000019999", "event")


def test_parse_topic_long_valid_prefix_is_not_cached() -> None:
    prefix = "p" * 300
    before = topic_cache_bytes()
    assert parse_topic(f"{prefix}/L1/status", prefix) == ("L1", "status")
    assert topic_cache_bytes() == before


class _Sink:
    """The consumer side of a connection, for feeding packets to the parser (pure logic)."""

    protocol = "3.1.1"

    def __init__(self) -> None:
        self.chunk = Chunk(1)
        self.received = 0

    def chunk_for(self, gen: int) -> Chunk:
        return self.chunk

    def on_received(self, n: int) -> None:
        self.received += n


def _publish(topic: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + b"{}"
    return packet(0x32, body)


async def test_connection_topic_cache_skips_long_topics_and_is_bounded_by_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Async only because a connection is made inside a running event loop."""
    sink = _Sink()
    conn = Connection(sink, 1)
    long_topics = [b"lifts/%d" % i + b"x" * 60_000 + b"/telemetry" for i in range(50)]
    for i, topic in enumerate(long_topics):
        conn.data_received(_publish(topic, i + 1))
    assert [m.topic.encode() for m in sink.chunk.messages] == long_topics
    assert conn.topics == {} and conn.topic_bytes == 0  # 678cc9a: every 60 KB topic kept

    monkeypatch.setattr(connection, "TOPIC_CACHE_MAX_BYTES", 100_000)
    for i in range(5_000):
        conn.data_received(_publish(b"lifts/L%05d/status" % i, i % 65535 + 1))
        assert conn.topic_bytes <= 100_000
    assert 0 < len(conn.topics) < 5_000
    assert sink.chunk.messages[-1].topic == "lifts/L04999/status"
    again = b"lifts/L04999/status"
    conn.data_received(_publish(again, 9))
    assert sink.chunk.messages[-1].topic is conn.topics[again]  # a cache hit
