"""The `cityflow` subcommands, one module each (see jobs/cli.py)."""

from __future__ import annotations

import argparse


def help_when_bare(parser: argparse.ArgumentParser) -> None:
    """A command group run without its subcommand (`cityflow topics`) prints its help and exits 2."""
    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
