"""The HTTP server settings of ``liftwatch api`` and ``liftwatch serve`` (uvicorn, h11).

Uvicorn times out only idle keep-alive connections (``timeout_keep_alive``, after a response);
a connection that opens and sends nothing, an unfinished request head or an unfinished body
stays open for ever (security review #11: 2,000 connections with unfinished headers stayed
open 71 s, and at the FD limit they made API requests fail and delayed an alarm webhook).
:class:`GuardedH11Protocol` adds what uvicorn lacks, per connection:

- the request head (request line and headers) must be complete within
  :data:`HEADER_TIMEOUT_S` of the connection opening, or of the first byte of the next request
  on a kept-alive connection; else the server answers ``408`` and closes;
- while a request body is being received, no more than :data:`BODY_IDLE_TIMEOUT_S` may pass
  without data (not counted while the server itself has paused reading because the app has
  not taken what it got), and the whole body must arrive within :data:`BODY_TIMEOUT_S`; else
  the connection is closed (the app sees a disconnect).

Time the app spends answering is not limited here. The number of connections is not
limited either: behind a reverse proxy, let it cap connections per client; without one, the
FD limit (the systemd unit's ``LimitNOFILE=65536``) is the cap (docs/deploy.md).

The access log never shows the values of sensitive query parameters (:func:`redact_query`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote_plus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.auth import TOKEN_PREFIX

HEADER_TIMEOUT_S = 5.0
BODY_IDLE_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 120.0  # 32 MiB (the import limit) at 280 KB/s
KEEP_ALIVE_S = 5
GRACEFUL_SHUTDOWN_S = 3  # then still-running responses are cancelled (< 5 s stop, issue 17)
MAX_HEADER_BYTES = 16 * 1024  # h11's limit for an incomplete request head (its default)

log = logging.getLogger("liftwatch.api")

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest head incomplete\n"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for the request head and body (module doc)."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None
        self._guarding: str | None = None  # "head" or "body"
        self._body_deadline = 0.0

    # --- the transport's events ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update()

    def on_response_complete(self) -> None:
        self._cancel()
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle time
        if self.conn.their_state is not h11.IDLE:  # a pipelined request is already in
            self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    # --- the guard ------------------------------------------------------------------------

    def _update(self) -> None:
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        if state is h11.IDLE:  # bytes of a request head, not all of it yet
            if self._guarding != "head":
                self._watch_head()
        elif state is h11.SEND_BODY:
            if self._guarding != "body":
                self._body_deadline = self.loop.time() + self.body_timeout_s
            self._watch_body()
        else:  # the request is in (or the connection is ending): the app's time is its own
            self._cancel()

    def _watch_head(self) -> None:
        self._cancel()
        self._guarding = "head"
        self._guard = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _watch_body(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
        self._guarding = "body"
        left = self._body_deadline - self.loop.time()
        self._guard = self.loop.call_later(
            max(0.0, min(self.body_idle_timeout_s, left)), self._body_timed_out
        )

    def _cancel(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
        self._guard = None
        self._guarding = None

    def _head_timed_out(self) -> None:
        self._guard = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.debug("event=http_timeout part=head client=%s", self.client)
        self.transport.write(_TIMEOUT_408)
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._guard = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused and self.loop.time() < self._body_deadline:
            self._watch_body()  # we stopped reading, not the client
            return
        log.debug("event=http_timeout part=body client=%s", self.client)
        self.transport.close()


# Query parameter names whose values never reach the access log (a token sent by mistake as
# ``?access_token=…`` is refused with 422, but uvicorn logged the URL verbatim: review, Info).
SENSITIVE_NAMES = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "auth",
    "signature",
    "credential",
    "session",
    "cookie",
    "jwt",
)
REDACTED = "***"


def redact_query(target: str) -> str:
    """``target`` (path and query string) with the values of sensitive parameters, and any
    value that looks like a liftwatch token (``lw_…``), replaced by ``***``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    out = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        plain = unquote_plus(name).lower()
        if (eq and any(word in plain for word in SENSITIVE_NAMES)) or (
            unquote_plus(value if eq else name).strip().startswith(TOKEN_PREFIX)
        ):
            item = f"{name}={REDACTED}" if eq else REDACTED
        out.append(item)
    return f"{path}?{'&'.join(out)}"


class RedactQuery(logging.Filter):
    """On ``uvicorn.access``: its records carry ``(client, method, path?query, version,
    status)``; the query is redacted before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[2]):
            record.args = (*args[:2], redact_query(str(args[2])), *args[3:])
        return True


def redact_access_log() -> None:
    """Install :class:`RedactQuery` on uvicorn's access logger (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in logger.filters):
        logger.addFilter(RedactQuery())


def server_options(*, host: str, port: int, log_level: str) -> dict[str, Any]:
    """The uvicorn settings both commands serve the API with (``uvicorn.run`` or
    ``uvicorn.Config`` keyword arguments)."""
    redact_access_log()
    return {
        "host": host,
        "port": port,
        "log_level": log_level.lower(),
        "proxy_headers": False,
        "server_header": False,
        "http": GuardedH11Protocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        # A response still running this long after SIGTERM is cancelled: the stop stays
        # inside the units' stop timeout whatever a client does (event streams end at once).
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
