"""The device-protocol decoder against every rule of PROTOCOL.md."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftwatch.protocol import (
    MAX_PAYLOAD_BYTES,
    AlarmButtonEvent,
    Decoded,
    EndOfAlarmEvent,
    FaultEvent,
    Reason,
    Rejection,
    SelftestEvent,
    Status,
    Telemetry,
    decode,
    format_ts,
    parse_topic,
)

NOW = 1_795_735_440_000  # 2026-11-26T23:24:00Z
TS = "2026-11-26T23:23:59.500Z"
TS_MS = NOW - 500


def telemetry(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1,
        "ts": TS,
        "seq": 1842,
        "service_mode": "normal",
        "car_status": "stopped",
        "direction": "none",
        "floor": "7",
        "door_zone": False,
        "doors_closed": True,
    }
    msg.update(over)
    return {k: v for k, v in msg.items() if v is not ...}


def dec(payload: dict[str, Any] | bytes, kind: str = "telemetry", lift: str = "L1") -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode(f"lifts/{lift}/{kind}", raw, received_ms=NOW)


def rejected(result: Any, reason: Reason) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert result.detail
    return result


# --- topics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "lifts/L1",
        "lifts/L1/telemetry/x",
        "other/L1/telemetry",
        "lifts//telemetry",
        "lifts/L 1/telemetry",
        "lifts/" + "x" * 65 + "/telemetry",
        "lifts/L1/telemetryx",
        "lifts/L1/+",
        "lifts/电梯/telemetry",
        "",
    ],
)
def test_topic_outside_the_scheme_is_bad_topic(topic: str) -> None:
    rejected(decode(topic, json.dumps(telemetry()).encode(), received_ms=NOW), Reason.BAD_TOPIC)


def test_topic_accepts_the_full_lift_id_alphabet_and_a_custom_prefix() -> None:
    lift = "A-z_0.9" + "1" * 57
    assert parse_topic(f"site/a/lifts/{lift}/event", "site/a/lifts") == (lift, "event")
    result = decode(
        "city/31101201002018040001/telemetry",
        json.dumps(telemetry()).encode(),
        prefix="city",
        received_ms=NOW,
    )
    assert isinstance(result, Decoded)
    assert result.lift_id == "31101201002018040001"


# --- telemetry --------------------------------------------------------------------------------


def test_spec_example_decodes_with_every_value() -> None:
    example = (
        b'{"v":1,"ts":"2026-11-26T20:01:02.345Z","seq":1842,"service_mode":"normal",'
        b'"car_status":"stopped","direction":"none","floor":"7","floor_index":8,"door_zone":false,'
        b'"doors_closed":true,"passenger_present":true,"speed":0.0,"safety_circuit":"closed",'
        b'"power_source":"mains"}'
    )
    result = dec(example)
    assert isinstance(result, Decoded)
    body = result.body
    assert isinstance(body, Telemetry)
    assert (body.floor, body.floor_index, body.passenger_present) == ("7", 8, True)
    assert (body.safety_circuit, body.power_source, body.speed) == ("closed", "mains", 0.0)
    assert result.ts_ms == 1795723262345
    assert result.seq == 1842
    assert not result.ts_corrected
    assert format_ts(result.ts_ms) == "2026-11-26T20:01:02.345Z"


def test_all_optional_fields() -> None:
    full = telemetry(
        floor_index=3,
        door_state="not_fully_closed",
        passenger_present=None,
        speed=-1.2,
        position=12000,
        load=55.5,
        safety_circuit="open",
        door_lock_circuit="closed",
        up_limit=False,
        down_limit=True,
        power_source="battery",
        alarm_button=True,
        battery=80,
        controller_faults=[
            {"namespace": "gb24476", "code": 4},
            {"namespace": "x", "code": "E12", "text": "encoder"},
        ],
        total_running_time=1234.5,
        run_count=99,
        machine_room_temp=31.5,
        rssi=-70,
    )
    result = dec(full)
    assert isinstance(result, Decoded)
    body = result.body
    assert isinstance(body, Telemetry)
    assert body.speed == -1.2 and body.down_limit is True and body.battery == 80
    assert body.controller_faults is not None
    assert [f.code for f in body.controller_faults] == [4, "E12"]
    assert body.controller_faults[1].text == "encoder"


def test_floor_null_means_position_lost_and_is_valid() -> None:
    result = dec(telemetry(floor=None))
    assert isinstance(result, Decoded)
    assert isinstance(result.body, Telemetry) and result.body.floor is None


def test_unknown_fields_are_ignored_and_not_kept() -> None:
    result = dec(telemetry(firmware="1.2.3", lift_id="OTHER", nested={"a": [1, 2]}))
    assert isinstance(result, Decoded)
    assert result.lift_id == "L1"  # the topic is the identity
    assert not hasattr(result.body, "firmware")


@pytest.mark.parametrize(
    "field",
    [
        "v",
        "ts",
        "seq",
        "service_mode",
        "car_status",
        "direction",
        "floor",
        "door_zone",
        "doors_closed",
    ],
)
def test_every_required_telemetry_field(field: str) -> None:
    msg = telemetry()
    del msg[field]
    result = rejected(dec(msg), Reason.MISSING_FIELD)
    assert field in result.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "12"),
        ("seq", 1.5),
        ("seq", True),
        ("door_zone", "false"),
        ("door_zone", 0),
        ("doors_closed", None),
        ("floor", 7),
        ("speed", "1.0"),
        ("speed", True),
        ("floor_index", 1.0),
        ("battery", "80"),
        ("passenger_present", "yes"),
        ("controller_faults", {"namespace": "x"}),
        ("controller_faults", [{"code": 1}]),
        ("ts", 1.5),
        ("ts", None),
        ("v", "1"),
        ("up_limit", "on"),
    ],
)
def test_wrong_types_are_rejected(field: str, value: Any) -> None:
    result = dec(telemetry(**{field: value}))
    assert isinstance(result, Rejection), result
    assert result.reason in (Reason.BAD_TYPE, Reason.MISSING_FIELD), result
    assert field in result.detail or "namespace" in result.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_mode", "maintenance"),
        ("car_status", "moving"),
        ("direction", "left"),
        ("door_state", "ajar"),
        ("safety_circuit", "broken"),
        ("door_lock_circuit", "x"),
        ("power_source", "solar"),
        ("seq", -1),
        ("speed", 10**400),
    ],
)
def test_unknown_enum_values_and_out_of_range_are_bad_value(field: str, value: Any) -> None:
    result = rejected(dec(telemetry(**{field: value})), Reason.BAD_VALUE)
    assert field in result.detail


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_rejected(token: bytes) -> None:
    raw = json.dumps(telemetry(speed=0.5)).encode().replace(b"0.5", token)
    result = rejected(dec(raw), Reason.BAD_VALUE)
    assert "NaN" in result.detail


def test_service_mode_enum_is_complete() -> None:
    for mode in (
        "normal",
        "inspection",
        "out_of_service",
        "fire_return",
        "firefighter",
        "emergency_power",
        "earthquake",
        "unknown",
    ):
        assert isinstance(dec(telemetry(service_mode=mode)), Decoded), mode


# --- ts normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-26T23:23:59.500Z", NOW - 500),
        ("2026-11-27T07:23:59.500+08:00", NOW - 500),
        ("2026-11-26T23:23:59Z", NOW - 1000),
        ("2026-11-26t23:23:59.5z", NOW - 500),  # RFC 3339 § 5.6: T and Z in either case
        ("2026-11-26T23:23:59.500000001Z", NOW - 500),
        (NOW - 500, NOW - 500),
    ],
)
def test_ts_rfc3339_with_offset_or_epoch_ms(ts: Any, expected: int) -> None:
    result = dec(telemetry(ts=ts))
    assert isinstance(result, Decoded)
    assert result.ts_ms == expected and not result.ts_corrected


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-26T23:23:59",
        "yesterday",
        "2026-11-26",
        "",
        "2026-13-01T00:00:00Z",
        "2026-11-26T23:23:59+0800",  # ISO 8601 basic offset: not RFC 3339
        "2026-W48-4T23:23:59Z",  # ISO week date: not RFC 3339
        "2026-11-26 23:23:59Z",
    ],
)
def test_ts_without_offset_or_unparseable_is_bad_value(ts: Any) -> None:
    result = rejected(dec(telemetry(ts=ts)), Reason.BAD_VALUE)
    assert "ts" in result.detail


@pytest.mark.parametrize("ts", [-5, 0, 1, NOW * 1000, 2**63 - 1, -(2**63)])
def test_any_integer_ts_far_off_is_replaced_not_rejected(ts: int) -> None:
    """PROTOCOL.md replaces a ts far in the past or future (epoch seconds, microseconds, a
    reset clock) by the receive time instead of dropping the message (within int64: 1.1)."""
    result = dec(telemetry(ts=ts))
    assert isinstance(result, Decoded), result
    assert result.ts_corrected and result.ts_ms == NOW


@pytest.mark.parametrize(
    ("offset_ms", "corrected"),
    [
        (5 * 60_000 + 1, True),
        (5 * 60_000 - 1000, False),
        (-7 * 86_400_000 + 1000, False),
        (-7 * 86_400_000 - 1, True),
    ],
)
def test_ts_too_far_in_future_or_past_is_replaced_by_receive_time(
    offset_ms: int, corrected: bool
) -> None:
    result = dec(telemetry(ts=NOW + offset_ms))
    assert isinstance(result, Decoded)
    assert result.ts_corrected is corrected
    assert result.ts_ms == (NOW if corrected else NOW + offset_ms)
    assert result.received_ms == NOW


# --- int64 (PROTOCOL.md § Value ranges, 1.1) --------------------------------------------------

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
OUT_OF_INT64 = [2**63, INT64_MIN - 1, 10**30, -(10**30), int("9" * 4000)]


def _with(path: str, value: int) -> tuple[dict[str, Any], str]:
    """A valid message with ``value`` at ``path`` (``kind:field`` or nested) and its kind."""
    fault = {"namespace": "gb24476", "code": 5}
    docs: dict[str, tuple[dict[str, Any], str]] = {
        "telemetry:controller_faults[].code": (
            telemetry(controller_faults=[{**fault, "code": value}]),
            "telemetry",
        ),
        "event:code": (event("fault", namespace="v", code=value, active=True), "event"),
        "event:seq": (event("alarm_button", pressed=True, seq=value), "event"),
        "event:ts": (event("alarm_button", pressed=True, ts=value), "event"),
        "event:v": (event("end_of_alarm", v=value), "event"),
        "status:v": ({"v": value, "state": "online"}, "status"),
    }
    if path in docs:
        return docs[path]
    kind, field = path.split(":")
    assert kind == "telemetry"
    return telemetry(**{field: value}), "telemetry"


INT_PATHS = [
    *(
        f"telemetry:{f}"
        for f in ("v", "ts", "seq", "floor_index", "position", "battery", "run_count", "rssi")
    ),
    "telemetry:controller_faults[].code",
    "event:code",
    "event:seq",
    "event:ts",
    "event:v",
    "status:v",
]


@pytest.mark.parametrize("value", OUT_OF_INT64, ids=["2^63", "-2^63-1", "1e30", "-1e30", "4000d"])
@pytest.mark.parametrize("path", INT_PATHS)
def test_integer_outside_int64_is_bad_value_in_every_field(path: str, value: int) -> None:
    """1.1: an integer InfluxDB cannot hold is rejected by the one decoder (security review
    #3, repro r16): alerts does not evaluate it and ingest never sends it to InfluxDB."""
    doc, kind = _with(path, value)
    result = rejected(dec(doc, kind), Reason.BAD_VALUE)
    assert result.lift_id == "L1"


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN])
@pytest.mark.parametrize("path", [p for p in INT_PATHS if not p.endswith(":v")])
def test_int64_bounds_themselves_are_valid(path: str, value: int) -> None:
    if path.endswith(":seq") and value < 0:
        value = 0  # seq is >= 0
    doc, kind = _with(path, value)
    result = dec(doc, kind)
    assert isinstance(result, Decoded), result


