"""`cityflow retention`: drop date partitions older than --keep-days from every lake table
and print what was deleted (see jobs/retention.py)."""

from __future__ import annotations

import argparse
import sys

from contracts.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retention", help="drop lake date partitions older than --keep-days (all tables)",
                       description="Delete whole date=YYYY-MM-DD partitions older than today (UTC) "
                       "minus --keep-days from every lake table; rows dropped are recorded in "
                       "_retention/ so the landing accounts still balance.")
    p.add_argument("--keep-days", type=int, required=True, help="days of data to keep (>= 1)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contracts.lake import Lake
    from jobs.retention import apply_retention

    settings = load_settings()
    try:
        report = apply_retention(Lake(settings.lake), args.keep_days, dry_run=args.dry_run)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would delete" if args.dry_run else "deleted"
    print(f"retention of {settings.lake}: keeping dates >= {report.cutoff.isoformat()}")
    for d in report.dropped:
        print(f"  {verb} {d.table}/source={d.source}/date={d.date}: {d.files} files, "
              f"{d.bytes / 1e6:.2f} MB, {d.rows} rows")
    print(f"{verb} {len(report.dropped)} partitions, {report.files} files, {report.bytes / 1e6:.2f} MB")
    return 0
