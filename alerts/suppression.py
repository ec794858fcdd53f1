"""Which raises are muted (FAULTS.md § Suppression and filtering), decided from live state.

Maintenance windows are looked up in the store at raise time (the API may declare one from
another process); :func:`maintenance_applies` says whether a window can mute the alarm.
Flood control is decided in the lifecycle, from the store's recent raises. A muted alarm is
still recorded, with its reason, and never notified.
"""

from __future__ import annotations

from typing import Final

from liftwatch.protocol import Telemetry

SPECIAL_MODES: Final = frozenset(
    {"fire_return", "firefighter", "emergency_power", "earthquake", "out_of_service"}
)
SPECIAL_MUTED: Final = frozenset(
    {"door_open_too_long", "door_cycling", "run_timeout", "stopped_outside_zone"}
)
NEVER_MUTED_BY_INSPECTION: Final = frozenset({"alarm_button", "device_offline"})


def derived(code: str, source: str) -> bool:
    """Inspection mode and maintenance windows mute derived alarms only; never the alarm
    button, reported faults, or device_offline."""
    return source == "rule" and code not in NEVER_MUTED_BY_INSPECTION


def maintenance_applies(code: str, source: str) -> bool:
    return derived(code, source)


def reason(code: str, source: str, tel: Telemetry | None) -> str | None:
    """Why a raise of ``code`` is muted now, or None when it must be notified. (A lift marked
    inactive raises nothing at all: the engine does not evaluate it.)"""
    if tel is None:
        return None
    mode = tel.service_mode
    if mode in SPECIAL_MODES and code in SPECIAL_MUTED:
        return f"special_mode:{mode}"
    if mode == "inspection" and derived(code, source):
        return "inspection_mode"
    return None
