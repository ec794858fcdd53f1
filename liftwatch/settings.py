"""Configuration: environment variables with the ``LIFTWATCH_`` prefix, or a TOML file.

The keys are DESIGN.md's table plus the tuning knobs each part documents in
docs/configuration.md. Environment variables win over the TOML file (``--config``).
Invalid settings fail at start with a message naming the key (:class:`SettingsError`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse as parse_rate
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from liftwatch.allowlist import parse_private_allow
from liftwatch.thresholds import ThresholdError, check

log = logging.getLogger(__name__)

ENV_PREFIX = "LIFTWATCH_"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )

    # --- DESIGN.md § Configuration -------------------------------------------------------
    # repr=False: the URL may carry a password, and settings get logged.
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", repr=False)
    mqtt_topic_prefix: str = "lifts"
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "liftwatch"
    influx_token: SecretStr | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    data_dir: Path = Path("./data")
    # The operational store (docs/storage.md): unset, the SQLite file under data_dir; or
    # sqlite:///path, or postgresql://user:password@host:port/db (libpq URL, sslmode etc.).
    database_url: str | None = Field(default=None, repr=False)
    database_pool_size: int = Field(default=10, ge=1, le=200)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    webhook_allow_private: bool = False  # dangerous (tests, demos): docs/configuration.md
    # Private webhook targets the administrator allows: CIDRs with optional ports.
    webhook_private_allow: str = ""

    @field_validator("webhook_private_allow")
    @classmethod
    def _check_private_allow(cls, value: str) -> str:
        parse_private_allow(value)  # a ValueError names the bad entry
        return value

    # --- MQTT consumers ----------------------------------------------------------------------
    mqtt_protocol: Literal["3.1.1", "5"] = "5"
    mqtt_ca_file: Path | None = None
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_share_group: str = ""
    ingest_client_id: str = "liftwatch-ingest"
    alerts_client_id: str = "liftwatch-alerts"
    # This process's name among several alerts replicas on one store (docs/ha.md): unique per
    # process; its MQTT client id is then ``<alerts_client_id>-<replica id>``. Empty: replica
    # "main" on ``alerts_client_id`` itself (one replica, as before).
    alerts_replica_id: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$")

    # --- ingest ------------------------------------------------------------------------------
    ingest_batch_size: int = Field(default=5000, ge=1, le=100_000)
    ingest_batch_age_ms: int = Field(default=200, ge=1, le=60_000)
    ingest_max_concurrent_writes: int = Field(default=2, ge=1, le=32)
    ingest_max_unacked: int = Field(default=20_000, ge=10, le=1_000_000)
    ingest_metrics_port: int = Field(default=9108, ge=0, le=65535)
    dead_letter_max: int = Field(default=100_000, ge=100)
    ingest_spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    ingest_metrics_host: str = "127.0.0.1"

    # --- alerts ------------------------------------------------------------------------------
    alerts_thresholds: dict[str, float] = Field(default_factory=dict)
    alerts_metrics_port: int = Field(default=9109, ge=0, le=65535)

    # --- api (docs/configuration.md § api) ------------------------------------------------------
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    api_max_import_bytes: int = Field(default=33_554_432, ge=1024, le=1_073_741_824)
    api_sse_poll_ms: int = Field(default=250, ge=10, le=10_000)

    # --- people's logins (docs/console.md § Accounts and sessions) ---------------------------
    session_idle_timeout_s: int = Field(default=7200, ge=60, le=30 * 86400)
    session_lifetime_s: int = Field(default=43200, ge=60, le=90 * 86400)
    # auto: the cookie is Secure when the request came over TLS; always: behind a TLS proxy.
    session_cookie_secure: Literal["auto", "always"] = "auto"
    # Origins besides the API's own Host that may send cookie-authenticated writes.
    session_trusted_origins: str = ""
    login_limit_per_user: str = "10 per 15 minutes"
    login_limit_per_address: str = "100 per 15 minutes"

    @field_validator("login_limit_per_user", "login_limit_per_address")
    @classmethod
    def _check_login_limit(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError:
            raise ValueError(
                f"{value[:60]!r} is not a rate such as '10 per 15 minutes' or '100/hour'"
            ) from None
        return value

    @field_validator("session_trusted_origins")
    @classmethod
    def _check_trusted_origins(cls, value: str) -> str:
        for origin in value.replace(",", " ").split():
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                raise ValueError(f"{origin[:80]!r} is not an origin such as https://lw.example")
        return value

    # --- people's time (docs/configuration.md) -----------------------------------------------
    # IANA zone of the site: month reports (``month=2026-11``) and times shown to people.
    timezone: str = "Asia/Shanghai"

    # --- the command-line client (``liftwatch alarms|tokens|webhooks``, docs/cli.md) --------
    # Where the commands reach the API; unset: http://LIFTWATCH_API_HOST:LIFTWATCH_API_PORT.
    api_url: str | None = None
    # The bearer token the commands send; unset: LIFTWATCH_ADMIN_TOKEN (the service's own).
    api_token: SecretStr | None = None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        value = value.strip()
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value[:60]!r}: use an IANA name such as Asia/Shanghai or UTC"
            ) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: set LIFTWATCH_API_TOKEN instead")
        _ = parts.port
        return value.strip().rstrip("/")

    @property
    def client_api_url(self) -> str:
        """The API base URL the client commands use (without ``/api/v1``)."""
        if self.api_url:
            return self.api_url
        host = self.api_host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 (a wildcard: reach it on loopback)
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

    @property
    def client_token(self) -> str | None:
        """LIFTWATCH_API_TOKEN, else LIFTWATCH_ADMIN_TOKEN; never logged."""
        for secret in (self.api_token, self.admin_token):
            if secret is not None and secret.get_secret_value().strip():
                return secret.get_secret_value().strip()
        return None

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. mqtt://127.0.0.1:1883")
        _ = parts.port  # raises ValueError on a bad port
        return value

    @field_validator("influx_url")
    @classmethod
    def _check_influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        _ = parts.port
        return value.rstrip("/")

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if (
            not value
            or any(c in value for c in "+#\0")
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError("must be a non-empty topic level without wildcards or edge slashes")
        return value

    @field_validator("alerts_thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float]) -> dict[str, float]:

        try:
            return check(value, "thresholds")
        except ThresholdError as exc:
            raise ValueError(str(exc)) from None

    @property
    def mqtt(self) -> MqttTarget:
        return MqttTarget.parse(self.mqtt_url)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "must be sqlite:///path or postgresql://user:password@host:port/database"
            )
        return value.strip()

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "liftwatch.sqlite3"

    @property
    def alerts_replica(self) -> str:
        """This alerts replica's id in the store's leases (docs/ha.md)."""
        return self.alerts_replica_id or "main"

    @property
    def alerts_mqtt_client_id(self) -> str:
        """The alerts replica's own MQTT session: every replica receives every message."""
        if self.alerts_replica_id:
            return f"{self.alerts_client_id}-{self.alerts_replica_id}"
        return self.alerts_client_id

    @property
    def database(self) -> str:
        """What :class:`liftwatch.store.Database` opens: LIFTWATCH_DATABASE_URL, else the
        SQLite file under LIFTWATCH_DATA_DIR."""
        return self.database_url or str(self.sqlite_path)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, then values passed in (from the TOML file).
        return env_settings, init_settings


