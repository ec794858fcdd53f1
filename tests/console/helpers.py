"""Helpers of the console's browser tests (fixtures: tests/console/conftest.py):
``login(page, user)``, ``shot(page, name)``, the test accounts' :data:`PASSWORD`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.sync_api import Page

PASSWORD = "correct horse battery"


def login(page: Page, user: str, password: str = PASSWORD) -> None:
    """Log ``user`` in through the login page; returns on the page the login leads to."""
    page.goto("/console/login")
    page.get_by_label("Username").or_(page.get_by_label("用户名")).fill(user)
    page.locator("#password").fill(password)
    page.locator("#login-form button[type=submit]").click()
    page.wait_for_url(lambda url: "/console/login" not in url)


def screenshots_dir() -> Path:
    configured = os.environ.get("LIFTWATCH_SCREENSHOTS")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / "liftwatch-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot ``<name>.png`` into ``$LIFTWATCH_SCREENSHOTS`` (default: a temp dir)."""
    path = screenshots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
