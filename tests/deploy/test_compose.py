"""Acceptance (issue 8): ``deploy/compose.yaml`` cannot run here (no Docker engine), so its
structure is checked: services, volumes, mounts, variables, and health checks that run real
commands. The liftwatch health check runs for real against an HTTP server, the Mosquitto one
in test_broker_security.py against the secured broker."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from liftwatch.localservices import free_port
from liftwatch.settings import Settings
from simulator.receiver import RecordingReceiver
from tests.deploy.broker import DEPLOY, REPO

COMPOSE = DEPLOY / "compose.yaml"
OVERLAY = DEPLOY / "compose.postgresql.yaml"  # the PostgreSQL store (docs/storage.md)
LIFTWATCH_SERVICES = ("ingest", "alerts", "api")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def operator_files() -> list[str]:
    """Paths deploy/README.md has the operator create (secrets, certificates)."""
    lines = (DEPLOY / ".gitignore").read_text().splitlines()
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def test_services_and_images() -> None:
    svc = services()
    assert set(svc) == {"mosquitto", "influxdb", "grafana", "admin", *LIFTWATCH_SERVICES}
    assert svc["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert svc["influxdb"]["image"].startswith("influxdb:2")
    assert svc["grafana"]["image"].startswith("grafana/grafana")
    for name in (*LIFTWATCH_SERVICES, "admin"):
        build = svc[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
    assert svc["admin"]["profiles"] == ["tools"]  # never started by `up`


def test_named_volumes_are_declared_and_used() -> None:
    doc = compose()
    declared = set(doc["volumes"])
    used = set()
    for name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                # A bind mount: in the repository, or created by the operator.
                rel = Path(source).as_posix().removeprefix("./")
                assert (DEPLOY / rel).exists() or any(
                    rel == f or rel.startswith(f + "/") for f in operator_files()
                ), f"{name}: {source} neither exists nor is documented as operator-created"
            else:
                used.add(source)
    assert used == declared


def test_persistent_data_lives_in_volumes() -> None:
    svc = services()
    targets = {
        "mosquitto": "/var/lib/mosquitto",
        "influxdb": "/var/lib/influxdb2",
        "grafana": "/var/lib/grafana",
        "api": "/var/lib/liftwatch",
    }
    for name, path in targets.items():
        assert any(v.split(":")[1] == path for v in svc[name]["volumes"]), name
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence_location /var/lib/mosquitto/" in conf


def test_only_tls_mqtt_is_published() -> None:
    ports = services()["mosquitto"]["ports"]
    assert ports == ["8883:8883"]


def test_mosquitto_runs_the_shipped_config_from_its_mount() -> None:
    svc = services()["mosquitto"]
    script = svc["command"][-1]
    assert "mosquitto -c /etc/mosquitto/liftwatch/mosquitto.conf" in script
    assert "./mosquitto:/etc/mosquitto/liftwatch:ro" in svc["volumes"]


def test_every_variable_is_in_the_env_example() -> None:
    text = COMPOSE.read_text() + OVERLAY.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == example


def test_liftwatch_environment_is_valid_settings() -> None:
    for name in LIFTWATCH_SERVICES:
        env = services()[name]["environment"]
        values: dict[str, Any] = {}
        for key, value in env.items():
            assert key.startswith("LIFTWATCH_"), key
            # As compose would: a default for ${X:-default}, a URL-safe secret for ${X:?...}.
            values[key.removeprefix("LIFTWATCH_").lower()] = re.sub(
                r"\$\{[A-Z0-9_]+(?::([?-])([^}]*))?\}",
                lambda m: m.group(2) if m.group(1) == "-" else "s3cret-Value_1",
                str(value),
            )
        settings = Settings(**values)
        assert settings.mqtt_ca_file is not None
        if name != "api":
            target = settings.mqtt
            assert (target.tls, target.host, target.port) == (True, "mosquitto", 8883)
            assert target.username == name  # the ACL's user for this service


def test_health_checks_cover_every_long_running_service() -> None:
    svc = services()
    for name, spec in svc.items():
        if name == "admin":
            continue
        test = spec["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in spec.get("depends_on", {}).items():
            assert cond["condition"] == "service_healthy"
            assert "healthcheck" in svc[dep], f"{name} waits for {dep}, which has no check"


def test_health_check_executables_exist_in_their_images() -> None:
    """The images cannot be pulled here; these are the programs each one ships."""
    ships = {
        "mosquitto": {"mosquitto_sub"},  # eclipse-mosquitto
        "influxdb": {"influx"},  # influxdb:2 bundles the influx CLI
        "grafana": {"wget"},  # Alpine-based: busybox wget
        **{n: {"python"} for n in LIFTWATCH_SERVICES},  # python:3.11-slim, deploy/Dockerfile
    }
    for name, programs in ships.items():
        test = services()[name]["healthcheck"]["test"]
        argv = shlex.split(test[1]) if test[0] == "CMD-SHELL" else test[1:]
        assert argv[0] in programs, f"{name}: {argv[0]}"


@pytest.mark.parametrize("name", LIFTWATCH_SERVICES)
def test_liftwatch_health_check_runs(name: str) -> None:
    test = services()[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    url = test[-1]
    port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
    settings_port = {"ingest": "ingest_metrics_port", "alerts": "alerts_metrics_port"}
    expected = getattr(Settings(), settings_port.get(name, "api_port"))
    assert port == expected, "the check must probe the port the service listens on"
    receiver = RecordingReceiver()
    try:
        live = [sys.executable, *test[2:-1], url.replace(f":{port}", f":{receiver.port}")]
        assert subprocess.run(live, capture_output=True, timeout=20).returncode == 0
        dead = [sys.executable, *test[2:-1], url.replace(f":{port}", f":{free_port()}")]
        assert subprocess.run(dead, capture_output=True, timeout=20).returncode != 0
    finally:
        receiver.close()


def test_dockerfile_copies_what_the_package_needs() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    for source in sources:
        assert (REPO / source).exists(), source
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= set(sources)
    assert pyproject["project"]["readme"] in sources
    assert 'ENTRYPOINT ["liftwatch"]' in text
    assert "liftwatch" in pyproject["project"]["scripts"]
    assert re.search(r"^USER 10001", text, re.M), "the image must not run as root"


def test_influxdb_init_script_is_valid_shell_mapping_the_right_database() -> None:
    script = DEPLOY / "influxdb" / "init" / "10-liftwatch-v1.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=10).returncode == 0
    text = script.read_text()
    assert "influx v1 dbrp create" in text
    env = services()["influxdb"]["environment"]
    database = services()["api"]["environment"]["LIFTWATCH_INFLUX_DATABASE"]
    assert env["LIFTWATCH_INFLUX_DATABASE"] == database
    assert services()["api"]["environment"]["LIFTWATCH_INFLUX_USERNAME"] == "liftwatch"
    assert "--username liftwatch" in text
    assert "--username grafana" in text


def deployed_commands() -> set[str]:
    referenced = {services()[n]["command"][0] for n in LIFTWATCH_SERVICES}
    for unit in (DEPLOY / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                referenced.add(line.split()[-1])
    return referenced


def registered_commands() -> set[str]:
    import argparse

    from liftwatch.cmd.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_deployed_commands_are_the_designed_processes() -> None:
    assert deployed_commands() == {"ingest", "alerts", "api", "serve"}  # DESIGN.md


def test_split_services_are_liftwatch_subcommands() -> None:
    missing = {"ingest", "alerts", "api"} - registered_commands()
    assert not missing, f"not registered in liftwatch.cmd.main PARTS: {sorted(missing)}"


def test_serve_is_a_liftwatch_subcommand() -> None:
    assert "serve" in registered_commands()


# --- compose.postgresql.yaml: the operational store on PostgreSQL --------------------------


def overlay() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OVERLAY.read_text())
    return loaded


def _merge(base: Any, extra: Any) -> Any:
    """Compose's merge of a later file into an earlier one, for what these files use: maps
    merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return extra


