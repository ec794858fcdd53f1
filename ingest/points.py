"""Decoded device messages → InfluxDB line protocol (schema: docs/influxdb-schema.md).

Pure functions, no I/O. Each field has one type forever (InfluxDB refuses a point whose field
changes type within a shard): ints are written as ``i`` integers, the float fields as floats
even when the JSON had an integer (``1`` → ``1.0``), ``code`` always as a string.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

import msgspec

from liftwatch.lineprotocol import FieldValue, line
from liftwatch.protocol import (
    AlarmButtonEvent,
    Decoded,
    EndOfAlarmEvent,
    FaultEvent,
    SelftestEvent,
    Status,
    Telemetry,
)

MEASUREMENT_STATE: Final = "lift_state"
MEASUREMENT_EVENT: Final = "lift_event"
MEASUREMENT_STATUS: Final = "lift_status"

_INT_FIELDS: Final = ("floor_index", "position", "battery", "run_count", "rssi")
_FLOAT_FIELDS: Final = ("speed", "load", "total_running_time", "machine_room_temp")
_PLAIN_FIELDS: Final = (
    "service_mode",
    "car_status",
    "direction",
    "floor",
    "door_zone",
    "doors_closed",
    "door_state",
    "passenger_present",
    "safety_circuit",
    "door_lock_circuit",
    "up_limit",
    "down_limit",
    "power_source",
    "alarm_button",
)
_json: Final = msgspec.json.Encoder()
_EVENT_TYPE: Final[dict[type, str]] = {
    AlarmButtonEvent: "alarm_button",
    FaultEvent: "fault",
    SelftestEvent: "selftest",
    EndOfAlarmEvent: "end_of_alarm",
}


def telemetry_fields(body: Telemetry) -> dict[str, FieldValue | None]:
    fields: dict[str, FieldValue | None] = {"seq": body.seq}
    for name in _PLAIN_FIELDS:
        fields[name] = getattr(body, name)
    for name in _INT_FIELDS:
        fields[name] = getattr(body, name)
    for name in _FLOAT_FIELDS:
        value = getattr(body, name)
        fields[name] = None if value is None else float(value)
    if body.controller_faults is not None:
        fields["controller_faults"] = _json.encode(body.controller_faults).decode()
    return fields


def event_fields(
    body: AlarmButtonEvent | FaultEvent | SelftestEvent | EndOfAlarmEvent,
) -> dict[str, FieldValue | None]:
    fields: dict[str, FieldValue | None] = {"seq": body.seq}
    if isinstance(body, AlarmButtonEvent):
        fields["pressed"] = body.pressed
    elif isinstance(body, FaultEvent):
        fields["namespace"] = body.namespace
        fields["code"] = str(body.code)
        fields["active"] = body.active
        fields["text"] = body.text
    elif isinstance(body, SelftestEvent):
        fields["result"] = body.result
        fields["detail"] = body.detail
    else:
        fields["by"] = body.by
    return fields


def to_line(msg: Decoded) -> bytes:
    """One point for one decoded message. Raises ``ValueError`` if it cannot be encoded."""
    body = msg.body
    if isinstance(body, Telemetry):
        fields = telemetry_fields(body)
        measurement, tags = MEASUREMENT_STATE, {"lift_id": msg.lift_id}
    elif isinstance(body, Status):
        fields = {"state": body.state, "online": body.state == "online"}
        return line(MEASUREMENT_STATUS, {"lift_id": msg.lift_id}, fields, msg.received_ms).encode()
    else:
        fields = event_fields(body)
        measurement, tags = (
            MEASUREMENT_EVENT,
            {"lift_id": msg.lift_id, "type": _EVENT_TYPE[type(body)]},
        )
    if msg.ts_corrected:
        fields["ts_corrected"] = True
    # Lone surrogates (JSON "\ud800") are not UTF-8: replace rather than fail the batch.
    return line(measurement, tags, fields, msg.ts_ms).encode("utf-8", "replace")


class Deduplicator:
    """Remembers the last ``capacity`` keys (lift, seq, ts as sent) to drop QoS 1 redeliveries.

    A plain dict keeps insertion order, so evicting the oldest key is ``next(iter(...))``."""

    def __init__(self, capacity: int = 500_000) -> None:
        self.capacity = capacity
        self._seen: dict[Hashable, None] = {}

    def first_time(self, key: Hashable) -> bool:
        seen = self._seen
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > self.capacity:
            del seen[next(iter(seen))]
        return True


def dedup_key(msg: Decoded) -> tuple[str, int, int | str] | None:
    body = msg.body
    if isinstance(body, Status):
        return None
    return (msg.lift_id, body.seq, body.ts)
