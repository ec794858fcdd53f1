"""The webhook dispatcher: outbox → deliveries → signed POSTs, retried and in order.

It runs as one asyncio task inside ``liftwatch alerts`` (and ``liftwatch serve``):

1. **Fan-out.** Outbox rows (written by the alerts engine in the transaction of each alarm
   transition) become one delivery per matching subscription, and are marked dispatched, in one
   transaction (``store.fan_out``).
2. **Scheduling.** Deliveries of one (subscription, alarm) form a chain; only its oldest open
   delivery (the head) may be sent, so a later event waits while an earlier one is retried.
   Each head is sent by its own task: a dead receiver holds up nothing but its own chains, and
   at most ``per_subscription`` of them at once, within ``concurrency`` overall.
3. **Attempt.** The URL is resolved and SSRF-checked again, the request is sent to the address
   just checked, with Standard Webhooks headers, 5 s for the whole attempt, redirects not
   followed. The delivery is ``delivering`` in the store while the request is out and becomes
   ``delivered`` only after a 2xx, so a crash re-sends it (same ``webhook-id``) rather than
   losing it.

**Fast path.** The alerts engine fans its outbox rows out inside the very transaction that
writes them (:meth:`Dispatcher.fan_out_in`, installed by :func:`attach`), claiming each fresh
chain head's first attempt there too, and hands the claimed deliveries over in memory once that
transaction has committed (:meth:`Dispatcher.hand_over`): one fsync between the device's
message and the POST, no re-read, no extra wake-up. Rows written elsewhere (API transitions, a
``webhook.test``, a redelivery) wake the loop through :meth:`Dispatcher.notify`; a slow poll
picks up rows written by other processes and retries that fall due.

**Backlog.** A 2xx from a subscription's receiver pulls its deliveries waiting for a retry
forward (oldest first, ``drain_rate_per_s``), in the transaction that records the 2xx.

**Store trouble.** A concluded attempt whose outcome cannot be written is kept in memory and
written again with backoff (:meth:`Dispatcher._record`); claims left 'delivering' with no task
here are swept back to pending after the attempt timeout; after a store error the loop rests
before its next round and logs at most once per ``STORE_LOG_EVERY_S``.

**Several dispatchers** (``liftwatch dispatch``, docs/webhooks.md § Several dispatchers) may
share one store: each claim names this dispatcher (:attr:`Dispatcher.owner`) and expires
``attempt_timeout_s`` + :data:`CLAIM_GRACE_S` after it was made. Due heads are claimed in one
row-guarded transaction (``store.claim_due``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL); an
outcome is recorded only while the claim is still ours; the sweep puts back to pending the
claims that expired, whoever made them, so a dispatcher killed mid-POST loses nothing. At
start-up only the claims of dispatchers known to be gone (this host, process not running)
are reset at once: other hosts' claims are theirs until they expire.

**Admission** (at most ``concurrency`` attempts in all, ``per_subscription`` per subscription,
one per chain) is reserved under a lock when a delivery is claimed, from whichever thread
claims it, and released when its task ends or the claiming transaction rolls back.

The stages live apart, as Alertmanager's notify pipeline: routing is ``filters.route``,
admission ``admission.py``, one HTTP attempt and its outcome ``attempt.py``; this module keeps
the scheduling loop, the engine's fast path and the record of each outcome. The processes hand
the running dispatcher to whoever must wake it (the engine's ``outbox`` hook, which the API
inside ``liftwatch serve`` reaches); there is no registry of running dispatchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import socket
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, ParamSpec, TypeVar

import httpx

from alerts.webhooks import backoff, ssrf
from alerts.webhooks.admission import Admission
from alerts.webhooks.attempt import ATTEMPT_TIMEOUT_S, Result, build_client, classify
from alerts.webhooks.attempt import attempt as post_attempt
from alerts.webhooks.filters import route
from liftwatch.clock import Clock, SystemClock
from liftwatch.settings import Settings
from liftwatch.store import Connection, Database
from liftwatch.store import Error as DatabaseError
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Claimant, Delivery, FanOut, Subscription

log = logging.getLogger("liftwatch.webhooks")

FAN_OUT: Final = 500  # outbox rows per fan-out transaction
# Recording a concluded attempt is retried (the outcome kept in memory) from the first wait,
# doubling up to the last, until the store takes it: the engine's commit does the same.
RECORD_RETRY_FIRST_S: Final = 0.1
RECORD_RETRY_MAX_S: Final = 2.0
# After a store error the loop rests before its next round, from the first pause doubling up
# to the last (a failing head would otherwise be spawned again at once, thousands of times a
# second), and store errors are logged at most once per STORE_LOG_EVERY_S.
STORE_PAUSE_FIRST_S: Final = 0.1
STORE_PAUSE_MAX_S: Final = 2.0
STORE_LOG_EVERY_S: Final = 10.0
# A recovered receiver gets its backlog at once: when a subscription's receiver answers 2xx
# (a fresh delivery, or the scheduled retry of a waiting one: that is the probe), its
# deliveries waiting for a retry become due now, oldest first, DRAIN_RATE_PER_S apart. No
# extra request goes to a receiver that keeps failing: the WEBHOOKS.md schedule stays.
DRAIN_RATE_PER_S: Final = 30.0
# A claim expires this long after the attempt timeout (which bounds every POST): room for a
# loaded event loop to start the task late, for the outcome's commit, and for clock skew
# between hosts (claims are stamped with the claiming host's clock, judged by another's).
CLAIM_GRACE_S: Final = 10.0
# httpcore's connection pool looks at every pooled connection for each request it places, so
# one pool of `concurrency` connections costs O(concurrency) per request (bench/
# outbox_dispatch.py profile: most of a busy dispatcher's CPU). Subscriptions are spread over
# this many clients (never more than concurrency / per_subscription): a receiver's connections
# all live in one of them, each pool holds a fraction.
CLIENT_SHARDS: Final = 8
# Store threads of a dispatcher on PostgreSQL (one on SQLite): within the default pool of 10
# connections, which the alerts engine shares with its in-engine dispatcher.
STORE_THREADS_PG: Final = 4


def _node() -> str:
    """This host and PID namespace: whose processes ``os.kill(pid, 0)`` can see. A hostname
    alone is not enough (containers may share one), so the kernel's boot id and the PID
    namespace are folded in where Linux has them."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id",):
        with contextlib.suppress(OSError):
            parts.append(open(path, encoding="ascii").read().strip())  # noqa: SIM115
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=4).hexdigest()
    return f"{parts[0][:40]}~{digest}"


