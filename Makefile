# The obvious command for each task; the work is in scripts/ (STYLE.md: scripts to rule them all).
.PHONY: setup lock test check demo bench format

setup:
	scripts/setup

# Refresh uv.lock (and requirements/) to the newest releases the ranges allow: docs/dependencies.md.
lock:
	scripts/lock

test: setup
	scripts/test

check: setup
	scripts/check

demo: setup
	scripts/demo

# Every benchmark in turn (about 15 minutes); each prints its key=value line last.
bench: setup
	scripts/bench

# Fix what ruff can fix (scripts/check only verifies).
format: setup
	scripts/format