def test_int64_seq_line_is_storable() -> None:
    from ingest.points import to_line

    result = dec(telemetry(seq=INT64_MAX, run_count=INT64_MIN, ts=TS_MS))
    assert isinstance(result, Decoded)
    line = to_line(result).decode()
    assert f"seq={INT64_MAX}i" in line and f"run_count={INT64_MIN}i" in line


# --- size, JSON, version ----------------------------------------------------------------------


def test_payload_over_16_kib_is_too_large() -> None:
    msg = telemetry()
    msg["pad"] = "x" * MAX_PAYLOAD_BYTES
    rejected(dec(msg), Reason.TOO_LARGE)


def test_payload_just_under_the_limit_is_fine() -> None:
    msg = telemetry(pad="")
    base = len(json.dumps(msg).encode())
    msg["pad"] = "x" * (MAX_PAYLOAD_BYTES - base)
    assert len(json.dumps(msg).encode()) == MAX_PAYLOAD_BYTES
    assert isinstance(dec(msg), Decoded)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"v":1,}', b"\xff\xfe", b"{'v':1}"])
def test_invalid_json_is_bad_json(raw: bytes) -> None:
    rejected(dec(raw), Reason.BAD_JSON)


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"text"', b"null", b"true"])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    rejected(dec(raw), Reason.NOT_OBJECT)


