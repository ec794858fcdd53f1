"""Private webhook targets (security review #5).

With ``LIFTWATCH_WEBHOOK_ALLOW_PRIVATE=true`` every maintainer token was an HTTP client of the
internal network that could read the answers (``attempts[].response``) and, through InfluxDB's
``/query``, drop the telemetry database. Now the switch (DESIGN.md: allow webhook URLs on
loopback/private networks) never opens liftwatch's own services (InfluxDB, broker, API), an
administrator can list exact private targets in ``LIFTWATCH_WEBHOOK_PRIVATE_ALLOW`` instead,
and what is kept of a private target's answer is a short, sanitised excerpt.

The dispatcher is built from real settings by :func:`attach` (as ``liftwatch alerts`` does);
the "internal service" is a real HTTP server on loopback answering like InfluxDB.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import pytest

from alerts.webhooks import dispatcher as dmod
from alerts.webhooks import ssrf
from liftwatch import allowlist
from liftwatch.settings import Settings, SettingsError, load_settings
from liftwatch.store import webhooks as store
from simulator.receiver import Received, RecordingReceiver
from tests.support.harness import eventually
from tests.support.webhooks import Seeded

SECRET_ANSWER = (
    '{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],'
    '"values":[["_internal"],["liftwatch"],["secret_customer_db"]]}]}]}\n' + "x" * 2000
)


def influx_like(_: Received) -> tuple[int, dict[str, str], bytes]:
    return 200, {"content-type": "application/json"}, SECRET_ANSWER.encode()


@pytest.fixture
def internal() -> Iterator[RecordingReceiver]:
    recv = RecordingReceiver(influx_like)
    yield recv
    recv.close()


async def run_with(seeded: Seeded, settings: Settings) -> AsyncIterator[dmod.Dispatcher]:
    engine = SimpleNamespace(db=seeded.db, outbox=None)
    d = dmod.attach(engine, settings)
    task = asyncio.create_task(d.run())
    try:
        yield d
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle(seeded: Seeded, d: dmod.Dispatcher, sub_id: str) -> store.Delivery:
    seeded.raise_alarm(seeded.lift_a, "co-a")
    d.notify()

    def done() -> bool:
        ds = store.list_deliveries(seeded.db, sub_id)
        return bool(ds) and ds[0].status in ("delivered", "failed")

    await eventually(done, 5, what="the delivery settled")
    (dl,) = store.list_deliveries(seeded.db, sub_id)
    return dl


@pytest.mark.integration
async def test_allow_private_true_never_reaches_liftwatch_own_services(
    seeded: Seeded, internal: RecordingReceiver
) -> None:
    """The review's attack: a maintainer's webhook to InfluxDB's /query. With the contract's
    switch set, private receivers work, but never liftwatch's own InfluxDB, broker or API."""
    sub = seeded.subscribe(internal.url + "?q=SHOW+DATABASES", company_id="co-a")
    settings = Settings(webhook_allow_private=True, influx_url=f"http://127.0.0.1:{internal.port}")
    async for d in run_with(seeded, settings):
        dl = await settle(seeded, d, sub.id)
    assert internal.requests == [], "no request reached liftwatch's own InfluxDB"
    assert dl.status == "failed" and "own services" in (dl.last_error or "")


@pytest.mark.integration
async def test_allow_private_true_delivers_to_a_maintainers_private_receiver_excerpt_only(
    seeded: Seeded, internal: RecordingReceiver
) -> None:
    """DESIGN.md: the switch allows webhook URLs on loopback/private networks (tests,
    on-premises receivers); the answer is not kept beyond the excerpt."""
    sub = seeded.subscribe(internal.url + "?q=SHOW+DATABASES", company_id="co-a")
    async for d in run_with(seeded, Settings(webhook_allow_private=True)):
        dl = await settle(seeded, d, sub.id)
    assert dl.status == "delivered" and len(internal.requests) == 1
    (attempt,) = store.attempts_of(seeded.db, [dl.id])[dl.id]
    assert attempt.response is not None and "secret_customer_db" not in attempt.response


@pytest.mark.integration
async def test_allow_listed_private_target_is_delivered_with_an_excerpt_only(
    seeded: Seeded, internal: RecordingReceiver
) -> None:
    sub = seeded.subscribe(internal.url, company_id="co-a")
    settings = Settings(webhook_private_allow=f"10.0.0.0/8, 127.0.0.1:{internal.port}")
    async for d in run_with(seeded, settings):
        dl = await settle(seeded, d, sub.id)
    assert dl.status == "delivered" and len(internal.requests) == 1
    (attempt,) = store.attempts_of(seeded.db, [dl.id])[dl.id]
    assert attempt.response is not None
    assert len(attempt.response) <= ssrf.PRIVATE_EXCERPT + 1
    assert "secret_customer_db" not in attempt.response


