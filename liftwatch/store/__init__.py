"""The operational store (SQLite, WAL). The only place in liftwatch that writes SQL.

``db`` owns the connection and the migrations; each other module owns the SQL of one
aggregate (registry, dead-letters, alarms, tokens, webhooks). Keeping SQL here, behind plain
functions, is what lets PostgreSQL replace SQLite later (DESIGN.md).
"""

from liftwatch.store.db import Database, StoreError

__all__ = ["Database", "StoreError"]
