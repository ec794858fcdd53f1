"""The locked environment (issue 11, docs/dependencies.md): uv.lock matches pyproject.toml, the
files derived from it are current, and every install path installs from them, hash-checked.

These run the real uv that scripts/setup installed into .tools/ (offline: nothing here may
depend on what the package registry serves today)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".tools" / "bin" / "uv"


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    assert UV.exists(), "uv is missing: run scripts/setup (it bootstraps .tools/)"
    env = {**os.environ, "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    return subprocess.run(
        [str(UV), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def pins(text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, hashes) of a hashed requirements file."""
    found = {}
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)((?:\s*\\\s*--hash=\S+)+)", text, re.M):
        found[m.group(1).lower()] = (m.group(2), set(re.findall(r"--hash=(\S+)", m.group(3))))
    return found


def test_lock_matches_pyproject() -> None:
    done = uv("lock", "--check")
    assert done.returncode == 0, done.stderr


def test_runtime_requirements_are_the_locks_runtime_part() -> None:
    done = uv(
        *("export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--quiet"),
        *("--format", "requirements-txt"),
    )
    assert done.returncode == 0, done.stderr
    assert (REPO / "requirements" / "runtime.txt").read_text() == done.stdout, (
        "requirements/runtime.txt is stale: run scripts/lock"
    )
    runtime = pins(done.stdout)
    assert {"fastapi", "pydantic-core", "msgspec", "starlette", "anyio"} <= set(runtime)
    assert all(hashes for _, hashes in runtime.values())
    assert not {"pytest", "mypy", "ruff"} & set(runtime), "dev tools leaked into the runtime"


def test_every_locked_package_has_hashes() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    for package in lock["package"]:
        if package["name"] == "liftwatch":
            continue
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files and all(f["hash"].startswith("sha256:") for f in files), package["name"]


def test_build_backend_pinned_with_the_hashes_of_requirements_build() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    constraints = pyproject["tool"]["uv"]["build-constraint-dependencies"]
    declared = {}
    for c in constraints:
        name, version = c["requirement"].split("==")
        declared[name.lower()] = (version, set(c["hashes"]))
    assert declared == pins((REPO / "requirements" / "build.txt").read_text())
    assert "setuptools" in declared
    # The SPDX form: setuptools drops the table form.
    assert pyproject["project"]["license"] == "Apache-2.0"


def test_uv_itself_is_pinned_with_hashes() -> None:
    uv_pins = pins((REPO / "requirements" / "uv.txt").read_text())
    assert set(uv_pins) == {"uv"}
    version, hashes = uv_pins["uv"]
    assert len(hashes) > 1  # every platform's wheel, not only this machine's
    assert uv("--version").stdout.split()[1] == version


def test_every_install_path_installs_from_the_lock() -> None:
    setup = (REPO / "scripts" / "setup").read_text()
    assert re.search(r'"\$UV" sync --locked', setup)
    assert "pip install" not in setup
    uv_env = (REPO / "scripts" / "uv-env").read_text()
    assert "--require-hashes -r requirements/uv.txt" in uv_env
    assert "UV_REQUIRE_BUILD_HASHES=1" in uv_env
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    installs = [ln for ln in dockerfile.splitlines() if re.search(r"\bpip (install|wheel)\b", ln)]
    assert installs
    for line in installs:
        # Either hash-checked from a lock file, or liftwatch itself with no resolution at all.
        assert "--require-hashes -r" in line or "--no-deps" in line, line
    assert "--no-build-isolation" in dockerfile
    readme = (REPO / "deploy" / "README.md").read_text()
    assert "--require-hashes -r requirements/build.txt -r requirements/runtime.txt" in readme
    assert "pip install .\n" not in readme
