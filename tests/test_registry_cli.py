"""``liftwatch lifts import`` and ``liftwatch decode`` as integrators run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liftwatch.store import Database
from liftwatch.store import registry as reg


def run(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    env["LIFTWATCH_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "liftwatch", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


HEADER = "lift_id,registration_code,rescue_code,name,address,company_id,"
CSV = (
    HEADER
    + """rated_speed,floors,urban,active,overrides
31101201002018040001,31101201002018040001,123456,A1,1 Road,acme,1.75,18,true,true,
31101201002018040002,,654321,A2,2 Road,acme,1.0,6,no,yes,"{""entrapment_s"": 20}"
bad id!,,,X,,acme,1.0,6,true,true,
31101201002018040004,,12345,short rescue code,,acme,1.0,6,true,true,
31101201002018040005,,,,,nosuchco,1.0,6,true,true,
31101201002018040006,,,,,acme,fast,6,true,true,
31101201002018040001,,,dup,,acme,1.0,6,true,true,
31101201002018040008,,,,,acme,1.0,6,maybe,true,
"""
)


def test_import_reports_bad_rows_with_line_numbers_and_is_idempotent(tmp_path: Path) -> None:
    assert run(tmp_path, "companies", "add", "acme", "ACME Lifts").returncode == 0
    csv_file = tmp_path / "lifts.csv"
    csv_file.write_text(CSV)

    first = run(tmp_path, "lifts", "import", str(csv_file))
    assert first.returncode == 1, first.stderr
    assert "inserted=2 updated=0 unchanged=0 rejected=6" in first.stdout
    err = first.stderr
    assert "line 4" in err and "lift_id" in err
    assert "line 5" in err and "rescue_code" in err
    assert "line 6" in err and "unknown company_id 'nosuchco'" in err
    assert "line 7" in err and "rated_speed" in err
    assert "line 8" in err and "duplicate lift_id (first on line 2)" in err
    assert "line 9" in err and "urban must be true/false" in err

    db = Database(tmp_path / "liftwatch.sqlite3")
    lift = reg.get_lift(db, "31101201002018040002")
    assert lift is not None
    assert (lift.urban, lift.active, lift.overrides) == (False, True, {"entrapment_s": 20.0})
    assert lift.rescue_code == "654321" and lift.company_id == "acme"

    again = run(tmp_path, "lifts", "import", str(csv_file))
    assert "inserted=0 updated=0 unchanged=2 rejected=6" in again.stdout

    csv_file.write_text(CSV.replace("A1,1 Road", "A1 renamed,1 Road"))
    changed = run(tmp_path, "lifts", "import", str(csv_file))
    assert "inserted=0 updated=1 unchanged=1" in changed.stdout
    listed = [json.loads(line) for line in run(tmp_path, "lifts", "list").stdout.splitlines()]
    assert [x["name"] for x in listed] == ["A1 renamed", "A2"]


def test_import_json_and_bad_header(tmp_path: Path) -> None:
    good = tmp_path / "lifts.json"
    good.write_text(json.dumps([{"lift_id": "L1", "rated_speed": 2.5}, {"lift_id": "L 2"}]))
    out = run(tmp_path, "lifts", "import", str(good))
    assert "inserted=1" in out.stdout and "line 2 (L 2)" in out.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\nL1,x\n")
    out = run(tmp_path, "lifts", "import", str(bad))
    assert out.returncode == 1 and "missing column lift_id" in out.stderr
    missing = run(tmp_path, "lifts", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_decode_prints_the_message_or_the_reason(tmp_path: Path) -> None:
    ok = run(
        tmp_path,
        "decode",
        "lifts/L1/event",
        '{"v":1,"ts":"2026-11-26T20:01:02.345Z","seq":3,"type":"alarm_button","pressed":true}',
    )
    assert ok.returncode == 0
    out = json.loads(ok.stdout)
    assert out["kind"] == "event" and out["body"]["type"] == "alarm_button"
    assert out["body"]["pressed"] is True and out["lift_id"] == "L1"

    bad = run(tmp_path, "decode", "lifts/L1/telemetry", stdin='{"v":1,"ts":1,"seq":1}')
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["rejected"] == "missing_field"

    topic = run(tmp_path, "decode", "elsewhere/L1/telemetry", "{}")
    assert json.loads(topic.stdout)["rejected"] == "bad_topic"


@pytest.mark.parametrize("args", [["--help"], ["decode", "--help"], ["lifts", "import", "--help"]])
def test_help_works(tmp_path: Path, args: list[str]) -> None:
    out = run(tmp_path, *args)
    assert out.returncode == 0 and "usage: liftwatch" in out.stdout
