"""One device's odd fault code never stops other lifts' alarms (../shared/reviews/security.md
#1: a fault code ``"²"`` made ``int()`` raise inside the engine, the batch was never acked and
every restart died on the redelivery). The real engine, in virtual time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liftwatch.registry import Lift
from tests.alerts.rig import Rig


@pytest.mark.parametrize("code", ["²", "①", "¹²", "9" * 1000])
def test_unicode_digit_fault_code_is_a_controller_fault_and_the_batch_goes_on(
    tmp_path: Path, code: str
) -> None:
    r = Rig(
        tmp_path / "lw.db",
        lifts=(Lift(lift_id="L1", company_id="acme"), Lift(lift_id="L9", company_id="acme")),
    )
    r.tel("L1")
    r.tel("L9")
    now = r.clock.now_ms()
    fault = {"v": 1, "ts": now, "seq": 10, "type": "fault", "namespace": "gb24476"}
    press = {"v": 1, "ts": now, "seq": 10, "type": "alarm_button", "pressed": True}
    # One batch: the hostile event of L9 first, then a real alarm-button press on L1.
    r.engine.handle_raw(
        [
            ("lifts/L9/event", json.dumps({**fault, "code": code, "active": True}).encode()),
            ("lifts/L1/event", json.dumps(press).encode()),
        ]
    )
    r.advance(1)
    assert [a.status for a in r.alarms("alarm_button", lift="L1")] == ["open"]
    (fault_alarm,) = r.alarms("controller_fault", lift="L9")
    assert fault_alarm.subtype == f"gb24476:{code}"[:100]
    # A restart re-reads everything stored: it must come up and keep evaluating.
    r.restart()
    r.tel("L9", controller_faults=[{"namespace": "gb24476", "code": code, "active": True}])
    r.advance(1)
    assert len(r.alarms("controller_fault", lift="L9")) == 1
