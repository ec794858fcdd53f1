"""The MQTT packet codec (pure): the encodings a QoS 1 subscriber sends and the few decoding
helpers its connection needs. No I/O; the test and bench publishers build their packets with
:func:`packet` and :func:`encode_str` too."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SESSION_EXPIRY_S: Final = 7 * 24 * 3600  # MQTT 5: keep our queue through a week of downtime

# Control packet types (fixed header, high nibble).
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
_PUBACK_PACK: Final = struct.Struct(">BBH").pack
PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"
_SUBSCRIBE_ID: Final = 1


@dataclass(slots=True)
class RawMessage:
    """One PUBLISH as received. ``received_ms`` is the wall-clock time of the socket read.

    ``retain`` is the PUBLISH retain flag (fixed header bit 0). A broker sets it only on a
    retained message it sends because of a (re)subscription — a message forwarded live to an
    existing subscription has it cleared (MQTT 3.1.1 § 3.3.1.3; MQTT 5 without
    retain-as-published) — so ``retain=True`` means "an old message replayed", not news
    (PROTOCOL.md § Value ranges, 1.1: a retained status)."""

    topic: str
    payload: bytes
    received_ms: int
    qos: int
    mid: int
    retain: bool = False


# --- encoding ------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """A Variable Byte Integer (MQTT 3.1.1 § 2.2.3, MQTT 5 § 1.5.5)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_str(text: str) -> bytes:
    """A UTF-8 string with its 2-byte length prefix."""
    data = text.encode()
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    """A whole control packet: the fixed header byte ``first``, the remaining length, ``body``."""
    return bytes((first,)) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    protocol: str,
    keepalive_s: int,
    username: str | None,
    password: str | None,
    receive_maximum: int,
) -> bytes:
    """CONNECT with clean session / clean start **off**: the broker keeps our subscription
    and queues QoS 1 messages while we are away."""
    v5 = protocol == "5"
    flags = 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    head = encode_str("MQTT") + bytes((5 if v5 else 4, flags)) + keepalive_s.to_bytes(2, "big")
    if v5:
        props = (
            b"\x11"
            + SESSION_EXPIRY_S.to_bytes(4, "big")
            + b"\x21"
            + min(receive_maximum, 0xFFFF).to_bytes(2, "big")
        )
        head += varint(len(props)) + props
    body = head + encode_str(client_id)
    if username is not None:
        body += encode_str(username)
        if password is not None:
            body += encode_str(password)
    return packet(CONNECT << 4, body)


def subscribe_packet(filters: Sequence[str], *, protocol: str) -> bytes:
    body = _SUBSCRIBE_ID.to_bytes(2, "big")
    if protocol == "5":
        body += b"\x00"  # no properties
    for topic_filter in filters:
        # QoS 1. MQTT 5 options: retain handling 1 = send retained messages only when the
        # subscription is new, so a reconnect does not store every lift's status again.
        body += encode_str(topic_filter) + (b"\x11" if protocol == "5" else b"\x01")
    return packet((SUBSCRIBE << 4) | 0x02, body)


def puback_bytes(messages: Sequence[RawMessage]) -> bytes:
    """The PUBACKs of a batch, in order. MQTT 5 allows the 2-byte form for reason 0x00."""
    pack = _PUBACK_PACK
    return b"".join([pack(0x40, 2, m.mid) for m in messages if m.qos == 1])


# --- decoding ------------------------------------------------------------------------------

_CONNACK_V3: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def connack_error(code: int, v5: bool) -> str | None:
    """Why a CONNACK with return/reason ``code`` refused us, or None if it accepted."""
    if code == 0:
        return None
    if not v5:
        return _CONNACK_V3.get(code, f"refused with code {code}")
    names = {0x86: "bad user name or password", 0x87: "not authorised", 0x85: "client id invalid"}
    return names.get(code, f"refused with reason code 0x{code:02x}")


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The Variable Byte Integer at ``buf[pos:]`` and the position after it."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
