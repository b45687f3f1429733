"""`cityflow backfill --from D --to D [--source S] [--dry-run]`: re-derive the windows,
district partials and late events of whole UTC days (or hours) from the raw lake with the window settings
in force (jobs/backfill.py), one partition-hour at a time, atomically."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta


def _span(text: str) -> tuple[datetime, timedelta]:
    """A UTC day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH) and its length."""
    try:
        if "T" in text:
            moment = datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)
            return moment, timedelta(hours=1)
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC), timedelta(days=1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC day YYYY-MM-DD or hour YYYY-MM-DDTHH, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    from contracts.registry import CONTRACTS

    p = sub.add_parser(
        "backfill", help="re-derive windows of past days from the raw lake (after a window setting changed)",
        description="Replay the landed raw rows of each topic partition through the window engine with "
        "the CITYFLOW_WINDOW_* settings in force and replace the windows, district partials and late "
        "events of every UTC hour from --from to --to (inclusive days), one partition-hour at a time "
        "and atomically: readers see the old or the new hour, never a mix. Hours whose result equals "
        "what is landed are left alone, so a re-run changes nothing. Refused (nothing written) while "
        "the last windows of the period are not final. Anomalies are not re-derived.")
    p.add_argument("--from", dest="start", type=_span, required=True,
                   help="first UTC day YYYY-MM-DD (or hour YYYY-MM-DDTHH)")
    p.add_argument("--to", dest="end", type=_span, required=True,
                   help="last UTC day YYYY-MM-DD (or hour YYYY-MM-DDTHH), inclusive")
    p.add_argument("--source", choices=sorted(CONTRACTS), action="append",
                   help="only this source (repeatable; default: every source)")
    p.add_argument("--dry-run", action="store_true", help="say what would be replaced, write nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contracts import lake as L
    from contracts.registry import CONTRACTS
    from contracts.settings import load_settings
    from contracts.windows import window_geometry
    from jobs.backfill import BackfillRefused, backfill, format_report

    start = args.start[0]
    end = args.end[0] + args.end[1]
    if end <= start:
        print(f"error: --to {args.end[0]:%Y-%m-%dT%H} is before --from {start:%Y-%m-%dT%H}", file=sys.stderr)
        return 2
    settings = load_settings()
    lake = L.Lake(settings.lake)
    reports = []
    for source in args.source or sorted(CONTRACTS):
        geometry = window_geometry(source, settings)
        print(f"backfill {source}: replaying raw rows with {geometry.size_s} s windows ...", file=sys.stderr)
        try:
            reports.append(backfill(lake, CONTRACTS[source], geometry, int(start.timestamp() * 1000),
                                    int(end.timestamp() * 1000), dry_run=args.dry_run,
                                    progress=lambda line: print(f"  {line}", file=sys.stderr)))
        except BackfillRefused as exc:
            if reports:
                sys.stdout.write(format_report(reports))
            print(f"error: {exc}", file=sys.stderr)
            return 1
    sys.stdout.write(format_report(reports))
    return 0
