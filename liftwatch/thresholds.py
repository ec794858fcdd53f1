"""Detection thresholds: FAULTS.md defaults, overridden globally (``LIFTWATCH_ALERTS_THRESHOLDS``)
and per lift (registry ``overrides``). Keys and meanings are listed in docs/alarms.md."""

from __future__ import annotations

from typing import Final

DEFAULTS: Final[dict[str, float]] = {
    "entrapment_s": 30,
    "entrapment_at_landing_s": 90,
    "entrapment_rearm_s": 60,
    "entrapment_clear_run_s": 2,
    "alarm_button_hold_s": 30,
    "alarm_button_repeat_s": 60,
    "stationary_speed": 0.1,
    "moving_speed": 0.3,
    "unintended_movement_messages": 2,
    "door_open_while_running_s": 0.5,
    "overspeed_factor": 1.15,
    "overspeed_s": 0.5,
    "overspeed_clear_s": 15,
    "stopped_outside_zone_s": 10,
    "position_lost_s": 10,
    "run_timeout_s": 45,
    "power_failure_s": 5,
    "power_failure_clear_s": 30,
    "device_offline_s": 180,
    "device_offline_after_will_s": 60,
    "door_cycling_changes": 6,
    "door_cycling_window_s": 15,
    "door_cycling_quiet_s": 30,
    "door_open_too_long_s": 120,
    "alarm_test_overdue_h": 72,
    "battery_low_pct": 30,
    "battery_low_s": 60,
    "battery_clear_s": 600,
    "escalation_s": 300,
    "arrival_deadline_urban_min": 30,
    "arrival_deadline_rural_min": 60,
    "auto_resolve_s": 60,
    "flood_limit": 3,
}


class ThresholdError(ValueError):
    pass


class Thresholds:
    """Resolved thresholds in the units rules use (milliseconds, m/s, %, counts)."""

    __slots__ = (
        "alarm_button_hold_ms",
        "alarm_button_repeat_ms",
        "battery_clear_ms",
        "battery_low_ms",
        "battery_low_pct",
        "door_cycling_changes",
        "door_cycling_quiet_ms",
        "door_cycling_window_ms",
        "door_open_too_long_ms",
        "door_open_while_running_ms",
        "entrapment_at_landing_ms",
        "entrapment_clear_run_ms",
        "entrapment_ms",
        "entrapment_rearm_ms",
        "moving_speed",
        "offline_after_will_ms",
        "offline_ms",
        "overspeed_clear_ms",
        "overspeed_factor",
        "overspeed_ms",
        "position_lost_ms",
        "power_failure_clear_ms",
        "power_failure_ms",
        "raw",
        "run_timeout_ms",
        "selftest_ms",
        "stationary_speed",
        "stopped_outside_zone_ms",
        "unintended_movement_messages",
    )

    def __init__(self, values: dict[str, float]) -> None:
        v = values
        self.raw = dict(values)

        def ms(key: str) -> int:
            return round(v[key] * 1000)

        self.entrapment_ms = ms("entrapment_s")
        self.entrapment_at_landing_ms = ms("entrapment_at_landing_s")
        self.entrapment_rearm_ms = ms("entrapment_rearm_s")
        self.entrapment_clear_run_ms = ms("entrapment_clear_run_s")
        self.alarm_button_hold_ms = ms("alarm_button_hold_s")
        self.alarm_button_repeat_ms = ms("alarm_button_repeat_s")
        self.stationary_speed = float(v["stationary_speed"])
        self.moving_speed = float(v["moving_speed"])
        self.unintended_movement_messages = max(1, int(v["unintended_movement_messages"]))
        self.door_open_while_running_ms = ms("door_open_while_running_s")
        self.overspeed_factor = float(v["overspeed_factor"])
        self.overspeed_ms = ms("overspeed_s")
        self.overspeed_clear_ms = ms("overspeed_clear_s")
        self.stopped_outside_zone_ms = ms("stopped_outside_zone_s")
        self.position_lost_ms = ms("position_lost_s")
        self.run_timeout_ms = ms("run_timeout_s")
        self.power_failure_ms = ms("power_failure_s")
        self.power_failure_clear_ms = ms("power_failure_clear_s")
        self.offline_ms = ms("device_offline_s")
        self.offline_after_will_ms = ms("device_offline_after_will_s")
        self.door_cycling_changes = max(2, int(v["door_cycling_changes"]))
        self.door_cycling_window_ms = ms("door_cycling_window_s")
        self.door_cycling_quiet_ms = ms("door_cycling_quiet_s")
        self.door_open_too_long_ms = ms("door_open_too_long_s")
        self.selftest_ms = round(v["alarm_test_overdue_h"] * 3_600_000)
        self.battery_low_pct = float(v["battery_low_pct"])
        self.battery_low_ms = ms("battery_low_s")
        self.battery_clear_ms = ms("battery_clear_s")

    def ms(self, key: str) -> int:
        return round(self.raw[key] * 1000)


