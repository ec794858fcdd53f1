"""The outage spool on a real filesystem: durable appends, ordered replay, torn records, and a
real disk filling up (a small tmpfs the fixture mounts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.spool import MAGIC, Spool, SpoolFull, decode_records, encode_record, read_segment
from tests.support.smallfs import fill, small_fs


def test_records_round_trip_lines_with_newlines() -> None:
    lines = [b'm f="a\nb" 1', b"m f=1i 2", b""]
    topics = ["t/1", "t/✓", ""]
    data = encode_record(lines, topics) + encode_record([b"x"], ["y"])
    assert list(decode_records(data)) == [(lines, topics), ([b"x"], ["y"])]


def test_torn_tail_is_skipped() -> None:
    data = encode_record([b"ok"], ["t"]) + encode_record([b"torn"], ["t"])[:-3]
    assert list(decode_records(data)) == [([b"ok"], ["t"])]
    corrupt = bytearray(encode_record([b"bad"], ["t"]))
    corrupt[-1] ^= 0xFF
    assert list(decode_records(bytes(corrupt))) == []


def test_segments_replay_oldest_first_and_survive_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=64)
    for i in range(5):
        spool.append([b"line %d" % i], [f"t{i}"])
    segments = spool.sealed_segments()
    assert len(segments) >= 2
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=64)
    assert not reopened.empty() and reopened.size_bytes == spool.size_bytes
    got = [
        line
        for seg in reopened.sealed_segments()
        for lines, _ in reopened.read(seg)
        for line in lines
    ]
    assert got == [b"line %d" % i for i in range(5)]
    reopened.append([b"after"], ["t"])  # new segment numbers continue after the old ones
    assert reopened.segments()[-1].name > segments[-1].name
    for seg in reopened.sealed_segments():
        reopened.remove(seg)
    assert reopened.empty() and reopened.size_bytes == 0


def test_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append([b"x" * 40], ["t"])
    with pytest.raises(SpoolFull):
        spool.append([b"y" * 80], ["t"])


# --- D2 (chaos review): a failed append never tears the open segment -------------------------


def _batch(n: int, size: int = 200, points: int = 100) -> tuple[list[bytes], list[str]]:
    lines = [f"lift_state,lift_id=L{n} seq={i}i {n * 100_000 + i}".encode().ljust(size, b" ")
             for i in range(points)]  # fmt: skip
    return lines, [f"lifts/L{n}/telemetry"] * points


def test_reading_resynchronises_after_a_torn_record_in_the_middle() -> None:
    """The old reader stopped at the first bad CRC and dropped every later (acknowledged)
    record; now it resumes at the next intact record and counts what it skipped."""
    a, b, c, d = (encode_record(*_batch(n, points=3)) for n in range(4))
    torn = b[: len(b) // 2]
    got = read_segment(a + torn + c + d)
    assert [lines for lines, _ in got.records] == [_batch(n, points=3)[0] for n in (0, 2, 3)]
    assert got.torn_records == 1 and got.skipped_bytes == len(torn)
    assert got.points == 9
    flipped = bytearray(a + b + c)
    flipped[len(a) + 20] ^= 0xFF  # corrupt inside b's payload
    got = read_segment(bytes(flipped))
    assert len(got.records) == 2 and got.torn_records == 1 and got.skipped_bytes == len(b)
    assert list(decode_records(a + torn + c)) == [got.records[0], read_segment(c).records[0]]


def test_segments_without_magic_from_an_older_version_are_still_read() -> None:
    def legacy(lines: list[bytes], topics: list[str]) -> bytes:
        return encode_record(lines, topics)[4:]  # the old layout: len crc payload

    data = legacy([b"one"], ["t1"]) + legacy([b"two"], ["t2"])
    assert read_segment(data).records == [([b"one"], ["t1"]), ([b"two"], ["t2"])]
    assert MAGIC not in data[:4]


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with small_fs(tmp_path / "fs", "2m") as mount:
        yield mount


@pytest.mark.parametrize("leave_kib", [300, 304, 312, 320, 328, 0])
def test_disk_full_during_append_loses_nothing_acknowledged(tiny_fs: Path, leave_kib: int) -> None:
    """Chaos D2 on a real 2 MiB tmpfs: append ~20 KB records until ENOSPC (a short write),
    retry while full, free the space, append more. Every append that returned (= acked to the
    broker) is read back, in order, exactly once; the failed ones left no torn bytes."""
    spool = Spool(tiny_fs / "spool")
    filler = fill(tiny_fs, 0)
    filler.unlink()
    filler = fill(tiny_fs, leave_kib * 1024 + 700 * 1024)  # ~1 MiB for the spool, then full
    acked: list[int] = []
    failures = 0
    n = 0

    def one() -> bool:
        nonlocal n, failures
        n += 1
        try:
            spool.append(*_batch(n))
        except OSError:
            failures += 1
            return False
        acked.append(n)
        return True

    while one():
        assert n < 500
    assert not one()  # a retry while the disk is still full
    assert failures == 2
    sizes = sum(p.stat().st_size for p in spool.segments())
    assert sizes == spool.size_bytes  # the failed appends were cut back: no torn bytes
    filler.unlink()
    for _ in range(10):
        assert one()
    got = [read_segment(seg.read_bytes()) for seg in spool.sealed_segments()]
    assert sum(g.torn_records for g in got) == 0
    replayed = [int(topics[0].split("/")[1][1:]) for g in got for _, topics in g.records]
    assert replayed == acked and len(acked) >= 30
    assert spool.unreplayed_points == 100 * len(acked)
    spool.close()


def test_append_that_cannot_be_undone_closes_the_segment(tiny_fs: Path) -> None:
    """If even the truncate fails, the segment is closed: the next append opens a new one, and
    the reader still finds every acknowledged record (it resynchronises past the tear)."""
    spool = Spool(tiny_fs / "spool")
    spool.append(*_batch(1))
    seg = spool.segments()[0]
    with seg.open("ab") as f:  # what an un-undone short write leaves behind
        f.write(encode_record(*_batch(99))[:7000])
    spool.close()
    reopened = Spool(tiny_fs / "spool")
    reopened.append(*_batch(2))
    assert len(reopened.segments()) == 2  # appends never follow torn bytes
    with seg.open("ab") as f:
        f.write(encode_record(*_batch(3)))  # a record after a tear in the same segment
    got = read_segment(seg.read_bytes())
    assert [t[0] for _, t in got.records] == ["lifts/L1/telemetry", "lifts/L3/telemetry"]
    assert got.torn_records == 1 and got.skipped_bytes == 7000
    reopened.close()
