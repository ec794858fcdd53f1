"""The administrator's screens (companies, lifts, users, tokens, webhooks, dead-letters): built
by the administrator helper (H2)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
