"""Standard Webhooks signing (https://www.standardwebhooks.com/, WEBHOOKS.md § Request).

A secret is ``whsec_`` + base64 of random bytes; the HMAC key is the decoded part. The
signature of one attempt is ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
During a secret rotation the header carries one signature per secret, space-separated, so a
receiver verifies with whichever secret it has.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Final

PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32  # the spec asks for at least 24
MIN_SECRET_BYTES: Final = 24


class SecretError(ValueError):
    """A string that is not a ``whsec_`` secret of at least 24 bytes."""


def new_secret() -> str:
    """A fresh secret, to be shown to the subscriber once."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(PREFIX):
        raise SecretError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("a webhook secret is 'whsec_' followed by base64") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(f"a webhook secret holds at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for message ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret (current one first)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any ``v1`` signature in ``header`` matches (for receivers and tests)."""
    expected = sign(secret, msg_id, timestamp, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in header.split(" ")
        if candidate.startswith("v1,")
    )