NODE: Final = _node()
# The owners of the dispatchers running in this process (loop thread of each; read by any).
_RUNNING: set[str] = set()


def new_owner() -> str:
    """A dispatcher's claim owner: ``node/pid/token``."""
    return f"{NODE}/{os.getpid()}/{secrets.token_hex(4)}"


def owner_alive(owner: str) -> bool:
    """Whether the dispatcher named ``owner`` may still be running, as far as this process can
    tell: one of this process's is running iff it is registered; another process on this node
    iff its PID exists; any other host's is presumed alive (its claims expire instead)."""
    node, _, rest = owner.partition("/")
    pid_text, _, _ = rest.partition("/")
    if node != NODE or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return owner in _RUNNING
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours to signal
        return True
    return True


P = ParamSpec("P")
T = TypeVar("T")


class Dispatcher:
    """Schedules deliveries (the loop) and takes the engine's fast path; admission control is
    :class:`~alerts.webhooks.admission.Admission`, one attempt :mod:`alerts.webhooks.attempt`."""

    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool | ssrf.PrivateTargets = False,
        clock: Clock | None = None,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 64,
        per_subscription: int = 8,
        poll_interval_s: float = 1.0,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
        uniform: Callable[[float, float], float] = random.uniform,
        drain_rate_per_s: float = DRAIN_RATE_PER_S,
        store_threads: int | None = None,
    ) -> None:
        self.db = db
        # True: every private target (tests); the processes pass the settings' policy.
        self.private = ssrf.PrivateTargets.of(allow_private)
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self._owns_client = client is None
        # Our own clients, one per shard of the subscriptions (see CLIENT_SHARDS).
        self._clients: list[httpx.AsyncClient] = []
        self.concurrency = concurrency
        self.per_subscription = per_subscription
        self.poll_interval_s = poll_interval_s
        self.attempt_timeout_s = attempt_timeout_s
        self._uniform = uniform
        self.drain_spacing_ms = max(1, round(1000 / drain_rate_per_s))
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Threads for the store: commits fsync, which must not stall the event loop the
        # alerts engine shares. SQLite has one writer, so one thread keeps our own writes from
        # contending; on PostgreSQL the claims and outcomes are row-guarded and outside the
        # writers' lock, so several commit at once (group commit) instead of one commit's
        # flush after another capping the deliveries a second (bench/outbox_dispatch.py).
        self.store_threads = store_threads or (1 if db.dialect == "sqlite" else STORE_THREADS_PG)
        self._executor = ThreadPoolExecutor(
            max_workers=self.store_threads, thread_name_prefix="webhooks-db"
        )
        self._inflight: dict[int, asyncio.Task[None]] = {}  # loop thread only
        # Shared with the engine's thread (fan_out_in): it locks itself.
        self.admission = Admission(concurrency=concurrency, per_subscription=per_subscription)
        self._accepting = False
        self._next_sweep = 0.0  # clock.monotonic() of the next stale-claim sweep
        # Store trouble (loop thread): consecutive errors, the rest they impose (monotonic
        # time.monotonic(): a real wait even under a manual clock), and the log's rate limit.
        self._store_errors = 0
        self._pause_until = 0.0
        self._store_logged_at = -STORE_LOG_EVERY_S
        self._store_unlogged = 0
        self.sent = 0
        self.rounds = 0
        #: names this dispatcher's claims in the store (several dispatchers share one)
        self.owner = new_owner()
        self.claimant = Claimant(self.owner, round((attempt_timeout_s + CLAIM_GRACE_S) * 1000))

    # --- waking ------------------------------------------------------------------------------

    def notify(self) -> None:
        """New work is in the store: wake the loop. Safe from any thread, cheap, never blocks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    # --- main loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set or the task is cancelled. Attempts in flight then are
        abandoned; they stay ``delivering`` in the store and are sent again at the next start."""
        self._loop = asyncio.get_running_loop()
        if self._client is None:
            shards = max(1, min(CLIENT_SHARDS, self.concurrency // max(1, self.per_subscription)))
            self._clients = [build_client(self.concurrency) for _ in range(shards)]
            self._client = self._clients[0]
        stopper = asyncio.create_task(_relay(stop, self._wake)) if stop is not None else None
        _RUNNING.add(self.owner)
        try:
            resumed = await self._db(
                store.reset_in_flight, self.db, alive=owner_alive, now_ms=self.clock.now_ms()
            )
            log.info(
                "event=webhook_dispatcher_started owner=%s claim_ttl_s=%.1f",
                self.owner,
                self.claimant.ttl_ms / 1000,
            )
            if resumed:
                log.info(
                    "event=webhook_deliveries_resumed count=%d: in flight at the last stop", resumed
                )
            # Only now may the engine claim attempts: the reset above must not catch them.
            self._accepting = True
            while True:
                if (pause := self._pause_until - time.monotonic()) > 0:
                    # The store failed: rest (a finishing task's wake-up does not cut it short).
                    await _rest(pause, stop)
                    if stop is not None and stop.is_set():
                        return
                self._wake.clear()
                timeout = self.poll_interval_s
                try:
                    self.rounds += 1
                    timeout = await self._round()
                except DatabaseError as exc:
                    self._store_failed("a dispatcher round failed", exc)
                if stop is not None and stop.is_set():
                    return
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
                # that arrives together with the wake-up, and the task would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                if stop is not None and stop.is_set():
                    return
        finally:
            self._accepting = False
            _RUNNING.discard(self.owner)
            if stopper is not None:
                stopper.cancel()
            await self._shutdown()

    async def _round(self) -> float:
        """Fan out (starting fresh chain heads at once), start every other due head that may
        start; return how long to sleep."""
        now = self.clock.now_ms()
        await self._sweep(now)
        while True:
            claimed: list[Delivery] = []
            try:
                result = await self._db(
                    store.fan_out,
                    self.db,
                    route,
                    now_ms=now,
                    limit=FAN_OUT,
                    claim=self.admission.claimer(claimed),
                    claimant=self.claimant,
                )
            except BaseException:
                self.admission.release_all(claimed)
                raise
            for d, sub in result.started:
                self._spawn(d, sub)
            if result.rows == 0:
                break
        for d, started_sub in await self._claim_due(now):
            self._spawn(d, started_sub)
        next_due = await self._db(store.next_due_at, self.db)
        if next_due is None:
            return self.poll_interval_s
        wait = (next_due - self.clock.now_ms()) / 1000
        # Due but blocked (its chain or subscription is busy): a finishing task wakes us.
        return self.poll_interval_s if wait <= 0 else min(wait, self.poll_interval_s)

    async def _claim_due(self, now: int) -> list[tuple[Delivery, Subscription | None]]:
        """Claim the due heads this dispatcher has room for (``store.claim_due``), with their
        subscriptions; the admission slots of heads not claimed in the end are given back."""
        want = self.concurrency - self.admission.busy
        if want <= 0:
            return []
        claimed: list[Delivery] = []

        def claim() -> list[tuple[Delivery, Subscription | None]]:
            got = store.claim_due(
                self.db,
                now,
                claim=self.admission.claimer(claimed),
                claimant=self.claimant,
                want=want,
                per_subscription=self.per_subscription,
                room=self.admission.room,
                rotate=self.rounds,
            )
            subs = store.subscriptions_by_id(self.db, {d.subscription_id for d in got})
            return [(d, subs.get(d.subscription_id)) for d in got]

        try:
            started = await self._db(claim)
        except BaseException:
            self.admission.release_all(claimed)
            raise
        taken = {d.id for d, _ in started}
        self.admission.release_all([d for d in claimed if d.id not in taken])
        return started

    def _store_failed(self, what: str, exc: Exception) -> None:
        """Count a store error: pause the rounds (doubling while errors continue) and log it,
        at most once per STORE_LOG_EVERY_S (loop thread)."""
        self._store_errors += 1
        pause = min(STORE_PAUSE_FIRST_S * 2.0 ** (self._store_errors - 1), STORE_PAUSE_MAX_S)
        mono = time.monotonic()
        self._pause_until = max(self._pause_until, mono + pause)
        if mono - self._store_logged_at >= STORE_LOG_EVERY_S:
            log.warning(
                "event=webhook_store_unavailable what=%r unreported=%d retry_in_s=%.1f error=%r",
                what,
                self._store_unlogged,
                pause,
                str(exc),
            )
            self._store_logged_at = mono
            self._store_unlogged = 0
        else:
            self._store_unlogged += 1

    def _store_ok(self) -> None:
        """A store write succeeded: the rounds need not rest any more."""
        if self._store_errors:
            log.info(
                "event=webhook_store_recovered errors=%d: webhook store writable again",
                self._store_errors,
            )
            self._store_errors = 0
            self._store_unlogged = 0
            self._pause_until = 0.0
            self._store_logged_at = -STORE_LOG_EVERY_S

    async def _sweep(self, now: int) -> None:
        """Claims with no task in this process (an attempt whose start was recorded but whose
        task then ended without an outcome, a hand-over the loop could no longer start) would
        stay 'delivering' and block their chain until a restart: at most once per poll
        interval, those older than the attempt timeout go back to pending, due now."""
        mono = self.clock.monotonic()
        if mono < self._next_sweep:
            return
        self._next_sweep = mono + self.poll_interval_s
        keep = self.admission.reserved_ids()  # reserved: a task (or its claim) owns them
        before = now - round(self.attempt_timeout_s * 1000)
        reset = await self._db(
            store.reset_stale,
            self.db,
            before_ms=before,
            keep=keep,
            now_ms=now,
            owner=self.owner,
            alive=owner_alive,
        )
        if reset:
            log.warning(
                "event=webhook_stale_claims_retried count=%d"
                " (delivering, no attempt in flight here, or a claim expired)",
                reset,
            )

    def _spawn(
        self, d: Delivery, started_for: Subscription | None = None, *, claimed: bool = True
    ) -> None:
        """Start the task of a reserved delivery that is claimed already, with its
        subscription (None: deleted meanwhile), or with ``claimed=False`` one still pending,
        which the task claims first (loop thread)."""
        task = asyncio.create_task(self._deliver(d, started_for, claimed), name=f"webhook-{d.id}")
        self._inflight[d.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(d.id, None)
            self.admission.release(d)
            self._wake.set()

        task.add_done_callback(done)

    # --- the engine's fast path (called on the engine's thread) ------------------------------

    def fan_out_in(self, conn: Connection, now_ms: int) -> FanOut | None:
        """Fan out inside the engine's transaction that wrote outbox rows (see the module
        docstring). None when this dispatcher is not running (the loop fans out at start)."""
        if not self._accepting:
            return None
        claimed: list[Delivery] = []
        try:
            return store.fan_out_in(
                conn,
                route,
                now_ms=now_ms,
                limit=FAN_OUT,
                claim=self.admission.claimer(claimed),
                claimant=self.claimant,
            )
        except BaseException:
            self.admission.release_all(claimed)
            raise

    def hand_over(self, result: FanOut | None) -> None:
        """The transaction of :meth:`fan_out_in` committed: start its claimed attempts (any
        thread). Claims the loop can no longer start stay 'delivering' in the store and are
        sent again at the next start, like any attempt cut short. Whatever the fast path left
        (no dispatcher running then, deliveries over the limits, more rows than one batch)
        wakes the loop."""
        if result is None or result.deliveries > len(result.started) or result.rows >= FAN_OUT:
            self.notify()
        if result is None or not result.started:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self.abandon(result)
            return
        try:
            loop.call_soon_threadsafe(self._start_handed, result)
        except RuntimeError:  # the loop closed meanwhile
            self.abandon(result)

    def abandon(self, result: FanOut) -> None:
        """The transaction of :meth:`fan_out_in` rolled back (or its claims cannot be started):
        give the reservations back."""
        self.admission.release_all([d for d, _ in result.started])

    def _start_handed(self, result: FanOut) -> None:
        if not self._accepting:
            self.abandon(result)
            return
        for d, sub in result.started:
            self._spawn(d, sub)

    async def _shutdown(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Cancelled attempts stay 'delivering' and are resumed at the next start.
        if self._owns_client and self._client is not None:
            for client in self._clients:
                await client.aclose()
            self._clients = []
            self._client = None
        self._executor.shutdown(wait=False)

    # --- one attempt ---------------------------------------------------------------------------

    def _begin(self, delivery_id: int, now: int) -> tuple[Delivery, Subscription | None] | None:
        started = store.start_attempt(self.db, delivery_id, now, claimant=self.claimant)
        if started is None:
            return None
        return started, store.get_subscription(self.db, started.subscription_id)

    async def _deliver(
        self, queued: Delivery, started_for: Subscription | None, claimed: bool = False
    ) -> None:
        sub: Subscription | None
        if started_for is not None or claimed:  # claimed already: 'delivering'
            d, sub = queued, started_for
            at = d.last_attempt_at or self.clock.now_ms()
        else:
            try:
                begun = await self._db(self._begin, queued.id, self.clock.now_ms())
            except DatabaseError as exc:  # still pending: a round after the pause retries
                self._store_failed(f"delivery {queued.id} not started", exc)
                return
            self._store_ok()
            if begun is None:
                return
            d, sub = begun
            at = self.clock.now_ms()
        try:
            if sub is None or not sub.enabled:
                result = Result(None, 0, error="subscription disabled or deleted")
            else:
                result = await self.attempt(sub, d)
            await self._conclude(d, sub, at, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not wedge the chain: log it and schedule a retry like a failed attempt.
            log.exception("event=webhook_delivery_error delivery=%d", d.id)
            with contextlib.suppress(Exception):
                await self._conclude(d, sub, at, Result(None, 0, "", "internal error", None, True))

    async def _conclude(
        self, d: Delivery, sub: Subscription | None, at: int, result: Result
    ) -> None:
        outcome, next_at, error = "failed", None, result.error
        if result.status_code is not None:
            kind = classify(result.status_code)
            error = None if kind == "delivered" else f"HTTP {result.status_code}"
            if kind == "delivered":
                outcome = "delivered"
            elif kind == "retry":
                outcome = "pending"
            elif kind == "gone":
                error = "410 Gone: subscription disabled"
        elif result.retryable:
            outcome = "pending"
        if outcome == "pending":
            now = self.clock.now_ms()
            retry_after = backoff.parse_retry_after(result.retry_after, now)
            next_at = backoff.next_attempt_ms(
                first_attempt_ms=d.first_attempt_at or at,
                failed_attempts=d.attempts,
                now_ms=now,
                retry_after_s=retry_after,
                uniform=self._uniform,
            )
            if next_at is None:
                outcome = "failed"
                error = f"{error or 'failed'}; gave up after {d.attempts} attempts in 24 h"
        gone = result.status_code == 410 and sub is not None
        drained = await self._record(
            d,
            at=at,
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            response=result.response,
            error=error,
            outcome=outcome,
            next_attempt_at=next_at,
            disable_reason="receiver answered 410 Gone" if gone else None,
            drain_spacing_ms=self.drain_spacing_ms,
            owner=self.owner,
        )
        if outcome == "delivered":
            self.sent += 1
            if drained:
                log.info(
                    "event=webhook_backlog_released subscription=%s waiting=%d: 2xx again, retried"
                    " now, oldest first",
                    d.subscription_id,
                    drained,
                )
        elif gone:
            log.warning(
                "event=webhook_subscription_disabled subscription=%s: receiver answered 410",
                d.subscription_id,
            )
        elif outcome == "failed":
            log.warning(
                "event=webhook_attempt_failed delivery=%d id=%s error=%r", d.id, d.webhook_id, error
            )

    async def _record(self, d: Delivery, **outcome: Any) -> int:
        """``store.finish_attempt`` for a concluded attempt, retried with backoff until the
        store takes it: the outcome is never dropped (a dropped one left the delivery
        'delivering', its chain blocked until a restart). Meanwhile the delivery stays
        reserved, so its chain waits and the sweep leaves it alone; a stop in between leaves
        it 'delivering' for the next start to send again (at least once)."""
        wait = RECORD_RETRY_FIRST_S
        while True:
            try:
                drained: int = await self._db(store.finish_attempt, self.db, d.id, **outcome)
                self._store_ok()
                return drained
            except DatabaseError as exc:
                self._store_failed(f"the outcome of delivery {d.id} kept to record later", exc)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECORD_RETRY_MAX_S)

    async def attempt(self, sub: Subscription, d: Delivery) -> Result:
        """One signed POST of ``d`` to ``sub`` (:func:`alerts.webhooks.attempt.attempt`)."""
        assert self._client is not None
        client = self._client
        if len(self._clients) > 1:
            client = self._clients[zlib.crc32(sub.id.encode()) % len(self._clients)]
        return await post_attempt(
            client,
            sub,
            d,
            private=self.private,
            clock=self.clock,
            timeout_s=self.attempt_timeout_s,
        )


def attach(engine: Any, settings: Settings) -> Dispatcher:
    """A dispatcher on the alerts engine's store, installed as the engine's ``outbox`` hook:
    the engine fans out inside each transaction that writes outbox rows (messages, timers) and
    hands the claimed attempts over after the commit; API transitions the engine hears of
    (``liftwatch serve``) wake the dispatcher's loop instead."""
    dispatcher = Dispatcher(engine.db, allow_private=ssrf.PrivateTargets.from_settings(settings))
    engine.outbox = dispatcher
    return dispatcher


async def _rest(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _relay(stop: asyncio.Event, wake: asyncio.Event) -> None:
    await stop.wait()
    wake.set()
