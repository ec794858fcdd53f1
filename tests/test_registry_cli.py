"""``liftwatch lifts import``, ``companies``, ``decode`` as integrators run them: which store
they use, Chinese spreadsheets (GBK, UTF-8 with BOM, Chinese headers, 是/否)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from liftwatch.store import Database
from liftwatch.store import registry as reg


def run(
    data_dir: Path | None,
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
    if data_dir is not None:
        env["LIFTWATCH_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-m", "liftwatch", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
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
    assert run(tmp_path, "companies", "add", "acme", "ACME Lifts", "--create").returncode == 0
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
    Database(tmp_path / "liftwatch.sqlite3").close()
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


# --- which store (issue 17 item 1) ------------------------------------------------------


def test_a_read_never_creates_a_store_and_says_which_it_would_use(tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    for args in (["companies", "list"], ["lifts", "list"]):
        out = run(None, *args, cwd=elsewhere)
        assert out.returncode == 1, out
        stray = elsewhere / "data" / "liftwatch.sqlite3"
        assert f"no store at {stray}" in out.stderr
        assert "LIFTWATCH_DATA_DIR" in out.stderr and "./data" in out.stderr
        assert not (elsewhere / "data").exists()


def test_a_write_refuses_a_new_store_unless_asked(tmp_path: Path) -> None:
    data = tmp_path / "var-lib"
    csv_file = tmp_path / "lifts.csv"
    csv_file.write_text("lift_id\nL1\n")
    for args in (["companies", "add", "acme", "ACME"], ["lifts", "import", str(csv_file)]):
        out = run(data, *args)
        assert out.returncode == 1, out
        assert f"no store at {data / 'liftwatch.sqlite3'}" in out.stderr
        assert f"LIFTWATCH_DATA_DIR={data} (environment)" in out.stderr
        assert "--create" in out.stderr
        assert not data.exists()

    created = run(data, "lifts", "import", str(csv_file), "--create")
    assert created.returncode == 0, created.stderr
    assert f"store: {data / 'liftwatch.sqlite3'} (created)" in created.stderr
    listed = run(data, "lifts", "list")
    assert listed.returncode == 0
    assert f"store: {data / 'liftwatch.sqlite3'}\n" in listed.stderr
    assert [json.loads(x)["lift_id"] for x in listed.stdout.splitlines()] == ["L1"]
    again = run(data, "companies", "add", "acme", "ACME")  # exists now: no --create needed
    assert again.returncode == 0 and "store: " in again.stderr


def test_a_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    env_file = tmp_path / "db.sqlite3"
    Database(env_file).close()
    out = subprocess.run(
        [sys.executable, "-m", "liftwatch", "companies", "list"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")},
            "LIFTWATCH_DATABASE_URL": f"sqlite:///{env_file}",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"store: {env_file}" in out.stderr


def test_postgresql_store_is_named_with_the_password_hidden(postgres: Any) -> None:
    url = postgres.fresh_url()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTWATCH_")}
        env["LIFTWATCH_DATABASE_URL"] = url
        out = subprocess.run(
            [sys.executable, "-m", "liftwatch", "companies", "add", "acme", "ACME"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        shown = out.stderr.split("store: ", 1)[1].splitlines()[0]
        assert shown.startswith("postgresql://") and ":***@" in shown
        password = urlsplit(url).password
        assert password and f":{password}@" not in out.stderr + out.stdout
    finally:
        postgres.drop(url)


# --- Chinese spreadsheets (issue 17 item 3) ----------------------------------------------

CHINESE = (
    "电梯编号,注册代码,救援码,名称,地址,维保单位,额定速度（m/s）,层数,城区,启用\n"
    "31101201002018040001,31101201002018040001,123456,一号梯,北京路1号,acme,1.75,18,是,是\n"
    "31101201002018040002,,654321,二号梯,南京路2号,acme,1.0,6,否,1\n"
    "31101201002018040003,,12345,三号梯,,acme,1.0,6,也许,yes\n"
)


@pytest.mark.parametrize(
    ("encoding", "flag"),
    [
        ("gbk", []),
        ("gb18030", []),
        ("utf-8-sig", []),
        ("utf-8", []),
        ("gbk", ["--encoding", "gbk"]),
    ],
)
def test_import_chinese_spreadsheet(tmp_path: Path, encoding: str, flag: list[str]) -> None:
    assert run(tmp_path, "companies", "add", "acme", "ACME", "--create").returncode == 0
    csv_file = tmp_path / "lifts.csv"
    csv_file.write_bytes(CHINESE.replace("\n", "\r\n").encode(encoding))
    out = run(tmp_path, "lifts", "import", str(csv_file), *flag)
    assert "inserted=2 updated=0 unchanged=0 rejected=1" in out.stdout, out.stderr
    # Every error of the bad row: the boolean and the 5-digit rescue code.
    bad = [x for x in out.stderr.splitlines() if x.startswith("rejected line 4")]
    assert len(bad) == 1 and "urban must be true/false, yes/no, 1/0 or 是/否" in bad[0]
    assert "rescue_code" in bad[0]
    if encoding.startswith("gb"):
        assert "as gb18030" in out.stderr
    db = Database(tmp_path / "liftwatch.sqlite3")
    try:
        one = reg.get_lift(db, "31101201002018040001")
        two = reg.get_lift(db, "31101201002018040002")
        assert one is not None and two is not None
        assert (one.name, one.address, one.rated_speed, one.urban) == (
            "一号梯",
            "北京路1号",
            1.75,
            True,
        )
        assert (two.urban, two.active, two.rescue_code) == (False, True, "654321")
    finally:
        db.close()


def test_import_with_a_wrong_encoding_flag_is_refused(tmp_path: Path) -> None:
    Database(tmp_path / "liftwatch.sqlite3").close()
    csv_file = tmp_path / "lifts.csv"
    csv_file.write_bytes(CHINESE.encode("gbk"))
    out = run(tmp_path, "lifts", "import", str(csv_file), "--encoding", "utf-8")
    assert out.returncode == 1 and "not utf-8 text: byte 0 (line 1)" in out.stderr
    unknown = run(tmp_path, "lifts", "import", str(csv_file), "--encoding", "klingon")
    assert unknown.returncode == 1 and "unknown encoding 'klingon'" in unknown.stderr
    stdin = run(tmp_path, "lifts", "import", "-", stdin="电梯编号,城区\nL9,是\n")
    assert stdin.returncode == 0 and "inserted=1" in stdin.stdout, stdin.stderr


def test_provision_names_its_store_and_never_creates_one(tmp_path: Path) -> None:
    from tests.deploy.broker import SHIPPED_ACL

    acl = tmp_path / "acl"
    acl.write_text(SHIPPED_ACL.read_text())
    files = ["--password-file", str(tmp_path / "passwd"), "--acl-file", str(acl)]
    data = tmp_path / "nowhere"
    out = run(data, "devices", "provision", "L-1", *files)
    assert out.returncode == 1 and f"no store at {data / 'liftwatch.sqlite3'}" in out.stderr
    assert not data.exists() and not (tmp_path / "passwd").exists()

    Database(data / "liftwatch.sqlite3").close()
    known = run(data, "devices", "provision", "L-1", *files)
    assert known.returncode == 1  # the store exists, the lift is not in it
    assert f"store: {data / 'liftwatch.sqlite3'}" in known.stderr
    assert "unknown lift 'L-1'" in known.stderr
