"""The alerts pipeline: messages → rules → suppression → lifecycle (store + outbox) → timers.

:class:`Engine` is synchronous and thread-safe (one lock): the worker calls it from a thread
so SQLite commits never block the event loop, the API calls :meth:`alarm_changed` after its
own transitions. Each call that can change alarms commits all of its transitions in one
transaction before returning, which is what gates the MQTT acknowledgement.

The webhook dispatcher, when one runs in this process, is the engine's :attr:`Engine.outbox`
hook: it fans the outbox rows out (deliveries, and the claim of each fresh alarm's first
attempt) inside the transaction that writes them, and gets the claimed attempts handed over
right after the commit, so an alarm costs one commit between the message and the POST.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, cast

import msgspec

from alerts import checkpoint, lifecycle, rules, suppression
from alerts.lifecycle import Change, Policy, Raise
from alerts.rules import Context, Signal
from alerts.state import LiftState, alarm_source, latch_key
from alerts.timers import Scheduler
from liftwatch.clock import Clock, SystemClock
from liftwatch.faults import info
from liftwatch.protocol import Decoded, Rejection, SelftestEvent, Telemetry, decode
from liftwatch.registry import Lift
from liftwatch.store import Connection, Database, OperationalError, leases
from liftwatch.store import alarms as store
from liftwatch.store import changes as feed
from liftwatch.store import checkpoints as ckpt
from liftwatch.store import registry as reg
from liftwatch.store.alarms import Alarm
from liftwatch.store.deadletters import DeadLetter, add_dead_letters_in
from liftwatch.thresholds import Thresholds, check, resolve

log = logging.getLogger("liftwatch.alerts")

# Dead-letter reason of a valid message whose evaluation raised (PROTOCOL.md § bad input).
EVALUATION_ERROR: Final = "evaluation_error"
DEADLINE_CODES: Final = frozenset({"entrapment", "alarm_button"})
_RETRY_MAX_S: Final = 2.0
BUTTONS_RECHECK_MS: Final = 10_000  # timers re-read unresolved alarm-button alarms this often
REFRESH_CHUNK: Final = 200  # lifts per registry-refresh step under the engine lock
# --- replicas (docs/ha.md) ---
# Signals of lifts this replica evaluated without owning them, kept for a takeover: this long,
# at most this many (a takeover matches them against the store, so keeping more is safe).
DEFERRED_KEEP_MS: Final = 15 * 60_000
DEFERRED_MAX: Final = 200_000
COVER_MS: Final = 5_000  # a stored alarm raised this close to a replayed raise is that raise
RESTORE_GRACE_MS: Final = 3_000  # restored lifts' first timer check waits for the backlog
CHECKPOINT_CHUNK: Final = 200  # lifts per periodic checkpoint transaction

Sink = Callable[[Sequence[Change]], None]
# (lift, its live state, the signals to apply, index of the message that caused them or -1)
Work = tuple[str, LiftState, list[Signal], int]


class OutboxHook(Protocol):
    """What the engine needs of the webhook dispatcher (``alerts/webhooks/dispatcher.py``)."""

    def fan_out_in(self, conn: Connection, now_ms: int) -> Any:
        """Inside the engine's write transaction, after its outbox rows: fan them out."""

    def hand_over(self, result: Any) -> None:
        """That transaction committed (``result`` is what :meth:`fan_out_in` returned)."""

    def abandon(self, result: Any) -> None:
        """That transaction rolled back after :meth:`fan_out_in` returned ``result``."""

    def notify(self) -> None:
        """Outbox rows were committed elsewhere (the API's transitions)."""


def policy_of(p: Thresholds) -> Policy:
    """The lifecycle's timings for one set of thresholds (global, or one lift's)."""
    raw = p.raw
    return Policy(
        escalate_every_ms=p.ms("escalation_s"),
        deadline_urban_ms=round(raw["arrival_deadline_urban_min"] * 60_000),
        deadline_rural_ms=round(raw["arrival_deadline_rural_min"] * 60_000),
        auto_resolve_ms=p.ms("auto_resolve_s"),
        flood_limit=int(raw["flood_limit"]),
    )


class _Fenced(Exception):
    """Inside a write: a partition's lease is no longer this replica's."""


