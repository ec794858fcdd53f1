"""Detection score, end to end: the ``all_faults`` scenario (every FAULTS.md code, plus cases
that must stay quiet) through a private Mosquitto, a private InfluxDB and a real
``liftwatch serve``; the alarms read back from the API and scored against the scenario's
ground-truth labels (``simulator/score.py``). About 2.5 minutes: the scenario runs in real
time, because liftwatch measures every duration on its own clock.

    .venv/bin/python bench/detection_score.py [--scenario all_faults] [--keep DIR]

Progress goes to stderr; stdout has the score table, then as its last line
``recall_critical=… recall_all=… false_alarms=… max_delay_over_threshold_s=…``.
Exit status 0 when every expected alarm was raised in time and none was forbidden.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.detection import run_detection


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="all_faults", help="built-in name or file")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR and keep it (logs, data)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liftwatch-detection-") as tmp:
        workdir = args.keep or Path(tmp)
        run = run_detection(workdir, scenario=args.scenario, progress=say)
    t = run.timings
    say(
        f"startup {t['startup_s']:.1f} s, scenario {t['scenario_s']:.1f} s, "
        f"total {t['total_s']:.1f} s; liftwatch serve exit code {run.serve_exit_code}"
    )
    print(run.table())
    print(run.score.summary_line())
    return 0 if run.score.passed else 1


if __name__ == "__main__":
    sys.exit(main())
