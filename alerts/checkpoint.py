"""A lift's evaluation state as bytes, for the store's ``lift_checkpoints`` (docs/ha.md).

What a restarted replica restores so that it goes on where its last owner stopped: the last
snapshot, the dedup keys and ``seq`` (a redelivered message is recognised, PROTOCOL.md), the
start of every held condition (a duration is timed from the first message on which it held,
FAULTS.md), the alarm button's press state (a button still held is the same press, FAULTS.md
1.1 #3) and the lift's time base. Liveness is not restored: the process was away, so the
offline clock restarts from the restore (as it did before checkpoints).

msgpack through msgspec: every slot of :class:`~alerts.state.LiftState` is a field here (a
test checks that none is forgotten); the version byte lets a later format be told apart.
"""

from __future__ import annotations

from typing import Final

import msgspec

from alerts.state import LiftState
from liftwatch.protocol import Telemetry

FORMAT: Final = 1

CondRow = tuple[str, str | None, str, int | None, int, bool, int | None, bool]
# A dedup key (LiftState.accept) as (seq, ts, packed): ``packed`` for the usual int key
# ``ts * 2**32 + seq``, which msgpack cannot hold as one integer.
DedupRow = tuple[int, int | str, bool]
_LOW32: Final = (1 << 32) - 1


class Snapshot(msgspec.Struct, array_like=True):
    format: int
    tel: Telemetry | None
    ts_ms: int
    seq: int
    eff_ms: int
    eff_floor: int
    eff_real: int
    eff_ts: int
    lag_ms: int
    recent: list[DedupRow]
    will_at: int | None
    run_since: int | None
    moving: bool
    move_started_open: bool
    run_started_closed: bool
    door_changes: list[int]
    entrap_cleared_at: int | None
    btn_pressed: bool
    btn_pending: bool
    btn_since: int
    btn_last_press: int | None
    selftest_ok_at: int | None
    conds: list[CondRow]


#: LiftState slots a snapshot does not carry, and why.
NOT_SAVED: Final = frozenset(
    {
        "lift_id",  # the row's key
        "last_valid_ms",  # liveness restarts at the restore (module docstring)
    }
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def encode(st: LiftState) -> bytes:
    conds: list[CondRow] = []
    if st.conds:
        for (code, subtype, source), c in st.conds.items():
            if not c.idle():
                conds.append(
                    (code, subtype, source, c.since, c.count, c.active, c.clear_since, c.muted)
                )
    return _encoder.encode(
        Snapshot(
            FORMAT,
            st.tel,
            st.ts_ms,
            st.seq,
            st.eff_ms,
            st.eff_floor,
            st.eff_real,
            st.eff_ts,
            st.lag_ms,
            [_dedup_row(k) for k in st.recent],
            st.will_at,
            st.run_since,
            st.moving,
            st.move_started_open,
            st.run_started_closed,
            list(st.door_changes),
            st.entrap_cleared_at,
            st.btn_pressed,
            st.btn_pending,
            st.btn_since,
            st.btn_last_press,
            st.selftest_ok_at,
            conds,
        )
    )


def _dedup_row(key: int | tuple[int, int | str]) -> DedupRow:
    if isinstance(key, int):
        return (key & _LOW32, key >> 32, True)
    return (key[0], key[1], False)


def decode(lift_id: str, data: bytes, now_ms: int) -> LiftState:
    """The state saved in ``data``; raises ``msgspec.ValidationError``/``DecodeError`` for a
    row that is not a snapshot of this format (the caller starts that lift afresh)."""
    snap = _decoder.decode(data)
    if snap.format != FORMAT:
        raise msgspec.ValidationError(f"checkpoint format {snap.format}, expected {FORMAT}")
    st = LiftState(lift_id, now_ms)
    st.tel = snap.tel
    st.ts_ms, st.seq = snap.ts_ms, snap.seq
    st.eff_ms, st.eff_floor, st.eff_real = snap.eff_ms, snap.eff_floor, snap.eff_real
    st.eff_ts, st.lag_ms = snap.eff_ts, snap.lag_ms
    st.recent = tuple(
        (int(ts) << 32) | seq if packed else (seq, ts) for seq, ts, packed in snap.recent
    )
    # A Last Will seen before the restart still counts; its offline timer runs from the
    # restore at the earliest (liveness is not restored).
    st.will_at = None if snap.will_at is None else max(snap.will_at, now_ms)
    st.run_since, st.moving = snap.run_since, snap.moving
    st.move_started_open, st.run_started_closed = snap.move_started_open, snap.run_started_closed
    st.door_changes = tuple(snap.door_changes)
    st.entrap_cleared_at = snap.entrap_cleared_at
    st.btn_pressed, st.btn_pending = snap.btn_pressed, snap.btn_pending
    st.btn_since, st.btn_last_press = snap.btn_since, snap.btn_last_press
    st.selftest_ok_at = snap.selftest_ok_at
    for code, subtype, source, since, count, active, clear_since, muted in snap.conds:
        c = st.cond((code, subtype, source))
        c.since, c.count, c.active = since, count, active
        c.clear_since, c.muted = clear_since, muted
    return st


def shape(st: LiftState) -> tuple[object, ...]:
    """What a restart must not lose, in short: which conditions are held since when, the
    button, the run, the Last Will, and the snapshot's discrete fields. A message that leaves
    it unchanged (most telemetry: the same state again, another speed or load) does not make
    the lift due for a periodic checkpoint; one that changes it does. ~1 µs."""
    tel = st.tel
    conds = st.conds
    return (
        None
        if tel is None
        else (tel.service_mode, tel.car_status, tel.door_zone, tel.doors_closed, tel.alarm_button),
        st.moving,
        st.run_since,
        st.btn_pressed,
        st.btn_pending,
        st.will_at,
        st.entrap_cleared_at,
        st.door_changes,
        None
        if not conds
        else tuple((k, c.since, c.active, c.clear_since, c.muted) for k, c in conds.items()),
    )


def saved_slots() -> set[str]:
    """LiftState slots a snapshot carries (for the completeness test)."""
    return set(Snapshot.__struct_fields__) - {"format"}


__all__ = ["NOT_SAVED", "Snapshot", "decode", "encode", "saved_slots", "shape"]
