"""Which webhook URLs may be called (WEBHOOKS.md § Delivery; the SSRF guard).

Only ``http`` and ``https`` URLs, and only to public addresses: every address the host name
resolves to must be global unicast, else the URL is refused (loopback, link-local, private,
shared, multicast, unspecified and reserved ranges), unless the operator set
``LIFTWATCH_WEBHOOK_ALLOW_PRIVATE``. The check runs when a subscription is created or changed
AND before every attempt, because DNS may change in between; the dispatcher then connects to
the very address it checked (:func:`pinned`), so a second lookup cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2000


class UrlRefused(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """Check a URL's shape: http(s), a host, no credentials, a valid port."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UrlRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise UrlRefused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not accepted; verify the signature instead")
    if parts.fragment:
        raise UrlRefused("the URL must not carry a #fragment")
    return Target(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80))


_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


def address_problem(ip: IPAddress) -> str | None:
    """Why an address must not be called, or None for a public unicast address.

    IPv6 forms that carry an IPv4 address are judged by it: IPv4-mapped ``::ffff:a.b.c.d`` is
    that address, and a 6to4 address (``2002::/16``, which Python's ``ipaddress`` calls
    global) is refused when the IPv4 address it embeds is not public (``2002:7f00:1::1`` is
    127.0.0.1 at a 6to4 relay). Teredo (``2001::/32``) is refused outright: its client
    address is obscured and the traffic goes through third-party relays; no receiver needs it.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            embedded = address_problem(ip.sixtofour)
            if embedded is not None:
                return f"6to4 ({ip.sixtofour}: {embedded})"
        elif ip in _TEREDO:
            return "Teredo"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "not publicly routable"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal resolves to itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupError(f"cannot resolve {host!r}: {exc}") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise LookupError(f"cannot resolve {host!r}: no addresses")
    return found


def check_addresses(host: str, addresses: list[IPAddress], allow_private: bool) -> None:
    """Refuse when any address is not public (a name with one private A record is refused)."""
    if allow_private:
        return
    for ip in addresses:
        problem = address_problem(ip)
        if problem is not None:
            raise UrlRefused(
                f"{host} resolves to {ip}, a {problem} address; webhooks go to public addresses"
                " only (the operator may set LIFTWATCH_WEBHOOK_ALLOW_PRIVATE=true)"
            )


async def check_url(url: str, allow_private: bool) -> tuple[Target, list[IPAddress]]:
    """Parse, resolve and check ``url``. Raises :class:`UrlRefused` or :class:`LookupError`."""
    target = parse_url(url)
    addresses = await resolve(target.host, target.port)
    check_addresses(target.host, addresses, allow_private)
    return target, addresses


def pinned(url: str, target: Target, ip: IPAddress) -> tuple[str, str, str | None]:
    """``url`` rewritten to connect to ``ip``: (new URL, Host header, TLS server name).

    The original host stays in the ``Host`` header and as the TLS server name, so virtual
    hosting and certificate checks behave as if the name had been used."""
    parts = urlsplit(url)
    ip_text = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    default_port = 443 if target.scheme == "https" else 80
    netloc = ip_text if target.port == default_port else f"{ip_text}:{target.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    new_url = parts._replace(netloc=netloc).geturl()
    sni = target.host if target.scheme == "https" and literal_address(target.host) is None else None
    return new_url, host_header, sni
