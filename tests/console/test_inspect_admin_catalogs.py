"""The inspector's and administrator's messages are all translated: every message their
templates and modules mark has a Chinese translation in the merged zh_CN catalogs
(``inspect.po``, ``admin.po``, or the framework's ``console.po``), and an English entry. No
services."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from api.console.render import HERE, translations

REPO = HERE.parent.parent
JINJA = {"extensions": "jinja2.ext.i18n"}
SCREENS = {
    "inspect": [
        ("api/console/inspect.py", "python"),
        ("api/console/templates/inspect/**.html", "jinja2"),
    ],
    "admin": [
        ("api/console/admin.py", "python"),
        ("api/console/templates/admin/**.html", "jinja2"),
    ],
}


def marked(screen: str) -> set[str]:
    methods = SCREENS[screen]
    found: set[str] = set()
    for _, _, message, _, _ in extract_from_dir(
        REPO,
        methods,
        options_map={pattern: JINJA for pattern, kind in methods if kind == "jinja2"},
        keywords={"_": None, "gettext": None},
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def strings(lang: str, name: str) -> dict[str, str]:
    with Path(HERE / "locale" / lang / "LC_MESSAGES" / f"{name}.po").open("rb") as f:
        return {m.id: str(m.string) for m in read_po(f) if isinstance(m.id, str) and m.id}


def ids(lang: str, name: str) -> set[str]:
    return set(strings(lang, name))


@pytest.mark.parametrize("screen", ["inspect", "admin"])
def test_every_message_has_chinese(screen: str) -> None:
    messages = marked(screen)
    assert len(messages) > 40, messages  # the extraction found the screens
    zh = translations("zh_CN")
    missing = sorted(m for m in messages if zh.gettext(m) == m and m not in {"URL"})
    assert missing == [], f"no zh_CN translation: {missing}"
    # new-style gettext formats every message with %: a bare % would raise when rendered
    assert [m for m in messages if "%" in m] == []


@pytest.mark.parametrize("screen", ["inspect", "admin"])
def test_english_catalog_lists_them(screen: str) -> None:
    known = ids("en", "console") | ids("en", screen)
    assert sorted(marked(screen) - known) == []


def test_own_catalogs_do_not_override_the_frameworks_words() -> None:
    """The catalogs are merged and a file sorted later wins: a message console.po translates
    is left untranslated here (an empty msgstr is not compiled) or translated the same."""
    framework = strings("zh_CN", "console")
    for name in ("inspect", "admin"):
        own = strings("zh_CN", name)
        clash = {m: t for m, t in own.items() if t and m in framework and framework[m] != t}
        assert clash == {}, name


def test_report_csv_header_is_chinese() -> None:
    zh = translations("zh_CN")
    assert [zh.gettext(m) for m in ("Lift", "Alarm count", "Share on site in time")] == [
        "电梯",
        "告警数",
        "困人按时到场率",
    ]
