"""Disk-full faults of ingest (chaos review D2, D4) on a real small filesystem the fixture mounts
(a size-limited tmpfs, unmounted in teardown), with the real InfluxDB, SQLite and Mosquitto."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.spool import Spool
from ingest.writer import InfluxWriter
from liftwatch.influx import InfluxClient
from liftwatch.localservices import free_port
from liftwatch.protocol import Reason
from liftwatch.store.db import Database
from liftwatch.store.deadletters import DeadLetter, count_dead_letters
from tests.support.harness import Service, eventually
from tests.support.ingest import (
    count,
    ingest_settings,
    now_ms,
    publish,
    running_ingest,
    telemetry,
)
from tests.support.smallfs import fill, small_fs

pytestmark = pytest.mark.integration


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    with small_fs(tmp_path / "fs", "2m") as mount:
        yield mount


def _lines(n: int, base_us: int) -> tuple[list[bytes], list[str]]:
    lines = [
        f'lift_state,lift_id=L{n} seq={i}i,pad="{"x" * 150}" {base_us + n * 1000 + i}'.encode()
        for i in range(100)
    ]
    return lines, [f"lifts/L{n}/telemetry"] * len(lines)


async def _no_dead_letters(letters: list[DeadLetter]) -> None:
    raise AssertionError(f"unexpected dead-letters: {letters[:1]}")


async def test_spool_disk_full_while_influxdb_down_loses_nothing_acknowledged(
    influxdb: Service, unique: str, tiny_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Chaos D2 through the writer: InfluxDB is down, the spool's disk fills up mid-append
    (a short write), a batch waits unacknowledged while it is full, space returns, more
    batches are spooled; a writer with InfluxDB back replays every acknowledged point."""
    database = f"spoolfull_{unique}"
    spool_dir = tiny_fs / "spool"
    down = InfluxClient(f"http://127.0.0.1:{free_port()}", database, timeout=2.0)
    writer = InfluxWriter(
        down, Spool(spool_dir), dead_letter=_no_dead_letters, batch_size=100, batch_age_s=0.01
    )
    await writer.start()
    assert writer.influx_down
    base_us = now_ms() * 1000 - 3_600_000_000
    filler = fill(tiny_fs, 700 * 1024 + 312 * 1024)
    acked: list[int] = []
    n = 0
    waiting: asyncio.Task[None] | None = None
    while waiting is None:
        n += 1
        assert n < 200
        task = asyncio.create_task(writer.submit(*_lines(n, base_us)))
        done, _ = await asyncio.wait({task}, timeout=2.0)
        if done:
            task.result()
            acked.append(n)
        else:
            waiting = task  # the disk is full: this batch is not durable, not acknowledged
    held = n
    done, _ = await asyncio.wait({waiting}, timeout=1.5)
    assert not done, "a batch was acknowledged while the spool's disk was full"
    filler.unlink()
    await asyncio.wait_for(waiting, 30)  # durable once space is back (retry backoff ≤ 10 s)
    acked.append(held)
    for _ in range(10):
        n += 1
        await asyncio.wait_for(writer.submit(*_lines(n, base_us)), 10)
        acked.append(n)
    await writer.close()
    await down.aclose()
    assert len(acked) >= 30

    lost_before = _metric("liftwatch_ingest_spool_lost_total")
    torn_before = _metric("liftwatch_ingest_spool_torn_records_total")
    up = InfluxClient(influxdb.url, database)
    replayer = InfluxWriter(up, Spool(spool_dir), dead_letter=_no_dead_letters, batch_size=5000)
    caplog.set_level(logging.INFO, logger="liftwatch.ingest.writer")
    await replayer.start()
    try:

        async def replayed() -> bool:
            return await count(up, "lift_state") >= 100 * len(acked)

        await eventually(replayed, timeout=30, what="every acknowledged point replayed")
        await eventually(lambda: not Spool(spool_dir).segments(), what="spool emptied")
    finally:
        await replayer.close()
    assert await count(up, "lift_state") == 100 * len(acked)
    per_lift = await up.query('SELECT count("seq") FROM "lift_state" GROUP BY "lift_id"')
    assert sorted(int(s["tags"]["lift_id"][1:]) for s in per_lift) == sorted(acked)
    assert _metric("liftwatch_ingest_spool_lost_total") == lost_before
    assert _metric("liftwatch_ingest_spool_torn_records_total") == torn_before
    assert "event=spool_segment_replayed" in caplog.text
    await up.aclose()


