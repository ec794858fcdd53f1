"""Which webhook URLs may be called (WEBHOOKS.md § Delivery; the SSRF guard).

Only ``http`` and ``https`` URLs, and only to public addresses: every address the host name
resolves to must be global unicast, else the URL is refused (loopback, link-local, private,
shared, multicast, unspecified and reserved ranges), unless the operator allows that private
target (:class:`PrivateTargets`): an administrator-managed allow-list of networks and ports
(``LIFTWATCH_WEBHOOK_PRIVATE_ALLOW``), the recommended way; or the contract's switch
``LIFTWATCH_WEBHOOK_ALLOW_PRIVATE=true`` (DESIGN.md), for tests, demos and on-premises
receivers, which opens every private address **except liftwatch's own services** (InfluxDB,
the MQTT broker, its API: :func:`own_services`). Either way only a short, printable excerpt of
a private target's answer is kept, so a webhook cannot read an internal service. The
check runs when a subscription is created or changed AND before every attempt, because DNS
may change in between; the dispatcher then connects to the very address it checked
(:func:`pinned`), so a second lookup cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from liftwatch.allowlist import AllowedTarget, parse_private_allow

if TYPE_CHECKING:
    from liftwatch.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH: Final = 2000
PRIVATE_EXCERPT: Final = 64  # characters of a private target's answer that are kept


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


@dataclass(frozen=True, slots=True)
class PrivateTargets:
    """Which non-public addresses webhooks may go to (see the module docstring)."""

    allow: tuple[AllowedTarget, ...] = ()
    # LIFTWATCH_WEBHOOK_ALLOW_PRIVATE=true (DESIGN.md: "allow webhook URLs on loopback/private
    # networks"): any private target but liftwatch's own services (``own``).
    any_private: bool = False
    # Any private target for every subscription: ``allow_private=True`` in code (tests), and the
    # create-time check of callers that only know the flag. Never from the settings.
    anything: bool = False
    # (address, port) of the services liftwatch itself uses (InfluxDB, the MQTT broker, its
    # API); None as the address: that port on every loopback or private address.
    own: tuple[tuple[IPAddress | None, int], ...] = ()

    @classmethod
    def of(cls, value: bool | PrivateTargets) -> PrivateTargets:
        if isinstance(value, PrivateTargets):
            return value
        return cls(anything=True) if value else cls()

    @classmethod
    def from_settings(cls, settings: Settings) -> PrivateTargets:
        return cls(
            allow=parse_private_allow(settings.webhook_private_allow),
            any_private=settings.webhook_allow_private,
            own=own_services(settings),
        )

    def permits(self, ip: IPAddress, port: int, company_id: str | None) -> bool:
        """``company_id`` is kept for callers' clarity: the rule is the same for every
        subscription, an administrator's or a company's."""
        if self.anything or any(a.matches(ip, port) for a in self.allow):
            return True
        if not self.any_private:
            return False
        return not any(p == port and (a is None or a == ip) for a, p in self.own)


def own_services(settings: Settings) -> tuple[tuple[IPAddress | None, int], ...]:
    """InfluxDB, the broker and liftwatch's API, which no webhook may call even with
    ``ALLOW_PRIVATE`` (security review #5: a maintainer's webhook dropped the telemetry
    database through InfluxDB's ``/query``). A service on a loopback, unspecified or named
    host is matched by its port on any non-public address."""
    found: list[tuple[IPAddress | None, int]] = []
    for url, default in (
        (settings.influx_url, 8086),
        (settings.mqtt_url, 1883),
        (f"http://{settings.api_host}:{settings.api_port}", 8000),
    ):
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port or default
        except ValueError:
            continue
        ip = literal_address(parts.hostname or "")
        loose = ip is None or ip.is_loopback or ip.is_unspecified
        found.append((None if loose else ip, port))
    return tuple(found)


def excerpt(text: str | None) -> str | None:
    """What is kept of a private target's answer: its first PRIVATE_EXCERPT characters, only
    printable ASCII (anything else becomes ``?``), so that a webhook cannot be used to read
    an internal service through ``attempts[].response``."""
    if text is None:
        return None
    cut = text[:PRIVATE_EXCERPT]
    clean = "".join(c if " " <= c <= "~" else "?" for c in cut)
    return clean + ("…" if len(text) > PRIVATE_EXCERPT else "")


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


def check_addresses(
    host: str,
    addresses: list[IPAddress],
    allow_private: bool | PrivateTargets,
    *,
    port: int = 0,
    company_id: str | None = None,
) -> None:
    """Refuse when any address is neither public nor a private target ``allow_private``
    permits to a subscription of ``company_id`` on ``port`` (a name with one private A record
    is refused)."""
    private = PrivateTargets.of(allow_private)
    if private.anything:
        return
    for ip in addresses:
        problem = address_problem(ip)
        if problem is not None and not private.permits(ip, port, company_id):
            if private.any_private:
                raise UrlRefused(
                    f"{host}:{port} is one of liftwatch's own services (InfluxDB, the MQTT"
                    " broker or its API): no webhook may call it"
                )
            raise UrlRefused(
                f"{host} resolves to {ip}, a {problem} address; webhooks go to public addresses"
                " only, or to private ones the operator lists in LIFTWATCH_WEBHOOK_PRIVATE_ALLOW"
            )


async def check_url(
    url: str, allow_private: bool | PrivateTargets, *, company_id: str | None = None
) -> tuple[Target, list[IPAddress]]:
    """Parse, resolve and check ``url`` for a subscription of ``company_id`` (None: an
    administrator's). Raises :class:`UrlRefused` or :class:`LookupError`."""
    target = parse_url(url)
    addresses = await resolve(target.host, target.port)
    check_addresses(target.host, addresses, allow_private, port=target.port, company_id=company_id)
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
