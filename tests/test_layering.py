"""The shared kernel imports no part (docs/architecture.md).

Every module of ``liftwatch/`` outside ``liftwatch/cmd/`` (the entry points, the one place
that names the parts) may import the standard library, third-party packages and other kernel
modules only — also inside functions — and never loads a module by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("alerts", "ingest", "api", "simulator")


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
        ):
            found.append((node.lineno, "importlib.import_module(…)"))
    return found


def kernel_files() -> list[Path]:
    kernel = ROOT / "liftwatch"
    return [p for p in sorted(kernel.rglob("*.py")) if (kernel / "cmd") not in p.parents]


def test_the_kernel_imports_no_part() -> None:
    files = kernel_files()
    assert len(files) > 20  # the walk found the kernel
    offences = []
    for path in files:
        for line, name in imported_names(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            if top in PARTS or name.startswith("importlib."):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert offences == [], "the shared kernel must not import a part:\n" + "\n".join(offences)


def test_the_guard_sees_function_level_imports(tmp_path: Path) -> None:
    source = "def f():\n    from alerts import engine\n    import api.app\n"
    names = [name for _, name in imported_names(ast.parse(source))]
    assert names == ["alerts", "api.app"]


def test_parts_never_import_each_others_internals_across_ingest_and_alerts() -> None:
    """DESIGN.md: ingest and alerts are independent consumers of the one decoder."""
    for part, other in (("ingest", "alerts"), ("alerts", "ingest")):
        for path in sorted((ROOT / part).rglob("*.py")):
            names = [name for _, name in imported_names(ast.parse(path.read_text()))]
            assert not [n for n in names if n.split(".")[0] == other], path


DRIVERS = ("sqlite3", "psycopg", "psycopg_pool")
# Where a database driver may be imported: the store and the local-services helper (which
# starts a private PostgreSQL for tests, benchmarks and the demo and checks it is up).
DRIVER_HOMES = (ROOT / "liftwatch" / "store", ROOT / "liftwatch" / "localservices.py")


def test_only_the_store_imports_a_database_driver() -> None:
    """Issue 14: one store interface, two implementations — all SQL and both drivers live in
    ``liftwatch/store/``; code above it catches ``liftwatch.store.Error`` and friends."""
    offences = []
    for top in ("liftwatch", *PARTS):
        for path in sorted((ROOT / top).rglob("*.py")):
            if any(path == home or home in path.parents for home in DRIVER_HOMES):
                continue
            for line, name in imported_names(ast.parse(path.read_text(), str(path))):
                if name.split(".")[0] in DRIVERS:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert offences == [], "only liftwatch/store/ may import a driver:\n" + "\n".join(offences)


def test_the_driver_guard_sees_an_import() -> None:
    names = [n for _, n in imported_names(ast.parse("import sqlite3\nfrom psycopg import sql"))]
    assert [n for n in names if n.split(".")[0] in DRIVERS] == ["sqlite3", "psycopg"]
