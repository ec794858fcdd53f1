"""One attempt alone: the outcome of an HTTP answer, and network trouble as a Result."""

from __future__ import annotations

import socket

import pytest

from alerts.webhooks import ssrf
from alerts.webhooks.attempt import Result, attempt, build_client, classify
from liftwatch.clock import SystemClock
from liftwatch.store.webhooks import Delivery, Subscription


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "failed"),
        (400, "failed"),
        (404, "failed"),
        (410, "gone"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_classify(status: int, kind: str) -> None:
    assert classify(status) == kind


def _sub(url: str) -> Subscription:
    return Subscription(
        id="wh_1",
        company_id=None,
        url=url,
        description="",
        secret="whsec_" + "A" * 32,
        previous_secret=None,
        previous_until=None,
        secret_rotated_at=None,
        filters={},
        enabled=True,
        disabled_reason=None,
        created_by="t",
        created_at=0,
        updated_at=0,
    )


def _delivery() -> Delivery:
    return Delivery(
        id=1,
        webhook_id="msg_1",
        subscription_id="wh_1",
        outbox_id=None,
        alarm_id=None,
        event_type="webhook.test",
        payload="{}",
        status="delivering",
        attempts=1,
        next_attempt_at=None,
        first_attempt_at=0,
        last_attempt_at=0,
        last_status_code=None,
        last_error=None,
        created_at=0,
        delivered_at=None,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_is_a_retryable_result() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    async with build_client(4) as client:
        result = await attempt(
            client,
            _sub(url),
            _delivery(),
            private=ssrf.PrivateTargets.of(True),
            clock=SystemClock(),
            timeout_s=2.0,
        )
    assert result.status_code is None and result.retryable
    assert result.error is not None and result.error.startswith("connection error")


async def test_a_private_target_not_allowed_is_refused_without_a_request() -> None:
    async with build_client(4) as client:
        result = await attempt(
            client,
            _sub("http://127.0.0.1:9/hook"),
            _delivery(),
            private=ssrf.PrivateTargets.of(False),
            clock=SystemClock(),
        )
    assert result == Result(None, result.latency_ms, error=result.error)
    assert result.error is not None and result.error.startswith("refused:")
    assert not result.retryable
