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


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("2002:7f00:1::1", "6to4 (127.0.0.1: loopback)"),  # security review #12
        ("2002:a9fe:a9fe::1", "6to4 (169.254.169.254: link-local)"),
        ("2002:0a00:0001::1", "6to4 (10.0.0.1: private)"),
        ("2002:c0a8:0101:ffff::1", "6to4 (192.168.1.1: private)"),
        ("2002:6440:0001::1", "6to4 (100.64.0.1: not publicly routable)"),
        ("2002::1", "6to4 (0.0.0.0: unspecified)"),
        ("2002:e000:0001::1", "6to4 (224.0.0.1: multicast)"),
        ("2002:ffff:ffff::1", "6to4 (255.255.255.255: reserved)"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:0000:0808:0808:0000:0000:f7f7:f7fe", "Teredo"),  # client 8.8.8.1 still refused
        ("64:ff9b::808:808", "reserved"),  # NAT64, even of a public IPv4
        ("::808:808", "reserved"),  # IPv4-compatible (deprecated)
    ],
)
def test_ipv6_forms_embedding_ipv4_are_judged_by_it(address: str, reason: str) -> None:
    assert ssrf.address_problem(ipaddress.ip_address(address)) == reason


def test_6to4_of_a_public_ipv4_passes() -> None:
    assert ssrf.address_problem(ipaddress.ip_address("2002:0808:0808::1")) is None


@pytest.mark.parametrize("url", ["http://[2002:7f00:1::1]/", "http://[2002:a9fe:a9fe::1]/"])
async def test_6to4_urls_of_the_review_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UrlRefused, match="6to4"):
        await ssrf.check_url(url, allow_private=False)