@pytest.mark.parametrize("kind", ["telemetry", "event", "status"])
def test_other_protocol_versions_are_unsupported(kind: str) -> None:
    rejected(dec({"v": 2, "anything": True}, kind), Reason.UNSUPPORTED_VERSION)
    rejected(dec(telemetry(v=0), kind), Reason.UNSUPPORTED_VERSION)


# --- events -----------------------------------------------------------------------------------


def event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "seq": 7, "type": type_, **fields}


@pytest.mark.parametrize(
    ("payload", "cls"),
    [
        (event("alarm_button", pressed=True), AlarmButtonEvent),
        (event("fault", namespace="gb24476", code=4, active=True), FaultEvent),
        (event("fault", namespace="vendor", code="E12", active=False, text="x"), FaultEvent),
        (event("selftest", result="ok"), SelftestEvent),
        (event("selftest", result="fail", detail="no line"), SelftestEvent),
        (event("end_of_alarm"), EndOfAlarmEvent),
        (event("end_of_alarm", by="tech 12"), EndOfAlarmEvent),
    ],
)
def test_every_event_type(payload: dict[str, Any], cls: type) -> None:
    result = dec(payload, "event")
    assert isinstance(result, Decoded), result
    assert isinstance(result.body, cls)
    assert result.seq == 7


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (event("door_opened"), Reason.BAD_VALUE),
        ({"v": 1, "ts": TS, "seq": 1}, Reason.MISSING_FIELD),
        (event("alarm_button"), Reason.MISSING_FIELD),
        (event("alarm_button", pressed="yes"), Reason.BAD_TYPE),
        (event("fault", namespace="gb24476", code=4), Reason.MISSING_FIELD),
        (event("fault", namespace="gb24476", code=[4], active=True), Reason.BAD_TYPE),
        (event("selftest", result="maybe"), Reason.BAD_VALUE),
        (event("selftest", result="ok", seq=-3), Reason.BAD_VALUE),
    ],
)
def test_bad_events(payload: dict[str, Any], reason: Reason) -> None:
    rejected(dec(payload, "event"), reason)


