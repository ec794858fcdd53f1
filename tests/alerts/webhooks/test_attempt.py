"""One attempt alone: the outcome of an HTTP answer, and network trouble as a Result."""

from __future__ import annotations

import socket

import pytest

from alerts.webhooks import ssrf
from alerts.webhooks.attempt import Result, attempt, build_client, classify
from liftwatch.clock import SystemClock
from tests.support.webhooks import a_delivery, a_subscription


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


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_is_a_retryable_result() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    async with build_client(4) as client:
        result = await attempt(
            client,
            a_subscription(url=url),
            a_delivery(alarm=None),
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
            a_subscription(url="http://127.0.0.1:9/hook"),
            a_delivery(alarm=None),
            private=ssrf.PrivateTargets.of(False),
            clock=SystemClock(),
        )
    assert result == Result(None, result.latency_ms, error=result.error)
    assert result.error is not None and result.error.startswith("refused:")
    assert not result.retryable
