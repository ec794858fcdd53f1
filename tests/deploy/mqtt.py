"""A small blocking MQTT client for the broker-security tests.

paho directly rather than aiomqtt: these tests need the broker's reason codes (CONNACK refusal,
PUBACK 0x87 "not authorized"), which aiomqtt does not surface for publishes. Every wait is on
an event or a queue with a deadline, never a sleep.
"""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

NOT_AUTHORIZED = 0x87
TIMEOUT = 5.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes


class RefusedError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"connection refused with reason code {code:#x}")
        self.code = code


class Client:
    def __init__(
        self,
        port: int,
        ca_file: Path | None,
        username: str | None = None,
        password: str | None = None,
        *,
        v5: bool = True,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port
        # A persistent session: MQTT 3.1.1 clean_session=0 (MQTT 5 would need an expiry too).
        assert not (persistent and v5), "persistent sessions are tested over MQTT 3.1.1"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=False if persistent else None,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connack: queue.Queue[int] = queue.Queue()
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self._acks: dict[int, queue.Queue[int]] = {}
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe

    # paho callbacks (network thread) -----------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._connack.put(rc.value)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload)))

    def _ack(self, mid: int, code: int) -> None:
        with self._lock:
            waiter = self._acks.setdefault(mid, queue.Queue())
        waiter.put(code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._ack(mid, rc.value)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        rcs: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        self._ack(mid, rcs[0].value)

    def _wait_ack(self, mid: int) -> int:
        with self._lock:
            waiter = self._acks.setdefault(mid, queue.Queue())
        code = waiter.get(timeout=TIMEOUT)
        with self._lock:
            del self._acks[mid]
        return code

    # blocking API ----------------------------------------------------------------------------
    def connect(self) -> Client:
        """Connect and wait for CONNACK; raises :class:`RefusedError` when refused."""
        self._client.connect("127.0.0.1", self.port, keepalive=30)
        self._client.loop_start()
        code = self._connack.get(timeout=TIMEOUT)
        if code != 0:
            self.close()
            raise RefusedError(code)
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish and, for QoS 1, wait for the PUBACK; returns its reason code."""
        info = self._client.publish(topic, payload, qos=qos)
        if qos == 0:
            info.wait_for_publish(TIMEOUT)
            return 0
        return self._wait_ack(info.mid)

    def subscribe(self, topic: str, qos: int = 1) -> int:
        _, mid = self._client.subscribe(topic, qos=qos)
        assert mid is not None
        return self._wait_ack(mid)

    def next_message(self, timeout: float = TIMEOUT) -> Received:
        return self.messages.get(timeout=timeout)

    def until(self, payload: bytes, timeout: float = TIMEOUT) -> list[Received]:
        """Everything received up to and including the message carrying ``payload``."""
        got = []
        while True:
            msg = self.next_message(timeout)
            got.append(msg)
            if msg.payload == payload:
                return got

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
