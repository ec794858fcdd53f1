"""The ``liftwatch`` command line.

Each part contributes its subcommands through a ``register(subparsers)`` function in the
module named in :data:`PARTS`, so ``--help`` lists exactly the subcommands that exist.
A handler receives the parsed arguments and returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from liftwatch import __version__
from liftwatch.settings import Settings, SettingsError, load_settings

PARTS: tuple[str, ...] = (
    "liftwatch.commands",
    "api.command",
    "liftwatch.devices_command",
    "simulator.command",
    "alerts.command",
    "ingest.command",
    "liftwatch.serve_command",
    "liftwatch.demo_command",
)

EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: what systemd units and scripts expect


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
    for name in PARTS:
        importlib.import_module(name).register(sub)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Load settings for a handler; exits with a message naming the key when invalid."""
    try:
        return load_settings(args.config)
    except SettingsError as exc:
        print(f"liftwatch: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


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
