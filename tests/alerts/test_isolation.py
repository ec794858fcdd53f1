"""No input of one lift stops another lift's alarms (PROTOCOL.md § bad input, FAULTS.md 1.1 #1).

The real engine on a real SQLite file in virtual time (tests/alerts/rig.py). A property test
feeds it arbitrary messages with extreme values — valid ones reach the rules, invalid ones are
rejected by the shared decoder — interleaved with a lift whose passenger is trapped: that
entrapment is raised at its threshold whatever the other messages say. Failures of evaluation
itself (forced here by making the rules raise for one lift) are dead-lettered as
``evaluation_error`` and the rest of the batch goes on.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts import rules
from liftwatch.registry import Lift
from liftwatch.store.deadletters import list_dead_letters
from tests.alerts.rig import BASE, Rig

TRAPPED = {**BASE, "door_zone": False, "passenger_present": True, "speed": 0.0}

# --- hostile values ----------------------------------------------------------------------

_ints = st.one_of(
    st.integers(),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30, -1, 0, 10**4000]),
)
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e-300]),
)
_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["²", "①", "¹²", "٣", "\u202e", "\x00", "\ufeff=1+1", "9" * 600]),
    st.text(alphabet="困人梯故障", min_size=1000, max_size=3000),
)
_scalar = st.one_of(_ints, _floats, _text, st.booleans(), st.none())
_fault = st.fixed_dictionaries(
    {"namespace": st.one_of(st.sampled_from(["gb24476", "gb38656", "liftwatch", "x;="]), _text)},
    optional={"code": st.one_of(_ints, _text), "text": _text, "active": st.booleans()},
)
_TEL_FIELDS = {
    "service_mode": st.sampled_from(["normal", "inspection", "fire_return", "unknown", "x"]),
    "car_status": st.sampled_from(["stopped", "running"]),
    "door_zone": st.booleans(),
    "doors_closed": st.booleans(),
    "floor": st.one_of(_text, st.none()),
    "floor_index": _ints,
    "passenger_present": st.one_of(st.booleans(), st.none()),
    "speed": _floats,
    "position": _ints,
    "load": _floats,
    "battery": _ints,
    "alarm_button": st.booleans(),
    "up_limit": st.booleans(),
    "power_source": st.sampled_from(["mains", "battery"]),
    "run_count": _ints,
    "rssi": _ints,
    "controller_faults": st.lists(_fault, max_size=3),
}
_telemetry = st.fixed_dictionaries({}, optional=_TEL_FIELDS).map(
    lambda changes: ("telemetry", {**BASE, **changes})
)
_event = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("fault"), "namespace": _text, "code": st.one_of(_ints, _text)},
        optional={"active": st.booleans(), "text": _text},
    ),
    st.fixed_dictionaries({"type": st.just("selftest"), "result": st.sampled_from(["ok", "fail"])}),
    st.fixed_dictionaries({"type": st.just("end_of_alarm")}, optional={"by": _text}),
    st.fixed_dictionaries({"type": st.just("alarm_button"), "pressed": st.booleans()}),
).map(lambda body: ("event", body))
_message = st.tuples(
    st.sampled_from(["H1", "H2"]),
    st.one_of(_telemetry, _event),
    st.one_of(_ints, st.just(None)),  # seq (None: the next one)
    st.one_of(st.just(None), _ints, _text),  # ts (None: now)
    st.sampled_from([0.0, 0.5, 3.0, 20.0]),  # seconds before the next message
)


def _payload(body: dict[str, Any], seq: int, ts: Any) -> bytes:
    return json.dumps({"v": 1, "ts": ts, "seq": seq, **body}, allow_nan=True).encode()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_message, min_size=1, max_size=25))
def test_hostile_messages_of_other_lifts_never_delay_an_entrapment(
    messages: list[tuple[str, tuple[str, dict[str, Any]], Any, Any, float]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lifts = tuple(Lift(lift_id=x, company_id="acme") for x in ("T", "H1", "H2"))
        r = Rig(Path(tmp) / "lw.db", lifts=lifts)
        start = r.clock.now_ms()
        seqs = {"H1": 0, "H2": 0}
        t_seq = 0
        r.engine.handle_raw([("lifts/T/telemetry", _payload(TRAPPED, t_seq, start))])
        for lift, (kind, body), seq, ts, pause in messages:
            if r.clock.now_ms() - start + pause * 1000 >= 29_000:
                break
            seqs[lift] += 1
            s = seqs[lift] if seq is None else seq
            t = r.clock.now_ms() if ts is None else ts
            t_seq += 1
            # One batch: the hostile message, then the trapped lift's snapshot.
            r.engine.handle_raw(
                [
                    (f"lifts/{lift}/{kind}", _payload(body, s, t)),
                    ("lifts/T/telemetry", _payload(TRAPPED, t_seq, r.clock.now_ms())),
                ]
            )
            r.advance(pause)
        r.advance(30 - (r.clock.now_ms() - start) / 1000 - 0.001)
        assert r.alarms("entrapment", lift="T") == []
        r.advance(0.001)
        (alarm,) = r.alarms("entrapment", lift="T")
        assert alarm.raised_at == start + 30_000
        assert alarm.status == "open" and alarm.company_id == "acme"
        # The engine also comes back up on whatever those messages left in the store.
        r.restart()
        r.advance(1)
        assert len(r.alarms("entrapment", lift="T")) == 1
        assert r.engine.counts["evaluation_errors"] == 0


def _broken_for(lift: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rules.on_message

    def on_message(st: Any, msg: Any, now: int, ctx: Any) -> Any:
        if msg.lift_id == lift:
            raise ZeroDivisionError("injected")
        return real(st, msg, now, ctx)

    monkeypatch.setattr(rules, "on_message", on_message)


def test_a_message_whose_evaluation_raises_is_dead_lettered_and_the_batch_goes_on(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = Rig(store_url, lifts=(Lift(lift_id="L1", company_id="acme"),))
    r.tel("L1")
    _broken_for("L9", monkeypatch)
    now = r.clock.now_ms()
    press = {"type": "alarm_button", "pressed": True}
    r.engine.handle_raw(
        [
            ("lifts/L9/telemetry", _payload(BASE, 1, now)),
            ("lifts/L1/event", _payload(press, 1, now)),
        ]
    )
    assert [a.status for a in r.alarms("alarm_button", lift="L1")] == ["open"]
    assert r.notified("alarm_button") == ["alarm.raised"]
    (letter,) = list_dead_letters(r.db)
    assert (letter.reason, letter.lift_id, letter.topic) == (
        "evaluation_error",
        "L9",
        "lifts/L9/telemetry",
    )
    assert "ZeroDivisionError" in letter.detail and "L9" in letter.detail
    assert json.loads(letter.payload)["seq"] == 1
    assert r.engine.counts["evaluation_errors"] == 1


def test_a_signal_that_fails_to_apply_is_rolled_back_alone(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing one lift's transitions (after the rules ran) rolls back that
    lift's part of the transaction only; the other lift's alarm commits with the batch."""
    lifts = (Lift(lift_id="L1", company_id="acme"), Lift(lift_id="L9", company_id="acme"))
    r = Rig(store_url, lifts=lifts)
    r.tel("L1")
    r.tel("L9")
    real = r.engine._apply

    def apply(conn: Any, lift_id: str, *args: Any) -> None:
        real(conn, lift_id, *args)
        if lift_id == "L9":
            raise OverflowError("injected after L9's rows were written")

    monkeypatch.setattr(r.engine, "_apply", apply)
    now = r.clock.now_ms()
    press = {"type": "alarm_button", "pressed": True}
    r.engine.handle_raw(
        [
            ("lifts/L9/event", _payload(press, 5, now)),
            ("lifts/L1/event", _payload(press, 5, now)),
        ]
    )
    assert r.alarms("alarm_button", lift="L9") == []
    assert [a.lift_id for a in r.alarms("alarm_button")] == ["L1"]
    assert r.notified("alarm_button") == ["alarm.raised"]
    (letter,) = list_dead_letters(r.db)
    assert letter.reason == "evaluation_error" and "OverflowError" in letter.detail


