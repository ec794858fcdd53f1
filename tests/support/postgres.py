"""The suite's PostgreSQL: one private server per session (``initdb`` + ``postgres`` on a free
port in a temp dir, liftwatch.localservices.PostgreSQL), and a fresh database per test made
from a template that already holds the migrated schema, so a test starts in ~20 ms on a
store exactly as ``liftwatch`` would create it. The machine's own PostgreSQL is never used."""

from __future__ import annotations

import uuid

import psycopg

from liftwatch.localservices import PostgreSQL
from liftwatch.store import Database
from liftwatch.store.postgres import close_all

TEMPLATE = "liftwatch_template"


class PostgresForTests:
    def __init__(self, server: PostgreSQL) -> None:
        self.server = server
        db = Database(server.create_database(TEMPLATE))  # migrated once, then copied
        db.close()

    def fresh_url(self) -> str:
        """A URL of a new database holding the migrated schema and nothing else."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.server._admin(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.server.url_for(name)

    def empty_url(self) -> str:
        """A URL of a new, empty database (no schema: what an operator starts from)."""
        return self.server.create_database(f"e_{uuid.uuid4().hex[:12]}")

    def drop(self, url: str) -> None:
        """Drop a test's database, ending any connection a test left open."""
        close_all(url)  # the stores a test opened and left open (an engine rig, say)
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.server.url_for("postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
