"""The alarm taxonomy of FAULTS.md: names, severities and upstream code numbers.

GB/T 24476-2017 numbers fault events 1–8 and the car alarm button 90. GB/T 38656-2020's
elevator fault types 01–08 follow GB/T 24476's order and add overtravel top 09, overtravel
bottom 10 and entrapment 11 (FAULTS.md § Sources), so exports can speak either numbering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["critical", "major", "minor"]
SEVERITY_RANK: Final[dict[str, int]] = {"minor": 0, "major": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: str
    zh: str
    en: str
    severity: Severity
    gb24476: int | None = None
    gb38656: str | None = None


_CODES: Final = (
    CodeInfo("entrapment", "困人", "Passenger entrapment", "critical", None, "11"),
    CodeInfo("alarm_button", "轿厢报警按钮动作", "Car alarm button pressed", "critical", 90),
    CodeInfo(
        "unintended_car_movement", "轿厢意外移动", "Unintended car movement", "critical", 5, "05"
    ),
    CodeInfo("door_open_while_running", "运行中开门", "Door open while running", "critical"),
    CodeInfo("overspeed", "超速", "Overspeed", "critical"),
    CodeInfo("overtravel_top", "冲顶", "Overtravel at the top", "critical", None, "09"),
    CodeInfo("overtravel_bottom", "蹲底", "Overtravel at the bottom", "critical", None, "10"),
    CodeInfo(
        "stopped_outside_zone",
        "轿厢在开锁区域外停止",
        "Car stopped outside the unlocking zone",
        "major",
        4,
        "04",
    ),
    CodeInfo("safety_circuit_open", "安全回路断路", "Safety circuit open", "major", 1, "01"),
    CodeInfo("door_close_fault", "关门故障", "Door closing fault", "major", 2, "02"),
    CodeInfo("door_open_fault", "开门故障", "Door opening fault", "major", 3, "03"),
    CodeInfo(
        "motor_runtime_limiter",
        "电动机运转时间限制器动作",
        "Motor runtime limiter tripped",
        "major",
        6,
        "06",
    ),
    CodeInfo("position_lost", "楼层位置丢失", "Car position lost", "major", 7, "07"),
    CodeInfo(
        "restart_prevented", "防止电梯再运行故障", "Restart prevented by a fault", "major", 8, "08"
    ),
    CodeInfo("run_timeout", "运行超时", "Run timeout", "major"),
    CodeInfo("power_failure", "停电", "Mains power failure", "major"),
    CodeInfo("device_offline", "监测设备离线", "Monitoring device offline", "major"),
    CodeInfo("controller_fault", "控制器故障", "Controller fault", "major"),
    CodeInfo("door_cycling", "反复开关门", "Doors cycling repeatedly", "minor"),
    CodeInfo("door_open_too_long", "长时间开门", "Doors open too long", "minor"),
    CodeInfo("alarm_test_overdue", "报警装置自检超时", "Alarm device self-test overdue", "minor"),
    CodeInfo("backup_battery_low", "应急电源电量低", "Backup battery low", "minor"),
)

CODES: Final[dict[str, CodeInfo]] = {c.code: c for c in _CODES}
BY_GB24476: Final[dict[int, str]] = {c.gb24476: c.code for c in _CODES if c.gb24476 is not None}
BY_GB38656: Final[dict[str, str]] = {c.gb38656: c.code for c in _CODES if c.gb38656 is not None}

ENTRAPMENT_SUBTYPE_NAMES: Final = {
    "outside_zone": ("困人", "Passenger entrapment"),
    "at_landing": ("困人（平层关人）", "Passenger entrapment at a landing (suspected)"),
}


def info(code: str) -> CodeInfo:
    """The taxonomy entry of ``code``; unknown codes are reported as controller faults."""
    return CODES.get(code) or CODES["controller_fault"]


def names(code: str, subtype: str | None) -> dict[str, str]:
    """``{"zh", "en"}`` display names as the webhook body carries them."""
    if code == "entrapment" and subtype in ENTRAPMENT_SUBTYPE_NAMES:
        zh, en = ENTRAPMENT_SUBTYPE_NAMES[subtype]
        return {"zh": zh, "en": en}
    entry = info(code)
    return {"zh": entry.zh, "en": entry.en}


def _ascii_number(text: str) -> int | None:
    """The code as a number when it is 1 to 9 ASCII digits (PROTOCOL.md 1.1: Unicode digits
    such as ``²`` or ``①`` are text, which ``str.isdigit`` and ``int`` would take or choke on)."""
    if 0 < len(text) <= 9 and text.isascii() and text.isdigit():
        return int(text)
    return None


def reported_code(namespace: str, code: int | str) -> tuple[str, str | None]:
    """Map a controller fault to ``(liftwatch code, subtype)``.

    ``gb24476`` 1–8 and 90 and ``gb38656`` 01–11 map to their liftwatch codes; a namespace
    ``liftwatch`` naming one of our codes maps to it (devices that detect overtravel
    themselves). Anything else is a ``controller_fault`` whose subtype keeps namespace and
    code, so distinct faults are distinct alarms and no reported fault is dropped.
    """
    ns = namespace.strip().lower()
    text = str(code).strip()
    number = _ascii_number(text)
    if ns == "gb24476" and number in BY_GB24476:
        return BY_GB24476[number], None
    if ns == "gb38656" and number is not None and f"{number:02d}" in BY_GB38656:
        return BY_GB38656[f"{number:02d}"], None
    if ns == "liftwatch" and text in CODES and text != "controller_fault":
        return text, None
    return "controller_fault", f"{namespace}:{text}"[:100]
