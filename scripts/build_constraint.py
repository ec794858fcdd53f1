"""Copy the pinned build backend (requirements/build.txt) into pyproject.toml's
``[tool.uv] build-constraint-dependencies``, where uv takes hashes for build dependencies from.

Used by scripts/lock; argv: the compiled build requirements, the pyproject.toml to rewrite.
"""

import re
import sys
from pathlib import Path


def main(build_txt: str, pyproject: str) -> None:
    text = Path(build_txt).read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+==\S+)((?:\s*\\\s*--hash=\S+)+)", text, re.M)
    if not pins:
        sys.exit(f"build_constraint: no pinned requirement in {build_txt}")
    lines = []
    for requirement, hashes in pins:
        quoted = ", ".join(f'"{h}"' for h in re.findall(r"--hash=(\S+)", hashes))
        lines.append(f'    {{ requirement = "{requirement}", hashes = [{quoted}] }},\n')
    path = Path(pyproject)
    old = path.read_text()
    new, n = re.subn(
        r"(build-constraint-dependencies = \[\n)(?:    \{.*\},\n)*(\])",
        lambda m: m.group(1) + "".join(lines) + m.group(2),
        old,
    )
    if n != 1:
        sys.exit(f"build_constraint: no build-constraint-dependencies list in {pyproject}")
    if new != old:
        path.write_text(new)


if __name__ == "__main__":
    main(*sys.argv[1:3])
