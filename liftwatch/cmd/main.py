"""The ``liftwatch`` command line (the entry point of pyproject's ``liftwatch`` script).

Each part contributes its subcommands through a ``register(subparsers)`` function of the
modules in :data:`PARTS`, so ``--help`` lists exactly the subcommands that exist. A handler
receives the parsed arguments and returns the process exit code. ``liftwatch/cmd/`` is the one
place in the shared kernel that names the parts (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alerts import command as alerts_command
from api import command as api_command
from ingest import command as ingest_command
from liftwatch import __version__
from liftwatch.cmd import admin, client, db, devices, serve, users
from simulator import command as simulator_command
from simulator import demo

# In --help order.
PARTS: tuple[ModuleType, ...] = (
    admin,
    users,
    api_command,
    devices,
    client,
    db,
    simulator_command,
    alerts_command,
    ingest_command,
    serve,
    demo,
)

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liftwatch",
        description="Elevator remote fault-alarm monitoring (MQTT → InfluxDB, alarms, webhooks).",
    )
    parser.add_argument("--version", action="version", version=f"liftwatch {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with settings (keys as in docs/configuration.md; environment wins)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for part in PARTS:
        part.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
