"""The outage spool on a real filesystem: durable appends, ordered replay, torn tails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFull, decode_records, encode_record


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
