"""The syntax of ``LIFTWATCH_WEBHOOK_PRIVATE_ALLOW``: the private webhook targets an
administrator allows (alerts/webhooks/ssrf.py applies them; settings validate them at start)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowedTarget:
    """One entry of ``LIFTWATCH_WEBHOOK_PRIVATE_ALLOW``: a network, and a port or any."""

    network: Network
    port: int | None = None

    def matches(self, ip: IPAddress, port: int) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.version != self.network.version or ip not in self.network:
            return False
        return self.port is None or self.port == port

    def __str__(self) -> str:
        net = str(self.network)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.network.version == 6 else f"{net}:{self.port}"


def _allowed_target(entry: str) -> AllowedTarget:
    port_text: str | None = None
    if entry.startswith("["):  # [v6 network]:port or [v6 network]
        net_text, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: write an IPv6 network with a port as [fd00::/8]:443")
        port_text = rest[1:] if rest else None
    elif entry.count(":") == 1:  # v4 network:port
        net_text, port_text = entry.split(":")
    else:  # a v4 network, or a v6 one without a port
        net_text = entry
    try:
        network = ipaddress.ip_network(net_text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{entry!r}: not an IP address or network ({exc})") from None
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) <= 65535):
            raise ValueError(f"{entry!r}: the port must be 1-65535")
        port = int(port_text)
    return AllowedTarget(network, port)


def parse_private_allow(text: str) -> tuple[AllowedTarget, ...]:
    """``LIFTWATCH_WEBHOOK_PRIVATE_ALLOW``: entries separated by commas or spaces, each an
    address or CIDR network with an optional port: ``10.0.0.0/8``, ``127.0.0.1:9000``,
    ``192.168.10.5/32:8443``, ``fd00::/8``, ``[fd00::5]:443``. Raises ValueError naming the
    bad entry."""
    return tuple(_allowed_target(e) for e in re.split(r"[,\s]+", text.strip()) if e)