async def test_replay_resynchronises_past_a_torn_record_and_reports_it(
    influxdb: Service, unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A segment torn in the middle (what 678cc9a left after ENOSPC) is replayed past the tear:
    the records after it are stored, and the skip is counted and logged."""
    from ingest.spool import encode_record

    database = f"torn_{unique}"
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    base_us = now_ms() * 1000 - 3_600_000_000
    records = [encode_record(*_lines(k, base_us)) for k in range(1, 5)]
    torn = records[1][: len(records[1]) // 3]
    (spool_dir / f"{1:016d}.seg").write_bytes(records[0] + torn + records[2] + records[3])
    torn_before = _metric("liftwatch_ingest_spool_torn_records_total")
    skipped_before = _metric("liftwatch_ingest_spool_skipped_bytes_total")
    up = InfluxClient(influxdb.url, database)
    caplog.set_level(logging.INFO)
    replayer = InfluxWriter(up, Spool(spool_dir), dead_letter=_no_dead_letters)
    await replayer.start()
    try:

        async def replayed() -> bool:
            return await count(up, "lift_state") >= 300

        await eventually(replayed, timeout=30, what="the three intact records replayed")
        await eventually(lambda: not Spool(spool_dir).segments(), what="spool emptied")
    finally:
        await replayer.close()
    assert await count(up, "lift_state") == 300
    assert _metric("liftwatch_ingest_spool_torn_records_total") == torn_before + 1
    assert _metric("liftwatch_ingest_spool_skipped_bytes_total") == skipped_before + len(torn)
    assert "event=spool_torn_record" in caplog.text
    assert "torn_records=1" in caplog.text and f"skipped_bytes={len(torn)}" in caplog.text
    await up.aclose()


async def test_dead_letter_store_full_holds_the_batch_and_ingest_never_exits(
    mosquitto: Service, influxdb: Service, unique: str, tmp_path: Path
) -> None:
    """Chaos D4: ingest's SQLite store on a real tmpfs that is full. A batch with bad
    messages cannot commit its dead-letters: ingest retries (the batch stays unacknowledged),
    the process never exits. Once space is back the dead-letters are committed once, the
    valid messages of those batches are stored, and the batches are acknowledged (a restart
    sees no redelivery)."""
    with small_fs(tmp_path / "fs", "8m") as mount:
        settings = ingest_settings(mosquitto.url, influxdb.url, unique, mount / "data")
        client = InfluxClient(influxdb.url, settings.influx_database)
        t = now_ms()
        valid = [(f"{unique}/V{i}/telemetry", telemetry(i, t + i)) for i in range(20)]
        bad = [(f"{unique}/B{i}/telemetry", b'{"v":1,"pad":"' + b"x" * 2000) for i in range(400)]
        errors_before = _metric("liftwatch_ingest_dead_letter_store_errors_total")
        async with running_ingest(settings) as task:
            db = Database(settings.sqlite_path)
            filler = fill(mount, 0)
            await asyncio.to_thread(publish, mosquitto.url, valid[:10] + bad + valid[10:])
            await eventually(
                lambda: (
                    task.done()
                    or _metric("liftwatch_ingest_dead_letter_store_errors_total")
                    >= errors_before + 2
                ),
                timeout=20,
                what="dead-letter commits failing on the full disk",
            )
            assert not task.done()  # 678cc9a: consume ended, ingest exited (crash loop)
            assert count_dead_letters(db) == {}
            filler.unlink()
            await eventually(
                lambda: count_dead_letters(db).get(Reason.BAD_JSON.value) == 400,
                timeout=30,
                what="the dead-letters committed once space is back",
            )
            # The batches were held, not dropped: their valid messages are all stored.
            await eventually(
                lambda: _stored(client, 20), timeout=20, what="the valid messages stored"
            )
            assert not task.done()
            await asyncio.to_thread(
                publish, mosquitto.url, [(f"{unique}/V99/telemetry", telemetry(99, t + 99))]
            )
            await eventually(lambda: _stored(client, 21), what="a later message stored")
        async with running_ingest(settings):  # the held batch was acknowledged after all
            await asyncio.to_thread(
                publish, mosquitto.url, [(f"{unique}/V98/telemetry", telemetry(98, t + 98))]
            )
            await eventually(lambda: _stored(client, 22), what="the sentinel stored")
            assert count_dead_letters(db) == {Reason.BAD_JSON.value: 400}
        db.close()
        await client.aclose()


async def _stored(client: InfluxClient, n: int) -> bool:
    return await count(client, "lift_state") >= n
