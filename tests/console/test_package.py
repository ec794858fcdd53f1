"""The console ships in the wheel (templates, catalogs, our static files and the vendored
libraries scripts/setup copied from npm), and no page refers to another host."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

from api.console.render import HERE

REPO = HERE.parent.parent
UV = REPO / ".tools" / "bin" / "uv"
VENDOR = ("htmx.min.js", "sse.min.js", "echarts.min.js")


def test_vendored_libraries_are_where_setup_copies_them() -> None:
    for name in VENDOR:
        assert (HERE / "static" / "vendor" / name).stat().st_size > 1000, (
            f"{name} missing: run scripts/setup (npm ci + copy)"
        )


def test_the_wheel_carries_the_console(tmp_path: Path) -> None:
    env = {**os.environ, "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    done = subprocess.run(
        [str(UV), "build", "--wheel", "-o", str(tmp_path), "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("liftwatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        "api/console/templates/base.html",
        "api/console/templates/dispatch/queue.html",
        "api/console/locale/zh_CN/LC_MESSAGES/console.po",
        "api/console/static/console.js",
        "api/console/static/console.css",
        *(f"api/console/static/vendor/{n}" for n in VENDOR),
    }
    assert wanted <= names, sorted(wanted - names)


def test_no_template_or_script_of_ours_names_another_host() -> None:
    ours = [
        *HERE.glob("templates/*.html"),
        *HERE.glob("templates/dispatch/*.html"),
        HERE / "static" / "console.js",
        HERE / "static" / "lift.js",
        HERE / "static" / "console.css",
    ]
    for path in ours:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path
