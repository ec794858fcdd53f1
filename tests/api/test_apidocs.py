"""``/docs`` and ``/redoc`` load nothing from another host (api/apidocs.py): every script,
style sheet and icon they name is served by liftwatch itself, and the pages' CSP forbids
other origins."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from liftwatch.settings import load_settings
from liftwatch.store import Database
from tests.support.api import ADMIN_TOKEN

URL_ATTR = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""")
QUOTED_URL = re.compile(r"""["'](https?:)?//[^"']+["']""")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a SQLite store and no other service: the docs need neither."""
    db = Database(tmp_path / "liftwatch.sqlite3")
    app = create_app(load_settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN), db=db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c
    db.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_their_own_origin(
    client: httpx.AsyncClient, page: str
) -> None:
    r = await client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert QUOTED_URL.findall(html) == [], "an absolute URL: another host"
    urls = URL_ATTR.findall(html)
    assets = [u for u in urls if u.rsplit(".", 1)[-1] in ("js", "css", "png")]
    assert len(assets) >= (3 if page == "/docs" else 2), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    for url in assets:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        want = TYPES["." + url.rsplit(".", 1)[-1]]
        assert want in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000
    # The OpenAPI document the page loads, from the same origin.
    assert "/openapi.json" in html
    assert (await client.get("/openapi.json")).status_code == 200

    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "img-src", "connect-src"):
        sources = directives[name].split()
        assert "'self'" in sources
        assert not [s for s in sources if "//" in s or s in ("*", "https:", "http:")], csp
    assert "'unsafe-inline'" not in directives["script-src"]
    if page == "/docs":  # its inline start-up script is allowed by hash, nothing else
        assert "'sha256-" in directives["script-src"]
        assert "validatorUrl" in html and "null" in html


async def test_swagger_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs/oauth2-redirect")
    assert r.status_code == 200 and "content-security-policy" in r.headers
