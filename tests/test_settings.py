"""Settings: DESIGN.md's keys, TOML file, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from liftwatch.settings import MqttTarget, SettingsError, load_settings

DESIGN_KEYS = {
    "LIFTWATCH_MQTT_URL": ("mqtt_url", "mqtt://127.0.0.1:1883"),
    "LIFTWATCH_MQTT_TOPIC_PREFIX": ("mqtt_topic_prefix", "lifts"),
    "LIFTWATCH_INFLUX_URL": ("influx_url", "http://127.0.0.1:8086"),
    "LIFTWATCH_INFLUX_DATABASE": ("influx_database", "liftwatch"),
    "LIFTWATCH_DATA_DIR": ("data_dir", Path("./data")),
    "LIFTWATCH_API_HOST": ("api_host", "127.0.0.1"),
    "LIFTWATCH_API_PORT": ("api_port", 8000),
    "LIFTWATCH_WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", False),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LIFTWATCH_"):
            monkeypatch.delenv(key)


def test_defaults_are_designs() -> None:
    settings = load_settings()
    for attr, default in DESIGN_KEYS.values():
        assert getattr(settings, attr) == default, attr
    assert settings.influx_token is None and settings.admin_token is None


def test_environment_sets_every_design_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTWATCH_MQTT_URL", "mqtts://dev:s3cret@broker.example:8883")
    monkeypatch.setenv("LIFTWATCH_MQTT_TOPIC_PREFIX", "city/lifts")
    monkeypatch.setenv("LIFTWATCH_INFLUX_URL", "https://influx.example:8086/")
    monkeypatch.setenv("LIFTWATCH_INFLUX_DATABASE", "lw")
    monkeypatch.setenv("LIFTWATCH_INFLUX_TOKEN", "tok")
    monkeypatch.setenv("LIFTWATCH_INFLUX_USERNAME", "u")
    monkeypatch.setenv("LIFTWATCH_INFLUX_PASSWORD", "p")
    monkeypatch.setenv("LIFTWATCH_DATA_DIR", "/var/lib/liftwatch")
    monkeypatch.setenv("LIFTWATCH_API_HOST", "0.0.0.0")
    monkeypatch.setenv("LIFTWATCH_API_PORT", "9000")
    monkeypatch.setenv("LIFTWATCH_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("LIFTWATCH_WEBHOOK_ALLOW_PRIVATE", "true")
    s = load_settings()
    assert s.mqtt_topic_prefix == "city/lifts"
    assert s.influx_url == "https://influx.example:8086"
    assert s.influx_token is not None and s.influx_token.get_secret_value() == "tok"
    assert s.influx_password is not None and s.influx_password.get_secret_value() == "p"
    assert (s.influx_database, s.influx_username) == ("lw", "u")
    assert s.data_dir == Path("/var/lib/liftwatch") and s.api_port == 9000
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "admin-secret"
    assert s.webhook_allow_private is True and s.api_host == "0.0.0.0"
    target = s.mqtt
    assert (target.host, target.port, target.tls) == ("broker.example", 8883, True)
    assert (target.username, target.password) == ("dev", "s3cret")
    # Secrets never show in a repr that could reach a log line.
    assert (
        "s3cret" not in repr(s) and "admin-secret" not in repr(s) and "s3cret" not in repr(target)
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LIFTWATCH_MQTT_URL", "http://broker:1883"),
        ("LIFTWATCH_MQTT_URL", "mqtt://"),
        ("LIFTWATCH_MQTT_URL", "mqtt://host:notaport"),
        ("LIFTWATCH_INFLUX_URL", "influx:8086"),
        ("LIFTWATCH_API_PORT", "70000"),
        ("LIFTWATCH_API_PORT", "eighty"),
        ("LIFTWATCH_WEBHOOK_ALLOW_PRIVATE", "perhaps"),
        ("LIFTWATCH_MQTT_TOPIC_PREFIX", "lifts/#"),
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"entrapmnt_s": 20}'),  # a typo keeps no default
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"entrapment_s": -1}'),
        # FAULTS.md 1.1 #1: durations > 0 and <= 30 days, counts integers 1-1000, finite.
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"entrapment_s": 0}'),
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"escalation_s": 1e999}'),
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"auto_resolve_s": 2592001}'),
        ("LIFTWATCH_ALERTS_THRESHOLDS", '{"flood_limit": 2.5}'),
        ("LIFTWATCH_DATABASE_URL", "mysql://root@localhost/lw"),
        ("LIFTWATCH_DATABASE_URL", "/var/lib/liftwatch/liftwatch.sqlite3"),
        ("LIFTWATCH_DATABASE_POOL_SIZE", "0"),
    ],
)
def test_invalid_settings_name_the_key(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=key):
        load_settings()


def test_unknown_environment_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LIFTWATCH_MQTT_UR", "mqtt://typo:1883")
    monkeypatch.setenv("LIFTWATCH_TEST_ANYTHING", "x")  # the test suite's own
    with caplog.at_level("WARNING", logger="liftwatch.settings"):
        load_settings()
    messages = [r.getMessage() for r in caplog.records]
    assert "event=unknown_setting_ignored name=LIFTWATCH_MQTT_UR (a typo?)" in messages
    assert not any("LIFTWATCH_TEST_" in m for m in messages)


def test_toml_file_and_environment_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "liftwatch.toml"
    conf.write_text(
        'mqtt_topic_prefix = "site1"\napi_port = 8100\nLIFTWATCH_INFLUX_DATABASE = "x"\n'
    )
    s = load_settings(conf)
    assert (s.mqtt_topic_prefix, s.api_port, s.influx_database) == ("site1", 8100, "x")
    monkeypatch.setenv("LIFTWATCH_API_PORT", "8200")
    assert load_settings(conf).api_port == 8200


def test_toml_errors_are_clear(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("api_port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(conf)
    conf.write_text("no_such_key = 1\n")
    with pytest.raises(SettingsError, match="LIFTWATCH_NO_SUCH_KEY"):
        load_settings(conf)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_mqtt_target_defaults_ports() -> None:
    assert MqttTarget.parse("mqtt://h").port == 1883
    assert MqttTarget.parse("mqtts://h").port == 8883


def test_cli_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    env = {"LIFTWATCH_MQTT_URL": "ftp://x", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "liftwatch", "decode", "lifts/L1/status", '{"v":1}'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 78
    assert "LIFTWATCH_MQTT_URL" in proc.stderr


def test_the_store_is_the_data_dir_file_unless_a_database_url_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIFTWATCH_DATA_DIR", str(tmp_path))
    assert load_settings().database == str(tmp_path / "liftwatch.sqlite3")
    monkeypatch.setenv(
        "LIFTWATCH_DATABASE_URL", "postgresql://lw:pw@db.example:5432/lw?sslmode=require"
    )
    settings = load_settings()
    assert settings.database == "postgresql://lw:pw@db.example:5432/lw?sslmode=require"
    assert "pw@" not in repr(settings)  # the URL carries a password: never in a log line
    monkeypatch.setenv("LIFTWATCH_DATABASE_URL", "")
    assert load_settings().database == str(tmp_path / "liftwatch.sqlite3")