class Engine:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock | None = None,
        thresholds: dict[str, float] | None = None,
        prefix: str = "lifts",
        sink: Sink | None = None,
        dead_letter_max: int = 100_000,
        replica_id: str | None = None,
    ) -> None:
        self.db = db
        # A replica (docs/ha.md) commits only for the partitions it holds (partition ->
        # epoch, kept by alerts/replicas.py); ``None``: the sole evaluator, owns every lift.
        self.replica_id = replica_id
        self.held: dict[int, int] | None = {} if replica_id else None
        self._deferred: deque[tuple[int, str, list[Signal]]] = deque(maxlen=DEFERRED_MAX)
        self._alarm_lift: dict[str, str] = {}
        self._dirty: set[str] = set()  # lifts whose state moved since their last checkpoint
        self._warm: set[str] = set()  # lifts this process has evaluated a message of
        self._ckpt_counter = 0
        self.clock: Clock = clock or SystemClock()
        self.prefix = prefix
        self.sink = sink
        self.dead_letter_max = dead_letter_max
        self._global = check(dict(thresholds or {}), "LIFTWATCH_ALERTS_THRESHOLDS")
        self.defaults: Thresholds = resolve(self._global, {})
        self.policy = policy_of(self.defaults)
        self.states: dict[str, LiftState] = {}
        self.lifts: dict[str, Lift] = {}
        self._created: dict[str, int] = {}
        self._marks: dict[str, tuple[int | None, int | None]] = {}
        self._ctx: dict[str, Context] = {}
        self._button_open: set[str] = set()
        self._inactive: set[str] = set()  # registered lifts marked inactive: raise nothing
        # Lifts whose stored registry row could not be used as stored: why (they run on the
        # defaults; metrics and the log show them).
        self.flagged: dict[str, str] = {}
        # Flood-control summaries waiting for the end of their hour: timer key -> due (ms).
        self._summaries: dict[tuple[str, str], int] = {}
        self._wrote_outbox = False  # a step wrote outbox rows without a transition
        self._buttons_at = 0  # when _button_open was last re-read from the store
        self.scheduler = Scheduler()
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # one registry refresh at a time
        self._registry_seq = 0  # the registry's change_seq seen so far (migration 0008)
        self._change_id = 0  # the change feed's id applied so far (migration 0010)
        self._feed_lock = threading.Lock()  # one apply_changes at a time
        self.wake: Callable[[], None] | None = None
        self.outbox: OutboxHook | None = None
        self.lateness_ms: list[int] = []
        self.counts: dict[str, int] = {
            "messages": 0,
            "duplicates": 0,
            "late": 0,
            "rejected": 0,
            "transitions": 0,
            "timers_fired": 0,
            "evaluation_errors": 0,
            "replayed": 0,
            "checkpoints": 0,
        }

    # --- start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Load the registry and unresolved alarms; re-arm every timer. Live state refills
        from the next messages (docs/alarms.md § Restart)."""
        with self._lock:
            now = self.clock.now_ms()
            # Before the reads below: a change committed meanwhile is applied again, not lost.
            self._change_id = feed.last_id(self.db)
            self._registry_seq = reg.next_change_seq(self.db.conn) - 1
            self.lifts = {}
            for lift, problem in reg.all_lifts_checked(self.db):
                self.lifts[lift.lift_id] = lift
                self._flag(lift.lift_id, problem)
            self._created = reg.lifts_with_created_at(self.db)
            self._marks = store.lift_marks(self.db)
            self._inactive = {lift.lift_id for lift in self.lifts.values() if not lift.active}
            self._ckpt_counter = ckpt.max_counter(self.db)
            restored = self._restore(now)
            for lift in self.lifts.values():
                if lift.active:
                    self._state(lift.lift_id, now)
            for alarm in store.unresolved_alarms(self.db):
                self._latch(alarm, now)
                self._arm_alarm(alarm)
            for alarm in store.flood_pending(self.db):
                self._arm_alarm(alarm)
            work: list[Work] = []
            for lift_id, st in self.states.items():
                if lift_id in restored:
                    # Its backlog (the broker's session) is evaluated first: a condition that
                    # ended while this process was away must not be raised from the old state.
                    self._arm_lift(lift_id, now + RESTORE_GRACE_MS)
                else:
                    self._tick(lift_id, st, now, work)
            self._after(self._commit(work, now))
            log.info(
                "event=alerts_engine_started lifts=%d restored=%d timers=%d",
                len(self.states),
                len(restored),
                len(self.scheduler),
            )

    def _restore(self, now: int) -> set[str]:
        """Each lift's state as its owner last checkpointed it (alerts/checkpoint.py). A row
        that cannot be read is skipped: that lift starts afresh, the others are restored."""
        restored: set[str] = set()
        for lift_id, data in ckpt.load(self.db):
            st = self._checkpointed(lift_id, data, now)
            if st is None:
                continue
            ok_at, first_seen = self._marks.get(lift_id, (None, None))
            if st.selftest_ok_at is None:
                st.selftest_ok_at = ok_at or self._created.get(lift_id) or first_seen or now
            self.states[lift_id] = st
            restored.add(lift_id)
        return restored

    def refresh_registry(self) -> int:
        """Pick up lifts added or changed in the registry since the last look, and alarm-button
        alarms resolved by another process (a separate ``liftwatch api``).

        Works in chunks of :data:`REFRESH_CHUNK` lifts, each read and validated outside the
        engine lock and applied under it, so a bulk import of a quarter of a million lifts
        never holds up the alarms of the others for more than one chunk (docs/registry.md)."""
        with self._refresh_lock:
            with self._lock:
                self._reconcile_buttons()
            total = 0
            while True:
                rows, seq = reg.lifts_changed_chunk(self.db, self._registry_seq, REFRESH_CHUNK)
                if not rows:
                    return total
                with self._lock:
                    self._take_lifts(rows)
                    self._registry_seq = seq
                total += len(rows)
                if len(rows) < REFRESH_CHUNK:
                    return total
                # A bulk registration builds long-lived objects by the hundred thousand: keep
                # them out of the collector's scans, as the worker does after start-up (a full
                # collection over them stalled every thread ~0.4 s for 270k lifts).
                gc.freeze()

    def apply_changes(self) -> int:
        """Apply what other processes committed since the last call (the change feed,
        liftwatch/store/changes.py): a registry change refreshes the registry at once; an
        alarm's status step (acknowledged, on site, resolved — by an API in any process)
        re-arms its timers and the lift's alarm-button filter from the stored alarm
        (../shared/repros r13). Idempotent: ``liftwatch serve``'s API also calls the engine
        directly, and the same change arriving twice changes nothing. Returns how many feed
        rows were read."""
        with self._feed_lock:
            total = 0
            registry = False
            alarm_ids: dict[str, None] = {}
            while True:
                rows = feed.since(self.db, self._change_id)
                for c in rows:
                    if c.kind == feed.REGISTRY:
                        registry = True
                    elif c.kind == feed.ALARM:
                        alarm_ids[c.key] = None
                total += len(rows)
                if rows:
                    self._change_id = rows[-1].id
                if len(rows) < 1000:
                    break
            if alarm_ids:
                with self._lock:
                    for alarm_id in alarm_ids:
                        alarm = store.get_alarm(self.db, alarm_id)
                        if alarm is not None:
                            self._took_alarm(alarm)
            if registry:
                self.refresh_registry()
            if total:
                # Rare (registry writes, alarm actions): one line each, for operators and tests.
                log.info(
                    "event=changes_applied rows=%d registry=%d alarms=%d",
                    total,
                    int(registry),
                    len(alarm_ids),
                )
            return total

    def _took_alarm(self, alarm: Alarm) -> None:
        """An alarm as stored now, stepped by another process: its timers and, for an alarm
        button, whether the lift still has one unresolved (under the engine lock)."""
        self._arm_alarm(alarm)
        if alarm.code != "alarm_button":
            return
        lift_id = alarm.lift_id
        if alarm.resolved:
            still = any(a.code == "alarm_button" for a in store.unresolved_alarms(self.db, lift_id))
        else:
            still = True
        if still:
            self._button_open.add(lift_id)
        else:
            self._button_open.discard(lift_id)
        ctx = self._ctx.get(lift_id)
        if ctx is not None:
            ctx.button_unresolved = still

    def _take_lifts(self, rows: Sequence[tuple[Lift, str | None, int]]) -> None:
        now = self.clock.now_ms()
        work: list[Work] = []
        for lift, problem, created_at in rows:
            lift_id = lift.lift_id
            self.lifts[lift_id] = lift
            self._flag(lift_id, problem)
            self._ctx.pop(lift_id, None)
            self._created.setdefault(lift_id, created_at)
            # An alarm raised before this refresh under the lift's old company (or none)
            # moves to its current one (FAULTS.md 1.1 #6; ../shared/repros r06b).
            owner = [Signal("company", note=lift.company_id)]
            work.append((lift_id, LiftState(lift_id, now), owner, -1))
            if not lift.active:
                # FAULTS.md: an inactive lift raises nothing. Its live state goes; its
                # alarms already raised stay as they are (the API resolves them).
                self._inactive.add(lift_id)
                self.states.pop(lift_id, None)
                self._arm_lift(lift_id, rules.NEVER)
            elif lift_id not in self.states:
                self._inactive.discard(lift_id)
                st = self._state(lift_id, now)
                for alarm in store.unresolved_alarms(self.db, lift_id):
                    self._latch(alarm, now)
                self._tick(lift_id, st, now, work)
        self._after(self._commit(work, now))

    # --- messages -----------------------------------------------------------------------

    def handle_raw(
        self,
        items: Iterable[tuple[str, bytes]],
        received_ms: int | None = None,
        *,
        retained: Iterable[bool] | None = None,
    ) -> list[Change]:
        """Decode (the one shared decoder) and handle. Rejections are only counted here:
        dead-lettering them is ingest's job. ``retained``, parallel to ``items``: the
        broker's retain flag of each (a retained ``status`` is not news, PROTOCOL.md 1.1)."""
        now = self.clock.now_ms() if received_ms is None else received_ms
        decoded: list[Decoded] = []
        raw: list[tuple[str, bytes]] = []
        flags = iter(retained) if retained is not None else None
        for topic, payload in items:
            result = decode(topic, payload, prefix=self.prefix, received_ms=now)
            was_retained = next(flags, False) if flags is not None else False
            if isinstance(result, Rejection):
                self.counts["rejected"] += 1
                log.debug("event=rejected topic=%r reason=%s", topic[:200], result.reason.value)
            else:
                result.retained = was_retained
                decoded.append(result)
                raw.append((topic, payload))
        return self.handle(decoded, raw)

    def handle(
        self, messages: Sequence[Decoded], raw: Sequence[tuple[str, bytes]] | None = None
    ) -> list[Change]:
        """Evaluate messages in order; commit every resulting transition in one transaction.

        A message whose evaluation raises is dead-lettered (``evaluation_error``, PROTOCOL.md
        § bad input) in that same transaction and the rest of the batch goes on: no message of
        one lift can stop another lift's alarms. ``raw`` (topic, payload) pairs, parallel to
        ``messages``, give the dead-letter its payload."""
        with self._lock:
            now = self.clock.now_ms()
            work: list[Work] = []
            marks: list[str] = []
            failed: list[tuple[int, BaseException]] = []
            for index, msg in enumerate(messages):
                self.counts["messages"] += 1
                try:
                    self._evaluate(msg, index, now, work, marks)
                except Exception as exc:  # isolation: this message only (docs/alarms.md)
                    failed.append((index, exc))
            changes = self._commit(work, now, marks=marks, failed=failed, letters=(messages, raw))
            for _, st, _, _ in work:
                st.prune()
            self._after(changes)
            return changes

    def _evaluate(
        self, msg: Decoded, index: int, now: int, work: list[Work], marks: list[str]
    ) -> None:
        lift_id = msg.lift_id
        if lift_id in self._inactive:
            # Raises nothing (FAULTS.md); a self-test is data, kept for the 72 h clock.
            body = msg.body
            if isinstance(body, SelftestEvent) and body.result == "ok":
                marks.append(lift_id)
            return
        st = self.states.get(lift_id)
        if st is None:
            st = self._state(lift_id, now)
            if lift_id not in self._marks and lift_id not in self._created:
                self._marks[lift_id] = (None, now)
                work.append((lift_id, st, [Signal("first_seen")], index))
        if isinstance(msg.body, Telemetry) and not st.newer(msg.body.seq, msg.ts_ms):
            self.counts["late"] += 1
        ctx = self._context(lift_id)
        before = checkpoint.shape(st)
        sigs, due = rules.on_message(st, msg, now, ctx)
        if checkpoint.shape(st) != before:
            self._dirty.add(lift_id)
        self._warm.add(lift_id)
        if sigs is rules.DUPLICATE[0]:
            self.counts["duplicates"] += 1
            return
        if sigs and sigs[0].kind == "duplicate":
            # A redelivery that only proved the device alive (rules._duplicate).
            self.counts["duplicates"] += 1
            if len(sigs) > 1:
                work.append((lift_id, st, sigs, index))
        else:
            self._promotions(st, sigs, ctx)
            if sigs:
                work.append((lift_id, st, sigs, index))
        self._arm_lift(lift_id, due)

    # --- timers -------------------------------------------------------------------------

    def next_due_ms(self) -> int | None:
        with self._lock:
            return self.scheduler.next_due()

    def run_due(self, now_ms: int | None = None) -> list[Change]:
        """Fire every timer due at ``now_ms`` (default: the clock), in one transaction."""
        with self._lock:
            now = self.clock.now_ms() if now_ms is None else now_ms
            if now - self._buttons_at >= BUTTONS_RECHECK_MS:
                self._reconcile_buttons()
            due = self.scheduler.pop_due(now)
            if not due:
                return []
            work: list[Work] = []
            alarm_steps: list[tuple[str, str]] = []
            for key, at in due:
                self.counts["timers_fired"] += 1
                self.lateness_ms.append(now - at)
                kind, ident = cast(tuple[str, str], key)
                if kind == "lift":
                    st = self.states.get(ident)
                    if st is None:
                        continue
                    self._tick(ident, st, now, work)
                else:
                    alarm_steps.append((kind, ident))
            if len(self.lateness_ms) > 10_000:
                del self.lateness_ms[:5_000]
            touched: list[Alarm] = []
            changes = self._commit(work, now, alarm_steps, touched)
            for alarm in touched:
                self._arm_alarm(alarm)
            self._after(changes)
            return changes

    def take_lateness(self) -> list[int]:
        """Timer lateness samples (ms) since the last call, for metrics."""
        with self._lock:
            out, self.lateness_ms = self.lateness_ms, []
            return out

    # --- the lifecycle listener (API transitions, in-process) ------------------------------

    def alarm_changed(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self._after(list(changes))
        if self.outbox is not None:
            self.outbox.notify()

    # --- internals ----------------------------------------------------------------------

    def _tick(self, lift_id: str, st: LiftState, now: int, work: list[Work]) -> None:
        """Timer evaluation of one lift; a failure stays with that lift (its timer is re-armed
        by its next message) and never stops the others'."""
        before = checkpoint.shape(st)
        try:
            sigs, due = rules.on_tick(st, now, self._context(lift_id))
        except Exception as exc:
            self._evaluation_failed(lift_id, exc, "timer")
            return
        if checkpoint.shape(st) != before:
            self._dirty.add(lift_id)
        self._arm_lift(lift_id, due)
        if sigs:
            work.append((lift_id, st, sigs, -1))

    def _reconcile_buttons(self) -> None:
        """The alarm-button filter is bypassed only while an alarm_button alarm of the lift is
        unresolved. An API in another process resolves alarms without telling this engine:
        re-read which lifts have one (../shared/repros r13; at once with the shared store's
        notifications, docs/scaling.md)."""
        self._buttons_at = self.clock.now_ms()
        open_now = store.lifts_with_unresolved(self.db, "alarm_button")
        for lift_id in self._button_open ^ open_now:
            ctx = self._ctx.get(lift_id)
            if ctx is not None:
                ctx.button_unresolved = lift_id in open_now
        self._button_open = open_now

    def _flag(self, lift_id: str, problem: str | None) -> None:
        if problem is None:
            self.flagged.pop(lift_id, None)
        elif self.flagged.get(lift_id) != problem:
            self.flagged[lift_id] = problem
            log.warning("event=lift_row_unusable lift_id=%s problem=%r", lift_id, problem)

    def _evaluation_failed(self, lift_id: str, exc: BaseException, what: str) -> None:
        self.counts["evaluation_errors"] += 1
        log.error(
            "event=evaluation_failed what=%r lift_id=%s error=%s detail=%r: other lifts go on",
            what,
            lift_id,
            type(exc).__name__,
            str(exc)[:200],
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    def _state(self, lift_id: str, now: int) -> LiftState:
        st = self.states.get(lift_id)
        if st is None:
            st = self.states[lift_id] = LiftState(lift_id, now)
            ok_at, first_seen = self._marks.get(lift_id, (None, None))
            origin = ok_at or self._created.get(lift_id) or first_seen or now
            st.selftest_ok_at = origin
        return st

    def _latch(self, alarm: Alarm, now: int) -> None:
        """An unresolved alarm of an evaluated lift: latch its active condition, so the next
        message that no longer shows it clears it."""
        if alarm.code == "alarm_button":
            self._button_open.add(alarm.lift_id)
        if alarm.lift_id in self._inactive:
            return
        st = self._state(alarm.lift_id, now)
        if alarm.code != "alarm_button" and alarm.condition == "active":
            c = st.cond(latch_key(alarm.code, alarm.subtype, alarm.source, alarm.evidence))
            c.active = True
            c.muted = not lifecycle.pursued(alarm)

    def _context(self, lift_id: str) -> Context:
        ctx = self._ctx.get(lift_id)
        if ctx is None:
            lift = self.lifts.get(lift_id)
            ctx = Context(self.defaults, policy=self.policy)
            if lift is not None:
                try:
                    if lift.overrides:
                        p = resolve(self._global, lift.overrides)
                        ctx = Context(p, lift.rated_speed, policy=policy_of(p))
                    else:
                        ctx = Context(self.defaults, lift.rated_speed, policy=self.policy)
                except Exception as exc:
                    # A stored row the checks on input would have refused: this lift runs
                    # on the defaults and is flagged (FAULTS.md 1.1 #1), the others go on.
                    self.flagged[lift_id] = f"overrides ignored ({type(exc).__name__})"
                    log.warning(
                        "event=lift_on_default_thresholds lift_id=%s error=%r", lift_id, str(exc)
                    )
                    ctx = Context(self.defaults, lift.rated_speed, policy=self.policy)
            ctx.button_unresolved = lift_id in self._button_open
            self._ctx[lift_id] = ctx
        return ctx

    def _arm(self, key: Hashable, due: int | None) -> None:
        if due is None or due >= rules.NEVER:
            self.scheduler.cancel(key)
        elif self.scheduler.schedule(key, due) and self.wake is not None:
            self.wake()

    def _arm_lift(self, lift_id: str, due: int) -> None:
        self._arm(("lift", lift_id), due)

    def _arm_alarm(self, alarm: Alarm) -> None:
        aid = alarm.alarm_id
        if alarm.resolved:
            self._alarm_lift.pop(aid, None)
        else:
            self._alarm_lift[aid] = alarm.lift_id
        policy = self._context(alarm.lift_id).policy
        summary = lifecycle.summary_due(alarm, policy)
        if summary is not None:
            key = ("summary", f"{alarm.lift_id}\x00{alarm.code}")
            if key not in self._summaries or summary < self._summaries[key]:
                self._summaries[key] = summary
                self._arm(key, summary)
        if alarm.resolved:
            for kind in ("esc", "due", "auto"):
                self.scheduler.cancel((kind, aid))
            return
        live = lifecycle.pursued(alarm)
        esc = None
        if live and alarm.severity == "critical" and alarm.status == "open":
            since = alarm.escalated_at or alarm.notified_at or alarm.raised_at
            esc = since + policy.escalate_every_ms
        self._arm(("esc", aid), esc)
        deadline = None
        if live and alarm.deadline_at and not alarm.overdue and alarm.status != "on_site":
            deadline = alarm.deadline_at
        self._arm(("due", aid), deadline)
        auto = None
        if (
            alarm.condition == "cleared"
            and alarm.cleared_at is not None
            and lifecycle.auto_resolvable(alarm)
            and policy.auto_resolve_ms > 0
        ):
            auto = alarm.cleared_at + policy.auto_resolve_ms
        self._arm(("auto", aid), auto)

    def _promotions(self, st: LiftState, sigs: list[Signal], ctx: Context) -> None:
        """A muted condition whose suppression ended while it still holds is raised again
        (the lifecycle promotes the recorded alarm, or keeps it muted in a maintenance
        window)."""
        if not st.conds:
            return
        for (code, subtype, cond_source), c in st.conds.items():
            if not (c.muted and c.active):
                continue
            source = alarm_source(cond_source)
            if suppression.reason(code, source, st.tel) is None:
                sigs.append(Signal("raise", code, subtype, source, "", False, rules.evidence(st)))

    def _commit(
        self,
        work: list[Work],
        now: int,
        alarm_steps: Sequence[tuple[str, str]] = (),
        touched: list[Alarm] | None = None,
        *,
        marks: Sequence[str] = (),
        failed: Sequence[tuple[int, BaseException]] = (),
        letters: tuple[Sequence[Decoded], Sequence[tuple[str, bytes]] | None] | None = None,
    ) -> list[Change]:
        """Apply and commit in one transaction. ``marks``: inactive lifts whose ``selftest``
        ok event is recorded (no state). Each lift's signals and each alarm step run under
        their own savepoint: one that raises is rolled back alone (and its message, if any,
        dead-lettered with ``failed``, the messages whose evaluation already raised)."""
        if self.held is not None:
            work, alarm_steps, marks, failed = self._owned(
                work, alarm_steps, marks, failed, letters
            )
        if not work and not alarm_steps and not marks and not failed:
            return []
        delay = 0.05
        hook = self.outbox
        while True:
            out: list[Change] = []
            fanned: Any = None
            broken: list[tuple[int, BaseException]] = list(failed)
            self._wrote_outbox = False
            try:
                with self.db.transaction() as conn:
                    if self.held is not None and self._fenced(conn):
                        raise _Fenced
                    for lift_id, st, sigs, index in work:
                        mark = len(out)
                        conn.execute("SAVEPOINT lift")
                        try:
                            for sig in sigs:
                                self._apply(conn, lift_id, st, sig, now, out)
                        except OperationalError:
                            raise
                        except Exception as exc:
                            conn.execute("ROLLBACK TO lift")
                            del out[mark:]
                            broken.append((index, exc))
                            if index < 0:
                                self._evaluation_failed(lift_id, exc, "timer")
                        conn.execute("RELEASE lift")
                    for lift_id in marks:
                        store.set_selftest_ok(conn, lift_id, now)
                    for kind, alarm_id in alarm_steps:
                        mark = len(out)
                        conn.execute("SAVEPOINT step")
                        try:
                            alarm = self._step(conn, kind, alarm_id, now, out)
                        except OperationalError:
                            raise
                        except Exception as exc:
                            conn.execute("ROLLBACK TO step")
                            del out[mark:]
                            self._evaluation_failed(alarm_id, exc, f"alarm {kind} step of")
                            alarm = None
                        conn.execute("RELEASE step")
                        if alarm is not None and touched is not None:
                            touched.append(alarm)
                    dead = self._dead_letters(broken, letters, now)
                    if dead:
                        add_dead_letters_in(conn, dead, keep=self.dead_letter_max)
                    saved = self._checkpoint_rows(work, now)
                    ckpt.save_in(conn, saved)
                    if hook is not None and (out or self._wrote_outbox):
                        fanned = hook.fan_out_in(conn, now)
            except _Fenced:
                # Partitions lost since the split (another replica took them): split again.
                work, alarm_steps, marks, failed = self._owned(
                    work, alarm_steps, marks, failed, letters
                )
                if touched is not None:
                    touched.clear()
                if not work and not alarm_steps and not marks and not failed:
                    return []
                continue
            except OperationalError as exc:
                # Locked or busy beyond the busy timeout, disk trouble: the signals are in
                # hand and the messages not yet acknowledged, so retry rather than lose them.
                if hook is not None and fanned is not None:
                    hook.abandon(fanned)
                log.error(
                    "event=alarm_store_write_failed error=%r retry_in_s=%.2f", str(exc), delay
                )
                if touched is not None:
                    touched.clear()
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            except BaseException:
                if hook is not None and fanned is not None:
                    hook.abandon(fanned)
                raise
            self.counts["transitions"] += len(out)
            self.counts["checkpoints"] += len(saved)
            for row in saved:
                self._dirty.discard(row[0])
            for lift_id in marks:
                self._marks[lift_id] = (now, self._marks.get(lift_id, (None, None))[1])
            if hook is not None and (out or self._wrote_outbox):
                hook.hand_over(fanned)
            return out

    # --- replicas: ownership, takeover, checkpoints (docs/ha.md) ---------------------------

    def owns(self, lift_id: str) -> bool:
        held = self.held
        return held is None or leases.partition_of(lift_id) in held

    def _owned(
        self,
        work: list[Work],
        alarm_steps: Sequence[tuple[str, str]],
        marks: Sequence[str],
        failed: Sequence[tuple[int, BaseException]],
        letters: tuple[Sequence[Decoded], Sequence[tuple[str, bytes]] | None] | None,
    ) -> tuple[list[Work], list[tuple[str, str]], list[str], list[tuple[int, BaseException]]]:
        """What this replica commits: its partitions' lifts. The signals of the others are
        kept for a takeover (:meth:`take_over`); their owner commits them."""
        mine: list[Work] = []
        for item in work:
            if self.owns(item[0]):
                mine.append(item)
            elif item[2]:
                self._defer(item)
        steps: list[tuple[str, str]] = []
        for step in alarm_steps:
            if self.owns(self._step_lift(step)):
                steps.append(step)
            elif step[0] == "summary":
                # Its owner sends it; this replica re-arms it from the store if it takes over.
                self._summaries.pop(step, None)
        own_marks = [m for m in marks if self.owns(m)]
        own_failed = list(failed)
        if failed and letters is not None:
            messages = letters[0]
            own_failed = [
                f
                for f in failed
                if not 0 <= f[0] < len(messages) or self.owns(messages[f[0]].lift_id)
            ]
        return mine, steps, own_marks, own_failed

    def _step_lift(self, step: tuple[str, str]) -> str:
        kind, ident = step
        if kind == "summary":
            return ident.split("\x00", 1)[0]
        return self._alarm_lift.get(ident, "")

    def _defer(self, item: Work) -> None:
        lift_id, st, sigs, _ = item
        at = st.eff_floor if st.eff_floor > 0 else self.clock.now_ms()
        deferred = self._deferred
        deferred.append((at, lift_id, list(sigs)))
        horizon = at - DEFERRED_KEEP_MS
        while deferred and deferred[0][0] < horizon:
            deferred.popleft()

    def _fenced(self, conn: Connection) -> bool:
        """In the write's transaction: drop the partitions whose lease this replica no longer
        holds (leases.fence). True if any was dropped."""
        held = self.held
        assert held is not None and self.replica_id is not None
        confirmed = leases.fence(conn, self.db.dialect, self.replica_id, held)
        lost = [p for p in held if p not in confirmed]
        for p in lost:
            del held[p]
        if lost:
            log.warning(
                "event=partitions_fenced replica=%s partitions=%d: another replica owns them now",
                self.replica_id,
                len(lost),
            )
        return bool(lost)

    def _version(self, lift_id: str) -> int:
        self._ckpt_counter += 1
        held = self.held
        epoch = 0 if held is None else held.get(leases.partition_of(lift_id), 0)
        return ckpt.version_of(epoch, self._ckpt_counter)

    def _row(self, lift_id: str, st: LiftState, now: int, handover: int = 0) -> ckpt.CheckpointRow:
        p = leases.partition_of(lift_id)
        return (lift_id, p, self._version(lift_id), now, handover, checkpoint.encode(st))

    def _checkpoint_rows(self, work: Sequence[Work], now: int) -> list[ckpt.CheckpointRow]:
        rows: dict[str, ckpt.CheckpointRow] = {}
        for lift_id, st, _, _ in work:
            if self.states.get(lift_id) is st:  # not the stand-in state of a registry step
                rows[lift_id] = self._row(lift_id, st, now)
        return [rows[k] for k in sorted(rows)]  # rows locked in one order by every writer

    def hand_over(self, partitions: Mapping[int, int]) -> int:
        """Give ``partitions`` back (above the fair share, or a clean stop): their lifts'
        state is saved, marked as a hand-over, in the transaction that releases them, under
        the engine lock, so the next owner starts from exactly the state this one stopped
        at. Returns how many partitions were released."""
        with self._lock:
            if self.held is None or not partitions:
                return 0
            assert self.replica_id is not None
            now = self.clock.now_ms()
            parts = {p: e for p, e in partitions.items() if self.held.get(p) == e}
            rows = [
                self._row(lift_id, st, now, handover=1)
                for lift_id, st in self.states.items()
                if leases.partition_of(lift_id) in parts
            ]
            with self.db.transaction() as conn:
                mine = leases.fence(conn, self.db.dialect, self.replica_id, parts)
                ckpt.save_in(conn, [r for r in rows if r[1] in mine])
                released = leases.release_in(conn, self.replica_id, {p: parts[p] for p in mine})
            for p in partitions:
                self.held.pop(p, None)
            return released

    def checkpoint_dirty(self, limit: int = CHECKPOINT_CHUNK) -> int:
        """Save up to ``limit`` lifts whose state moved since their last checkpoint (the
        worker calls this every few seconds). Encoded under the engine lock, written in a
        transaction of its own (fenced like any other write). Returns how many were saved."""
        with self._lock:
            now = self.clock.now_ms()
            rows: list[ckpt.CheckpointRow] = []
            while self._dirty and len(rows) < limit:
                lift_id = self._dirty.pop()
                st = self.states.get(lift_id)
                if st is not None and self.owns(lift_id):
                    rows.append(self._row(lift_id, st, now))
            held = None if self.held is None else dict(self.held)
        if not rows:
            return 0
        rows.sort()  # rows locked in one order by every writer
        try:
            # Outside the writers' lock: no outbox or change-feed row is written, and the rows
            # are fenced (lease rows FOR SHARE) and versioned, so alarm writes never wait for
            # a periodic save (bench/alarm_latency.py --replicas: they did, by ~7–23 ms).
            with self.db.transaction(serialized=False) as conn:
                if held is not None:
                    assert self.replica_id is not None
                    ok = leases.fence(conn, self.db.dialect, self.replica_id, held)
                    rows = [r for r in rows if r[1] in ok]
                ckpt.save_in(conn, rows)
        except OperationalError:
            with self._lock:
                self._dirty.update(r[0] for r in rows)
            raise
        with self._lock:
            self.counts["checkpoints"] += len(rows)
        return len(rows)

    def save_partitions(self, partitions: Iterable[int]) -> int:
        """Checkpoint every lift of ``partitions`` now (a takeover's last step, run by the
        keeper right after it, outside the engine lock between chunks): the state this owner
        took over from its own evaluation may exist nowhere else — a replica that takes over
        from this one, should it die too, and that has not evaluated those lifts itself,
        adopts it (an entrapment in progress was lost that way in the e2e kill chain)."""
        parts = set(partitions)
        with self._lock:
            self._dirty.update(lid for lid in self.states if leases.partition_of(lid) in parts)
        saved = 0
        while (n := self.checkpoint_dirty()) > 0:
            saved += n
        return saved

    def give_up(self, partitions: Iterable[int]) -> None:
        """Partitions this replica no longer holds (lost, or given back): it stops committing
        for their lifts (their state stays current: it may own them again)."""
        with self._lock:
            if self.held is not None:
                for p in partitions:
                    self.held.pop(p, None)

    def take_over(self, gained: Mapping[int, int]) -> dict[str, int]:
        """This replica now holds ``gained`` (partition -> epoch). Before anything else is
        committed for their lifts: (1) commit what this replica evaluated for them while it did
        not own them and the store does not show (the old owner died before committing it);
        (2) take their unresolved alarms as stored (timers at their absolute times, the
        condition latched); (3) fire every lift timer that fell due meanwhile."""
        with self._lock:
            assert self.held is not None
            t0 = time.monotonic()
            now = self.clock.now_ms()
            parts = set(gained)
            self.held.update(gained)
            try:
                return self._take_over(gained, now, t0)
            except BaseException:
                # Half a takeover is none: these partitions are not this replica's until a
                # later round takes them again (and runs the whole of it).
                for p in parts:
                    self.held.pop(p, None)
                raise

    def _take_over(self, gained: Mapping[int, int], now: int, t0: float) -> dict[str, int]:
        parts = set(gained)
        adopted = self._adopt(gained, now)
        entries: dict[str, list[tuple[int, list[Signal]]]] = {}
        keep: deque[tuple[int, str, list[Signal]]] = deque(maxlen=DEFERRED_MAX)
        for at, lift_id, sigs in self._deferred:
            if leases.partition_of(lift_id) in parts:
                entries.setdefault(lift_id, []).append((at, sigs))
            else:
                keep.append((at, lift_id, sigs))
        work, replayed = self._replay(entries, now)
        changes = self._commit(work, now)
        self._after(changes)
        self._deferred = keep
        lift_ids = [lid for lid in self.states if leases.partition_of(lid) in parts]
        mine = set(lift_ids)
        buttons: set[str] = set()
        for alarm in store.unresolved_alarms(self.db):
            if leases.partition_of(alarm.lift_id) in parts:
                self._latch(alarm, now)
                self._arm_alarm(alarm)
                if alarm.code == "alarm_button":
                    buttons.add(alarm.lift_id)
        for alarm in store.flood_pending(self.db):
            if leases.partition_of(alarm.lift_id) in parts:
                self._arm_alarm(alarm)
        for lift_id in mine:
            if lift_id in buttons:
                self._button_open.add(lift_id)
            else:
                self._button_open.discard(lift_id)
            ctx = self._ctx.get(lift_id)
            if ctx is not None:
                ctx.button_unresolved = lift_id in buttons
        work = []
        for lift_id in lift_ids:
            self._tick(lift_id, self.states[lift_id], now, work)
        fired = self._commit(work, now)
        self._after(fired)
        self.counts["replayed"] += replayed
        return {
            "partitions": len(parts),
            "lifts": len(lift_ids),
            "adopted": adopted,
            "replayed": replayed,
            "transitions": len(changes) + len(fired),
            "took_ms": round((time.monotonic() - t0) * 1000),
        }

    def _checkpointed(self, lift_id: str, data: bytes, now: int) -> LiftState | None:
        """A stored checkpoint as live state; None for an inactive lift (it raises nothing)
        or a row that cannot be read (that lift starts afresh, the others go on)."""
        if lift_id in self._inactive:
            return None
        try:
            return checkpoint.decode(lift_id, data, now)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            log.warning("event=checkpoint_unusable lift_id=%s error=%r", lift_id, str(exc))
            return None

    def _adopt(self, gained: Mapping[int, int], now: int) -> int:
        """The stored state of lifts of ``gained`` replaces this replica's own where that may
        lack history: every lift its last owner handed over (:meth:`hand_over`: the exact
        state it stopped at — only if that owner was the last: a hand-over row no owner since
        then overwrote is older than what this replica knows), and every lift this process
        has evaluated no message of since it started (a restarted replica knows only what it
        restored at start; the dead owner's last checkpoint knows more)."""
        adopted = 0
        wanted = [
            lift_id
            for lift_id, p, epoch, handover in ckpt.in_partitions(self.db, sorted(gained))
            if (handover and epoch == gained[p] - 1) or lift_id not in self._warm
        ]
        for lift_id, data in ckpt.states_of(self.db, wanted).items():
            st = self._checkpointed(lift_id, data, now)
            if st is None:
                continue
            old = self.states.get(lift_id)
            if old is not None:
                st.last_valid_ms, st.will_at = old.last_valid_ms, old.will_at
                if st.selftest_ok_at is None:
                    st.selftest_ok_at = old.selftest_ok_at
            self.states[lift_id] = st
            adopted += 1
        return adopted

    def _replay(
        self, entries: Mapping[str, list[tuple[int, list[Signal]]]], now: int
    ) -> tuple[list[Work], int]:
        """The deferred signals of newly owned lifts that the store does not show, in order:
        a raise is skipped when its alarm stands, or when an alarm of that code was raised
        within :data:`COVER_MS` of it (the old owner committed it); a clear only while its
        alarm's condition is active; the rest are idempotent writes."""
        if not entries:
            return [], 0
        horizon = min(at for items in entries.values() for at, _ in items) - COVER_MS
        pool: dict[tuple[str, str, str | None], list[Alarm]] = {}
        for alarm in store.alarms_raised_since(self.db, list(entries), horizon):
            pool.setdefault((alarm.lift_id, alarm.code, alarm.subtype), []).append(alarm)
        standing: dict[tuple[str, str, str | None], bool] = {}
        for alarm in store.unresolved_alarms(self.db):
            if alarm.lift_id in entries:
                key = (alarm.lift_id, alarm.code, alarm.subtype)
                standing[key] = standing.get(key, False) or alarm.condition == "active"
        work: list[Work] = []
        replayed = 0
        for lift_id, items in entries.items():
            st = self.states.get(lift_id)
            if st is None:
                continue
            out: list[Signal] = []
            for at, sigs in items:
                for sig in sigs:
                    key = (lift_id, sig.code, sig.subtype)
                    if sig.kind == "raise":
                        if standing.get(key):
                            continue
                        stored = pool.setdefault(key, [])
                        hit = next((a for a in stored if abs(a.raised_at - at) <= COVER_MS), None)
                        if hit is not None:
                            stored.remove(hit)
                            standing[key] = not hit.resolved and hit.condition == "active"
                            continue
                        if now - at > rules.LATE_SLACK_MS:
                            late = {"late": True, "late_by_s": round((now - at) / 1000, 1)}
                            evidence = {**(sig.evidence or {}), **late}
                            sig = dataclasses.replace(sig, evidence=evidence)
                        out.append(sig)
                        standing[key] = True
                    elif sig.kind == "clear":
                        if standing.get(key):
                            out.append(sig)
                            standing[key] = False
                    elif sig.kind != "duplicate":
                        out.append(sig)
            if out:
                work.append((lift_id, st, out, -1))
                replayed += len(out)
        return work, replayed

    def _dead_letters(
        self,
        broken: Sequence[tuple[int, BaseException]],
        letters: tuple[Sequence[Decoded], Sequence[tuple[str, bytes]] | None] | None,
        now: int,
    ) -> list[DeadLetter]:
        """``evaluation_error`` dead-letters for the messages in ``broken`` (PROTOCOL.md)."""
        if not broken or letters is None:
            return []
        messages, raw = letters
        out: list[DeadLetter] = []
        seen: set[int] = set()
        for index, exc in broken:
            if index < 0 or index in seen or index >= len(messages):
                continue
            seen.add(index)
            msg = messages[index]
            if raw is not None and index < len(raw):
                topic, payload = raw[index]
            else:
                topic = f"{self.prefix}/{msg.lift_id}/{msg.kind}"
                payload = msgspec.json.encode(msg.body)
            self._evaluation_failed(msg.lift_id, exc, f"{msg.kind} message")
            detail = f"{type(exc).__name__} evaluating a {msg.kind} message of lift {msg.lift_id}"
            out.append(
                DeadLetter(
                    received_at=msg.received_ms or now,
                    topic=topic,
                    lift_id=msg.lift_id,
                    reason=EVALUATION_ERROR,
                    detail=detail,
                    payload=payload,
                )
            )
        return out

    def _step(
        self, conn: Connection, kind: str, alarm_id: str, now: int, out: list[Change]
    ) -> Alarm | None:
        if kind == "summary":
            self._summaries.pop((kind, alarm_id), None)
            lift_id, code = alarm_id.split("\x00", 1)
            policy = self._context(lift_id).policy
            if lifecycle.send_summary(conn, lift_id, code, now, policy):
                self._wrote_outbox = True
            return None
        if kind == "esc":
            return lifecycle.escalate(conn, alarm_id, now, out)
        if kind == "due":
            return lifecycle.mark_overdue(conn, alarm_id, now, out)
        owner = store.alarm_lift(conn, alarm_id)
        policy = self.policy if owner is None else self._context(owner).policy
        return lifecycle.auto_resolve(conn, alarm_id, now, policy, out)

    def _apply(
        self,
        conn: Connection,
        lift_id: str,
        st: LiftState,
        sig: Signal,
        now: int,
        out: list[Change],
    ) -> None:
        kind = sig.kind
        if kind == "raise":
            lift = self.lifts.get(lift_id)
            reason = suppression.reason(sig.code, sig.source, st.tel)
            deadline = None
            if sig.code in DEADLINE_CODES:
                p = self._context(lift_id).p.raw
                urban = lift.urban if lift is not None else True
                minutes = p["arrival_deadline_urban_min" if urban else "arrival_deadline_rural_min"]
                deadline = round(minutes * 60_000)
            req = Raise(
                lift_id=lift_id,
                code=sig.code,
                subtype=sig.subtype,
                severity=sig.severity or info(sig.code).severity,
                source=sig.source,
                at=now,
                evidence=sig.evidence or {},
                suspected=sig.suspected,
                suppressed_reason=reason,
                maintenance_applies=suppression.maintenance_applies(sig.code, sig.source),
                company_id=lift.company_id if lift is not None else None,
                unregistered=lift is None,
                deadline_ms=deadline,
                actor="device" if sig.source == "device" else "rule",
                note=sig.note,
            )
            alarm = lifecycle.raise_condition(conn, req, self._context(lift_id).policy, out)
            c = st.peek((sig.code, sig.subtype, sig.source))
            if c is not None:
                c.muted = not lifecycle.pursued(alarm)
        elif kind == "clear":
            actor = "device" if sig.source == "device" else "rule"
            lifecycle.clear_condition(conn, lift_id, sig.code, sig.subtype, now, out, actor=actor)
        elif kind == "end_of_alarm":
            lifecycle.end_of_alarm(conn, lift_id, now, sig.note, out, received_at=sig.at)
        elif kind == "selftest_ok":
            store.set_selftest_ok(conn, lift_id, now)
            # The 72 h clock's origin after a deactivation (../shared/repros r03).
            self._marks[lift_id] = (now, self._marks.get(lift_id, (None, None))[1])
        elif kind == "first_seen":
            store.set_first_seen(conn, lift_id, now)
        elif kind == "company" and store.move_unresolved(conn, lift_id, sig.note, now):
            self._wrote_outbox = True

    def _after(self, changes: list[Change]) -> None:
        if not changes:
            return
        latest: dict[str, Alarm] = {}
        for change in changes:
            latest[change.alarm.alarm_id] = change.alarm
        for alarm in latest.values():
            self._arm_alarm(alarm)
            if alarm.code == "alarm_button":
                if alarm.resolved:
                    self._button_open.discard(alarm.lift_id)
                else:
                    self._button_open.add(alarm.lift_id)
                ctx = self._ctx.get(alarm.lift_id)
                if ctx is not None:
                    ctx.button_unresolved = alarm.lift_id in self._button_open
        if self.sink is not None:
            try:
                self.sink(changes)
            except Exception:  # the InfluxDB copy is best effort, never the alarm path
                log.exception("event=alarm_sink_failed")