# --- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["online", "offline"])
def test_status(state: str) -> None:
    result = dec({"v": 1, "state": state}, "status")
    assert isinstance(result, Decoded)
    assert isinstance(result.body, Status) and result.body.state == state
    assert result.ts_ms == NOW and result.seq is None


def test_bad_status() -> None:
    rejected(dec({"v": 1, "state": "sleeping"}, "status"), Reason.BAD_VALUE)
    rejected(dec({"v": 1}, "status"), Reason.MISSING_FIELD)


# --- long optional strings (PROTOCOL.md § Value ranges, 1.1) ----------------------------------

LONG = "安全回路断开：" + "门锁回路触点检测异常，" * 100  # 1,107 characters, ~3.3 KB UTF-8


@pytest.mark.parametrize(
    ("payload", "kind", "read"),
    [
        (telemetry(floor=LONG), "telemetry", lambda b: [b.floor]),
        (
            telemetry(controller_faults=[{"namespace": "gb24476", "code": 5, "text": LONG}]),
            "telemetry",
            lambda b: [b.controller_faults[0].text],
        ),
        (
            telemetry(controller_faults=[{"namespace": LONG, "code": LONG}]),
            "telemetry",
            lambda b: [b.controller_faults[0].namespace, b.controller_faults[0].code],
        ),
        (
            event("fault", namespace=LONG, code=LONG, active=True, text=LONG),
            "event",
            lambda b: [b.namespace, b.code, b.text],
        ),
        (event("selftest", result="fail", detail=LONG), "event", lambda b: [b.detail]),
        (event("end_of_alarm", by=LONG), "event", lambda b: [b.by]),
    ],
    ids=["floor", "fault_text", "fault_ns_code", "event_fault", "detail", "by"],
)
def test_long_optional_string_is_truncated_and_flagged_not_rejected(
    payload: dict[str, Any], kind: str, read: Any
) -> None:
    """1.1 / repro r12 (M1): a string over 1,024 characters never rejects the message; the
    first 1,024 characters are kept and the message is flagged ``truncated``."""
    raw = json.dumps(payload, ensure_ascii=False).encode()
    assert len(raw) < MAX_PAYLOAD_BYTES
    result = decode(f"lifts/L1/{kind}", raw, received_ms=NOW)
    assert isinstance(result, Decoded), result
    assert result.truncated is True
    for value in read(result.body):
        assert value == LONG[:1024]


