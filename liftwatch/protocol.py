"""The one implementation of the device protocol (../shared/spec/PROTOCOL.md, version 1 with
its version 1.1 refinements: int64 integers, long optional strings truncated and flagged).

Every part (ingest, alerts, the simulator's self-check, ``liftwatch decode``) decodes device
messages through :func:`decode`, so no two parts can disagree on what a message means.

:func:`decode` never raises: it returns either a :class:`Decoded` message or a
:class:`Rejection` carrying an enumerated :class:`Reason` and a human-readable detail.

Models are ``msgspec`` structs: ``bench/decoder_cost.py`` measured msgspec at several times
the speed of pydantic v2 + orjson for the same rules (figures in docs/decoder.md).
"""

from __future__ import annotations

import enum
import json
import re
import time
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from liftwatch import clock

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 16 * 1024
FUTURE_TOLERANCE_MS: Final = 5 * 60 * 1000
PAST_TOLERANCE_MS: Final = 7 * 24 * 3600 * 1000
LIFT_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")

ServiceMode = Literal[
    "normal",
    "inspection",
    "out_of_service",
    "fire_return",
    "firefighter",
    "emergency_power",
    "earthquake",
    "unknown",
]
CarStatus = Literal["stopped", "running"]
Direction = Literal["none", "up", "down"]
DoorState = Literal["open", "opening", "closing", "closed", "locked", "not_fully_closed", "unknown"]
Circuit = Literal["closed", "open"]
PowerSource = Literal["mains", "battery", "other"]
Kind = Literal["telemetry", "event", "status"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# PROTOCOL.md § Value ranges (1.1): integers are 64-bit signed (what InfluxDB stores); any
# other integer is ``bad_value`` here, in the one decoder, so ingest and alerts agree and no
# InfluxDB batch is refused (and bisected) because of it.
Int = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
# PROTOCOL.md § Value ranges (1.1): optional strings have no length limit of their own (the
# 16 KiB message limit bounds them); storage keeps the first MAX_TEXT_CHARS characters and
# flags the record ``truncated``. A long string never makes a message rejected.
Text = str
MAX_TEXT_CHARS: Final = 1024


class Reason(enum.StrEnum):
    """Why a message was rejected. Stable strings: they appear in dead-letters and metrics."""

    BAD_TOPIC = "bad_topic"
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_VALUE = "bad_value"


class ControllerFault(msgspec.Struct, frozen=True):
    namespace: Text
    code: Int | Text
    text: Text | None = None


class Telemetry(msgspec.Struct, kw_only=True):
    """A full state snapshot (PROTOCOL.md § Telemetry). Unknown fields are dropped on decode."""

    v: Int
    ts: Int | str
    seq: NonNegInt
    service_mode: ServiceMode
    car_status: CarStatus
    direction: Direction
    floor: Text | None
    door_zone: bool
    doors_closed: bool
    floor_index: Int | None = None
    door_state: DoorState | None = None
    passenger_present: bool | None = None
    speed: float | None = None
    position: Int | None = None
    load: float | None = None
    safety_circuit: Circuit | None = None
    door_lock_circuit: Circuit | None = None
    up_limit: bool | None = None
    down_limit: bool | None = None
    power_source: PowerSource | None = None
    alarm_button: bool | None = None
    battery: Int | None = None
    controller_faults: list[ControllerFault] | None = None
    total_running_time: float | None = None
    run_count: Int | None = None
    machine_room_temp: float | None = None
    rssi: Int | None = None


class _EventBase(msgspec.Struct, kw_only=True, tag_field="type"):
    v: Int
    ts: Int | str
    seq: NonNegInt


class AlarmButtonEvent(_EventBase, tag="alarm_button"):
    pressed: bool


class FaultEvent(_EventBase, tag="fault"):
    namespace: Text
    code: Int | Text
    active: bool
    text: Text | None = None


class SelftestEvent(_EventBase, tag="selftest"):
    result: Literal["ok", "fail"]
    detail: Text | None = None


class EndOfAlarmEvent(_EventBase, tag="end_of_alarm"):
    by: Text | None = None


Event = AlarmButtonEvent | FaultEvent | SelftestEvent | EndOfAlarmEvent


class Status(msgspec.Struct, kw_only=True):
    v: Int
    state: Literal["online", "offline"]


class _VersionOnly(msgspec.Struct):
    v: object = None


class Decoded(msgspec.Struct, kw_only=True):
    """A valid message. ``ts_ms`` is the normalised sample time (epoch ms, UTC)."""

    lift_id: str
    kind: Kind
    body: Telemetry | Event | Status
    ts_ms: int
    received_ms: int
    ts_corrected: bool = False
    # An optional string (floor, fault namespace/code/text, selftest detail, end_of_alarm
    # by) was longer than MAX_TEXT_CHARS and has been cut to its first MAX_TEXT_CHARS.
    truncated: bool = False
    # Delivered by the broker from its retained store on (re)subscription, not sent now
    # (set by the consumer from the PUBLISH retain flag; PROTOCOL.md 1.1: a retained status
    # is not news).
    retained: bool = False

    @property
    def seq(self) -> int | None:
        body = self.body
        return None if isinstance(body, Status) else body.seq


class Rejection(msgspec.Struct, kw_only=True, frozen=True):
    reason: Reason
    detail: str
    topic: str
    lift_id: str | None = None


# Annotated: mypy 2 joins the three Decoder[T] values to ``object`` otherwise.
_DECODERS: Final[dict[str, msgspec.json.Decoder[Telemetry | Event | Status]]] = {
    "telemetry": msgspec.json.Decoder(Telemetry),
    "event": msgspec.json.Decoder(Event),
    "status": msgspec.json.Decoder(Status),
}
_VERSION_DECODER: Final = msgspec.json.Decoder(_VersionOnly)
_NON_FINITE: Final = re.compile(rb"(?<![\"A-Za-z])-?(NaN|Infinity)(?![\"A-Za-z])")


# parse_topic's cache (security review #10: a cache bounded by count let 1,500 distinct 60 KB
# topics hold 330 MB). Only *valid* topics are cached — a lift id is at most 64 characters, so
# such a topic is short — and never one over TOPIC_CACHE_MAX_CHARS; the total is bounded by
# an estimate of the bytes held, and the cache starts afresh when it would exceed it.
TOPIC_CACHE_MAX_CHARS: Final = 256
TOPIC_CACHE_MAX_BYTES: Final = 64 << 20
_ENTRY_OVERHEAD: Final = 240  # dict slot, key tuple, result tuple, str headers (CPython 3.11)
_topic_cache: dict[tuple[str, str], tuple[str, Kind]] = {}
_topic_cache_bytes = 0


def topic_cache_bytes() -> int:
    """The estimated bytes held by :func:`parse_topic`'s cache (for tests and metrics)."""
    return _topic_cache_bytes


def parse_topic(topic: str, prefix: str = "lifts") -> tuple[str, Kind] | Rejection:
    """Split ``{prefix}/{lift_id}/{kind}``; anything else is a ``bad_topic`` rejection.

    Cached: a fleet sends the same few topics per lift over and over. The cache holds valid
    topics of at most TOPIC_CACHE_MAX_CHARS characters, TOPIC_CACHE_MAX_BYTES in all, so no
    flood of topics, long or many, can grow memory beyond that."""
    global _topic_cache_bytes
    key = (topic, prefix)
    hit = _topic_cache.get(key)
    if hit is not None:
        return hit
    parsed = _parse_topic(topic, prefix)
    if isinstance(parsed, Rejection) or len(topic) > TOPIC_CACHE_MAX_CHARS:
        return parsed
    cost = _ENTRY_OVERHEAD + 2 * (len(topic) + len(prefix)) + len(parsed[0])
    if _topic_cache_bytes + cost > TOPIC_CACHE_MAX_BYTES:
        _topic_cache.clear()
        _topic_cache_bytes = 0
    _topic_cache[key] = parsed
    _topic_cache_bytes += cost
    return parsed


def _parse_topic(topic: str, prefix: str) -> tuple[str, Kind] | Rejection:
    head = prefix + "/"
    if not topic.startswith(head):
        return Rejection(
            reason=Reason.BAD_TOPIC, topic=topic, detail=f"topic must start with {head!r}"
        )
    parts = topic[len(head) :].split("/")
    if len(parts) != 2:
        return Rejection(
            reason=Reason.BAD_TOPIC,
            topic=topic,
            detail=f"topic must be {prefix}/{{lift_id}}/{{telemetry|event|status}}",
        )
    lift_id, kind = parts
    if not LIFT_ID_RE.fullmatch(lift_id):
        return Rejection(
            reason=Reason.BAD_TOPIC,
            topic=topic,
            detail="lift_id must match ^[A-Za-z0-9._-]{1,64}$",
        )
    if kind == "telemetry":
        return lift_id, "telemetry"
    if kind == "event":
        return lift_id, "event"
    if kind == "status":
        return lift_id, "status"
    return Rejection(
        reason=Reason.BAD_TOPIC,
        topic=topic,
        lift_id=lift_id,
        detail=f"unknown message kind {kind[:40]!r}: expected telemetry, event or status",
    )


_RFC3339: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,20})?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_ts(ts: int | str) -> int | None:
    """RFC 3339 with offset (§ 5.6: ``T``/``Z`` in either case, any fraction digits, a leap
    second ``:60`` counted as the next second), or integer epoch milliseconds (any value: the
    time window in :func:`decode` replaces one that is far off), to epoch ms; None if invalid."""
    if isinstance(ts, int):
        return ts
    m = _RFC3339.fullmatch(ts)
    if m is None:
        return None
    date, hour, minute, second, fraction, offset = m.groups()
    leap = second == "60"
    text = f"{date}T{hour}:{minute}:{'59' if leap else second}{(fraction or '')[:7]}"
    try:
        dt = datetime.fromisoformat(text + ("+00:00" if offset in "Zz" else offset))
    except ValueError:  # e.g. month 13, hour 25, offset +99:00
        return None
    return round(dt.timestamp() * 1000) + (1000 if leap else 0)


