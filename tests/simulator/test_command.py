"""``liftwatch simulate`` without a broker: check, dry run + labels, score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liftwatch.cmd.main import main
from simulator.runner import read_labels


def test_check_summarises_a_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "check", "all_faults"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("all_faults: 28 lifts")
    assert "SIM-ENT-LAND     entrapment/at_landing" in out


def test_invalid_scenario_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nduration_s: 10\nlifts: [{id: A}]\ntimeline: [{at: 1, lift: B, do: call}]\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["simulate", "check", str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown lift(s) ['B']" in err and "to: Field required" in err


def test_dry_run_writes_messages_and_labels_then_score_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs, labels = tmp_path / "msgs.jsonl", tmp_path / "labels.json"
    code = main(
        [
            "simulate",
            "scenario",
            "demo",
            "--dry-run",
            str(msgs),
            "--labels",
            str(labels),
            "--compress-idle",
            "5",
            "--quiet",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in msgs.read_text().splitlines()]
    assert lines and all(line["topic"].startswith("lifts/DEMO-") for line in lines)
    doc, labs = read_labels(labels)
    assert doc["scenario"] == "demo" and doc["format"] == "liftwatch-labels/1"
    expected = [lab for lab in labs if lab.expect == "raise"]
    assert len(expected) == 4

    # A perfect detector: every expected alarm exactly at its due time.
    perfect = tmp_path / "perfect.json"
    perfect.write_text(
        json.dumps(
            [
                {
                    "lift_id": lab.lift_id,
                    "code": lab.code,
                    "subtype": lab.subtype,
                    "at_ms": lab.due_ms + 200,
                }
                for lab in expected
            ]
        )
    )
    capsys.readouterr()
    assert main(["simulate", "score", str(labels), str(perfect)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "recall_critical=1.000 recall_all=1.000 false_alarms=0 max_delay_over_threshold_s=0.200"
    )

    # Nothing detected and one suppressed-in-inspection alarm notified: a failing score.
    forbidden = next(lab for lab in labs if lab.expect == "forbid")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "lift_id": forbidden.lift_id,
                "code": forbidden.code,
                "at_ms": forbidden.onset_ms + 11_000,
            }
        )
        + "\n"
    )
    assert main(["simulate", "score", str(labels), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "MISSED" in out and "FORBIDDEN" in out
    assert out.strip().endswith("false_alarms=1 max_delay_over_threshold_s=0.000")


def test_score_rejects_files_that_are_not_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    assert main(["simulate", "score", str(junk), str(junk)]) == 2
    assert "not a liftwatch-labels/1 label file" in capsys.readouterr().err
