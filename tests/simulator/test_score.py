"""Detection scoring (pure)."""

from __future__ import annotations

from simulator.labels import Label
from simulator.score import Observed, score

T0 = 1_795_000_000_000


def lab(
    lift: str,
    code: str,
    expect: str = "raise",
    onset_s: float = 0,
    thr: float = 0,
    sev: str = "major",
    until_s: float | None = None,
    subtype: str | None = None,
) -> Label:
    return Label(
        lift_id=lift,
        code=code,
        expect=expect,  # type: ignore[arg-type]
        onset_ms=T0 + round(onset_s * 1000),
        threshold_s=thr,
        severity=sev,
        subtype=subtype,
        until_ms=None if until_s is None else T0 + round(until_s * 1000),
    )


def obs(lift: str, code: str, at_s: float, **kw: object) -> Observed:
    return Observed(lift_id=lift, code=code, at_ms=T0 + round(at_s * 1000), **kw)  # type: ignore[arg-type]


def test_perfect_run() -> None:
    labels = [
        lab("A", "entrapment", onset_s=10, thr=30, sev="critical", subtype="outside_zone"),
        lab("A", "stopped_outside_zone", onset_s=10, thr=10),
        lab("B", "alarm_button", "forbid", onset_s=5, until_s=8, sev="critical"),
    ]
    result = score(
        labels,
        [
            obs("A", "stopped_outside_zone", 20.2),
            obs("A", "entrapment", 40.5, subtype="outside_zone"),
            obs("Z", "overspeed", 3),  # another lift: not ours
        ],
    )
    assert result.recall_critical == result.recall_all == 1.0
    assert result.false_alarms == 0 and result.passed
    assert round(result.max_delay_over_threshold_s, 3) == 0.5
    assert result.summary_line() == (
        "recall_critical=1.000 recall_all=1.000 false_alarms=0 max_delay_over_threshold_s=0.500"
    )
    table = result.table(T0)
    assert "entrapment/outside_zone" in table and "ok" in table


def test_missed_late_forbidden_unexpected() -> None:
    labels = [
        lab("A", "entrapment", onset_s=10, thr=30, sev="critical"),
        lab("A", "door_cycling", onset_s=10, thr=0, sev="minor"),
        lab("B", "alarm_button", "forbid", onset_s=5, until_s=8, sev="critical"),
        lab("C", "*", "forbid", onset_s=0, until_s=100),
        lab("D", "stopped_outside_zone", "allow", onset_s=0, until_s=20),
    ]
    result = score(
        labels,
        [
            obs("A", "door_cycling", 12.5),  # 2.5 s over a 0 s threshold: late
            obs("B", "alarm_button", 6),  # forbidden
            obs("C", "power_failure", 50),  # control lift: forbidden
            obs("D", "stopped_outside_zone", 15),  # allowed
            obs("D", "run_timeout", 15),  # matches nothing: unexpected
            obs("A", "overspeed", 15, suppressed=True),  # suppressed: ignored
            obs("B", "alarm_button", 7, kind="returned"),  # a return hitting a forbid: counted
        ],
    )
    assert result.recall_critical == 0.0 and result.recall_all == 0.5
    assert [r.label.code for r in result.missed] == ["entrapment"]
    assert [r.label.code for r in result.late] == ["door_cycling"]
    assert result.max_delay_over_threshold_s == 2.5
    assert len(result.forbidden) == 3 and [o.code for o in result.unexpected] == ["run_timeout"]
    assert result.false_alarms == 4 and not result.passed
    table = result.table(T0)
    assert "MISSED" in table and "LATE" in table and "FORBIDDEN" in table and "UNEXPECTED" in table


def test_matching_respects_subtype_order_and_the_early_slack() -> None:
    labels = [
        lab("A", "alarm_button", onset_s=10, sev="critical"),
        lab("A", "alarm_button", onset_s=70, sev="critical"),
        lab("A", "entrapment", onset_s=0, thr=90, subtype="at_landing", sev="critical"),
    ]
    result = score(
        labels,
        [
            obs("A", "alarm_button", 9.5),  # 0.5 s "early": clock jitter, still a match
            obs("A", "alarm_button", 70.2, kind="returned"),  # a re-activation counts
            obs("A", "entrapment", 30, subtype="outside_zone"),  # wrong subtype
        ],
    )
    assert [r.observed is not None for r in result.rows] == [True, True, False]
    assert [o.subtype for o in result.unexpected] == ["outside_zone"]


def test_an_alarm_before_the_condition_does_not_count() -> None:
    result = score(
        [lab("A", "overspeed", onset_s=10, thr=0.5, sev="critical")], [obs("A", "overspeed", 5)]
    )
    assert result.recall_critical == 0.0
    assert len(result.unexpected) == 1


def test_observed_from_api_json() -> None:
    o = Observed.from_json(
        {
            "id": "al_1",
            "lift_id": "A",
            "code": "entrapment",
            "subtype": "at_landing",
            "raised_at": "2026-11-18T11:06:40.500Z",
            "suppressed": False,
        }
    )
    assert o.at_ms == 1795000000500 and o.alarm_id == "al_1" and o.subtype == "at_landing"
    assert Observed.from_json({"lift_id": "A", "code": "x", "at_ms": 5}).at_ms == 5


def test_no_expectations_is_a_clean_pass() -> None:
    result = score([], [])
    assert result.recall_critical == 1.0 and result.passed
    assert result.max_delay_over_threshold_s == 0.0
