"""The end-to-end tests' store: a fresh database on the session's private PostgreSQL (these
tests run several processes on one store, which is what PostgreSQL is for)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresForTests


@pytest.fixture
def store_url(postgres: PostgresForTests) -> Iterator[str]:
    url = postgres.fresh_url()
    yield url
    postgres.drop(url)