@pytest.mark.integration
async def test_allow_list_port_is_enforced(seeded: Seeded, internal: RecordingReceiver) -> None:
    sub = seeded.subscribe(internal.url, company_id="co-a")
    settings = Settings(webhook_private_allow=f"127.0.0.1:{internal.port + 1}")
    async for d in run_with(seeded, settings):
        dl = await settle(seeded, d, sub.id)
    assert internal.requests == [] and dl.status == "failed"


@pytest.mark.integration
async def test_admin_subscription_under_allow_private_keeps_an_excerpt_only(
    seeded: Seeded, internal: RecordingReceiver
) -> None:
    """The dangerous flag still lets an administrator's subscription (no company) reach
    loopback, for tests and demos; even then the answer is not kept beyond the excerpt."""
    sub = seeded.subscribe(internal.url)
    async for d in run_with(seeded, Settings(webhook_allow_private=True)):
        dl = await settle(seeded, d, sub.id)
    assert dl.status == "delivered"
    (attempt,) = store.attempts_of(seeded.db, [dl.id])[dl.id]
    assert attempt.response is not None and "secret_customer_db" not in attempt.response


def test_excerpt_is_short_and_printable() -> None:
    assert ssrf.excerpt("a\x00b" + "c" * 100) == "a?b" + "c" * 61 + "…"
    assert ssrf.excerpt("ok") == "ok" and ssrf.excerpt(None) is None
    assert ssrf.excerpt("é\u202e") == "??"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("10.0.0.0/8", (allowlist.AllowedTarget(ipaddress.ip_network("10.0.0.0/8")),)),
        (
            "127.0.0.1:9000, fd00::/8 [fd00::5]:443",
            (
                allowlist.AllowedTarget(ipaddress.ip_network("127.0.0.1/32"), 9000),
                allowlist.AllowedTarget(ipaddress.ip_network("fd00::/8")),
                allowlist.AllowedTarget(ipaddress.ip_network("fd00::5/128"), 443),
            ),
        ),
        (
            "192.168.10.5/32:8443",
            (allowlist.AllowedTarget(ipaddress.ip_network("192.168.10.5/32"), 8443),),
        ),
    ],
)
def test_allow_list_syntax(text: str, expected: tuple[allowlist.AllowedTarget, ...]) -> None:
    assert allowlist.parse_private_allow(text) == expected


@pytest.mark.parametrize(
    "text", ["10.0.0.0/33", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "[fd00::1", "1.2.3.4:x"]
)
def test_bad_allow_list_entries_fail_at_start(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTWATCH_WEBHOOK_PRIVATE_ALLOW", text)
    with pytest.raises(SettingsError, match="LIFTWATCH_WEBHOOK_PRIVATE_ALLOW"):
        load_settings()


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTWATCH_WEBHOOK_PRIVATE_ALLOW", "10.0.0.0/8,127.0.0.1:9000")
    private = ssrf.PrivateTargets.from_settings(load_settings())
    ip = ipaddress.ip_address
    assert private.permits(ip("10.1.2.3"), 80, "co-a")
    assert private.permits(ip("::ffff:10.1.2.3"), 80, "co-a")
    assert private.permits(ip("127.0.0.1"), 9000, "co-a")
    assert not private.permits(ip("127.0.0.1"), 8086, "co-a")  # InfluxDB
    assert not private.permits(ip("127.0.0.1"), 8086, None)  # the flag is not set
    assert not private.permits(ip("192.168.1.1"), 80, None)


def test_allow_private_flag_opens_private_addresses_but_not_liftwatch_own() -> None:
    private = ssrf.PrivateTargets.from_settings(
        Settings(webhook_allow_private=True, influx_url="http://127.0.0.1:8086")
    )
    ip = ipaddress.ip_address
    assert private.permits(ip("127.0.0.1"), 9000, "co-a")
    assert private.permits(ip("10.1.2.3"), 443, None)
    for own in (8086, 1883, 8000):  # InfluxDB, the broker, the API (default ports)
        assert not private.permits(ip("127.0.0.1"), own, "co-a")
        assert not private.permits(ip("127.0.0.1"), own, None)
    assert not ssrf.PrivateTargets.from_settings(Settings()).permits(ip("127.0.0.1"), 9000, None)


async def test_check_url_for_a_company() -> None:
    private = ssrf.PrivateTargets.from_settings(Settings(webhook_private_allow="127.0.0.1:9000"))
    await ssrf.check_url("http://127.0.0.1:9000/hook", private, company_id="co-a")
    with pytest.raises(ssrf.UrlRefused, match="PRIVATE_ALLOW"):
        await ssrf.check_url("http://127.0.0.1:9001/hook", private, company_id="co-a")
    flag = ssrf.PrivateTargets.from_settings(Settings(webhook_allow_private=True))
    await ssrf.check_url("http://127.0.0.1:9001/hook", flag, company_id="co-a")
    with pytest.raises(ssrf.UrlRefused, match="own services"):
        await ssrf.check_url("http://127.0.0.1:8086/query", flag, company_id="co-a")
