"""Acceptance (issues 8, 17): the systemd units pass ``systemd-analyze verify`` and keep a low
exposure score in ``systemd-analyze security``; their structure is checked everywhere, and
every ``Documentation=`` page exists after the host install deploy/README.md documents."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liftwatch.settings import EXIT_CONFIG, Settings
from tests.deploy.broker import DEPLOY, REPO

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
INSTALLED = "/opt/liftwatch/venv/bin/liftwatch"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def read_unit(path: Path) -> configparser.RawConfigParser:
    # strict=False: systemd allows a key to repeat (SystemCallFilter=); the last one wins here,
    # which is enough for the structural checks below.
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def installed_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this checkout's ``liftwatch`` (verify checks that
    the program exists); nothing else is changed."""
    exe = Path(sys.executable).parent / "liftwatch"
    assert exe.exists(), exe
    out = []
    for unit in UNITS:
        # A template is verified as one of its instances.
        copy = tmp_path / unit.name.replace("@.service", "@r1.service")
        copy.write_text(unit.read_text().replace(INSTALLED, str(exe)))
        out.append(copy)
    return out


def test_the_units_exist() -> None:
    names = {u.name for u in UNITS}
    parts = ("ingest", "alerts", "alerts@", "api", "serve")
    assert names == {f"liftwatch-{n}.service" for n in parts}


def test_the_replica_template_is_the_alerts_unit_with_the_instance_as_replica_id() -> None:
    """docs/ha.md: several alerts replicas; each instance its own id (and MQTT session)."""
    single = read_unit(DEPLOY / "systemd" / "liftwatch-alerts.service")
    template = read_unit(DEPLOY / "systemd" / "liftwatch-alerts@.service")
    assert "LIFTWATCH_ALERTS_REPLICA_ID=%i" in template["Service"]["Environment"]
    assert template["Service"]["ExecStart"] == single["Service"]["ExecStart"]
    assert "Conflicts" not in template["Unit"]  # replicas and serve share leases (docs/ha.md)
    for key in ("User", "TimeoutStopSec", "Restart", "ProtectSystem", "SystemCallFilter"):
        assert template["Service"][key] == single["Service"][key], key


@needs_systemd
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    copies = installed_copies(tmp_path)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, copies)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # Unknown keys or bad values are only warnings: treat any output as a failure.
    assert done.stderr.strip() == "", done.stderr


