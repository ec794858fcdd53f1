"""Compact live state of one lift (``__slots__``; about 1–2 KB with its last telemetry).

The state keeps the last accepted telemetry snapshot as decoded (a msgspec struct, no copy)
plus the few facts rules need across messages: when a run started, recent door changes, the
alarm button, and one small :class:`Cond` per condition being timed or latched.
"""

from __future__ import annotations

from typing import Any, Final

from liftwatch.protocol import Telemetry

CondKey = tuple[str, str | None, str]
"""(code, subtype, source): the same code may be both derived ("rule") and reported ("device",
or "limit" for a final limit switch)."""

LIMIT: Final = "limit"
"""Condition source of the final limit switches (``up_limit``/``down_limit``). Their alarms are
reported ones (FAULTS.md § Terms: event, controller fault, limit switch), recorded with source
``device``; the condition keeps its own key so that ``controller_faults``, the full list of the
controller's active faults, never clears it."""
CONDITION_SOURCES: Final = ("rule", "device", LIMIT)


def alarm_source(cond_source: str) -> str:
    """The ``source`` an alarm records for a condition source: ``rule`` or ``device``."""
    return "device" if cond_source == LIMIT else cond_source


def latch_key(code: str, subtype: str | None, source: str, evidence: dict[str, Any]) -> CondKey:
    """The condition behind a stored alarm (restart latches it). An overtravel alarm without
    a reported fault in its evidence came from a limit switch (alarms stored before limit
    switches counted as reported have source ``rule``)."""
    if code in ("overtravel_top", "overtravel_bottom") and "fault" not in evidence:
        return (code, subtype, LIMIT)
    return (code, subtype, source)


DEDUP_KEYS = 8


class Cond:
    """One condition's timing: ``since`` is liftwatch's clock at the first message on which it
    held, ``count`` the consecutive messages it held on, ``active`` the raised latch,
    ``clear_since`` when its clear predicate started to hold, ``muted`` whether its alarm was
    recorded as suppressed (re-checked on later messages so it can be raised for real)."""

    __slots__ = ("active", "clear_since", "count", "muted", "since")

    def __init__(self) -> None:
        self.since: int | None = None
        self.count = 0
        self.active = False
        self.clear_since: int | None = None
        self.muted = False

    def idle(self) -> bool:
        return not self.active and self.since is None


RESTART_SEQ: Final = 16  # PROTOCOL.md 1.1 § Order: a seq below this after a higher one
RESTART_TS_MS: Final = 60_000  # ... or a ts this much newer: the device restarted


