"""Helpers of the API tests: the seeded world (companies, lifts, a token per role) and
error assertions. Fixtures live in tests/api/conftest.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from api.auth import hash_token, new_token
from liftwatch.registry import Company, Lift
from liftwatch.store import Database
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class World:
    """Two companies (a, b), their lifts, an unassigned lift, and a token per role."""

    db: Database
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)
    lift_a: str = "LA-1"
    lift_a2: str = "LA-2"
    lift_b: str = "LB-1"
    lift_none: str = "LX-1"
    alarm_a: str = ""
    window_a: int = 0

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def add_token(self, who: str, role: str, company_id: str | None = None) -> None:
        token_id, secret, digest = new_token()
        assert digest == hash_token(secret)
        tok.add_token(
            self.db,
            token_id=token_id,
            token_hash=digest,
            name=who,
            role=role,
            company_id=company_id,
            created_by="test",
        )
        self.tokens[who] = secret
        self.token_ids[who] = token_id


def seed_world(w: World) -> World:
    db = w.db
    reg.upsert_company(db, Company(company_id="co-a", name="Alpha Lifts"))
    reg.upsert_company(db, Company(company_id="co-b", name="Beta Elevators"))
    reg.upsert_lift(db, Lift(lift_id=w.lift_a, company_id="co-a", name="A one", rated_speed=1.5))
    reg.upsert_lift(db, Lift(lift_id=w.lift_a2, company_id="co-a", name="A two", urban=False))
    reg.upsert_lift(db, Lift(lift_id=w.lift_b, company_id="co-b", name="B one"))
    reg.upsert_lift(db, Lift(lift_id=w.lift_none, name="unassigned"))
    w.tokens["admin"] = ADMIN_TOKEN
    w.token_ids["admin"] = "bootstrap-admin"
    w.add_token("admin2", "admin")
    w.add_token("inspector", "inspector")
    w.add_token("maintainer_a", "maintainer", "co-a")
    w.add_token("maintainer_b", "maintainer", "co-b")
    return w


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """The one error shape, with no stack trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text


def raise_alarm(
    db: Database,
    lift_id: str,
    code: str,
    *,
    at: int,
    severity: str = "critical",
    company_id: str | None = None,
    subtype: str | None = None,
    deadline_ms: int | None = None,
    suppressed_reason: str | None = None,
) -> str:
    """Raise an alarm through the alerts engine's own lifecycle API; returns its id."""
    from alerts.lifecycle import Change, Policy, Raise, raise_condition

    out: list[Change] = []
    with db.transaction() as conn:
        alarm = raise_condition(
            conn,
            Raise(
                lift_id=lift_id,
                code=code,
                subtype=subtype,
                severity=severity,
                source="rule",
                at=at,
                evidence={"car_status": "stopped", "floor": "3"},
                company_id=company_id,
                deadline_ms=deadline_ms,
                suppressed_reason=suppressed_reason,
            ),
            Policy(flood_limit=10_000),
            out,
        )
    return alarm.alarm_id


def store_text(db: Database) -> str:
    """Every value of every table of the store, as text: to show a secret is nowhere in it."""
    if db.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    out = []
    for (table,) in [tuple(r) for r in db.conn.execute(sql).fetchall()]:
        for row in db.conn.execute(f'SELECT * FROM "{table}"').fetchall():  # noqa: S608
            out.append(" ".join(str(v) for v in row))
    return "\n".join(out)
