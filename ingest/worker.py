"""The ingest worker: MQTT batches → decode → dead-letters / dedup → InfluxDB (or spool).

:meth:`Ingest.handle_batch` is the ``handle_batch`` of :func:`liftwatch.mqtt.consume`: it
returns once every message of the batch is durable (stored, spooled or dead-lettered), and
only then does the consumer acknowledge the batch to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from ingest import metrics
from ingest.points import MEASUREMENT_STATUS, Deduplicator, dedup_key, to_line
from ingest.spool import Spool
from ingest.writer import InfluxWriter
from liftwatch.influx import InfluxClient, InfluxError
from liftwatch.mqtt import ConsumerStats, RawMessage, consume
from liftwatch.protocol import Rejection, Status, decode
from liftwatch.settings import Settings
from liftwatch.store import Database, open_store
from liftwatch.store.db import Error as DatabaseError
from liftwatch.store.deadletters import DeadLetter, add_dead_letters

log = logging.getLogger("liftwatch.ingest.worker")

UNENCODABLE = "unencodable"


DEAD_LETTER_RETRY_MIN_S = 0.2
DEAD_LETTER_RETRY_MAX_S = 5.0
# A dead-letter write that failed and is worth retrying: the store (either backend) or the disk.
_DEAD_LETTER_FAILURES: tuple[type[BaseException], ...] = (*DatabaseError, OSError)


class DeadLetterStoreStopped(Exception):
    """Shutting down while the dead-letter store cannot be written: the batch stays
    unacknowledged (the broker redelivers it to the next run)."""


class LastStatus:
    """The last stored ``status`` state per lift, so that a retained status the broker replays
    on (re)subscription is not stored again when it says nothing new (PROTOCOL.md § Value
    ranges, 1.1). Seeded from InfluxDB at start; bounded (oldest lift forgotten first)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._state: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._state)

    def remember(self, lift_id: str, state: str) -> None:
        states = self._state
        states.pop(lift_id, None)  # re-insert: most recent last
        states[lift_id] = state
        if len(states) > self.capacity:
            del states[next(iter(states))]

    def is_news(self, lift_id: str, state: str, retained: bool) -> bool:
        """Whether to store this status; remembers it when it is stored."""
        if retained and self._state.get(lift_id) == state:
            return False
        self.remember(lift_id, state)
        return True

    async def load(self, client: InfluxClient, days: int = 30, timeout_s: float = 5.0) -> None:
        """Best effort: the last stored state of each lift (none if InfluxDB is down)."""
        try:
            async with asyncio.timeout(timeout_s):
                series = await client.query(
                    f'SELECT last("state") FROM "{MEASUREMENT_STATUS}" '  # noqa: S608 - constants
                    f'WHERE time > now() - {int(days)}d GROUP BY "lift_id"'
                )
        except (InfluxError, TimeoutError) as exc:
            log.warning("event=last_status_unavailable error=%r", str(exc) or "timeout")
            return
        for s in series:
            lift_id = s.get("tags", {}).get("lift_id")
            values = s.get("values") or []
            if lift_id and values and isinstance(values[-1][1], str):
                self.remember(lift_id, values[-1][1])
        log.info("event=last_status_loaded lifts=%d", len(self._state))


