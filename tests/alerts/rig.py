"""A test rig: the real engine on a real SQLite file, in virtual time (ManualClock).

Messages go through the shared decoder exactly as from MQTT. ``tel(**changes)`` sends a full
snapshot like a device (the rig remembers each lift's last snapshot); ``advance(s)`` moves the
clock, firing every timer at its exact due time on the way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alerts.engine import Engine
from liftwatch.clock import ManualClock
from liftwatch.registry import Company, Lift
from liftwatch.store import Database, outbox
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from liftwatch.store.alarms import Alarm

BASE: dict[str, Any] = {
    "service_mode": "normal",
    "car_status": "stopped",
    "direction": "none",
    "floor": "3",
    "door_zone": True,
    "doors_closed": True,
}


class Rig:
    def __init__(
        self,
        path: Path | str,
        *,
        thresholds: dict[str, float] | None = None,
        lifts: tuple[Lift, ...] | None = None,
        start: bool = True,
    ) -> None:
        self.path = path
        self.db = Database(path)
        self.clock = ManualClock()
        reg.upsert_company(self.db, Company(company_id="acme", name="Acme"))
        default = (Lift(lift_id="L1", company_id="acme", rated_speed=1.0),)
        for lift in lifts if lifts is not None else default:
            reg.upsert_lift(self.db, lift)
        self.thresholds = thresholds or {}
        self.engine = Engine(self.db, clock=self.clock, thresholds=self.thresholds)
        self.seq: dict[str, int] = {}
        self.snap: dict[str, dict[str, Any]] = {}
        if start:
            self.engine.start()

    def restart(self) -> None:
        """A new process on the same store (the old one vanished without cleanup)."""
        self.engine = Engine(self.db, clock=self.clock, thresholds=self.thresholds)
        self.engine.start()

    def _send(self, lift: str, kind: str, body: dict[str, Any], seq: int | None, ts: Any) -> None:
        if seq is None:
            seq = self.seq.get(lift, -1) + 1
        self.seq[lift] = max(seq, self.seq.get(lift, -1))
        payload = {"v": 1, "ts": self.clock.now_ms() if ts is None else ts, "seq": seq, **body}
        self.engine.handle_raw([(f"lifts/{lift}/{kind}", json.dumps(payload).encode())])

    def tel(
        self, lift: str = "L1", *, seq: int | None = None, ts: Any = None, **changes: Any
    ) -> None:
        snap = self.snap.setdefault(lift, dict(BASE))
        snap.update(changes)
        self._send(lift, "telemetry", {k: v for k, v in snap.items() if v is not ...}, seq, ts)

    def event(
        self, type_: str, lift: str = "L1", *, seq: int | None = None, ts: Any = None, **f: Any
    ) -> None:
        self._send(lift, "event", {"type": type_, **f}, seq, ts)

    def status(self, state: str, lift: str = "L1") -> None:
        payload = json.dumps({"v": 1, "state": state}).encode()
        self.engine.handle_raw([(f"lifts/{lift}/status", payload)])

    def advance(self, seconds: float) -> None:
        target = self.clock.now_ms() + round(seconds * 1000)
        while (due := self.engine.next_due_ms()) is not None and due <= target:
            self.clock.set_ms(max(due, self.clock.now_ms()))
            self.engine.run_due()
        self.clock.set_ms(target)

    def alarms(self, code: str | None = None, lift: str | None = None) -> list[Alarm]:
        found = store.list_alarms(self.db, code=code, lift_id=lift, limit=10_000)
        return sorted(found, key=lambda a: a.alarm_id)

    def one(self, code: str, lift: str | None = None) -> Alarm:
        found = self.alarms(code, lift)
        assert len(found) == 1, f"expected one {code} alarm, found {len(found)}"
        return found[0]

    def notified(self, code: str | None = None) -> list[str]:
        rows = outbox.outbox_rows(self.db)
        return [r.event_type for r in rows if code is None or r.code == code]
