"""A real, small filesystem for disk-full tests: a size-limited tmpfs mounted by the fixture
(we run as root in the test environment) and unmounted in its teardown. No mocks: ENOSPC comes
from the kernel, short writes included."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def small_fs(where: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a ``size`` tmpfs at ``where`` (created), yield it, unmount it."""
    if not can_mount():
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # root without CAP_SYS_ADMIN (an unprivileged container)
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(mount: Path, leave_bytes: int, name: str = "filler") -> Path:
    """Write a filler file so that about ``leave_bytes`` stay free (the last write may be a
    short one when leave_bytes is 0: that is the point)."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    path = mount / name
    size = max(0, free - leave_bytes)
    with path.open("wb") as f:
        chunk = b"\0" * (1 << 16)
        left = size
        try:
            while left > 0:
                left -= f.write(chunk[: min(left, len(chunk))])
            f.flush()
        except OSError:
            pass  # the disk is full
    return path


def free_bytes(mount: Path) -> int:
    st = os.statvfs(mount)
    return st.f_bavail * st.f_frsize
