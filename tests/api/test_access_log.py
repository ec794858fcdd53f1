"""The access log never shows a secret sent in a query string (security review, Info: a token
sent by mistake as ``?access_token=`` was logged verbatim). A real uvicorn, configured as
``liftwatch api`` and ``serve`` configure it, on a free port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.httpserver import redact_query, server_options
from liftwatch.localservices import free_port
from liftwatch.settings import Settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN
from tests.support.harness import eventually

pytestmark = pytest.mark.integration

SECRET = "lw_" + "s3cr3t" * 6


@pytest.fixture
async def base_url(settings: Settings, db: Database) -> AsyncIterator[str]:
    port = free_port()
    options = server_options(host="127.0.0.1", port=port, log_level="info")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db=db), lifespan="off", **options))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_access_log_redacts_secrets_in_query_strings(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)  # uvicorn's access logger does not propagate
    try:
        async with httpx.AsyncClient(base_url=base_url) as c:
            for query in (
                f"access_token={SECRET}&limit=5",
                f"limit=7&token={SECRET}",
                f"api_key={SECRET}",
                f"password={SECRET}",
                f"client_secret={SECRET}",
                f"q={SECRET}",  # an innocent name, a token's value
                f"Access%5FToken={SECRET}",
            ):
                r = await c.get(
                    f"/api/v1/lifts?{query}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                assert r.status_code == 422  # unknown parameter: refused, as before
            await c.get("/healthz?verbose=1")
        await eventually(
            lambda: any("/healthz" in r.getMessage() for r in caplog.records),
            what="access log line",
        )
    finally:
        access.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 8, lines
    assert all(SECRET not in line and "s3cr3t" not in line for line in lines), lines
    assert any("/api/v1/lifts?access_token=***&limit=5 " in line for line in lines), lines
    assert any("/api/v1/lifts?limit=7&token=*** " in line for line in lines), lines
    assert any("/healthz?verbose=1 " in line for line in lines), lines  # the rest stays
    # uvicorn's own access format (its handler's formatter) still renders the record.
    formatter = next(h.formatter for h in access.handlers if h is not caplog.handler)
    assert formatter is not None
    rendered = [formatter.format(r) for r in caplog.records if r.name == "uvicorn.access"]
    assert all(SECRET not in line for line in rendered) and "422" in rendered[0]


def test_redact_query() -> None:
    assert redact_query("/a") == "/a"
    assert redact_query("/a?limit=5&order=asc") == "/a?limit=5&order=asc"
    assert redact_query("/a?secret=x&b=2") == "/a?secret=***&b=2"
    assert redact_query(f"/a?{SECRET}") == "/a?***"
