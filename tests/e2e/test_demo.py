"""``liftwatch demo`` end to end, as ``make demo`` runs it: private services, ``liftwatch
serve``, the webhook receiver and a story. A short story file keeps this quick (the built-in
four-minute story is checked by tests/simulator/test_faults.py and docs/demo.md's run)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Child

pytestmark = pytest.mark.integration

STORY = """\
name: demo-short
description: a short story for the demo's own test
duration_s: 12
defaults: {floors: 6, calls_per_hour: 0, telemetry_idle_s: 10}
lifts:
  - {id: DEMO-A}
  - {id: DEMO-B}
timeline:
  - {at: 1, lift: DEMO-A, do: alarm_button, hold_s: 1, end_of_alarm_after_s: 4,
     note: "a passenger presses the alarm button"}
  - {at: 2, lift: DEMO-B, do: controller_fault, code: 2, text: door close fault, hold_s: 3,
     note: "the controller reports a door close fault"}
"""


class Demo:
    """``liftwatch demo`` in its own process group (as a terminal's foreground job)."""

    def __init__(self, workdir: Path, *args: str, data_dir: bool = True) -> None:
        """``data_dir`` False: the demo makes its own temp directory, as ``make demo`` does
        (``workdir`` is then found from the server log it names)."""
        story = workdir.parent / "story.yaml"
        workdir.parent.mkdir(parents=True, exist_ok=True)
        story.write_text(STORY)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LIFTWATCH_MQTT_URL", "LIFTWATCH_INFLUX_URL", "LIFTWATCH_API_PORT")
        }
        self.workdir = workdir
        place = ["--data-dir", str(workdir)] if data_dir else []
        argv = ["--scenario", str(story), *place, "--port", "0", *args]
        self.child = Child(
            ["--log-level", "WARNING", "demo", *argv], env=env, start_new_session=True
        )
        self.proc = self.child.proc

    def wait_for(self, text: str, within: float = 90) -> None:
        self.child.wait_for(re.escape(text), within)

    @property
    def output(self) -> str:
        return self.child.output

    def children(self) -> set[int]:
        """Live processes (other than the demo itself) that belong to this demo's work
        directory: Mosquitto and InfluxDB name it in their command line, liftwatch serve in
        its environment."""
        needle = str(self.workdir).encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.proc.pid:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().split(") ", 1)[1][0]
            except OSError:
                continue
            if state != "Z" and (needle in cmdline or needle in environ):
                found.add(int(entry.name))
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.children():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "demo"


def test_demo_once_plays_the_story_verifies_webhooks_and_leaves_nothing_running(
    workdir: Path,
) -> None:
    demo = Demo(workdir, "--once")
    try:
        demo.wait_for("story    begins")
        running = demo.children()
        assert len(running) == 3, f"expected Mosquitto, InfluxDB, liftwatch serve: {running}"
        # The console logins it printed work (docs/demo.md).
        console = re.search(r"console +(http://127\.0\.0\.1:\d+)/console/", demo.output)
        assert console, demo.output
        for user in ("dispatcher", "inspector", "admin"):
            found = re.search(rf"^ +{user} / (\S+)", demo.output, re.M)
            assert found, demo.output
            login = httpx.post(
                f"{console.group(1)}/api/v1/auth/login",
                json={"username": user, "password": found.group(1)},
                timeout=10,
            )
            assert login.status_code == 200, login.text
        code = demo.proc.wait(90)
    finally:
        demo.kill()
    out = demo.output
    assert code == 0, out
    assert "Traceback" not in out
    assert (
        "API          http://127.0.0.1:" in out and "curl -s -H 'Authorization: Bearer lw_" in out
    )
    for event in ("alarm.raised", "alarm.acknowledged", "alarm.resolved"):
        assert any(
            event in line and "DEMO-A" in line and "signature ok" in line
            for line in out.splitlines()
        ), f"no verified {event} webhook for DEMO-A:\n{out}"
    assert "door_close_fault" in out and "REJECTED" not in out
    assert "0 rejected; 0 alarms without their webhook" in out
    assert "stopped: liftwatch serve, influxdb, mosquitto" in out
    assert demo.children() == set(), "the demo left processes behind"


def test_demo_ctrl_c_stops_everything_it_started(workdir: Path) -> None:
    demo = Demo(workdir)
    try:
        demo.wait_for("story    begins")
        assert len(demo.children()) == 3
        os.killpg(demo.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        code = demo.proc.wait(60)
    finally:
        demo.kill()
    out = demo.output
    assert code == 0, out
    assert "Traceback" not in out and "stopping (Ctrl-C)" in out
    assert "stopped: liftwatch serve, influxdb, mosquitto" in out
    assert demo.children() == set(), "Ctrl-C left processes behind"


def test_make_demo_ctrl_c_exits_0_within_5_s_and_keeps_the_log_it_named(tmp_path: Path) -> None:
    """Issue 17 #2, as ``make demo`` runs it (its own temp directory): Ctrl-C ends it with exit
    0 in under 5 s, and the server log it printed the path of is still there to read."""
    demo = Demo(tmp_path / "unused", data_dir=False)
    try:
        demo.wait_for("story    begins")
        log = Path(re.search(r"server log +(\S+)", demo.output)[1])  # type: ignore[index]
        demo.workdir = log.parent
        assert len(demo.children()) == 3
        began = time.monotonic()
        os.killpg(demo.proc.pid, signal.SIGINT)
        code = demo.proc.wait(60)
        took = time.monotonic() - began
    finally:
        demo.kill()
    assert code == 0, demo.output
    assert took < 5.0, f"Ctrl-C took {took:.1f} s"
    assert "error" not in demo.output.split("stopping (Ctrl-C)")[1], demo.output
    assert log.is_file() and "event=serve_ready" in log.read_text()
    assert f"logs kept in {log.parent}" in demo.output
    assert not list(log.parent.rglob("*.sqlite3")), "the demo's data was left behind"
    assert demo.children() == set()
