"""Our signatures, checked by the independent ``standardwebhooks`` implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from alerts.webhooks import signing


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_new_secret_has_prefix_and_at_least_24_random_bytes() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) >= 24


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.new_secret()
    body = '{"type":"alarm.raised","data":{"name":{"zh":"困人"}}}'.encode()
    ts = int(time.time())
    header = signing.signature_header([secret], "msg_1", ts, body)
    assert header.startswith("v1,") and " " not in header
    Webhook(secret).verify(body, _headers("msg_1", ts, header))


def test_tampered_body_or_id_fails_standardwebhooks() -> None:
    secret = signing.new_secret()
    ts = int(time.time())
    header = signing.signature_header([secret], "msg_1", ts, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":1}', _headers("msg_1", ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", _headers("msg_2", ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(b"{}", _headers("msg_1", ts, header))


def test_rotation_header_carries_both_signatures_each_verifiable() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    ts = int(time.time())
    header = signing.signature_header([new, old], "msg_9", ts, b"[]")
    assert len(header.split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(b"[]", _headers("msg_9", ts, header))
        assert signing.verify(secret, "msg_9", ts, b"[]", header)
    assert not signing.verify(signing.new_secret(), "msg_9", ts, b"[]", header)


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "whsec_", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()],
)
def test_bad_secret_is_refused(bad: str) -> None:
    with pytest.raises(signing.SecretError):
        signing.secret_key(bad)
