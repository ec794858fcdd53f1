"""A host name with several addresses: the dispatcher moves to the next one when the first
refuses the connection *or never answers it* (review m9: a blackholed first address used to
end the attempt as a timeout, every time, though the second address was listening).

The blackholed address is real: a socket on 127.0.0.2 listening with a backlog of 0 whose
queue is already full, so the kernel drops further SYNs and ``connect`` times out. The name's
resolution is injected at the resolver function (``ssrf.resolve``), returning that address
first and the real receiver's second, as a DNS answer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterator

import pytest

from alerts.webhooks import ssrf
from alerts.webhooks.dispatcher import Dispatcher
from liftwatch.store import webhooks as store
from simulator.receiver import RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded

pytestmark = pytest.mark.integration


@pytest.fixture
def blackhole(receiver: RecordingReceiver) -> Iterator[str]:
    """127.0.0.2 on the receiver's port, accepting nothing (its SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", receiver.port))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.2", receiver.port))
        fillers.append(c)
    yield "127.0.0.2"
    for c in fillers:
        c.close()
    listener.close()


async def test_connect_timeout_moves_to_the_next_address(
    seeded: Seeded,
    receiver: RecordingReceiver,
    blackhole: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        assert host == "hooks.example.test"
        return [ipaddress.ip_address(blackhole), ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    sub = seeded.subscribe(f"http://hooks.example.test:{receiver.port}/hook")
    d = Dispatcher(seeded.db, allow_private=True, poll_interval_s=0.2, attempt_timeout_s=2.0)
    task = asyncio.create_task(d.run())
    try:
        t0 = time.monotonic()
        seeded.raise_alarm(seeded.lift_a, "co-a")
        d.notify()
        (got,) = await asyncio.to_thread(receiver.wait_for, 1, 5)
        assert got.headers["host"] == f"hooks.example.test:{receiver.port}"
        # The first address got half the attempt's time to connect, the second the rest.
        assert 0.8 <= time.monotonic() - t0 < 2.5

        def delivered() -> bool:
            (dl,) = store.list_deliveries(seeded.db, sub.id)
            return dl.status == "delivered"

        await eventually(delivered, 5, what="delivered on its first attempt")
        (dl,) = store.list_deliveries(seeded.db, sub.id)
        assert dl.attempts == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