def _store_raw_lift(r: Rig, lift_id: str, **columns: Any) -> None:
    with r.db.transaction() as conn:
        conn.execute(
            "INSERT INTO lifts (lift_id, company_id, created_at, updated_at, change_seq)"
            " VALUES (?, ?, 0, ?, (SELECT MAX(change_seq) + 1 FROM lifts))",
            (lift_id, "acme", r.clock.now_ms()),
        )
        for column, value in columns.items():
            conn.execute(f"UPDATE lifts SET {column} = ? WHERE lift_id = ?", (value, lift_id))  # noqa: S608


@pytest.mark.parametrize(
    "columns",
    [
        {"overrides": '{"entrapment_s": Infinity}'},
        {"overrides": '{"entrapment_s": 1e308, "escalation_s": -5}'},
        {"overrides": "not json"},
        {"overrides": "[1, 2]"},
        {"overrides": '{"entrapment_s": "soon"}'},
        {"rated_speed": -3.0},
        {"rated_speed": "fast"},
        {"floors": 10**6},
        {"rescue_code": "²²²²²²"},
    ],
)
def test_start_and_refresh_survive_any_stored_row(store_url: str, columns: dict[str, Any]) -> None:
    if "fast" in columns.values() and "postgresql" in store_url:
        columns = {"rated_speed": float("nan")}  # what a typed column can hold that is unusable
    r = Rig(store_url, start=False)
    _store_raw_lift(r, "BAD", **columns)
    r.engine.start()  # start-up reads the bad row
    assert "BAD" in r.engine.flagged
    assert math.isfinite(r.engine._context("BAD").p.entrapment_ms)
    trapped: dict[str, Any] = {"door_zone": False, "passenger_present": True, "speed": 0.0}
    r.tel("BAD", **trapped)
    r.tel("L1", **trapped)
    r.advance(30)
    assert {a.lift_id for a in r.alarms("entrapment")} == {"BAD", "L1"}
    assert r.one("entrapment", lift="BAD").company_id == "acme"
    # The same row arriving through a registry refresh.
    _store_raw_lift(r, "BAD2", **columns)
    r.advance(5)
    r.engine.refresh_registry()
    assert "BAD2" in r.engine.flagged
    r.tel("BAD2", **trapped)
    r.advance(30)
    assert r.one("entrapment", lift="BAD2").company_id == "acme"
