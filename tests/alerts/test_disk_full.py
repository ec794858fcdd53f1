"""The alarm store's disk fills up (../shared/reviews/chaos § S6): the engine holds the
signals and retries the commit (the MQTT batch stays unacknowledged meanwhile), and the alarm
is recorded and its webhook row written the moment space returns. A real size-limited tmpfs,
mounted and unmounted by the fixture."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.alerts.rig import Rig
from tests.support.harness import eventually
from tests.support.smallfs import fill, small_fs


async def test_an_alarm_waits_for_a_full_disk_and_is_recorded_when_space_returns(
    tmp_path: Path,
) -> None:
    with small_fs(tmp_path / "fs", "8m") as mount:
        r = Rig(mount / "lw.db")
        r.tel()
        r.tel("L9")
        filler = fill(mount, 0)
        done = threading.Event()

        def press() -> None:
            r.event("alarm_button", pressed=True)  # blocks: the commit is retried
            done.set()

        worker = threading.Thread(target=press, daemon=True)
        worker.start()
        await eventually(lambda: r.engine.counts["messages"] >= 3, 5, what="the press evaluated")
        assert not done.wait(1.0), "the commit cannot have succeeded on a full disk"
        filler.unlink()
        freed = time.monotonic()
        await eventually(done.is_set, 10, what="the alarm committed after space returned")
        worker.join(5)
        recovered_s = time.monotonic() - freed
        assert [a.status for a in r.alarms("alarm_button")] == ["open"]
        assert r.notified("alarm_button") == ["alarm.raised"]
        assert recovered_s < 3.0, f"recorded {recovered_s:.2f} s after space returned"
