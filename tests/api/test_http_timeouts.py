"""Unfinished HTTP requests are dropped (security review #11: 2,000 connections with unfinished
headers stayed open 71 s). A real uvicorn on a free port, raw sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from api.httpserver import HEADER_TIMEOUT_S, GuardedH11Protocol, server_options
from liftwatch.localservices import free_port
from liftwatch.settings import Settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN
from tests.support.harness import eventually

pytestmark = pytest.mark.integration


class Quick(GuardedH11Protocol):
    """The same guard with short deadlines, so the suite does not wait for the real ones."""

    header_timeout_s = 1.0
    body_idle_timeout_s = 1.0
    body_timeout_s = 3.0


@pytest.fixture
async def port(settings: Settings, db: Database) -> AsyncIterator[int]:
    app = create_app(settings, db=db)
    port = free_port()
    options = server_options(host="127.0.0.1", port=port, log_level="warning") | {"http": Quick}
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", **options))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn started")
    yield port
    server.should_exit = True
    await task


async def closed_within(port: int, send: list[bytes], within: float, gap: float = 0.0) -> bytes:
    """Connect, send the pieces (``gap`` s apart), then read until the server closes; fails if
    it has not closed within ``within`` s of the last piece. Returns what the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, piece in enumerate(send):
            if i and gap:
                await asyncio.sleep(gap)
            writer.write(piece)
            await writer.drain()
        got = b""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"connection still open after {within} s; got {got[:200]!r}"
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return got
            got += chunk
    finally:
        writer.close()


async def trickle(port: int, head: bytes, piece: bytes, gap: float, give_up: float) -> float:
    """Send ``head``, then ``piece`` every ``gap`` s (so the connection is never idle for long)
    until the server closes; the seconds that took. Fails if it is still open after
    ``give_up`` s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(head)
        while time.monotonic() - started < give_up:
            try:
                if await asyncio.wait_for(reader.read(65536), gap) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - started
        raise AssertionError(f"a trickled request was still open after {give_up} s")
    finally:
        writer.close()


async def test_silent_connection_is_closed(port: int) -> None:
    started = time.monotonic()
    got = await closed_within(port, [], within=3)
    assert time.monotonic() - started >= 0.9
    assert got.startswith(b"HTTP/1.1 408 ")


async def test_unfinished_request_head_is_answered_408_and_closed(port: int) -> None:
    got = await closed_within(port, [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "], within=3)
    assert got.startswith(b"HTTP/1.1 408 ") and b"connection: close" in got


async def test_trickled_request_head_is_bounded_in_total(port: int) -> None:
    # A header byte every 0.3 s keeps the connection busy but never finishes the head.
    took = await trickle(port, b"GET /healthz HTTP/1.1\r\n", b"X", gap=0.3, give_up=5)
    assert 0.9 <= took < 2  # header_timeout_s = 1, from the first byte


async def test_unfinished_body_is_dropped(port: int) -> None:
    head = (
        b"POST /api/v1/companies HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\nauthorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    await closed_within(port, [head, b'{"company_id": '], within=3)
    assert 0.9 <= time.monotonic() - started < 3


async def test_trickled_body_is_bounded_in_total(port: int) -> None:
    head = (
        b"POST /api/v1/companies HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\nauthorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    took = await trickle(port, head, b" ", gap=0.5, give_up=8)  # never idle for 1 s
    assert 2.9 <= took < 4.5  # body_timeout_s = 3


async def test_complete_requests_are_served_and_kept_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):  # the same connection twice, the head in two pieces each time
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            await writer.drain()
            await asyncio.sleep(0.5)  # under the 1 s head deadline
            writer.write(b"Host: x\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 3)
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            await asyncio.sleep(0.8)  # idle between requests: the keep-alive timer's business
    finally:
        writer.close()


def test_serve_uses_the_guarded_protocol() -> None:
    from liftwatch.cmd.serve import _api_server

    server = _api_server(object(), "127.0.0.1", 0, "INFO")
    assert server.config.http is GuardedH11Protocol
    assert server.config.timeout_keep_alive <= 10 and HEADER_TIMEOUT_S <= 10


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "LIFTWATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIFTWATCH_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftwatch", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "liftwatch api exited"
            assert time.monotonic() < deadline, "liftwatch api did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


def test_liftwatch_api_drops_unfinished_head_within_its_deadline(api_process: int) -> None:
    with socket.create_connection(("127.0.0.1", api_process), timeout=HEADER_TIMEOUT_S + 3) as s:
        started = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        got = b""
        while chunk := s.recv(65536):  # socket.timeout (a failure) if it stays open
            got += chunk
    assert got.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT_S - 0.5 <= time.monotonic() - started <= HEADER_TIMEOUT_S + 2
