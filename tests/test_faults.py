"""The taxonomy and its mapping to GB/T 24476-2017 and GB/T 38656-2020."""

from __future__ import annotations

from liftwatch.faults import BY_GB24476, BY_GB38656, CODES, names, reported_code

FAULTS_MD_CODES = {
    "entrapment": "critical",
    "alarm_button": "critical",
    "unintended_car_movement": "critical",
    "door_open_while_running": "critical",
    "overspeed": "critical",
    "overtravel_top": "critical",
    "overtravel_bottom": "critical",
    "stopped_outside_zone": "major",
    "safety_circuit_open": "major",
    "door_close_fault": "major",
    "door_open_fault": "major",
    "motor_runtime_limiter": "major",
    "position_lost": "major",
    "restart_prevented": "major",
    "run_timeout": "major",
    "power_failure": "major",
    "device_offline": "major",
    "door_cycling": "minor",
    "door_open_too_long": "minor",
    "alarm_test_overdue": "minor",
    "backup_battery_low": "minor",
    "controller_fault": "major",
}


def test_every_faults_md_code_with_its_severity() -> None:
    assert {c: i.severity for c, i in CODES.items()} == FAULTS_MD_CODES
    assert all(i.zh and i.en for i in CODES.values())


def test_gb24476_mapping_is_complete() -> None:
    assert BY_GB24476 == {
        1: "safety_circuit_open",
        2: "door_close_fault",
        3: "door_open_fault",
        4: "stopped_outside_zone",
        5: "unintended_car_movement",
        6: "motor_runtime_limiter",
        7: "position_lost",
        8: "restart_prevented",
        90: "alarm_button",
    }


def test_gb38656_mapping_covers_01_to_11() -> None:
    assert sorted(BY_GB38656) == [f"{i:02d}" for i in range(1, 12)]
    assert BY_GB38656["09"] == "overtravel_top"
    assert BY_GB38656["10"] == "overtravel_bottom"
    assert BY_GB38656["11"] == "entrapment"
    for number, code in BY_GB38656.items():
        if int(number) <= 8:
            assert CODES[code].gb24476 == int(number)


def test_reported_codes() -> None:
    assert reported_code("gb24476", 2) == ("door_close_fault", None)
    assert reported_code("GB24476", "5") == ("unintended_car_movement", None)
    assert reported_code("gb24476", 99) == ("controller_fault", "gb24476:99")
    assert reported_code("acme", "E42") == ("controller_fault", "acme:E42")
    assert reported_code("liftwatch", "overtravel_top") == ("overtravel_top", None)
    assert reported_code("gb38656", "09") == ("overtravel_top", None)


def test_unicode_digits_are_text_not_numbers() -> None:
    """PROTOCOL.md 1.1 § Value ranges; regression for the fleet-wide crash of
    ../shared/reviews/security.md #1 (``"²".isdigit()`` is true, ``int("²")`` raises)."""
    for code in ("²", "①", "⁰", "¹²", "٣", "５"):
        assert reported_code("gb24476", code) == ("controller_fault", f"gb24476:{code}")
        assert reported_code("gb38656", code) == ("controller_fault", f"gb38656:{code}")
    huge = "1" * 5000  # int() refuses more than 4,300 digits
    assert reported_code("gb24476", huge)[0] == "controller_fault"
    assert reported_code("gb24476", " 3 ") == (BY_GB24476[3], None)


def test_entrapment_names_by_subtype() -> None:
    assert names("entrapment", "outside_zone")["zh"] == "困人"
    assert names("entrapment", "at_landing")["zh"] == "困人（平层关人）"
    assert names("unknown_code", None)["en"] == "Controller fault"
