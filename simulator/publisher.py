"""Put simulated device messages on MQTT, like the devices would.

Two ways to connect:

- **one connection per lift** (``per_lift=True``): each lift is its own MQTT client with a
  Last Will ``{"v":1,"state":"offline"}`` (QoS 1, retained) on its status topic and publishes
  ``online`` (retained) after every connect, exactly as PROTOCOL.md asks of a device. An
  injected ``connection_lost`` closes the socket without DISCONNECT, so the *broker* publishes
  the Will. Realistic; costs one socket (and a paho client, ~30 KB) per lift.
- **shared connections** (``per_lift=False``, load tests): ``connections`` clients carry all
  lifts, a lift always on the same one (CRC32 of its id). ``online`` is published per lift
  after connect; there is no per-lift Will, so ``connection_lost`` publishes ``offline``
  itself.

Every client is driven from the caller's thread through paho's external-loop API
(``loop_read``/``loop_write``/``loop_misc`` on a :mod:`selectors` selector): no thread per
client, so ten thousand connections fit in one process.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from liftwatch.settings import MqttTarget
from simulator.model import LinkChange, Message, Output

log = logging.getLogger("liftwatch.simulator.publisher")
ONLINE = msgspec.json.encode({"v": 1, "state": "online"})
OFFLINE = msgspec.json.encode({"v": 1, "state": "offline"})
_BACKLOG_MAX = 10_000


class PublisherError(RuntimeError):
    """The broker could not be reached or refused the connection."""


@dataclass
class Stats:
    published: int = 0
    acked: int = 0
    errors: int = 0
    dropped: int = 0
    reconnects: int = 0


class _Conn:
    __slots__ = ("backlog", "client", "connected", "down", "lifts", "name", "retry_at", "sock")

    client: mqtt.Client

    def __init__(self, name: str, lifts: list[str]) -> None:
        self.name = name
        self.lifts = lifts
        self.connected = False
        self.down = False  # deliberately disconnected (injected fault)
        self.sock: Any = None
        self.retry_at = 0.0
        self.backlog: list[Message] = []  # sampled while (re)connecting: sent after `online`


class Publisher:
    def __init__(
        self,
        target: MqttTarget,
        prefix: str = "lifts",
        *,
        per_lift: bool = True,
        connections: int = 1,
        client_id_prefix: str = "liftsim",
        protocol: str = "3.1.1",
        keepalive: int = 30,
        ca_file: Path | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.prefix = prefix
        self.per_lift = per_lift
        self.connections = max(1, connections)
        self.client_id_prefix = client_id_prefix
        self.protocol = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.keepalive = keepalive
        self.ca_file = ca_file
        self.on_error = on_error
        self.stats = Stats()
        self._sel = selectors.DefaultSelector()
        self._conns: list[_Conn] = []
        self._by_lift: dict[str, _Conn] = {}
        self._writing: set[_Conn] = set()
        self._last_misc = 0.0

    # ------------------------------------------------------------------------ setup ----
    def topic(self, lift_id: str, kind: str) -> str:
        return f"{self.prefix}/{lift_id}/{kind}"

    def start(
        self,
        lift_ids: Iterable[str],
        timeout: float = 30.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Connect every client and wait for every CONNACK (``progress(done, total)``)."""
        ids = list(lift_ids)
        if self.per_lift:
            groups = [[lift] for lift in ids]
        else:
            groups = [[] for _ in range(min(self.connections, max(1, len(ids))))]
            for lift in ids:
                groups[zlib.crc32(lift.encode()) % len(groups)].append(lift)
        for i, lifts in enumerate(groups):
            name = (
                f"{self.client_id_prefix}-{lifts[0]}"
                if self.per_lift
                else (f"{self.client_id_prefix}-shared-{i}")
            )
            conn = _Conn(name, lifts)
            conn.client = self._make_client(conn)
            self._conns.append(conn)
            for lift in lifts:
                self._by_lift[lift] = conn
        deadline = time.monotonic() + timeout
        for conn in self._conns:
            self._connect(conn)
            self._pump(0)
            if progress:
                progress(self.connected, len(self._conns))
            if time.monotonic() > deadline:
                break
        while self.connected < len(self._conns):
            if time.monotonic() > deadline:
                raise PublisherError(
                    f"only {self.connected} of {len(self._conns)} MQTT connections to "
                    f"{self.target!r} were accepted within {timeout:.0f} s"
                )
            self._pump(0.05)
            if progress:
                progress(self.connected, len(self._conns))

    def _make_client(self, conn: _Conn) -> mqtt.Client:
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = True
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=conn.name,
            protocol=self.protocol,
            userdata=conn,
            **kwargs,
        )
        # 0 = no limit. With a limit, paho rescans every outstanding message on each PUBACK
        # (Client._update_inflight), which is quadratic under load: measured 24 s of CPU
        # for 32k messages at a limit of 1000.
        client.max_inflight_messages_set(0)
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set(ca_certs=str(self.ca_file) if self.ca_file else None)
        if self.per_lift:
            client.will_set(self.topic(conn.lifts[0], "status"), OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, _c: mqtt.Client, conn: _Conn, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._error(f"{conn.name}: connection refused: {rc}")
            return
        conn.connected = True
        for lift in conn.lifts:
            self._publish(conn, self.topic(lift, "status"), ONLINE, 1, True)
        backlog, conn.backlog = conn.backlog, []
        for msg in backlog:
            self._send_message(conn, msg)

    def _on_disconnect(self, _c: mqtt.Client, conn: _Conn, _f: Any, rc: Any, _p: Any) -> None:
        was = conn.connected
        conn.connected = False
        self._unregister(conn)
        if was and not conn.down:
            self._error(f"{conn.name}: connection lost ({rc}); retrying")
            conn.retry_at = time.monotonic() + 1.0

    def _on_publish(self, _c: mqtt.Client, _conn: _Conn, _mid: int, _rc: Any, _p: Any) -> None:
        # paho calls this on PUBACK for QoS 1 and once written for QoS 0.
        self.stats.acked += 1

    def _connect(self, conn: _Conn) -> None:
        try:
            if conn.sock is None and conn.client.socket() is None and not conn.retry_at:
                conn.client.connect(self.target.host, self.target.port, self.keepalive)
            else:
                conn.client.reconnect()
        except (OSError, ssl.SSLError) as exc:
            self._error(f"{conn.name}: cannot connect to {self.target!r}: {exc}")
            conn.retry_at = time.monotonic() + 2.0
            return
        conn.retry_at = 0.0
        self._register(conn)

    def _register(self, conn: _Conn) -> None:
        sock = conn.client.socket()
        if sock is None:
            return
        conn.sock = sock
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        self._sel.register(sock, selectors.EVENT_READ, conn)
        self._want_write(conn)

    def _unregister(self, conn: _Conn) -> None:
        if conn.sock is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(conn.sock)
            conn.sock = None
        self._writing.discard(conn)

    def _error(self, text: str) -> None:
        self.stats.errors += 1
        log.warning("event=publisher_error detail=%r", text)
        if self.on_error:
            self.on_error(text)

    # ----------------------------------------------------------------------- sending ----
    @property
    def connected(self) -> int:
        return sum(1 for c in self._conns if c.connected)

    @property
    def lifts_connected(self) -> int:
        return sum(len(c.lifts) for c in self._conns if c.connected)

    def send(self, item: Output) -> None:
        conn = self._by_lift.get(item.lift_id)
        if conn is None:
            raise KeyError(f"lift {item.lift_id} was not started on this publisher")
        if isinstance(item, LinkChange):
            self._link(conn, item)
            return
        self._send_message(conn, item)

    def _send_message(self, conn: _Conn, msg: Message) -> None:
        if not conn.connected:
            if conn.sock is not None and not conn.down and len(conn.backlog) < _BACKLOG_MAX:
                conn.backlog.append(msg)  # connecting: CONNACK not in yet
            else:
                self.stats.dropped += 1
            return
        self._publish(conn, self.topic(msg.lift_id, msg.kind), msg.payload, msg.qos, msg.retain)

    def _publish(self, conn: _Conn, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = conn.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._error(f"{conn.name}: publish failed: {mqtt.error_string(info.rc)}")
            return
        self.stats.published += 1
        self._want_write(conn)

    def _want_write(self, conn: _Conn) -> None:
        if conn.sock is not None and conn.client.want_write() and conn not in self._writing:
            self._writing.add(conn)
            self._sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _link(self, conn: _Conn, change: LinkChange) -> None:
        if not self.per_lift:
            # One lift cannot drop a shared connection: say what its Will would have said.
            state = ONLINE if change.up else OFFLINE
            self._publish(conn, self.topic(change.lift_id, "status"), state, 1, True)
            return
        if change.up:
            conn.down = False
            self._connect(conn)
            return
        conn.down = True
        sock = conn.sock
        self._unregister(conn)
        if isinstance(sock, socket.socket):
            # Close the TCP connection without an MQTT DISCONNECT: the broker sends the Will.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            conn.client.loop_read()  # paho sees EOF and marks the connection lost
        conn.connected = False

    # ----------------------------------------------------------------------- the loop ----
    def poll(self, timeout: float) -> None:
        """Move bytes for up to ``timeout`` seconds (returns early once there was traffic)."""
        self._pump(timeout)

    def _pump(self, timeout: float) -> None:
        if not self._sel.get_map():
            time.sleep(min(timeout, 0.05)) if timeout > 0 else None
        else:
            for key, mask in self._sel.select(timeout):
                conn: _Conn = key.data
                client = conn.client
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE and conn.sock is not None:
                    client.loop_write()
        for conn in list(self._writing):
            if conn.sock is None:
                self._writing.discard(conn)
            elif not conn.client.want_write():
                self._writing.discard(conn)
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for conn in self._conns:
                if conn.sock is not None:
                    conn.client.loop_misc()
                elif not conn.down and conn.retry_at and now >= conn.retry_at:
                    self.stats.reconnects += 1
                    self._connect(conn)

    @property
    def pending(self) -> int:
        """Messages handed to paho and not yet written (QoS 0) or acknowledged (QoS 1)."""
        return self.stats.published - self.stats.acked

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every publish is acknowledged (or written, for QoS 0)."""
        deadline = time.monotonic() + timeout
        while self.pending > 0 or self._writing:
            if time.monotonic() > deadline or not self.connected:
                return False
            self._pump(0.02)
        return True

    def close(self, *, offline: bool = False, timeout: float = 10.0) -> None:
        """Flush, optionally publish ``offline`` for every lift, then disconnect cleanly (a
        clean DISCONNECT discards the Will, as it does for a device switched off properly)."""
        if offline:
            for lift, conn in self._by_lift.items():
                if conn.connected:
                    self._publish(conn, self.topic(lift, "status"), OFFLINE, 1, True)
        self.flush(timeout)
        for conn in self._conns:
            conn.down = True
            if conn.connected:
                conn.client.disconnect()
                with contextlib.suppress(OSError):
                    conn.client.loop_write()
            self._unregister(conn)
        self._sel.close()