@needs_systemd
def test_units_are_hardened(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    for copy in installed_copies(tmp_path):
        done = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert match, done.stdout[-2000:] + done.stderr
        # systemd rates 0-10 (a default unit: 9.6 "UNSAFE"); the units score 1.2 as shipped,
        # and dropping even ProtectSystem= and MemoryDenyWriteExecute= raises that to 1.4.
        assert float(match.group(1)) <= 1.3, f"{copy.name}: {match.group(0)}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_liftwatch_as_its_own_user_and_restarts(unit: Path) -> None:
    parsed = read_unit(unit)
    service = parsed["Service"]
    subcommand = unit.stem.removeprefix("liftwatch-").removesuffix("@")
    assert service["ExecStart"] == f"{INSTALLED} {subcommand}"
    assert service["User"] == "liftwatch"
    assert service["Restart"] == "always"
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    files = [
        line.split("=", 1)[1]
        for line in unit.read_text().splitlines()
        if line.startswith("EnvironmentFile=")
    ]
    assert files[0] == "/etc/liftwatch/liftwatch.env"
    assert all(f.startswith("-") for f in files[1:]), "only optional files besides it"
    assert service["StateDirectory"] == "liftwatch"
    assert "LIFTWATCH_DATA_DIR=/var/lib/liftwatch" in service["Environment"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_serve_excludes_the_split_services() -> None:
    # Two alerts evaluations of one message would send every webhook twice.
    serve = read_unit(DEPLOY / "systemd" / "liftwatch-serve.service")
    assert set(serve["Unit"]["Conflicts"].split()) == {
        "liftwatch-ingest.service",
        "liftwatch-alerts.service",
        "liftwatch-api.service",
    }
    for name in ("ingest", "alerts", "api"):
        unit = read_unit(DEPLOY / "systemd" / f"liftwatch-{name}.service")
        assert unit["Unit"]["Conflicts"] == "liftwatch-serve.service"


def test_env_file_example_holds_valid_settings() -> None:
    example = DEPLOY / "systemd" / "liftwatch.env.example"
    values: dict[str, Any] = {}
    for raw in example.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key.startswith("LIFTWATCH_"), key
            values[key.removeprefix("LIFTWATCH_").lower()] = value
    assert set(values) <= set(Settings.model_fields), set(values) - set(Settings.model_fields)
    settings = Settings(**values)
    assert settings.mqtt.username == "ingest"


DROP_IN = DEPLOY / "systemd" / "postgresql-local.conf"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_order_after_a_local_postgresql_without_requiring_one(unit: Path) -> None:
    """A PostgreSQL store on this host starts first; a remote one needs no local server, so
    the shipped units only order (After=) and the drop-in adds Wants=."""
    parsed = read_unit(unit)["Unit"]
    assert "postgresql.service" in parsed["After"].split()
    for key in ("Wants", "Requires", "BindsTo", "Requisite"):
        assert "postgresql.service" not in parsed.get(key, "").split(), key


def test_local_postgresql_drop_in() -> None:
    parsed = read_unit(DROP_IN)
    assert parsed.sections() == ["Unit"]
    assert dict(parsed["Unit"]) == {
        "Wants": "postgresql.service",
        "After": "postgresql.service",
    }


@needs_systemd
def test_units_with_the_drop_in_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    copies = installed_copies(tmp_path)
    for copy in copies:
        drop_ins = tmp_path / f"{copy.name}.d"
        drop_ins.mkdir()
        (drop_ins / DROP_IN.name).write_text(DROP_IN.read_text())
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *(c.name for c in copies)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        # The drop-in directories next to the units are read from the unit search path.
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_env_file_example_shows_a_valid_postgresql_store() -> None:
    example = (DEPLOY / "systemd" / "liftwatch.env.example").read_text()
    (line,) = [ln for ln in example.splitlines() if ln.startswith("# LIFTWATCH_DATABASE_URL=")]
    url = line.removeprefix("# LIFTWATCH_DATABASE_URL=")
    settings = Settings(database_url=url)
    assert settings.database == url and url.startswith("postgresql://")


# --- Documentation= (issue 17 item 5) -------------------------------------------------------

PREFIX = "/opt/liftwatch"


def documented_install_lines() -> list[str]:
    """The host install's commands that put files under /opt/liftwatch other than the venv
    (deploy/README.md § Host install, first block)."""
    text = (DEPLOY / "README.md").read_text()
    section = text.split("## Host install (systemd)", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [
        line
        for line in block.splitlines()
        if line.startswith("sudo install ") and f"{PREFIX}/" in line
    ]


def documentation_targets(unit: Path) -> list[str]:
    targets: list[str] = []
    for line in unit.read_text().splitlines():
        if line.startswith("Documentation="):
            targets += line.removeprefix("Documentation=").split()
    return targets


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_documentation_pages_exist_after_the_documented_install(unit: Path, tmp_path: Path) -> None:
    """The install runs as documented, into a stand-in for /opt/liftwatch; every target is a
    file: page it put there (nothing online: the hosts may have no Internet), the repo's own."""
    lines = documented_install_lines()
    assert lines, "deploy/README.md installs no documentation under /opt/liftwatch"
    root = tmp_path / "opt-liftwatch"
    for line in lines:
        command = line.removeprefix("sudo ").replace(PREFIX, str(root))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"
    targets = documentation_targets(unit)
    assert targets, f"{unit.name} has no Documentation="
    for target in targets:
        scheme, _, rest = target.partition(":")
        if scheme == "man":
            man = shutil.which("man")
            assert man, "man: pages need man-db"
            assert subprocess.run([man, "-w", rest], capture_output=True).returncode == 0, target
            continue
        assert scheme == "file" and rest.startswith(f"//{PREFIX}/"), target
        path = Path(rest.removeprefix("//"))
        installed = root / path.relative_to(PREFIX)
        assert installed.is_file(), f"{target} does not exist after the install"
        source = REPO / path.relative_to(PREFIX)
        assert installed.read_bytes() == source.read_bytes(), f"{target} is not {source}"


def _stop_timeout_s(unit: Path) -> float:
    for line in unit.read_text().splitlines():
        if line.startswith("TimeoutStopSec="):
            return float(line.split("=", 1)[1].removesuffix("s"))
    raise AssertionError(f"{unit.name} sets no TimeoutStopSec")


def test_units_stop_timeouts_exceed_liftwatchs_own() -> None:
    """Issue 17 #2: systemd must never SIGKILL a clean stop. Each unit waits longer than the
    longest liftwatch itself takes to stop (then cancels what still runs)."""
    from api.httpserver import GRACEFUL_SHUTDOWN_S
    from liftwatch.cmd.serve import PART_STOP_TIMEOUT_S

    own = {
        "liftwatch-api.service": GRACEFUL_SHUTDOWN_S,
        "liftwatch-serve.service": PART_STOP_TIMEOUT_S,
        "liftwatch-ingest.service": PART_STOP_TIMEOUT_S,
        "liftwatch-alerts.service": PART_STOP_TIMEOUT_S,
        "liftwatch-alerts@.service": PART_STOP_TIMEOUT_S,
    }
    for name, bound in own.items():
        assert _stop_timeout_s(DEPLOY / "systemd" / name) >= bound + 10, name
