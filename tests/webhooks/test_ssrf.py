from __future__ import annotations

import ipaddress

import pytest

from alerts.webhooks import ssrf


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not publicly routable"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert ssrf.address_problem(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert ssrf.address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com",
        "http://",
        "https://user:pw@example.com/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/#frag",
        "example.com/hook",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UrlRefused):
        ssrf.parse_url(url)


async def test_loopback_url_refused_unless_allowed() -> None:
    with pytest.raises(ssrf.UrlRefused, match="loopback"):
        await ssrf.check_url("http://127.0.0.1:9/hook", allow_private=False)
    with pytest.raises(ssrf.UrlRefused, match="loopback"):
        await ssrf.check_url("http://localhost:9/hook", allow_private=False)
    with pytest.raises(ssrf.UrlRefused, match="private"):
        await ssrf.check_url("http://[fd12::1]/hook", allow_private=False)
    target, addrs = await ssrf.check_url("http://localhost:9/hook", allow_private=True)
    assert target.port == 9 and any(a.is_loopback for a in addrs)


async def test_unresolvable_host_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        await ssrf.check_url("http://no-such-host.invalid/hook", allow_private=False)


def test_pinned_keeps_host_header_and_sni() -> None:
    target = ssrf.parse_url("https://hooks.example.com/a/b?x=1")
    url, host, sni = ssrf.pinned(
        "https://hooks.example.com/a/b?x=1", target, ipaddress.ip_address("93.184.216.34")
    )
    assert url == "https://93.184.216.34/a/b?x=1"
    assert host == "hooks.example.com" and sni == "hooks.example.com"
    target = ssrf.parse_url("http://h.example:8080/p")
    url, host, sni = ssrf.pinned("http://h.example:8080/p", target, ipaddress.ip_address("::1"))
    assert url == "http://[::1]:8080/p" and host == "h.example:8080" and sni is None
