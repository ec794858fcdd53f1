"""The inspector's screens (city view, reports): built by the inspector helper (H2)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
