"""The on-disk outage spool: append-only segment files of line-protocol batches.

While InfluxDB is down a batch is appended here and ``fsync``'d before its messages are
acknowledged to the broker, so a crash loses nothing. Segments are replayed oldest first and
deleted once InfluxDB took all of their lines; a crash during replay replays the segment again,
which is harmless because a point with the same measurement, tags and timestamp overwrites.

Record layout (big endian): ``MAGIC len:u32 crc32:u32 payload``; payload = ``count:u32`` then
per point ``topic_len:u16 topic line_len:u32 line``. Lines may contain newlines (inside quoted
string fields), so they are length-prefixed, never newline-split. ``MAGIC`` (``ff fe 4c 53``)
holds bytes that never occur in UTF-8, so no line or topic can contain it: it marks where a
record starts. Segments written before it existed (no MAGIC) are still read.

A failed append (ENOSPC, EIO: a short write leaves part of the record in the file) is undone
before the exception leaves :meth:`Spool.append`: the file is truncated back to the offset
it had before the append, or, if even that fails, the segment is closed and the next append
starts a new one. Either way nothing acknowledged later is written after torn bytes. Reading
still never trusts that: at a torn or corrupt record it resynchronises at the next MAGIC whose
record checks out (CRC), and counts the bytes and records it skipped (:class:`SegmentRead`),
so a tear can cost at most the torn record itself — which was never acknowledged.

Methods are blocking (file I/O and fsync): the writer calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

log = logging.getLogger("liftwatch.ingest.spool")

MAGIC: Final = b"\xff\xfeLS"
_HEAD: Final = struct.Struct(">4sII")
_LEGACY_HEAD: Final = struct.Struct(">II")
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
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(slots=True)
class SegmentRead:
    """What one segment held: its intact records, and what resynchronisation skipped."""

    records: list[tuple[list[bytes], list[str]]] = field(default_factory=list)
    skipped_bytes: int = 0  # bytes of torn or corrupt records passed over
    torn_records: int = 0  # places where a record did not check out

    @property
    def points(self) -> int:
        return sum(len(lines) for lines, _ in self.records)


def _payload_points(payload: bytes) -> tuple[list[bytes], list[str]] | None:
    """The points of a payload whose CRC matched; None if its framing is inconsistent."""
    try:
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
    except struct.error:
        return None
    return (lines, topics) if p == len(payload) else None


def _record_at(
    data: bytes, pos: int, legacy: bool = False
) -> tuple[tuple[list[bytes], list[str]], int] | None:
    """The record starting at ``pos`` and where the next one starts, if it checks out."""
    end = len(data)
    if not legacy:
        if not data.startswith(MAGIC, pos) or pos + _HEAD.size > end:
            return None
        _, length, crc = _HEAD.unpack_from(data, pos)
        start = pos + _HEAD.size
    else:  # a segment written before MAGIC existed
        if pos + _LEGACY_HEAD.size > end:
            return None
        length, crc = _LEGACY_HEAD.unpack_from(data, pos)
        start = pos + _LEGACY_HEAD.size
    if start + length > end:
        return None
    payload = data[start : start + length]
    if zlib.crc32(payload) != crc:
        return None
    points = _payload_points(payload)
    return None if points is None else (points, start + length)


def read_segment(data: bytes) -> SegmentRead:
    """Every intact record of a segment, in order. At a torn or corrupt record, resume at the
    next MAGIC that starts an intact record (skipping counted), never drop what follows."""
    out = SegmentRead()
    pos, end = 0, len(data)
    legacy = bool(data) and not data.startswith(MAGIC)
    while pos < end:
        found = _record_at(data, pos, legacy)
        if found is not None:
            record, pos = found
            out.records.append(record)
            continue
        out.torn_records += 1
        torn_at = pos
        nxt = data.find(MAGIC, pos + 1)
        while nxt != -1 and _record_at(data, nxt) is None:
            nxt = data.find(MAGIC, nxt + 1)
        pos = end if nxt == -1 else nxt
        out.skipped_bytes += pos - torn_at
        log.warning(
            "event=spool_torn_record offset=%d skipped_bytes=%d resumed_at=%s",
            torn_at,
            pos - torn_at,
            pos if nxt != -1 else "end",
        )
    return out


def decode_records(data: bytes) -> Iterator[tuple[list[bytes], list[str]]]:
    """Every intact record of a segment, in order (see :func:`read_segment`)."""
    yield from read_segment(data).records


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None  # the open segment, unbuffered (O_APPEND)
        self._file_path: Path | None = None
        self._file_size = 0
        # Points appended (and acknowledged) per segment by this process: what its replay
        # must find. Unknown (absent) for segments an earlier process wrote.
        self._appended: dict[Path, int] = {}
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

    @property
    def unreplayed_points(self) -> int:
        """Points this process appended that are still in the spool (spooled - replayed)."""
        return sum(self._appended.values())

    def appended_points(self, segment: Path) -> int | None:
        """Points this process appended to ``segment`` (None: written by an earlier run)."""
        return self._appended.get(segment)

    def append(self, lines: list[bytes], topics: list[str]) -> None:
        """Append one batch durably (write + fsync) or raise :class:`SpoolFull` / ``OSError``.
        A failed append leaves the segment as it was before it (or closed, so the next append
        starts a new segment): nothing appended later ever follows torn bytes."""
        record = encode_record(lines, topics)
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} bytes (limit {self.max_bytes})")
            if self._fd is None or self._file_size >= self.segment_bytes:
                self._open_next()
            fd, path, before = self._fd, self._file_path, self._file_size
            assert fd is not None and path is not None
            try:
                view = memoryview(record)
                while view:  # a short write (disk filling) returns; the next write raises
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                self._undo(fd, before)
                raise
            self._file_size = before + len(record)
            self._bytes += len(record)
            self._appended[path] = self._appended.get(path, 0) + len(lines)

    def _undo(self, fd: int, before: int) -> None:
        """After a failed append: cut the segment back to ``before`` bytes, or close it."""
        try:
            os.ftruncate(fd, before)
            os.fsync(fd)
        except OSError as exc:
            log.error(
                "event=spool_truncate_failed segment=%s offset=%d error=%r: closed, the next "
                "append starts a new segment; replay skips the torn bytes",
                self._file_path,
                before,
                str(exc),
            )
            with contextlib.suppress(OSError):
                self._bytes += max(0, os.fstat(fd).st_size - before)
            self._close_current()
        else:
            log.warning("event=spool_append_undone segment=%s offset=%d", self._file_path, before)

    def _open_next(self) -> None:
        self._close_current()
        path = self.directory / f"{self._next:016d}{SUFFIX}"
        self._next += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            # The new directory entry must survive a power cut too.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._file_path, self._file_size = fd, path, os.fstat(fd).st_size

    def _close_current(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._file_path = None
            self._file_size = 0
            os.close(fd)

    def sealed_segments(self) -> list[Path]:
        """Close the segment being appended to (new appends start a new one) and return
        every segment, oldest first: these are safe to replay."""
        with self._lock:
            self._close_current()
            return self.segments()

    def read_segment(self, segment: Path) -> SegmentRead:
        return read_segment(segment.read_bytes())

    def read(self, segment: Path) -> Iterator[tuple[list[bytes], list[str]]]:
        return iter(self.read_segment(segment).records)

    def read_all(self, segment: Path) -> list[tuple[list[bytes], list[str]]]:
        return self.read_segment(segment).records

    def remove(self, segment: Path) -> None:
        with self._lock:
            if segment == self._file_path:
                self._close_current()
            size = segment.stat().st_size
            segment.unlink()
            self._bytes = max(0, self._bytes - size)
            self._appended.pop(segment, None)

    def close(self) -> None:
        with self._lock:
            self._close_current()