def merged_services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = _merge(compose(), overlay())["services"]
    return found


def _as_compose_would(value: str) -> str:
    return re.sub(
        r"\$\{[A-Z0-9_]+(?::([?-])([^}]*))?\}",
        lambda m: m.group(2) if m.group(1) == "-" else "s3cret-Value_1",
        value,
    )


def test_overlay_adds_only_postgres_and_touches_existing_services() -> None:
    base = services()
    added = set(overlay()["services"]) - set(base)
    assert added == {"postgres"}, "a typo in a service name would create a service"
    assert set(overlay()["services"]) == {"postgres", "admin", *LIFTWATCH_SERVICES}


def test_postgres_service() -> None:
    pg = merged_services()["postgres"]
    assert re.fullmatch(r"postgres:1[2-9](\.\d+)?", pg["image"]), pg["image"]
    assert "ports" not in pg, "the store is reached on the compose network only"
    assert any(v.split(":")[1] == "/var/lib/postgresql/data" for v in pg["volumes"])
    used = {v.split(":")[0] for v in pg["volumes"]}
    assert used <= set(overlay()["volumes"]) | set(compose()["volumes"])
    test = pg["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]  # ships in the postgres image
    env = pg["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == ("liftwatch", "liftwatch")
    assert test[test.index("-U") + 1] == env["POSTGRES_USER"]
    assert test[test.index("-d") + 1] == env["POSTGRES_DB"]


def test_overlay_points_every_liftwatch_service_at_postgres() -> None:
    svc = merged_services()
    pg_env = svc["postgres"]["environment"]
    for name in (*LIFTWATCH_SERVICES, "admin"):
        env = svc[name]["environment"]
        url = env["LIFTWATCH_DATABASE_URL"]
        # The same password variable as the server's.
        assert (
            "${POSTGRES_PASSWORD:?" in url
            and "${POSTGRES_PASSWORD:?" in pg_env["POSTGRES_PASSWORD"]
        )
        values: dict[str, Any] = {
            k.removeprefix("LIFTWATCH_").lower(): _as_compose_would(str(v)) for k, v in env.items()
        }
        settings = Settings(**values)  # the rest of the environment survived the merge
        assert settings.mqtt_ca_file is not None
        target = settings.database
        assert target.startswith(
            f"postgresql://{pg_env['POSTGRES_USER']}:s3cret-Value_1@postgres:5432/"
        )
        assert target.endswith("/" + pg_env["POSTGRES_DB"])
    for name in LIFTWATCH_SERVICES:
        deps = svc[name]["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}
        assert {"mosquitto", "influxdb"} <= set(deps), "the base file's dependencies stay"


def test_without_the_overlay_the_store_is_the_sqlite_file() -> None:
    for name in LIFTWATCH_SERVICES:
        env = services()[name]["environment"]
        values: dict[str, Any] = {
            k.removeprefix("LIFTWATCH_").lower(): _as_compose_would(str(v)) for k, v in env.items()
        }
        settings = Settings(**values)
        assert settings.database_url is None
        assert settings.database == "/var/lib/liftwatch/liftwatch.sqlite3"
