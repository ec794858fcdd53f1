"""The shared MQTT consumer of ingest and alerts: QoS 1, persistent session, acks after work.

:func:`consume` subscribes ``{prefix}/+/{kind}`` and hands the received messages over in
**batches**, in receive order, to an async ``handle_batch``. Every message of a batch is
acknowledged (PUBACK) only after ``handle_batch`` returned, and acks go out in receive order
(MQTT 3.1.1 § 4.6.0-2 / MQTT 5 § 4.6). If ``handle_batch`` raises, nothing of that batch is
acknowledged, the connection is dropped and the exception ends :func:`consume`; the broker
redelivers the unacknowledged messages to the next session (at-least-once).

Why not aiomqtt or paho: both process one message per Python call chain (paho reads a packet
with three ``recv`` syscalls and builds an ``MQTTMessage``; aiomqtt adds a future and a queue
hop per message), which measured ~23-60 µs per message on the target machine, more than the
whole ingest budget. This module speaks the small subset of MQTT a QoS 1 subscriber needs
(CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in, PUBACK out, PINGREQ/PINGRESP, DISCONNECT) as an
``asyncio.Protocol``: one ``data_received`` call parses every complete packet of a socket read
in a tight loop, and one ``transport.write`` sends the PUBACKs of a whole batch. Figures and
the trade-off are in docs/ingest.md.

Flow control never drops: at most ``max_unacked`` messages are held in memory. MQTT 5 tells
the broker so (Receive Maximum); with 3.1.1, and as a second guard, the socket stops being
read, which pushes back through TCP to the broker, where the persistent session queues.

One module per job:

* :mod:`liftwatch.mqtt.packets`: the pure packet codec (also used by the test and bench
  publishers: :func:`packet`, :func:`encode_str`);
* :mod:`liftwatch.mqtt.connection`: one connection as an ``asyncio.Protocol`` (the parser);
* :mod:`liftwatch.mqtt.consumer`: consumer policy (batching, ordered acks, flow control,
  reconnect and backoff) and :func:`consume`.
"""

from __future__ import annotations

from liftwatch.mqtt.connection import MqttError
from liftwatch.mqtt.consumer import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    CONNECT_TIMEOUT_S,
    ConsumerStats,
    HandleBatch,
    backoff_delay,
    consume,
    topic_filters,
)
from liftwatch.mqtt.packets import (
    SESSION_EXPIRY_S,
    RawMessage,
    connect_packet,
    encode_str,
    packet,
    puback_bytes,
    subscribe_packet,
)

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "CONNECT_TIMEOUT_S",
    "SESSION_EXPIRY_S",
    "ConsumerStats",
    "HandleBatch",
    "MqttError",
    "RawMessage",
    "backoff_delay",
    "connect_packet",
    "consume",
    "encode_str",
    "packet",
    "puback_bytes",
    "subscribe_packet",
    "topic_filters",
]