def test_strings_up_to_1024_characters_are_kept_whole_and_not_flagged() -> None:
    text = "é" * 1024  # characters, not bytes
    result = dec(telemetry(floor=text, controller_faults=[{"namespace": "v", "code": text}]))
    assert isinstance(result, Decoded), result
    assert result.truncated is False
    assert isinstance(result.body, Telemetry)
    assert result.body.floor == text and result.body.controller_faults is not None
    assert result.body.controller_faults[0].code == text
    assert dec(telemetry()).truncated is False


def test_truncated_flag_is_stored() -> None:
    from ingest.points import to_line

    tel = dec(telemetry(floor="F" * 2000))
    assert "truncated=true" in to_line(tel).decode()
    assert f'floor="{"F" * 1024}"' in to_line(tel).decode()
    ev = dec(event("end_of_alarm", by="b" * 5000), "event")
    assert "truncated=true" in to_line(ev).decode()
    assert "truncated" not in to_line(dec(telemetry())).decode()


# --- never raises -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
FIELD_NAMES = st.sampled_from(
    [
        "v",
        "ts",
        "seq",
        "type",
        "service_mode",
        "car_status",
        "direction",
        "floor",
        "door_zone",
        "doors_closed",
        "speed",
        "controller_faults",
        "pressed",
        "state",
        "namespace",
        "code",
        "active",
        "result",
    ]
)
TOPICS = st.sampled_from(["lifts/L1/telemetry", "lifts/L1/event", "lifts/L1/status"]) | st.text()


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    result = decode(topic, payload)
    assert isinstance(result, Decoded | Rejection)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=TOPICS,
    doc=JSON
    | st.dictionaries(FIELD_NAMES, JSON)
    | st.builds(
        lambda base, extra: {**base, **extra},
        st.just(telemetry()),
        st.dictionaries(FIELD_NAMES, JSON, max_size=3),
    ),
)
def test_arbitrary_json_never_raises(topic: str, doc: Any) -> None:
    result = decode(topic, json.dumps(doc).encode())
    assert isinstance(result, Decoded | Rejection)
    if isinstance(result, Decoded) and isinstance(result.body, Telemetry):
        speed = result.body.speed
        assert speed is None or math.isfinite(speed)
        for name in ("seq", "floor_index", "position", "battery", "run_count", "rssi"):
            value = getattr(result.body, name)
            assert value is None or INT64_MIN <= value <= INT64_MAX
