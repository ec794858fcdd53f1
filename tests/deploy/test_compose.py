"""Acceptance (issues 8, 17): ``deploy/compose.yaml`` cannot run here (no Docker engine), so its
structure is checked: validated against the Compose Specification's JSON schema (and with
``docker compose config`` where Compose v2 is installed), services, volumes, mounts,
variables, each service's peers, and health checks that run real commands. The liftwatch
health check runs for real against an HTTP server, the Mosquitto one in
test_broker_security.py against the secured broker; the api's ``/readyz`` runs with the
compose settings against the real broker (shipped ACL) and InfluxDB."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from api.app import create_app
from api.readiness import broker_check
from liftwatch.localservices import free_port
from liftwatch.provision import parse_acl
from liftwatch.settings import Settings, admin_token_problem
from liftwatch.store import open_store
from simulator.receiver import RecordingReceiver
from tests.deploy.broker import (
    DEPLOY,
    REPO,
    SecuredMosquitto,
    give_to_broker_user,
    json_lines,
    run_cli,
    temp_root,
)

COMPOSE = DEPLOY / "compose.yaml"
OVERLAY = DEPLOY / "compose.postgresql.yaml"  # the PostgreSQL store (docs/storage.md)
REPLICAS = DEPLOY / "compose.replicas.yaml"  # a second alerts replica (docs/ha.md)
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
        target = settings.mqtt
        assert (target.tls, target.host, target.port) == (True, "mosquitto", 8883), name
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
        if name == "api":
            # Healthy means ready: /readyz, whose 503 (a dependency down) fails the check.
            assert urlsplit(url).path == "/readyz"
            assert [r.path for r in receiver.requests] == ["/readyz"]
            receiver.responder = lambda _: (503, {}, b'{"status":"not_ready"}')
            assert subprocess.run(live, capture_output=True, timeout=20).returncode != 0
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


# --- validated against the Compose Specification (issue 17 item 5) -------------------------

# check-jsonschema (a dev dependency) ships the compose-spec project's JSON schema; proxies
# pointing at a closed port prove that nothing is fetched.
VALIDATOR = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
OFFLINE = {
    **dict.fromkeys(
        ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), "http://127.0.0.1:9"
    ),
    "no_proxy": "",
    "NO_PROXY": "",
}


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VALIDATOR, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **OFFLINE},
    )


def test_replicas_overlay_makes_two_alerts_replicas_on_the_shared_store() -> None:
    extra: dict[str, Any] = yaml.safe_load(REPLICAS.read_text())["services"]
    assert set(extra) == {"alerts", "alerts-b"}
    assert extra["alerts"]["environment"] == {"LIFTWATCH_ALERTS_REPLICA_ID": "a"}
    b = extra["alerts-b"]
    assert b["extends"] == {"file": "compose.yaml", "service": "alerts"}
    assert b["environment"]["LIFTWATCH_ALERTS_REPLICA_ID"] == "b"
    # extends does not carry the overlay's store nor depends_on: both are set here.
    url = merged_services()["alerts"]["environment"]["LIFTWATCH_DATABASE_URL"]
    assert b["environment"]["LIFTWATCH_DATABASE_URL"] == url
    assert b["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert set(b["depends_on"]) >= set(services()["alerts"]["depends_on"])


def test_compose_files_follow_the_compose_specification() -> None:
    done = validate(COMPOSE, OVERLAY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validation done" in done.stdout
    done = validate(REPLICAS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validation done" in done.stdout


# (file, what is changed, text the validator's message must contain)
BROKEN = [
    pytest.param(
        COMPOSE, ("    healthcheck:\n", "    healthchek:\n"), "healthchek", id="misspelt-key"
    ),
    pytest.param(
        COMPOSE,
        ("condition: service_healthy", "condition: service_up"),
        "service_up",
        id="bad-condition",
    ),
    pytest.param(
        COMPOSE,
        ('    ports:\n      - "8883:8883"\n', "    ports: 8883\n"),
        "ports",
        id="ports-not-a-list",
    ),
    pytest.param(COMPOSE, ("\nvolumes:\n", "\nvolume:\n"), "volume", id="unknown-top-level-key"),
    pytest.param(
        OVERLAY, ("    healthcheck:\n", "    health_check:\n"), "health_check", id="overlay"
    ),
]


@pytest.mark.parametrize(("source", "change", "named"), BROKEN)
def test_the_validator_refuses_a_broken_copy(
    tmp_path: Path, source: Path, change: tuple[str, str], named: str
) -> None:
    old, new = change
    text = source.read_text()
    assert old in text, f"{source.name} no longer has {old!r}: update this test"
    broken = tmp_path / source.name
    broken.write_text(text.replace(old, new, 1))
    done = validate(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert named in done.stdout and str(broken) in done.stdout, done.stdout
    assert validate(source).returncode == 0  # the change alone made the difference


def compose_v2() -> list[str] | None:
    """The Compose v2 command on this machine (the docker CLI plugin, or a v2 docker-compose),
    or None: Debian 12's docker-compose is v1, whose schema predates ``name:``."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            done = subprocess.run(
                [*argv, "version", "--short"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip().lstrip("v").startswith("2."):
            return argv
    return None


def test_docker_compose_config_where_available(tmp_path: Path) -> None:
    """``docker compose config`` needs no engine: it interpolates, merges and validates."""
    argv = compose_v2()
    if argv is None:
        pytest.skip("Compose v2 (docker compose) is not installed here; the schema check ran")

    def config(*files: Path) -> subprocess.CompletedProcess[str]:
        flags = [a for f in files for a in ("-f", str(f))]
        return subprocess.run(
            [*argv, *flags, "--env-file", str(DEPLOY / "env.example"), "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=DEPLOY,
        )

    for files in ((COMPOSE,), (COMPOSE, OVERLAY)):
        done = config(*files)
        assert done.returncode == 0, done.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("service_healthy", "service_up", 1))
    assert config(broken).returncode != 0


# --- every service gets the settings its command needs -------------------------------------

# What each command connects to. api: its /readyz checks the broker, InfluxDB and the store
# (api/routes/health.py; test_api_is_ready_with_its_compose_settings runs it); admin: the
# registry and `db` commands use the store, the terminal commands (docs/cli.md) the API.
PEERS: dict[str, tuple[str, ...]] = {
    "ingest": ("mqtt", "influx", "store"),
    "alerts": ("mqtt", "influx", "store"),
    "api": ("mqtt", "influx", "store"),
    "admin": ("store", "api"),
}
PEER_SETTING = {"mqtt": "mqtt_url", "influx": "influx_url", "api": "api_url"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one value, for the forms these files use."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        got = env.get(name, "")
        if op == ":?" and not got:
            raise AssertionError(f"{name} is required: {arg}")
        return got or (arg if op == ":-" else "")

    return re.sub(r"\$\$|\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


def example_env() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def rendered_settings(env: dict[str, Any], variables: dict[str, str]) -> Settings:
    values: dict[str, Any] = {
        k.removeprefix("LIFTWATCH_").lower(): interpolate(str(v), variables) for k, v in env.items()
    }
    return Settings(**values)


def listening_ports(svc: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Where each peer service answers on the compose network."""
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    tls = re.search(r"^listener (\d+)\s*$", conf, re.M)  # the listener on every interface
    assert tls, "mosquitto.conf has no listener on all interfaces"
    ports = {"mosquitto": int(tls.group(1)), "influxdb": 8086, "postgres": 5432}
    ports["api"] = int(svc["api"]["environment"]["LIFTWATCH_API_PORT"])
    return ports


@pytest.mark.parametrize("files", ["compose.yaml", "compose.yaml+overlay"])
def test_every_service_reaches_each_peer_by_its_service_name(files: str) -> None:
    svc = services() if files == "compose.yaml" else merged_services()
    ports = listening_ports(svc)
    _, acl_users = parse_acl((DEPLOY / "mosquitto" / "acl").read_text())
    mqtt_users = {}
    for name, peers in PEERS.items():
        env = svc[name]["environment"]
        settings = rendered_settings(env, example_env())
        for peer in peers:
            if peer == "store":
                if settings.database_url is None:  # the SQLite file in the shared volume
                    assert "LIFTWATCH_DATA_DIR" in env, name
                    assert settings.data_dir == Path("/var/lib/liftwatch"), name
                    assert any(v.startswith("liftwatch-data:") for v in svc[name]["volumes"])
                    continue
                url = settings.database_url
            else:
                # Set in the file: a default names 127.0.0.1, the container itself.
                assert "LIFTWATCH_" + PEER_SETTING[peer].upper() in env, f"{name}: {peer}"
                url = getattr(settings, PEER_SETTING[peer])
            parts = urlsplit(url)
            assert parts.hostname in svc, f"{name}: {peer} at {parts.hostname}, not a service"
            assert parts.port == ports[parts.hostname], f"{name}: {url.split('@')[-1]}"
            if peer == "mqtt":
                target = settings.mqtt
                assert target.tls and settings.mqtt_ca_file is not None, name
                assert target.username in acl_users, f"{name}: {target.username} not in the ACL"
                mqtt_users[name] = target.username
        if name == "api":
            assert admin_token_problem(settings) is None
            assert settings.api_host == "0.0.0.0", "published: must listen beyond loopback"
        if "api" in peers:
            assert settings.client_token, "the terminal commands need a token"
    assert len(set(mqtt_users.values())) == len(mqtt_users), "one broker user per service"


@pytest.fixture(scope="module")
def compose_broker() -> Iterator[tuple[SecuredMosquitto, dict[str, str]]]:
    """The shipped broker config and ACL, with every broker user compose names created by
    ``liftwatch devices service-user`` (refused for a user the ACL does not have)."""
    users = []
    for name in PEERS:
        url = services()[name]["environment"].get("LIFTWATCH_MQTT_URL")
        if url:
            user = urlsplit(interpolate(url, example_env())).username
            assert user, f"{name}: no broker user in {url}"
            users.append(user)
    with temp_root("liftwatch-compose-") as root:
        broker = SecuredMosquitto(root / "broker")
        broker.prepare()
        files = ["--password-file", str(broker.password_file), "--acl-file", str(broker.acl_file)]
        env = {"LIFTWATCH_DATA_DIR": str(root / "data")}
        code, out, err = run_cli(["devices", "service-user", *users, *files], env)
        assert code == 0, err
        passwords = {r["username"]: r["password"] for r in json_lines(out)}
        give_to_broker_user(root / "broker")
        broker.start()
        try:
            yield broker, passwords
        finally:
            broker.stop()


def local_settings(
    name: str, broker: SecuredMosquitto, passwords: dict[str, str], influx_url: str, data: Path
) -> Settings:
    """The service's compose settings, its peers moved from the compose network to the real
    services of this test (and nothing else changed)."""
    env = services()[name]["environment"]
    variables = example_env() | {
        f"MQTT_{user.upper()}_PASSWORD": password for user, password in passwords.items()
    }
    settings = rendered_settings(env, variables)
    target = settings.mqtt
    # Checked before connecting: the default (127.0.0.1:1883) is the machine's own broker.
    assert (target.host, target.port) == ("mosquitto", 8883), f"{name}: no broker URL"
    assert str(settings.influx_url) == "http://influxdb:8086", name
    return settings.model_copy(
        update={
            "mqtt_url": settings.mqtt_url.replace(
                "@mosquitto:8883", f"@127.0.0.1:{broker.tls_port}"
            ),
            "mqtt_ca_file": broker.ca_file,
            "influx_url": influx_url,
            "data_dir": data,
        }
    )


@pytest.mark.integration
async def test_api_is_ready_with_its_compose_settings(
    compose_broker: tuple[SecuredMosquitto, dict[str, str]], influxdb: Any, tmp_path: Path
) -> None:
    """The api service's /readyz answers 200 with every check ok: its broker user exists in
    the shipped ACL, its password variable reaches it, TLS with the stack's CA."""
    broker, passwords = compose_broker
    settings = local_settings("api", broker, passwords, influxdb.url, tmp_path)
    db = open_store(settings)
    try:
        app = create_app(settings, db=db)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://api") as client,
        ):
            r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        assert {k: v["ok"] for k, v in r.json()["checks"].items()} == {
            "broker": True,
            "influxdb": True,
            "store": True,
        }
    finally:
        db.close()


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ingest", "alerts"])
async def test_consumers_connect_with_their_compose_settings(
    compose_broker: tuple[SecuredMosquitto, dict[str, str]], name: str, tmp_path: Path
) -> None:
    broker, passwords = compose_broker
    settings = local_settings(name, broker, passwords, "http://127.0.0.1:9", tmp_path)
    ok, detail = await broker_check(settings)()
    assert ok, f"{name}: {detail}"
