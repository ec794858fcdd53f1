"""The one broker TLS context (liftwatch/tls.py), used by the MQTT consumer and /readyz."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from liftwatch.settings import Settings
from liftwatch.tls import broker_tls_context


def test_plain_mqtt_has_no_context() -> None:
    assert broker_tls_context(Settings(mqtt_url="mqtt://127.0.0.1:1883")) is None


def test_mqtts_verifies_the_broker() -> None:
    ctx = broker_tls_context(Settings(mqtt_url="mqtts://127.0.0.1:8883"))
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_ca_file_is_the_only_trust_anchor(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    key = tmp_path / "ca.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=liftwatch-test-ca",
            "-keyout",
            str(key),
            "-out",
            str(ca),
        ],
        check=True,
        capture_output=True,
    )
    ctx = broker_tls_context(Settings(mqtt_url="mqtts://127.0.0.1:8883", mqtt_ca_file=ca))
    assert ctx is not None
    subjects = [c["subject"] for c in ctx.get_ca_certs()]
    assert subjects == [((("commonName", "liftwatch-test-ca"),),)]