def decode(
    topic: str,
    payload: bytes,
    *,
    prefix: str = "lifts",
    received_ms: int | None = None,
) -> Decoded | Rejection:
    """Decode one MQTT message. Never raises."""
    try:
        return _decode(topic, payload, prefix, received_ms)
    except Exception as exc:
        return Rejection(
            reason=Reason.BAD_VALUE, topic=str(topic)[:256], detail=f"undecodable: {exc!r}"[:200]
        )


def _decode(
    topic: str, payload: bytes, prefix: str, received_ms: int | None
) -> Decoded | Rejection:
    parsed = parse_topic(topic, prefix)
    if isinstance(parsed, Rejection):
        return parsed
    lift_id, kind = parsed
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(
            reason=Reason.TOO_LARGE,
            topic=topic,
            lift_id=lift_id,
            detail=f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}",
        )
    try:
        body = _DECODERS[kind].decode(payload)
    except msgspec.ValidationError as exc:
        return _classify_validation(topic, lift_id, payload, str(exc))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _classify_malformed(topic, lift_id, payload, exc)

    if body.v != PROTOCOL_VERSION:
        return _unsupported(topic, lift_id, body.v)
    now_ms = received_ms if received_ms is not None else clock.now_ms()
    truncated = _truncate_strings(body)
    if isinstance(body, Status):
        return Decoded(lift_id=lift_id, kind=kind, body=body, ts_ms=now_ms, received_ms=now_ms)
    ts_ms = parse_ts(body.ts)
    if ts_ms is None:
        return Rejection(
            reason=Reason.BAD_VALUE,
            topic=topic,
            lift_id=lift_id,
            detail="ts must be RFC 3339 with an offset or integer epoch milliseconds - at `$.ts`",
        )
    corrected = False
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS or ts_ms < now_ms - PAST_TOLERANCE_MS:
        ts_ms, corrected = now_ms, True
    return Decoded(
        lift_id=lift_id,
        kind=kind,
        body=body,
        ts_ms=ts_ms,
        received_ms=now_ms,
        ts_corrected=corrected,
        truncated=truncated,
    )


