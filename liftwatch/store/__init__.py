"""The operational store: SQLite (embedded, the default) or PostgreSQL (several hosts). The
only place in liftwatch that writes SQL or imports a database driver.

``db`` owns the backend choice, the migrations and the driver errors code above catches;
``sqlite`` and ``postgres`` are the two backends; each other module owns the SQL of one
aggregate (registry, dead-letters, alarms, tokens, webhooks), written once for both
(docs/storage.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liftwatch.store.db import (
    Connection,
    Database,
    Error,
    IntegrityError,
    OperationalError,
    Row,
    StoreError,
    is_foreign_key_violation,
)

if TYPE_CHECKING:
    from liftwatch.settings import Settings

__all__ = [
    "Connection",
    "Database",
    "Error",
    "IntegrityError",
    "OperationalError",
    "Row",
    "StoreError",
    "is_foreign_key_violation",
    "open_store",
]


def open_store(settings: Settings, *, migrate: bool = True, create: bool = True) -> Database:
    """The store the settings name (``LIFTWATCH_DATABASE_URL``, else the SQLite file under
    ``LIFTWATCH_DATA_DIR``), migrated unless ``migrate`` is False."""
    return Database(
        settings.database, migrate=migrate, create=create, pool_size=settings.database_pool_size
    )