class Ingest:
    def __init__(
        self,
        settings: Settings,
        writer: InfluxWriter,
        db: Database,
        *,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.prefix = settings.mqtt_topic_prefix
        self.writer = writer
        self.db = db
        self.dedup = Deduplicator()
        self.stop = stop
        self.last_status = LastStatus()

    async def store_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Commit dead-letters; return only once they are committed (chaos D4).

        SQLite commits with fsync (synchronous=FULL): off the event loop. When the store
        cannot be written (disk full, locked, read-only, I/O error) the commit is retried with
        backoff — the batch stays unacknowledged meanwhile, the broker keeps it — instead of
        raising, which ended ``consume`` and made ingest exit and crash-loop on the
        redelivered batch. Only a shutdown ends the wait (unacknowledged: redelivered)."""
        keep = self.settings.dead_letter_max
        delay = DEAD_LETTER_RETRY_MIN_S
        failures = 0
        while True:
            try:
                await asyncio.to_thread(lambda: add_dead_letters(self.db, letters, keep=keep))
            except _DEAD_LETTER_FAILURES as exc:
                failures += 1
                metrics.DEAD_LETTER_ERRORS.inc()
                log.error(
                    "event=dead_letter_store_failed count=%d error=%r attempt=%d "
                    "retry_in_s=%.1f: batch held unacknowledged",
                    len(letters),
                    str(exc),
                    failures,
                    delay,
                )
                if self.stop is not None:
                    if self.stop.is_set():
                        raise DeadLetterStoreStopped(str(exc)) from exc
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 2, DEAD_LETTER_RETRY_MAX_S) * random.uniform(0.8, 1.0)
                continue
            if failures:
                log.warning(
                    "event=dead_letter_store_recovered count=%d after_attempts=%d",
                    len(letters),
                    failures + 1,
                )
            return

    async def handle_batch(self, batch: list[RawMessage]) -> None:
        prefix = self.prefix
        first_time = self.dedup.first_time
        lines: list[bytes] = []
        topics: list[str] = []
        letters: list[DeadLetter] = []
        duplicates = 0
        retained_repeats = 0
        for msg in batch:
            result = decode(msg.topic, msg.payload, prefix=prefix, received_ms=msg.received_ms)
            if isinstance(result, Rejection):
                letters.append(
                    DeadLetter(
                        received_at=msg.received_ms,
                        topic=msg.topic,
                        lift_id=result.lift_id,
                        reason=result.reason.value,
                        detail=result.detail,
                        payload=msg.payload,
                    )
                )
                continue
            key = dedup_key(result)
            if key is None:  # a status message
                body = result.body
                assert isinstance(body, Status)
                if not self.last_status.is_news(result.lift_id, body.state, msg.retain):
                    retained_repeats += 1
                    continue
            elif not first_time(key):
                duplicates += 1
                continue
            try:
                lines.append(to_line(result))
            except ValueError as exc:
                letters.append(
                    DeadLetter(
                        received_at=msg.received_ms,
                        topic=msg.topic,
                        lift_id=result.lift_id,
                        reason=UNENCODABLE,
                        detail=str(exc),
                        payload=msg.payload,
                    )
                )
                continue
            topics.append(msg.topic)
        metrics.RECEIVED.inc(len(batch))
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)
        if retained_repeats:
            metrics.RETAINED_STATUS_SKIPPED.inc(retained_repeats)
        if letters:
            for reason, n in Counter(d.reason for d in letters).items():
                metrics.REJECTED.labels(reason).inc(n)
            log.info(
                "event=rejected count=%d first_reason=%s first_topic=%r",
                len(letters),
                letters[0].reason,
                letters[0].topic[:200],
            )
            await asyncio.gather(
                self.store_dead_letters(letters), self.writer.submit(lines, topics)
            )
        else:
            await self.writer.submit(lines, topics)


async def run_ingest(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_connect: Callable[[], None] | None = None,
) -> None:
    """Run until ``stop`` is set: consume, store, then flush and close cleanly."""
    client = InfluxClient.from_settings(settings, timeout=10.0)
    db = open_store(settings)
    spool = Spool(settings.data_dir / "spool", max_bytes=settings.ingest_spool_max_bytes)
    worker: Ingest
    writer = InfluxWriter(
        client,
        spool,
        dead_letter=lambda letters: worker.store_dead_letters(letters),
        batch_size=settings.ingest_batch_size,
        batch_age_s=settings.ingest_batch_age_ms / 1000,
        max_concurrent=settings.ingest_max_concurrent_writes,
        topic_prefix=settings.mqtt_topic_prefix,
    )
    worker = Ingest(settings, writer, db, stop=stop)
    stats = ConsumerStats()
    metrics.UNACKED.set_function(lambda: stats.held)
    metrics.LAG_SECONDS.set_function(lambda: stats.last_ack_lag_s)
    metrics.MQTT_CONNECTED.set_function(lambda: float(stats.connected))
    await writer.start()
    await worker.last_status.load(client)
    log.info(
        "event=ingest_started client_id=%s prefix=%s influx=%s database=%s",
        settings.ingest_client_id,
        settings.mqtt_topic_prefix,
        settings.influx_url,
        settings.influx_database,
    )
    started = time.monotonic()
    try:
        await consume(
            settings,
            client_id=settings.ingest_client_id,
            # Everything under the prefix ({prefix}/+/#), not only the three kinds: a message on
            # a topic outside the scheme must become a bad_topic dead-letter (PROTOCOL.md),
            # not vanish unseen at the broker.
            kinds=("#",),
            handle_batch=worker.handle_batch,
            max_unacked=settings.ingest_max_unacked,
            max_batch=settings.ingest_batch_size,
            stop=stop,
            on_connect=on_connect,
            # One batch more than writes in flight: the next batch is decoded while the
            # previous ones are on the wire.
            concurrency=settings.ingest_max_concurrent_writes + 1,
            stats=stats,
        )
    finally:
        await writer.close()
        await client.aclose()
        db.close()
        log.info(
            "event=ingest_stopped received=%d acked=%d uptime_s=%.0f",
            stats.received,
            stats.acked,
            time.monotonic() - started,
        )