def _cut(text: str) -> str:
    return text[:MAX_TEXT_CHARS]


def _long(text: str | int | None) -> bool:
    return isinstance(text, str) and len(text) > MAX_TEXT_CHARS


def _truncate_strings(body: Telemetry | Event | Status) -> bool:
    """Cut every optional string over MAX_TEXT_CHARS in place (1.1); True if any was cut.
    The usual message has short strings: one length check per string field."""
    if isinstance(body, Telemetry):
        cut = False
        floor = body.floor
        if floor is not None and len(floor) > MAX_TEXT_CHARS:
            body.floor = _cut(floor)
            cut = True
        faults = body.controller_faults
        if faults:
            for i, fault in enumerate(faults):
                if _long(fault.namespace) or _long(fault.code) or _long(fault.text):
                    faults[i] = ControllerFault(
                        namespace=_cut(fault.namespace),
                        code=_cut(fault.code) if isinstance(fault.code, str) else fault.code,
                        text=None if fault.text is None else _cut(fault.text),
                    )
                    cut = True
        return cut
    if isinstance(body, FaultEvent):
        if _long(body.namespace) or _long(body.code) or _long(body.text):
            body.namespace = _cut(body.namespace)
            if isinstance(body.code, str):
                body.code = _cut(body.code)
            if body.text is not None:
                body.text = _cut(body.text)
            return True
        return False
    if isinstance(body, SelftestEvent):
        if body.detail is not None and len(body.detail) > MAX_TEXT_CHARS:
            body.detail = _cut(body.detail)
            return True
        return False
    if isinstance(body, EndOfAlarmEvent) and body.by is not None and _long(body.by):
        body.by = _cut(body.by)
        return True
    return False


