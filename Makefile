# The obvious command for each task; the work is in scripts/ (STYLE.md: scripts to rule them all).
.PHONY: setup test check demo bench

setup:
	scripts/setup

test: setup
	scripts/test

check: setup
	scripts/check

demo: setup
	scripts/demo

bench: setup
	.venv/bin/python bench/decoder_cost.py
