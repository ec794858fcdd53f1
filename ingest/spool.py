"""The on-disk outage spool: append-only segment files of line-protocol batches.

While InfluxDB is down a batch is appended here and ``fsync``'d before its messages are
acknowledged to the broker, so a crash loses nothing. Segments are replayed oldest first and
deleted once InfluxDB took all of their lines; a crash during replay replays the segment again,
which is harmless because a point with the same measurement, tags and timestamp overwrites.

Record layout (big endian): ``len:u32 crc32:u32 payload``; payload = ``count:u32`` then per
point ``topic_len:u16 topic line_len:u32 line``. Lines may contain newlines (inside quoted
string fields), so they are length-prefixed, never newline-split. A torn record at the end of
a segment (power cut during append) was never fsync'd, hence never acknowledged: it is skipped.

Methods are blocking (file I/O and fsync): the writer calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

log = logging.getLogger("ingest.spool")

_HEAD: Final = struct.Struct(">II")
_COUNT: Final = struct.Struct(">I")
_TOPIC: Final = struct.Struct(">H")
_LINE: Final = struct.Struct(">I")
SUFFIX: Final = ".seg"


class SpoolFull(Exception):
    """The spool reached its size limit; the caller must wait instead of acknowledging."""


def encode_record(lines: list[bytes], topics: list[str]) -> bytes:
    parts = [_COUNT.pack(len(lines))]
    for line, topic in zip(lines, topics, strict=True):
        raw_topic = topic.encode("utf-8", "replace")[:0xFFFF]
        parts += [_TOPIC.pack(len(raw_topic)), raw_topic, _LINE.pack(len(line)), line]
    payload = b"".join(parts)
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> Iterator[tuple[list[bytes], list[str]]]:
    """Every intact record of a segment, in order; stops at the first torn or corrupt one."""
    pos, end = 0, len(data)
    while pos + _HEAD.size <= end:
        length, crc = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("event=spool_torn_record offset=%d", pos)
            return
        (count,) = _COUNT.unpack_from(payload, 0)
        p = _COUNT.size
        lines: list[bytes] = []
        topics: list[str] = []
        for _ in range(count):
            (tlen,) = _TOPIC.unpack_from(payload, p)
            p += _TOPIC.size
            topics.append(payload[p : p + tlen].decode("utf-8", "replace"))
            p += tlen
            (llen,) = _LINE.unpack_from(payload, p)
            p += _LINE.size
            lines.append(payload[p : p + llen])
            p += llen
        yield lines, topics
        pos = start + length


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._file_path: Path | None = None
        existing = self.segments()
        self._next = int(existing[-1].stem) + 1 if existing else 1
        self._bytes = sum(p.stat().st_size for p in existing)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def segments(self) -> list[Path]:
        """Segment files, oldest first (names are zero-padded counters)."""
        return sorted(p for p in self.directory.iterdir() if p.suffix == SUFFIX)

    def empty(self) -> bool:
        return self._bytes == 0 and not self.segments()

    def append(self, lines: list[bytes], topics: list[str]) -> None:
        """Append one batch durably (write + fsync) or raise :class:`SpoolFull` / ``OSError``."""
        record = encode_record(lines, topics)
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} bytes (limit {self.max_bytes})")
            if self._file is None or self._file.tell() >= self.segment_bytes:
                self._open_next()
            assert self._file is not None
            self._file.write(record)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._bytes += len(record)

    def _open_next(self) -> None:
        self._close_current()
        path = self.directory / f"{self._next:016d}{SUFFIX}"
        self._next += 1
        self._file = path.open("ab")
        self._file_path = path
        # The new directory entry must survive a power cut too.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close_current(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._file_path = None

    def sealed_segments(self) -> list[Path]:
        """Close the segment being appended to (new appends start a new one) and return
        every segment, oldest first: these are safe to replay."""
        with self._lock:
            self._close_current()
            return self.segments()

    def read(self, segment: Path) -> Iterator[tuple[list[bytes], list[str]]]:
        return decode_records(segment.read_bytes())

    def read_all(self, segment: Path) -> list[tuple[list[bytes], list[str]]]:
        return list(self.read(segment))

    def remove(self, segment: Path) -> None:
        with self._lock:
            if segment == self._file_path:
                self._close_current()
            size = segment.stat().st_size
            segment.unlink()
            self._bytes = max(0, self._bytes - size)

    def close(self) -> None:
        with self._lock:
            self._close_current()
