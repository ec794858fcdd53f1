"""Open (unresolved) alarms of one lift, for ``GET /lifts/{id}``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liftwatch.store import Database
from liftwatch.store import alarms as store
from liftwatch.store import registry as reg
from liftwatch.views import alarm_view

if TYPE_CHECKING:
    from api.auth import Principal


def open_alarms(db: Database, lift_id: str, principal: Principal) -> list[dict[str, Any]]:
    """The lift's unresolved alarms the caller may see: filtered by each alarm's own
    ``company_id``, exactly as ``GET /alarms/{id}`` is. A maintainer of the company a lift
    moved to sees the alarms that belong to that company, never the previous company's."""
    card = reg.lift_card(db, lift_id)
    return [
        alarm_view(a, card)
        for a in store.unresolved_alarms(db, lift_id)
        if principal.sees_company(a.company_id)
    ]
