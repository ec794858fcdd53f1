"""Acceptance (issue 8): the real Mosquitto with the shipped configuration and ACL, TLS with a
throwaway CA, credentials made by ``liftwatch devices``.

A denied publish is proven absent with a sentinel: the same device publishes a second message
after it, and MQTT delivers one publisher's messages to a subscriber in order, so once the
sentinel has arrived the denied message would already have arrived too.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import pytest
import yaml

from liftwatch.mqtt import ConsumerStats, RawMessage, consume
from liftwatch.protocol import Decoded, decode
from liftwatch.registry import Company, Lift
from liftwatch.settings import Settings
from liftwatch.store import Database
from liftwatch.store import registry as reg
from tests.deploy.broker import (
    DEPLOY,
    SecuredMosquitto,
    give_to_broker_user,
    json_lines,
    run_cli,
    temp_root,
)
from tests.deploy.mqtt import NOT_AUTHORIZED, Client, RefusedError
from tests.support.harness import eventually

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    broker: SecuredMosquitto
    env: dict[str, str]
    passwords: dict[str, str]
    lift_a: str
    lift_b: str
    lift_c: str

    def cli_files(self) -> list[str]:
        return [
            "--password-file",
            str(self.broker.password_file),
            "--acl-file",
            str(self.broker.acl_file),
        ]

    def client(self, user: str | None, password: str | None = None, *, v5: bool = True) -> Client:
        if user is not None and password is None:
            password = self.passwords[user]
        return Client(self.broker.tls_port, self.broker.ca_file, user, password, v5=v5)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    token = uuid.uuid4().hex[:8]
    lift_a, lift_b, lift_c = (f"3110{token}{n}" for n in "ABC")
    with temp_root("liftwatch-deploy-") as root:
        broker = SecuredMosquitto(root / "broker")
        broker.prepare()
        data_dir = root / "liftwatch"
        db = Database(data_dir / "liftwatch.sqlite3")
        reg.upsert_company(db, Company(company_id="acme", name="Acme Lifts"))
        for lift_id in (lift_a, lift_b, lift_c):
            reg.upsert_lift(db, Lift(lift_id=lift_id, company_id="acme"))
        env = {"LIFTWATCH_DATA_DIR": str(data_dir)}
        files = [
            "--password-file",
            str(broker.password_file),
            "--acl-file",
            str(broker.acl_file),
        ]
        code, out, err = run_cli(["devices", "provision", lift_a, lift_b, lift_c, *files], env)
        assert code == 0, err
        passwords = {r["username"]: r["password"] for r in json_lines(out)}
        code, out, err = run_cli(
            ["devices", "service-user", "ingest", "alerts", "healthcheck", *files], env
        )
        assert code == 0, err
        passwords |= {r["username"]: r["password"] for r in json_lines(out)}
        give_to_broker_user(root / "broker")
        broker.start()
        try:
            yield Setup(broker, env, passwords, lift_a, lift_b, lift_c)
        finally:
            broker.stop()


def telemetry(seq: int, marker: str = "") -> bytes:
    body = {
        "v": 1,
        "ts": int(time.time() * 1000),
        "seq": seq,
        "service_mode": "normal",
        "car_status": "stopped",
        "direction": "none",
        "floor": "1",
        "door_zone": True,
        "doors_closed": True,
        "marker": marker,  # unknown fields are ignored by the decoder: a test tag
    }
    return json.dumps(body).encode()


def test_provision_printed_one_password_per_device(setup: Setup) -> None:
    for lift_id in (setup.lift_a, setup.lift_b, setup.lift_c):
        assert len(setup.passwords[lift_id]) >= 32
    assert len(set(setup.passwords.values())) == len(setup.passwords)
    # Only hashes are stored.
    stored = setup.broker.password_file.read_text()
    assert all(pw not in stored for pw in setup.passwords.values())


def test_devices_publish_own_topics_and_ingest_receives_everything(setup: Setup) -> None:
    ingest = setup.client("ingest").connect()
    alerts = setup.client("alerts").connect()
    try:
        assert ingest.subscribe("lifts/#") == 1
        # Several alerts or ingest workers share the load through a shared subscription.
        assert alerts.subscribe("$share/liftwatch/lifts/#") == 1
        sent = []
        for lift_id in (setup.lift_a, setup.lift_b):
            device = setup.client(lift_id).connect()
            try:
                for kind, payload in [
                    ("telemetry", telemetry(1)),
                    (
                        "event",
                        json.dumps(
                            {
                                "v": 1,
                                "ts": int(time.time() * 1000),
                                "seq": 2,
                                "type": "alarm_button",
                                "pressed": True,
                            }
                        ).encode(),
                    ),
                    ("status", b'{"v":1,"state":"online"}'),
                ]:
                    topic = f"lifts/{lift_id}/{kind}"
                    assert device.publish(topic, payload) == 0, topic
                    sent.append((topic, payload))
            finally:
                device.close()
        for consumer in (ingest, alerts):
            got = [consumer.next_message() for _ in sent]
            assert sorted((m.topic, m.payload) for m in got) == sorted(sent)
            for msg in got:  # what reaches liftwatch is valid protocol
                assert isinstance(decode(msg.topic, msg.payload), Decoded), msg.topic
    finally:
        ingest.close()
        alerts.close()


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_publishing_to_another_lifts_topic_is_denied(setup: Setup, v5: bool) -> None:
    ingest = setup.client("ingest").connect()
    device = setup.client(setup.lift_a, v5=v5).connect()
    try:
        ingest.subscribe("lifts/#")
        forged = telemetry(7, marker="forged")
        denied_topics = [
            f"lifts/{setup.lift_b}/telemetry",  # another lift
            f"lifts/{setup.lift_b}/event",
            f"lifts/{setup.lift_a}/telemetry/extra",  # outside the topic scheme
            f"lifts/{setup.lift_a}/command",
            "lifts/telemetry",
            "other/topic",
        ]
        for topic in denied_topics:
            code = device.publish(topic, forged)
            # MQTT 5 says why; MQTT 3.1.1 has no way to, and the broker drops it silently.
            assert code == (NOT_AUTHORIZED if v5 else 0), topic
        sentinel = telemetry(8, marker=f"sentinel-{v5}")
        assert device.publish(f"lifts/{setup.lift_a}/telemetry", sentinel) == 0
        got = ingest.until(sentinel)
        assert [m.payload for m in got] == [sentinel]
    finally:
        device.close()
        ingest.close()


def test_devices_cannot_read_any_lift(setup: Setup) -> None:
    spy = setup.client(setup.lift_a).connect()
    other = setup.client(setup.lift_b).connect()
    ingest = setup.client("ingest").connect()
    try:
        spy.subscribe("lifts/#")
        spy.subscribe(f"lifts/{setup.lift_a}/#")
        ingest.subscribe("lifts/#")
        secret = telemetry(3, marker="for liftwatch only")
        assert other.publish(f"lifts/{setup.lift_b}/telemetry", secret) == 0
        own = telemetry(4, marker="own")
        assert spy.publish(f"lifts/{setup.lift_a}/telemetry", own) == 0
        ingest.until(own)
        # The broker queued any delivery of ``secret`` to the spy before it read the spy's
        # later publish, so it would precede that PUBACK on the spy's connection.
        assert spy.messages.empty()
    finally:
        for c in (spy, other, ingest):
            c.close()


def test_anonymous_and_bad_credentials_are_refused(setup: Setup) -> None:
    for user, password in [
        (None, None),  # anonymous
        (setup.lift_a, "wrong-password"),
        ("no-such-lift", "whatever"),
        ("ingest", setup.passwords[setup.lift_a]),  # someone else's password
    ]:
        with pytest.raises(RefusedError) as refused:
            setup.client(user, password).connect()
        assert refused.value.code in (0x86, 0x87), user  # bad user/password, not authorized


def test_anonymous_is_refused_on_the_local_listener_too(setup: Setup) -> None:
    with pytest.raises(RefusedError):
        Client(setup.broker.local_port, None, None).connect()
    ok = Client(setup.broker.local_port, None, "ingest", setup.passwords["ingest"]).connect()
    ok.close()


def test_plain_mqtt_on_the_tls_port_gets_no_connack(setup: Setup) -> None:
    # A bare MQTT 3.1.1 CONNECT (client id "x") where a TLS ClientHello is expected.
    connect = bytes([0x10, 13, 0, 4, *b"MQTT", 4, 2, 0, 60, 0, 1, *b"x"])
    with socket.create_connection(("127.0.0.1", setup.broker.tls_port), timeout=5) as sock:
        sock.sendall(connect)
        try:
            answer = sock.recv(16)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20"), "the TLS listener answered plain MQTT"


def test_liftwatch_consumers_cannot_publish(setup: Setup) -> None:
    ingest = setup.client("ingest").connect()
    try:
        assert ingest.publish(f"lifts/{setup.lift_a}/telemetry", telemetry(1)) == NOT_AUTHORIZED
    finally:
        ingest.close()


def test_revoke_disconnects_the_device_and_refuses_it(setup: Setup) -> None:
    device = setup.client(setup.lift_c).connect()
    code, out, err = run_cli(
        [
            "devices",
            "revoke",
            setup.lift_c,
            *setup.cli_files(),
            "--reload-pid",
            str(setup.broker.pid),
        ],
        setup.env,
    )
    assert code == 0, err
    assert out.strip() == f"revoked {setup.lift_c}"
    assert device.disconnected.wait(10), "the broker kept the revoked device connected"
    device.close()
    with pytest.raises(RefusedError):
        setup.client(setup.lift_c).connect()
    # The others are unaffected by the reload.
    setup.client(setup.lift_a).connect().close()


def test_compose_healthcheck_command_passes_against_the_broker(setup: Setup) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # Compose turns $$ into $ before the shell sees it; the password comes from the
    # container's environment.
    command = test[1].replace("$$", "$").replace("-p 1883", f"-p {setup.broker.local_port}")
    assert f"-p {setup.broker.local_port}" in command
    env = {"PATH": os.environ["PATH"]}
    good = env | {"MOSQUITTO_HEALTHCHECK_PASSWORD": setup.passwords["healthcheck"]}
    done = subprocess.run(
        ["sh", "-c", command], env=good, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    bad = env | {"MOSQUITTO_HEALTHCHECK_PASSWORD": "wrong"}
    done = subprocess.run(
        ["sh", "-c", command], env=bad, capture_output=True, text=True, timeout=20
    )
    assert done.returncode != 0


def test_shared_subscription_holds_an_offline_workers_share(setup: Setup) -> None:
    """What docs/scaling.md tells operators about several ingest workers: Mosquitto 2.0 keeps
    dealing messages round-robin to a member whose persistent session is offline, and that
    member gets them when it returns (delayed, not lost; stranded if it never returns)."""
    token = uuid.uuid4().hex[:6]

    def worker(n: int) -> Client:
        return Client(
            setup.broker.tls_port,
            setup.broker.ca_file,
            "ingest",
            setup.passwords["ingest"],
            v5=False,
            client_id=f"liftwatch-ingest-{token}-{n}",
            persistent=True,
        )

    online, offline = worker(1).connect(), worker(2).connect()
    for w in (online, offline):
        assert w.subscribe(f"$share/ingest-{token}/lifts/{setup.lift_b}/#") == 1
    offline.close()
    device = setup.client(setup.lift_b).connect()
    sent = [telemetry(seq) for seq in range(10)]
    try:
        for payload in sent:
            assert device.publish(f"lifts/{setup.lift_b}/telemetry", payload) == 0
    finally:
        device.close()
    first = [online.next_message().payload for _ in range(5)]
    online.close()
    returned = worker(2).connect()
    try:
        second = [returned.next_message().payload for _ in range(5)]
    finally:
        returned.close()
    # Ten distinct messages: the offline member's half waited for it.
    assert sorted(first + second) == sorted(sent)


def test_persistent_session_keeps_every_qos1_message_across_a_restart(setup: Setup) -> None:
    """Runs last in this module: it restarts the broker. 1,500 queued messages are more than
    Mosquitto's default max_queued_messages (1,000). QoS 0 telemetry is mixed in, as devices
    do: with queue_qos0_messages true, Mosquitto 2.0.11 lost QoS 1 messages here."""
    session = f"liftwatch-ingest-{uuid.uuid4().hex[:6]}"

    def ingest() -> Client:
        return Client(
            setup.broker.tls_port,
            setup.broker.ca_file,
            "ingest",
            setup.passwords["ingest"],
            v5=False,
            client_id=session,
            persistent=True,
        )

    consumer = ingest().connect()
    assert consumer.subscribe("lifts/#") == 1
    consumer.close()  # offline, session kept
    qos1 = []
    device = setup.client(setup.lift_a).connect()
    try:
        for seq in range(1500):
            qos = 0 if seq % 100 == 50 else 1
            device.publish(f"lifts/{setup.lift_a}/telemetry", telemetry(seq), qos=qos)
            if qos:
                qos1.append(seq)
        sentinel = telemetry(1500)
        device.publish(f"lifts/{setup.lift_a}/event", sentinel, qos=1)
        qos1.append(1500)
    finally:
        device.close()
    setup.broker.restart()  # SIGTERM: Mosquitto writes its persistence file on the way out
    consumer = ingest().connect()
    try:
        got = consumer.until(sentinel, timeout=10)
    finally:
        consumer.close()
    seqs = [json.loads(m.payload)["seq"] for m in got]
    assert [s for s in seqs if s % 100 != 50] == qos1


def test_shipped_config_paths_match_the_provision_defaults() -> None:
    from liftwatch.provision import DEFAULT_ACL_FILE, DEFAULT_PASSWORD_FILE

    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert f"password_file {DEFAULT_PASSWORD_FILE}" in conf
    assert f"acl_file {DEFAULT_ACL_FILE}" in conf
    assert "allow_anonymous false" in conf
    assert Path(DEFAULT_PASSWORD_FILE).parent == Path(DEFAULT_ACL_FILE).parent


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_liftwatch_mqtt_client_over_tls_with_password(
    setup: Setup, protocol: Literal["3.1.1", "5"], caplog: pytest.LogCaptureFixture
) -> None:
    """liftwatch's own consumer (liftwatch/mqtt/, used by ingest and alerts) against the
    shipped broker configuration: mqtts:// with the private CA, the ingest user's password,
    MQTT 3.1.1 and 5; a wrong password is refused and never counts as connected."""
    marker = uuid.uuid4().hex

    def settings(password: str) -> Settings:
        return Settings(
            mqtt_url=f"mqtts://ingest:{quote(password, safe='')}@127.0.0.1:{setup.broker.tls_port}",
            mqtt_ca_file=setup.broker.ca_file,
            mqtt_protocol=protocol,
        )

    got: list[RawMessage] = []
    arrived, connected, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handle(batch: list[RawMessage]) -> None:
        got.extend(batch)
        if any(marker.encode() in m.payload for m in batch):
            arrived.set()

    task = asyncio.create_task(
        consume(
            settings(setup.passwords["ingest"]),
            client_id=f"tls-{protocol}-{marker[:8]}",
            kinds=("#",),
            handle_batch=handle,
            stop=stop,
            on_connect=connected.set,
        )
    )
    try:
        await asyncio.wait_for(connected.wait(), 20)
        device = setup.client(setup.lift_a).connect()
        try:
            assert device.publish(f"lifts/{setup.lift_a}/telemetry", telemetry(7, marker)) == 0
        finally:
            device.close()
        await asyncio.wait_for(arrived.wait(), 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert [m.topic for m in got if marker.encode() in m.payload] == [
        f"lifts/{setup.lift_a}/telemetry"
    ]

    stats = ConsumerStats()
    stop = asyncio.Event()
    with caplog.at_level("WARNING", logger="liftwatch.mqtt"):
        task = asyncio.create_task(
            consume(
                settings("not-the-password"),
                client_id=f"tls-bad-{marker[:8]}",
                handle_batch=handle,
                stop=stop,
                stats=stats,
            )
        )
        try:
            await eventually(
                lambda: any("mqtt_connect_failed" in r.getMessage() for r in caplog.records),
                20,
                what="the refusal logged",
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    assert stats.connects == 0 and not stats.connected
    assert "not-the-password" not in caplog.text  # secrets never logged
