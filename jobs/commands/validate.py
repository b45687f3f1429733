"""`cityflow validate`: run the Great Expectations suites generated from the contracts over the
landed lake, write Data Docs HTML, print a summary, exit 1 if any expectation fails."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from contracts.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="run the contract-derived Great Expectations suites over the landed lake",
        description="Validate landed raw and quarantine Parquet with the Great Expectations suites "
        "derived from contracts/ (one checkpoint run), write Data Docs HTML and exit 1 on failure.",
    )
    p.add_argument("--since", default=None,
                   help="only rows with event time (quarantine: receipt time) at or after this: "
                        "YYYY-MM-DD[THH:MM], or a span ago like 90m, 24h, 7d (default: everything)")
    p.add_argument("--docs", type=Path, default=Path("reports/validation"),
                   help="Data Docs directory (default reports/validation)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jobs.validation import format_summary, parse_since, validate_lake

    settings = load_settings()
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = validate_lake(settings.lake, args.docs, since=since,
                           max_future=timedelta(seconds=settings.max_event_future_s))
    print(format_summary(result))
    if result.rows == 0 and result.success:
        print(f"note: nothing landed in {settings.lake} to validate")
    return 0 if result.success else 1