def _unsupported(topic: str, lift_id: str, v: object) -> Rejection:
    return Rejection(
        reason=Reason.UNSUPPORTED_VERSION,
        topic=topic,
        lift_id=lift_id,
        detail=f"protocol version {str(v)[:20]!r} is not supported; this server speaks v1",
    )


def _classify_validation(topic: str, lift_id: str, payload: bytes, msg: str) -> Rejection:
    # A message from a future protocol version may fail validation for reasons that only
    # make sense in that version: say "unsupported_version" rather than "missing_field".
    try:
        version = _VERSION_DECODER.decode(payload).v
    except (msgspec.ValidationError, msgspec.DecodeError):
        version = PROTOCOL_VERSION
    # An integer out of the int64 range is bad_value (1.1), also in `v`.
    is_int = (
        isinstance(version, int)
        and not isinstance(version, bool)
        and INT64_MIN <= version <= INT64_MAX
    )
    if (version is None or is_int) and version != PROTOCOL_VERSION:
        if version is None:
            return Rejection(
                reason=Reason.MISSING_FIELD,
                topic=topic,
                lift_id=lift_id,
                detail="Object missing required field `v`",
            )
        return _unsupported(topic, lift_id, version)
    if msg.startswith("Expected `object`, got") and " - at " not in msg:
        reason = Reason.NOT_OBJECT
        msg = "payload must be a JSON object; " + msg
    elif msg.startswith("Object missing required field"):
        reason = Reason.MISSING_FIELD
    elif msg.startswith("Expected `") and ("`, got `" in msg):
        reason = Reason.BAD_TYPE
    else:
        # Invalid enum value, constraint (>= 0, length), number out of range (1e999).
        reason = Reason.BAD_VALUE
    return Rejection(reason=reason, topic=topic, lift_id=lift_id, detail=msg[:300])


def _classify_malformed(topic: str, lift_id: str, payload: bytes, exc: Exception) -> Rejection:
    if isinstance(exc, UnicodeDecodeError):
        return Rejection(
            reason=Reason.BAD_JSON, topic=topic, lift_id=lift_id, detail="payload is not UTF-8"
        )
    if _NON_FINITE.search(payload):
        # NaN/Infinity are not JSON; devices built on JavaScript or Python emit them anyway.
        try:
            json.loads(payload)
        except ValueError:
            pass
        else:
            return Rejection(
                reason=Reason.BAD_VALUE,
                topic=topic,
                lift_id=lift_id,
                detail="NaN and Infinity are not allowed as numbers",
            )
    return Rejection(reason=Reason.BAD_JSON, topic=topic, lift_id=lift_id, detail=str(exc)[:300])


def format_ts(ts_ms: int) -> str:
    """Epoch ms to RFC 3339 UTC with milliseconds, as the webhooks and API speak it."""
    secs, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"
