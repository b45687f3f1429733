"""The `cityflow` command line: one subcommand per module in jobs/commands/."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from contracts.settings import SettingsError

# Each module defines `register(subparsers)` adding its subcommand(s); a subcommand's parser
# sets `func` (args -> exit code).
COMMAND_MODULES = (
    "jobs.commands.broker",
    "jobs.commands.simulate",
    "jobs.commands.worker",
    "jobs.commands.warehouse",
    "jobs.commands.demo",
    "jobs.commands.contracts",
    "jobs.commands.verify",
    "jobs.commands.validate",
    "jobs.commands.dlq",
    "jobs.commands.compact",
    "jobs.commands.retention",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityflow",
        description="Smart-city stream analytics: Kafka -> Faust workers -> Parquet lake -> DuckDB.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:  # client libraries log every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
