"""The `cityflow` command line: one subcommand per module in jobs/commands/."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

# Each module defines `register(subparsers)` adding its subcommand(s); a subcommand's parser
# sets `func` (args -> exit code).
COMMAND_MODULES = (
    "jobs.commands.broker",
    "jobs.commands.topics",
    "jobs.commands.simulate",
    "jobs.commands.worker",
    "jobs.commands.warehouse",
    "jobs.commands.demo",
    "jobs.commands.contracts",
    "jobs.commands.verify",
    "jobs.commands.validate",
    "jobs.commands.dlq",
    "jobs.commands.compact",
    "jobs.commands.backfill",
    "jobs.commands.retention",
    "jobs.commands.eval",
    "jobs.commands.config",
    "jobs.commands.export",
    "jobs.commands.schedule",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityflow",
        description="Smart-city stream analytics: Kafka -> Faust workers -> Parquet lake -> DuckDB.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="log lines as text (default) or JSON lines (default: CITYFLOW_LOG_FORMAT)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# Long-running services: stopping on request is their normal end, at any moment.
SERVICES = frozenset({"worker", "schedule"})


class Terminated(BaseException):  # not Exception: no `except Exception` may swallow it
    """SIGTERM arrived while nothing else handled it (start-up, or a one-shot job)."""


_terminated = False


def _raise_terminated(signum: int, frame: object) -> None:
    # Remembered as well as raised: a signal that lands in an import's weakref callback has its
    # exception swallowed ("Exception ignored in ..."); the flag still stops the command.
    global _terminated
    _terminated = True
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except Terminated:
        # A worker stopped before it is up has consumed nothing, so there is nothing to flush;
        # it exits 0 as it does after a graceful stop. A one-shot job cut short has not done
        # its work: 128 + SIGTERM, as if the signal had killed it.
        command = next((a for a in argv if not a.startswith("-")), None)
        print(f"cityflow {command}: stopped by SIGTERM" if command else "cityflow: stopped by SIGTERM",
              file=sys.stderr)
        return 0 if command in SERVICES else 128 + signal.SIGTERM


def run() -> None:
    """Console entry point. Until a command installs its own handling (Faust does, once the
    worker is starting), SIGTERM ends the process through `main` instead of killing it."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    sys.exit(main())


def check_settings() -> None:
    """Stop every command at start on a bad CITYFLOW_* setting (SettingsError naming it),
    including the detector settings that contracts/settings.py cannot check itself: the
    CITYFLOW_DETECTOR_<KIND> overrides are checked against the detector configs here."""
    from contracts.settings import load_settings
    from streams.detectors.overrides import detector_configs

    detector_configs(load_settings().detector_overrides)


def _main(argv: list[str]) -> int:
    # Imported here, not at the top: `run` installs its SIGTERM handler before the heavy imports.
    from contracts.settings import SettingsError
    from streams.broker import BrokerUnreachable

    parser = build_parser()
    args = parser.parse_args(argv)
    from jobs.logs import configure_logging

    if args.log_format is None:  # the setting; a bad setting is reported below, by check_settings
        from contracts.settings import load_settings

        try:
            args.log_format = load_settings().log_format
        except SettingsError:
            args.log_format = "text"
    configure_logging(args.log_format, "DEBUG" if args.verbose else "INFO")
    if not args.verbose:  # client libraries log every connection at INFO
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if _terminated:  # a SIGTERM during start-up whose exception an import swallowed
            raise Terminated
        check_settings()
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokerUnreachable as exc:  # no Kafka, or one that refused the login: one line, no trace
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    run()
