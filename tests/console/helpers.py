"""Helpers of the console's browser tests (fixtures: tests/console/conftest.py):
``login(page, user)``, ``shot(page, name)``, the test accounts' :data:`PASSWORD`."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from playwright.sync_api import Page

T = TypeVar("T")

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


def poll(check: Callable[[], T], within: float = 10, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy (returned) or ``within`` s pass."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.05)
