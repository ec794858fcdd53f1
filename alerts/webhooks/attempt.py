"""One webhook attempt and its outcome (the dispatcher's last stage before the record).

The URL is resolved and SSRF-checked again, the request is sent to the address just checked
(the next one the name resolved to if it cannot be reached), with Standard Webhooks headers,
``timeout_s`` for the whole attempt, redirects not followed. :func:`attempt` never raises for
network trouble: it returns a :class:`Result`, which :func:`classify` turns into the
WEBHOOKS.md outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from alerts.webhooks import signing, ssrf
from liftwatch import __version__
from liftwatch.clock import Clock
from liftwatch.store import webhooks as store
from liftwatch.store.webhooks import Delivery, Subscription

USER_AGENT: Final = f"liftwatch/{__version__}"
ATTEMPT_TIMEOUT_S: Final = 5.0
READ_LIMIT: Final = 64 * 1024  # read (and discard) this much so the connection can be reused


@dataclass(frozen=True, slots=True)
class Result:
    """How one attempt ended."""

    status_code: int | None
    latency_ms: int
    response: str | None = None
    error: str | None = None
    retry_after: str | None = None
    retryable: bool = False


def classify(status_code: int) -> str:
    """``delivered``, ``retry``, ``gone`` or ``failed`` for an HTTP answer (WEBHOOKS.md)."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 429 or status_code >= 500:
        return "retry"
    if status_code == 410:
        return "gone"
    # Other 4xx, and 3xx too: redirects are not followed, and retrying would not change the
    # answer.
    return "failed"


def build_client(concurrency: int) -> httpx.AsyncClient:
    """The one pooled client every delivery shares."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        trust_env=False,  # a proxy from the environment would defeat the SSRF guard
    )


async def attempt(
    client: httpx.AsyncClient,
    sub: Subscription,
    d: Delivery,
    *,
    private: ssrf.PrivateTargets,
    clock: Clock,
    timeout_s: float = ATTEMPT_TIMEOUT_S,
) -> Result:
    """One signed POST of ``d`` to ``sub``; never raises for network trouble."""
    started = clock.monotonic()

    def elapsed() -> int:
        return round((clock.monotonic() - started) * 1000)

    try:
        async with asyncio.timeout(timeout_s):
            try:
                target, addresses = await ssrf.check_url(
                    sub.url, private, company_id=sub.company_id
                )
            except ssrf.UrlRefused as exc:
                return Result(None, elapsed(), error=f"refused: {exc}")
            except LookupError as exc:
                return Result(None, elapsed(), error=str(exc), retryable=True)
            return await _post(client, sub, d, target, addresses, elapsed, clock, timeout_s)
    except TimeoutError:
        return Result(
            None,
            elapsed(),
            error=f"timeout after {timeout_s:g} s",
            retryable=True,
        )


async def _post(
    client: httpx.AsyncClient,
    sub: Subscription,
    d: Delivery,
    target: ssrf.Target,
    addresses: list[ssrf.IPAddress],
    elapsed: Callable[[], int],
    clock: Clock,
    timeout_s: float,
) -> Result:
    body = d.payload.encode("utf-8")
    last_error = "no address"
    begin = time.monotonic()
    for i, ip in enumerate(addresses):
        url, host, sni = ssrf.pinned(sub.url, target, ip)
        # A blackholed address must not eat the whole attempt: each address left gets an
        # equal share of the time left for connecting (the last one all of it).
        left = max(0.05, timeout_s - (time.monotonic() - begin))
        timeout = httpx.Timeout(timeout_s, connect=left / (len(addresses) - i))
        timestamp = clock.now_ms() // 1000
        headers = {
            "host": host,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": d.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                sub.signing_secrets(clock.now_ms()), d.webhook_id, timestamp, body
            ),
        }
        extensions: dict[str, Any] = {"sni_hostname": sni} if sni else {}
        request = client.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions, timeout=timeout
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            # Try the next address the name resolved to (::1 refused, 127.0.0.1 listening).
            last_error = f"connection error: {exc or type(exc).__name__}"
            continue
        except httpx.ConnectTimeout:
            # Blackholed (SYNs dropped): the next address may answer.
            last_error = f"connect timeout to {ip}"
            continue
        except httpx.TimeoutException:
            return Result(None, elapsed(), error="timeout", retryable=True)
        except httpx.TransportError as exc:
            return Result(
                None,
                elapsed(),
                error=f"transport error: {exc or type(exc).__name__}",
                retryable=True,
            )
        except (AttributeError, OSError) as exc:
            # A socket that closed while being set up can surface as a bare AttributeError
            # from inside httpcore/anyio (``getpeername`` on a vanished socket, seen when a
            # receiver shut down mid-connect): a failed connection attempt like any other.
            last_error = f"connection error: {type(exc).__name__}: {exc}"
            continue
        try:
            text = await _read_head(response)
        except httpx.TransportError:
            text = None  # the status line counts; a body cut short does not
        finally:
            await response.aclose()
        if ssrf.address_problem(ip) is not None:
            # An internal service's answer is not for the subscriber to read.
            text = ssrf.excerpt(text)
        return Result(
            response.status_code,
            elapsed(),
            response=text,
            retry_after=response.headers.get("retry-after"),
        )
    return Result(None, elapsed(), error=last_error, retryable=True)


async def _read_head(response: httpx.Response) -> str:
    """The first 1 KiB of the answer; reads up to READ_LIMIT so the connection is reusable."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
    raw = b"".join(chunks)[: store.RESPONSE_KEEP]
    return raw.decode("utf-8", errors="replace")
