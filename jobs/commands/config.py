"""`cityflow config show`: every setting's effective value and where it came from (argument,
environment, the CITYFLOW_CONFIG file, default), secrets masked."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.commands import help_when_bare
from jobs.commands.verify import format_rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the effective settings and where each came from")
    actions = p.add_subparsers(dest="config_action", metavar="ACTION")
    show = actions.add_parser(
        "show", help="every setting: variable, effective value, source (secrets masked)",
        description="Strongest first: command-line override, CITYFLOW_* environment variable, the file "
        "CITYFLOW_CONFIG names (.toml with setting names as keys, or .env with CITYFLOW_* lines), default. "
        "An invalid value stops here (exit 2) naming the variable, as it stops every command.")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(func=run_show)
    help_when_bare(p)


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True) if value else "-"
    return str(value)


def run_show(args: argparse.Namespace) -> int:
    from contracts.settings import config_file, effective_settings, load_settings

    settings = load_settings()
    rows = effective_settings(settings)
    if args.format == "json":
        out = [{"setting": f, "variable": v, "value": value, "source": src} for f, v, value, src in rows]
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return 0
    print(format_rows(["variable", "value", "source"], [[v, _show(value), src] for _, v, value, src in rows]))
    path = config_file()
    print(f"\nsettings file: {path if path else 'none (set CITYFLOW_CONFIG=cityflow.toml or .env to use one)'}")
    return 0
