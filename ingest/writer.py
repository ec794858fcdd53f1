"""Batched, bounded-concurrency InfluxDB writer with an outage spool.

:meth:`InfluxWriter.submit` returns only when its lines are **durable**: accepted by InfluxDB,
appended and fsync'd to the spool, or (for a line InfluxDB refuses) recorded as a dead-letter.
The ingest worker acknowledges MQTT messages after that, never before.

- Batching: lines collect until ``batch_size`` (written at once) or ``batch_age_s`` after the
  first line of a batch; at most ``max_concurrent`` writes run at a time.
- ``400`` (partial write): the batch is split in halves until each refused line is alone; those
  are dead-lettered, the rest is written (re-writing an accepted point is idempotent).
- ``404 database not found``: the database is created (1.x) and the write retried.
- Anything else (unreachable, timeout, 5xx, auth): InfluxDB is marked down, the batch goes to
  the spool, and so do later batches until the replay loop finds InfluxDB back. Replay runs
  beside new writes, oldest segment first, so new data is not held back by the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ingest import metrics
from ingest.points import PRECISION
from ingest.spool import Spool, SpoolFull
from liftwatch.clock import now_ms
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.protocol import Rejection, parse_topic
from liftwatch.store.deadletters import DeadLetter

log = logging.getLogger("liftwatch.ingest.writer")

INFLUX_REJECTED = "influx_rejected"
DeadLetterSink = Callable[[list[DeadLetter]], Awaitable[None]]


class InfluxWriter:
    def __init__(
        self,
        client: InfluxClient,
        spool: Spool,
        *,
        dead_letter: DeadLetterSink,
        batch_size: int = 5000,
        batch_age_s: float = 0.2,
        max_concurrent: int = 2,
        topic_prefix: str = "lifts",
    ) -> None:
        self.client = client
        self.spool = spool
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.batch_age_s = batch_age_s
        self.topic_prefix = topic_prefix
        self._sem = asyncio.Semaphore(max_concurrent)
        self._lines: list[bytes] = []
        self._topics: list[str] = []
        self._future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        self._closing = asyncio.Event()
        self._replay_wake = asyncio.Event()
        self._replay_task: asyncio.Task[None] | None = None

    @property
    def influx_down(self) -> bool:
        return self._down

    async def start(self) -> None:
        try:
            await self.client.create_database()
        except InfluxError as exc:
            self._mark_down(exc)
        self._replay_task = asyncio.create_task(self._replay_loop())
        if not self.spool.empty():
            log.info("event=spool_found bytes=%d: replaying", self.spool.size_bytes)
            self._replay_wake.set()

    async def close(self) -> None:
        """Write what is buffered, wait for running writes, stop the replay loop."""
        if self._lines:
            self._seal()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closing.set()
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        await asyncio.to_thread(self.spool.close)

    # --- batching --------------------------------------------------------------------------

    async def submit(self, lines: list[bytes], topics: list[str]) -> None:
        """Queue lines (``topics[i]`` is where ``lines[i]`` came from, for dead-letters) and
        return once every one of them is durable."""
        if not lines:
            return
        loop = asyncio.get_running_loop()
        if self._future is None:
            self._future = loop.create_future()
        self._lines += lines
        self._topics += topics
        waits: list[asyncio.Future[None]] = []
        while len(self._lines) >= self.batch_size:
            waits.append(self._seal())
        if self._lines:
            assert self._future is not None
            waits.append(self._future)
            if self._timer is None:
                self._timer = loop.call_later(self.batch_age_s, self._on_age)
        await asyncio.gather(*waits)

    def _on_age(self) -> None:
        self._timer = None
        if self._lines:
            self._seal()

    def _seal(self) -> asyncio.Future[None]:
        n = min(len(self._lines), self.batch_size)
        lines, topics = self._lines[:n], self._topics[:n]
        del self._lines[:n], self._topics[:n]
        future = self._future
        assert future is not None
        self._future = asyncio.get_running_loop().create_future() if self._lines else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self._flush(lines, topics, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _flush(
        self, lines: list[bytes], topics: list[str], done: asyncio.Future[None]
    ) -> None:
        try:
            if not self._down:
                async with self._sem:
                    if not self._down:
                        try:
                            await self._write(lines, topics)
                        except InfluxError as exc:
                            self._mark_down(exc)
                        else:
                            done.set_result(None)
                            return
            await self._to_spool(lines, topics)
            done.set_result(None)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
                done.exception()  # the submitter sees it; don't also warn "never retrieved"
            if not isinstance(exc, Exception):
                raise

    # --- InfluxDB --------------------------------------------------------------------------

    async def _write(self, lines: list[bytes], topics: list[str]) -> int:
        """Write lines; refused lines become dead-letters. Returns how many were stored.
        Raises :class:`InfluxError` when InfluxDB is unavailable (nothing is lost: the
        caller spools the whole batch)."""
        body = b"\n".join(lines)
        started = time.perf_counter()
        try:
            await self.client.write(body, precision=PRECISION)
        except InfluxError as exc:
            if exc.status == 404 and "database not found" in exc.body:
                await self.client.create_database()
                await self.client.write(body, precision=PRECISION)
            elif exc.status == 400:
                refused = await self._isolate(lines, topics, exc.body)
                stored = len(lines) - refused
                metrics.STORED.inc(stored)
                return stored
            else:
                raise
        metrics.WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.STORED.inc(len(lines))
        metrics.INFLUX_UP.set(1)
        return len(lines)

    async def _isolate(self, lines: list[bytes], topics: list[str], error: str) -> int:
        """Bisect a refused batch down to the refused lines; returns how many there were."""
        if len(lines) == 1:
            await self._dead_letter(lines[0], topics[0], error)
            return 1
        mid = len(lines) // 2
        refused = 0
        for part, part_topics in ((lines[:mid], topics[:mid]), (lines[mid:], topics[mid:])):
            try:
                await self.client.write(b"\n".join(part), precision=PRECISION)
            except InfluxError as exc:
                if exc.status != 400:
                    raise
                refused += await self._isolate(part, part_topics, exc.body)
        return refused

    async def _dead_letter(self, line: bytes, topic: str, error: str) -> None:
        parsed = parse_topic(topic, self.topic_prefix)
        lift_id = None if isinstance(parsed, Rejection) else parsed[0]
        log.warning("event=influx_refused_line topic=%r error=%r", topic, error[:300])
        metrics.REJECTED.labels(INFLUX_REJECTED).inc()
        await self.dead_letter(
            [
                DeadLetter(
                    received_at=now_ms(),
                    topic=topic,
                    lift_id=lift_id,
                    reason=INFLUX_REJECTED,
                    detail=error[:1000],
                    payload=line,
                )
            ]
        )

    def _mark_down(self, exc: InfluxError) -> None:
        metrics.WRITE_ERRORS.inc()
        metrics.INFLUX_UP.set(0)
        if not self._down:
            log.warning(
                "event=influx_down error=%r: spooling to %s", str(exc), self.spool.directory
            )
        self._down = True

    # --- spool -----------------------------------------------------------------------------

    async def _to_spool(self, lines: list[bytes], topics: list[str]) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.spool.append, lines, topics)
            except (SpoolFull, OSError) as exc:
                # Not durable anywhere: keep the messages unacknowledged (the broker holds
                # them) and try InfluxDB again.
                log.error("event=spool_unavailable error=%r retry_in_s=%.1f", str(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                try:
                    async with self._sem:
                        await self._write(lines, topics)
                except InfluxError:
                    continue
                return
            metrics.SPOOLED.inc(len(lines))
            metrics.SPOOL_BYTES.set(self.spool.size_bytes)
            metrics.SPOOL_UNREPLAYED.set(self.spool.unreplayed_points)
            self._replay_wake.set()
            return

    async def _replay_loop(self) -> None:
        delay = 0.2
        while not self._closing.is_set():
            if self.spool.empty():
                self._replay_wake.clear()
                metrics.SPOOL_BYTES.set(0)
                await self._replay_wake.wait()
                continue
            if not await self.client.ping():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await self._replay_all()
            except InfluxError as exc:
                self._mark_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.2

    async def _replay_all(self) -> None:
        for segment in await asyncio.to_thread(self.spool.sealed_segments):
            contents = await asyncio.to_thread(self.spool.read_segment, segment)
            expected = self.spool.appended_points(segment)
            replayed = 0
            for lines, topics in contents.records:
                for i in range(0, len(lines), self.batch_size):
                    chunk = lines[i : i + self.batch_size]
                    async with self._sem:
                        await self._write(chunk, topics[i : i + self.batch_size])
                    replayed += len(chunk)
                    if self._down:
                        self._down = False  # new batches go straight to InfluxDB again
                        log.info("event=influx_up: writing directly, replaying the spool")
            metrics.REPLAYED.inc(replayed)
            lost = max(0, expected - replayed) if expected is not None else 0
            if contents.torn_records:
                metrics.SPOOL_TORN.inc(contents.torn_records)
                metrics.SPOOL_SKIPPED_BYTES.inc(contents.skipped_bytes)
            if lost:
                metrics.SPOOL_LOST.inc(lost)
            # spooled - replayed, observable per segment: expected is what this process
            # appended (and acknowledged) to it, "unknown" for a segment of an earlier run.
            log.log(
                logging.WARNING if lost or contents.torn_records else logging.INFO,
                "event=spool_segment_replayed segment=%s points=%d spooled=%s lost=%d "
                "torn_records=%d skipped_bytes=%d",
                segment.name,
                replayed,
                "unknown" if expected is None else expected,
                lost,
                contents.torn_records,
                contents.skipped_bytes,
            )
            await asyncio.to_thread(self.spool.remove, segment)
            metrics.SPOOL_BYTES.set(self.spool.size_bytes)
            metrics.SPOOL_UNREPLAYED.set(self.spool.unreplayed_points)
        if self._down:
            self._down = False
            log.info("event=influx_up: spool replayed")
