"""Open (unresolved) alarms of one lift, for ``GET /lifts/{id}``."""

from __future__ import annotations

from typing import Any

from liftwatch.store import Database


def open_alarms(db: Database, lift_id: str) -> list[dict[str, Any]]:
    # Filled in once the alerts store (migration 0003) exists.
    return []
