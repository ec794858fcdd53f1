# The obvious command for each task; the work is in scripts/ (STYLE.md: scripts to rule them all).
.PHONY: setup lock test check demo bench

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
BENCHES = decoder_cost ingest_throughput alerts_engine alarm_latency api_queries detection_score
bench: setup
	set -e; for b in $(BENCHES); do echo "== bench/$$b.py" >&2; .venv/bin/python bench/$$b.py; done