DAY_S: Final = 86_400
# FAULTS.md 1.1 #1: every threshold is a finite number in a documented range (docs/alarms.md).
# Durations: more than 0 and at most 30 days, in the key's unit; counts: integers 1 to 1,000.
COUNTS: Final = frozenset({"unintended_movement_messages", "door_cycling_changes", "flood_limit"})
_OPEN_RANGES: Final[dict[str, tuple[float, float]]] = {
    "stationary_speed": (0, 20),  # m/s, like the registry's rated_speed
    "moving_speed": (0, 20),
    "overspeed_factor": (1, 10),  # × rated_speed
    "battery_low_pct": (0, 100),
    "alarm_test_overdue_h": (0, 30 * 24),
    "arrival_deadline_urban_min": (0, 30 * 24 * 60),
    "arrival_deadline_rural_min": (0, 30 * 24 * 60),
}


def value_range(key: str) -> tuple[float, float]:
    """``(low, high)``: a value must be ``> low`` and ``<= high`` (counts: ``>= 1``)."""
    if key in COUNTS:
        return (0, 1000)
    return _OPEN_RANGES.get(key, (0, 30 * DAY_S))


def in_range(key: str, value: object) -> bool:
    """A value the engine can compute with: a real number in the key's documented range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low, high = value_range(key)
    if not low < value <= high:  # also False for NaN
        return False
    return key not in COUNTS or float(value).is_integer()


def describe_range(key: str) -> str:
    low, high = value_range(key)
    if key in COUNTS:
        return f"an integer from 1 to {high:g}"
    return f"more than {low:g} and at most {high:g}"


def check(values: dict[str, float], where: str) -> dict[str, float]:
    """Refuse unknown keys and values out of their range, with a message naming them."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ThresholdError(
            f"{where}: unknown threshold {', '.join(unknown)}; known keys are listed in"
            " docs/alarms.md"
        )
    bad = [k for k in sorted(values) if not in_range(k, values[k])]
    if bad:
        raise ThresholdError(
            f"{where}: "
            + "; ".join(f"{k} must be {describe_range(k)} (got {values[k]!r})" for k in bad)
        )
    return values


def unusable(lift_overrides: dict[str, float]) -> list[str]:
    """Stored per-lift keys :func:`resolve` ignores (unknown, or a value out of range)."""
    return sorted(k for k, v in lift_overrides.items() if k not in DEFAULTS or not in_range(k, v))


def resolve(global_values: dict[str, float], lift_overrides: dict[str, float]) -> Thresholds:
    """Defaults, then the global settings, then the lift's overrides. The registry refuses
    unknown per-lift keys on input; one stored by an older version is ignored here rather
    than stopping alarms."""
    merged = dict(DEFAULTS)
    merged.update(global_values)
    # A stored value that is somehow unusable never stops evaluation: the default applies.
    merged.update({k: v for k, v in lift_overrides.items() if k in DEFAULTS and in_range(k, v)})
    return Thresholds(merged)