class LiftState:
    __slots__ = (
        "btn_last_press",
        "btn_pending",
        "btn_pressed",
        "btn_since",
        "conds",
        "door_changes",
        "eff_floor",
        "eff_ms",
        "eff_real",
        "eff_ts",
        "entrap_cleared_at",
        "lag_ms",
        "last_valid_ms",
        "lift_id",
        "move_started_open",
        "moving",
        "recent",
        "run_since",
        "run_started_closed",
        "selftest_ok_at",
        "seq",
        "tel",
        "ts_ms",
        "will_at",
    )

    def __init__(self, lift_id: str, now_ms: int) -> None:
        self.lift_id = lift_id
        self.tel: Telemetry | None = None
        self.ts_ms = -1
        self.seq = -1
        # The lift's own time base for durations (FAULTS.md 1.1 #7): ``eff_ms`` at liftwatch's
        # ``eff_real`` for the snapshot of device time ``eff_ts``; ``lag_ms`` how far it is
        # behind liftwatch's clock (0 live; the backlog's age while a burst is evaluated).
        self.eff_ms = -1
        self.eff_floor = 0  # the latest lift time any rule saw: it never goes back
        self.eff_real = 0
        self.eff_ts = 0
        self.lag_ms = 0
        self.recent: tuple[int | tuple[int, int | str], ...] = ()
        self.last_valid_ms = now_ms
        self.will_at: int | None = None
        self.run_since: int | None = None
        self.moving = False
        self.move_started_open = False
        self.run_started_closed = True
        self.door_changes: tuple[int, ...] = ()
        self.entrap_cleared_at: int | None = None
        self.btn_pressed = False
        self.btn_pending = False
        self.btn_since = 0
        self.btn_last_press: int | None = None
        self.selftest_ok_at: int | None = None
        self.conds: dict[CondKey, Cond] | None = None

    def cond(self, key: CondKey) -> Cond:
        conds = self.conds
        if conds is None:
            conds = self.conds = {}
        c = conds.get(key)
        if c is None:
            c = conds[key] = Cond()
        return c

    def peek(self, key: CondKey) -> Cond | None:
        return None if self.conds is None else self.conds.get(key)

    def prune(self) -> None:
        """Drop idle conditions so a quiet lift keeps no per-condition objects."""
        conds = self.conds
        if conds and any(c.idle() for c in conds.values()):
            for key in [k for k, c in conds.items() if c.idle()]:
                del conds[key]
        if not conds:
            self.conds = None

    def advance(self, now: int, ts_ms: int) -> int:
        """The lift's time for a newer snapshot taken at device time ``ts_ms``, evaluated at
        liftwatch's ``now`` (FAULTS.md 1.1 #7). It moves at the device's pace from the
        previous snapshot, never beyond ``now`` and never back: live, that is ``now`` (less
        the network jitter above the best delay seen, since ``now`` caps it); a burst of
        snapshots delayed by an outage (of the broker, of the network) is evaluated at the
        device's pace, so a condition that held 30 s in device time held 30 s here, and the
        lift's time catches up with ``now`` with the first snapshot whose device time does.
        A device clock that steps back moves it with liftwatch's clock instead (so a step
        never freezes it); one that steps forward is capped by ``now``."""
        if self.eff_ms < 0:
            eff = now
        else:
            step = ts_ms - self.eff_ts
            if step < 0:
                step = now - self.eff_real
            eff = max(self.eff_floor, min(now, self.eff_ms + step))
        self.eff_ms = self.eff_floor = eff
        self.eff_real, self.eff_ts, self.lag_ms = now, ts_ms, now - eff
        return eff

    def time_at(self, now: int) -> int:
        """The lift's time at liftwatch's ``now`` without a new snapshot (events, timers): it
        runs with liftwatch's clock from the last snapshot."""
        if self.eff_ms < 0:
            self.lag_ms = 0
            return now
        eff = max(self.eff_floor, min(now, self.eff_ms + max(0, now - self.eff_real)))
        self.eff_floor, self.lag_ms = eff, now - eff
        return eff

    def newer(self, seq: int, ts_ms: int) -> bool:
        """PROTOCOL.md 1.1 § Order: is a snapshot (``seq``, normalised ``ts_ms``) newer than the
        live state? Within one run of the device ``seq`` decides, whatever ``ts`` says (clocks
        step, ``seq`` does not); a lower ``seq`` is late unless the device restarted: its
        ``seq`` is below 16 while the latest was not, or its ``ts`` is more than 60 s newer."""
        last = self.seq
        if last < 0 or seq > last:
            return True
        if seq < last:
            return seq < RESTART_SEQ <= last or ts_ms > self.ts_ms + RESTART_TS_MS
        return ts_ms >= self.ts_ms

    def accept(self, seq: int, ts: int | str) -> bool:
        """Remember (seq, ts) and return True, or return False if it was accepted recently: a
        QoS 1 redelivery (PROTOCOL.md). ``ts`` is the message's ``ts`` as sent, like ingest's
        key: the normalised time of a ``ts_corrected`` message is its receive time, which
        differs on a redelivery."""
        # An int key for the usual integer ts (no GC-tracked object per message); a tuple,
        # never equal to an int, for an RFC 3339 ts or a seq beyond 32 bits.
        key: int | tuple[int, int | str] = (
            ts * 4_294_967_296 + seq if type(ts) is int and seq < 4_294_967_296 else (seq, ts)
        )
        recent = self.recent
        if key in recent:
            return False
        self.recent = (*recent[-(DEDUP_KEYS - 1) :], key)
        return True
