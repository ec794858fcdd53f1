"""A ``liftwatch`` child process whose output is read line by line by a thread (so the pipe
never fills), with a deadline-bounded wait for a line matching a pattern."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from typing import Any


class Child:
    def __init__(self, args: list[str], env: dict[str, str], **popen: Any) -> None:
        """Run ``python -m liftwatch *args``; stdout and stderr are read together."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liftwatch", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)
            self.lines.put(line)

    @property
    def output(self) -> str:
        return "".join(self.out)

    def wait_for(self, pattern: str, within: float = 90) -> re.Match[str]:
        """The first line (from here on) matching the regular expression ``pattern``; fails
        with the output so far if none comes within ``within`` seconds."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if m := wanted.search(line):
                return m
        raise AssertionError(f"never printed {pattern!r} within {within} s:\n{self.output}")
