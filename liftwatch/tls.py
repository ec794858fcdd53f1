"""The TLS context for liftwatch's connections to the MQTT broker, built in one place for the
consumer (:mod:`liftwatch.mqtt`) and the API's readiness probe (api/readiness.py)."""

from __future__ import annotations

import ssl

from liftwatch.settings import Settings


def broker_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying client context for an ``mqtts://`` broker (the system CAs, or only
    ``LIFTWATCH_MQTT_CA_FILE`` when set); None for plain ``mqtt://``. Built afresh on each call,
    so a reconnect reads a replaced CA file."""
    if not settings.mqtt.tls:
        return None
    ca = settings.mqtt_ca_file
    return ssl.create_default_context(cafile=str(ca) if ca else None)
