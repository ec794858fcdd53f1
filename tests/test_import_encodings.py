"""Chinese spreadsheets through ``POST /lifts/import`` (issue 17 item 3): GBK/GB18030 and
UTF-8 with or without BOM, detected or named by the upload's ``charset``; Chinese headers;
是/否; every error of a row. On both store backends, in the worker thread and in the child
process that large bodies go to."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.errors import ApiError
from api.importer import CHILD_MIN_BYTES, charset_of, import_body
from liftwatch.registry import Company, EncodingProblem, decode_text, parse_csv
from liftwatch.settings import load_settings
from liftwatch.store import Database
from liftwatch.store import registry as reg

ADMIN = "test-admin-token-0123456789"
H = {"Authorization": f"Bearer {ADMIN}"}

SHEET = (
    "电梯编号,设备代码,96333救援码,电梯名称,安装地址,区域代码,维保单位,额定速度(m/s),层站数,"
    "是否城区,是否启用\r\n"
    "ENC-1,31101201002018040001,123456,一号梯,北京路1号,310101,co-enc,1.75,18,是,是\r\n"
    "ENC-2,,654321,二号梯,南京路2号,310101,co-enc,1.0,6,否,否\r\n"
    "ENC 3,,12345,三号梯,,310101,nosuchco,-1,6,也许,是\r\n"
)


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url)
    reg.upsert_company(database, Company(company_id="co-enc", name="上海某某电梯维保有限公司"))
    yield database
    database.close()


@pytest.fixture
async def client(tmp_path: Path, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        data_dir=tmp_path,
        database_url=db.target if db.dialect == "postgresql" else None,
        admin_token=ADMIN,
    )
    app = create_app(settings, db=db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c


def _check_imported(db: Database, answer: dict[str, object]) -> None:
    assert (answer["inserted"], answer["rejected"]) == (2, 1), answer
    errors = answer["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    bad = errors[0]
    assert bad["line"] == 4 and bad["lift_id"] == "ENC 3"
    for field in ("urban must be true/false, yes/no, 1/0 or 是/否", "lift_id", "rescue_code"):
        assert field in bad["error"], bad
    assert "rated_speed" in bad["error"], bad
    one, two = reg.get_lift(db, "ENC-1"), reg.get_lift(db, "ENC-2")
    assert one is not None and two is not None
    assert (one.name, one.address, one.company_id) == ("一号梯", "北京路1号", "co-enc")
    assert (one.registration_code, one.rescue_code) == ("31101201002018040001", "123456")
    assert (one.rated_speed, one.floors, one.urban, one.active) == (1.75, 18, True, True)
    assert (two.urban, two.active) == (False, False)


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8", "utf-8-sig"])
async def test_upload_detects_the_encoding(
    client: httpx.AsyncClient, db: Database, encoding: str
) -> None:
    r = await client.post(
        "/api/v1/lifts/import",
        content=SHEET.encode(encoding),
        headers={**H, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    _check_imported(db, r.json())


async def test_upload_with_a_wrong_charset_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/lifts/import",
        content=SHEET.encode("gbk"),
        headers={**H, "content-type": "text/csv"},
        params={"format": "csv"},
    )
    assert r.status_code == 200  # detected without a charset
    r = await client.post(
        "/api/v1/lifts/import",
        content=b"lift_id\n\xff\xff\n",
        headers={**H, "content-type": "text/csv"},
    )
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "neither UTF-8 nor GB18030" in message and "charset=" in message


@pytest.mark.parametrize("big", [False, True], ids=["thread", "child"])
async def test_named_charset_is_used_in_thread_and_child(db: Database, big: bool) -> None:
    rows = SHEET
    if big:  # past CHILD_MIN_BYTES: the child process decodes it
        filler = "".join(f"PAD-{i:06d},,,填充,,,co-enc,,,是,是\r\n" for i in range(12_000))
        rows += filler
        assert len(rows.encode("gbk")) > CHILD_MIN_BYTES
    raw = rows.encode("gbk")
    answer = json.loads(await import_body(db, "csv", raw, "GBK"))
    if big:
        assert answer["inserted"] == 2 + 12_000
        answer["inserted"] = 2
    _check_imported(db, answer)
    # The same GBK bytes declared as UTF-8 are refused, not misread.
    with pytest.raises(ApiError, match="not utf-8 text"):
        await import_body(db, "csv", raw, "utf-8")


def test_charset_of_and_detection() -> None:
    assert charset_of("text/csv; charset=GBK") == "GBK"
    assert charset_of('text/csv;charset="utf-8"') == "utf-8"
    assert charset_of("text/csv") is None and charset_of(None) is None
    # Valid UTF-8 is never read as GB18030 (which would decode it to other characters).
    assert decode_text("困人,轿厢".encode()) == ("困人,轿厢", "utf-8")
    assert decode_text("\ufeff困人".encode()) == ("困人", "utf-8")
    assert decode_text("困人".encode("gbk")) == ("困人", "gb18030")
    with pytest.raises(EncodingProblem, match="unknown encoding"):
        decode_text(b"x", "no-such-codec")


def test_header_aliases_and_problems() -> None:
    valid, errors = parse_csv("LIFT_ID , Urban\nA,Y\n")
    assert [(ln, x.lift_id, x.urban) for ln, x in valid] == [(2, "A", True)] and not errors
    _, errors = parse_csv("电梯编号,设备编号\nA,B\n")
    assert errors[0].error.startswith("bad header") and "more than one column" in errors[0].error
    _, errors = parse_csv("名称,颜色\nA,red\n")
    assert "missing column lift_id (or 电梯编号)" in errors[0].error
    assert "unknown columns ['颜色']" in errors[0].error


async def test_upload_charset_in_the_content_type_is_used(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The upload's ``charset`` wins over detection: a GBK body declared UTF-8 is refused
    (detection would have read it), and the same body declared gbk is imported."""
    body = SHEET.encode("gbk")
    r = await client.post(
        "/api/v1/lifts/import",
        content=body,
        headers={**H, "content-type": "text/csv; charset=utf-8"},
    )
    assert r.status_code == 400, r.text
    assert "utf-8" in r.json()["error"]["message"].lower()
    r = await client.post(
        "/api/v1/lifts/import",
        content=body,
        headers={**H, "content-type": 'text/csv; charset="gbk"'},
    )
    assert r.status_code == 200, r.text
    _check_imported(db, r.json())
