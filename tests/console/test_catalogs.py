"""The console's own catalog (console.po) is complete: every message the dispatcher's templates
and words.py mark has a Chinese translation, with the same %(placeholders)s. No services."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from api.console.render import HERE, pick_lang, translations

METHODS = [
    ("api/console/words.py", "python"),
    ("api/console/templates/*.html", "jinja2"),
    ("api/console/templates/dispatch/**.html", "jinja2"),
]
OPTIONS = {"**.html": {"extensions": "jinja2.ext.i18n"}}
REPO = HERE.parent.parent


def marked() -> set[str]:
    found: set[str] = set()
    for _, _, message, _, _ in extract_from_dir(
        REPO,
        METHODS,
        options_map={
            "api/console/templates/*.html": OPTIONS["**.html"],
            "api/console/templates/dispatch/**.html": OPTIONS["**.html"],
        },
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalog(lang: str) -> dict[str, object]:
    path = Path(HERE / "locale" / lang / "LC_MESSAGES" / "console.po")
    with path.open("rb") as f:
        return {(m.id if isinstance(m.id, str) else m.id[0]): m.string for m in read_po(f) if m.id}


def test_every_marked_message_is_translated_to_chinese() -> None:
    messages = marked()
    assert {"Alarm queue", "Acknowledge", "critical", "%(num)d lift"} <= messages
    zh = catalog("zh_CN")
    missing = sorted(m for m in messages if not zh.get(m))
    assert missing == [], f"untranslated in zh_CN console.po: {missing}"
    for msgid, text in zh.items():
        strings = text if isinstance(text, tuple) else (text,)
        for s in strings:
            assert set(re.findall(r"%\(\w+\)", msgid)) == set(re.findall(r"%\(\w+\)", str(s)))


def test_english_catalog_has_every_message() -> None:
    messages = marked()
    en = catalog("en")
    assert sorted(messages - set(en)) == []


def test_catalogs_merge_and_translate() -> None:
    assert translations("zh_CN").gettext("Acknowledge") == "接警"
    assert translations("zh_CN").ngettext("%(num)d lift", "%(num)d lifts", 3) == "%(num)d 台电梯"
    assert translations("en").gettext("Acknowledge") == "Acknowledge"


class _Req:
    def __init__(self, accept: str, cookie: str | None = None) -> None:
        self.headers = {"accept-language": accept}
        self.cookies = {"liftwatch_lang": cookie} if cookie else {}


def test_language_negotiation() -> None:
    def lang(accept: str, cookie: str | None = None) -> str:
        return pick_lang(_Req(accept, cookie))  # type: ignore[arg-type]

    assert lang("zh-CN,zh;q=0.9,en;q=0.8") == "zh_CN"
    assert lang("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert lang("zh-TW") == "zh_CN"
    assert lang("de-DE, zh;q=0.5") == "zh_CN"
    assert lang("en;q=0.2, zh-Hans;q=0.9") == "zh_CN"
    assert lang("fr") == "en"
    assert lang("") == "en"
    assert lang("zh-CN", cookie="en") == "en"
    assert lang("en", cookie="zh_CN") == "zh_CN"
    assert lang("en", cookie="xx") == "en"
