"""Open (unresolved) alarms of one lift, for ``GET /lifts/{id}``."""

from __future__ import annotations

from typing import Any

from liftwatch.store import Database
from liftwatch.store import alarms as store


def open_alarms(db: Database, lift_id: str) -> list[dict[str, Any]]:
    card = store.lift_card(db, lift_id)
    return [store.alarm_view(a, card) for a in store.unresolved_alarms(db, lift_id)]