class MqttTarget:
    """The parts of ``LIFTWATCH_MQTT_URL``; the password is never part of ``repr``."""

    def __init__(self, host: str, port: int, tls: bool, username: str | None, password: str | None):
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username, password

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __repr__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        return f"<MqttTarget {scheme}://{user}{self.host}:{self.port}>"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, an optional TOML file and explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            with config_file.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from exc
        section = raw.get("liftwatch", raw)
        values.update({str(k).lower().removeprefix("liftwatch_"): v for k, v in section.items()})
    values.update(overrides)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    for name in unknown_environment():
        log.warning("event=unknown_setting_ignored name=%s (a typo?)", name)
    return settings


def unknown_environment() -> list[str]:
    """``LIFTWATCH_*`` environment variables that are not settings (e.g. a misspelt one, which
    would otherwise leave the default in force unnoticed). ``LIFTWATCH_TEST_*`` and
    ``LIFTWATCH_DEMO_*`` belong to the test suite and the demo."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not name.upper().startswith((ENV_PREFIX + "TEST_", ENV_PREFIX + "DEMO_"))
    )


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        name = ENV_PREFIX + key.upper()
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name} ({key})")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")  # pydantic's prefix
            lines.append(f"invalid setting {name}: {message}")
    return "; ".join(lines)


EXIT_CONFIG: Final = 78  # EX_CONFIG from sysexits.h: what systemd units and scripts expect


def settings_from(args: argparse.Namespace) -> Settings:
    """Load settings for a command handler (``--config`` FILE); exits with EXIT_CONFIG and a
    message naming the key when invalid."""
    try:
        return load_settings(args.config)
    except SettingsError as exc:
        print(f"liftwatch: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def admin_token_problem(settings: Settings) -> str | None:
    """Why the API must not start with these settings (the bootstrap admin token), or None."""
    token = settings.admin_token.get_secret_value().strip() if settings.admin_token else ""
    if not token:
        return (
            "LIFTWATCH_ADMIN_TOKEN is not set; the API refuses to start without a "
            "bootstrap administrator token. Generate one, e.g. "
            '`export LIFTWATCH_ADMIN_TOKEN=$(python3 -c "import secrets; '
            'print(secrets.token_urlsafe(32))")`'
        )
    if len(token) < 16:
        return "LIFTWATCH_ADMIN_TOKEN is too short (16+ characters)"
    return None


def api_settings_from(args: argparse.Namespace) -> Settings:
    """:func:`settings_from` for a command that serves the API: also exits with EXIT_CONFIG
    when the bootstrap admin token is missing or too short."""
    settings = settings_from(args)
    problem = admin_token_problem(settings)
    if problem:
        print(f"liftwatch: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return settings
