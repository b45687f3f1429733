"""`cityflow compact`: merge the lake's small files per table/source/hour and topic partition
into larger ones (atomic, re-runnable, safe while workers write; see jobs/compaction.py), then
write the day file of every closed day that lacks a current one (jobs/day_files.py), which the
report figures read instead of the day's hour files."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

from contracts.settings import load_settings

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_span(text: str) -> timedelta:
    """'90s', '30m', '1h', '7d' (or '0') as a timedelta."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or (not m[2] and float(m[1]) != 0):
        raise argparse.ArgumentTypeError(f"expected a span like 90s, 30m, 1h, 7d; got {text!r}")
    return timedelta(**{_UNITS[m[2] or "s"]: float(m[1])})


def register(sub: argparse._SubParsersAction) -> None:
    from contracts import lake as L

    p = sub.add_parser(
        "compact", help="merge small lake files of hours older than --older-than (query results unchanged)",
        description="Merge the small Parquet files of every table/source/date/hour that ended at "
        "least --older-than ago into one file per topic partition (up to --max-file-mb each). "
        "Readers never see a half state; safe to re-run after a crash and while workers write.")
    p.add_argument("--older-than", type=parse_span, default=timedelta(hours=1),
                   help="only hours that ended at least this long ago (default 1h)")
    p.add_argument("--tables", default=",".join(L.TABLES),
                   help=f"comma-separated lake tables (default: {','.join(L.TABLES)})")
    p.add_argument("--max-file-mb", type=float, default=256, help="target size of a merged file (default 256)")
    p.add_argument("--keep-superseded", type=parse_span, default=timedelta(0),
                   help="keep merged inputs this long for readers that listed them already; a later "
                        "run deletes them (default 0: delete at once)")
    p.add_argument("--no-day-files", dest="day_files", action="store_false",
                   help="do not write day files (one copy per table, source and closed day that the "
                        "report figures read instead of ~100 hour files; days that ended at least "
                        "--older-than ago)")
    p.add_argument("--dry-run", action="store_true", help="report what would be merged, change nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contracts import lake as L
    from jobs.compaction import CompactionError, compact

    tables = tuple(t.strip() for t in args.tables.split(",") if t.strip())
    unknown = [t for t in tables if t not in L.TABLES]
    if unknown:
        print(f"error: --tables: unknown {unknown}; known: {list(L.TABLES)}", file=sys.stderr)
        return 2
    settings = load_settings()
    try:
        report = compact(L.Lake(settings.lake), older_than=args.older_than, tables=tables,
                         max_bytes=int(args.max_file_mb * 1024 * 1024),
                         keep_superseded=args.keep_superseded, dry_run=args.dry_run)
    except CompactionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "would merge" if args.dry_run else "merged"
    print(f"compaction of {settings.lake}: hours ended before {report.cutoff:%Y-%m-%d %H:%M} UTC")
    print(f"{'table':18s} {'hours':>6s} {'merges':>7s} {'files before':>13s} {'files after':>12s} "
          f"{'MB before':>10s} {'MB after':>9s} {'inputs deleted':>15s}")
    for t in report.tables.values():
        print(f"{t.table:18s} {t.hours:6d} {t.merges:7d} {t.files_before:13d} {t.files_after:12d} "
              f"{t.bytes_before / 1e6:10.2f} {t.bytes_after / 1e6:9.2f} {t.superseded_deleted:15d}")
    print(f"{verb} {report.files_before} files into {report.files_after} ({report.merges} merges)")
    if args.day_files:
        from jobs.day_files import build_day_files

        # after the merges: a day file names the files it copies, so it copies the merged ones
        days = build_day_files(L.Lake(settings.lake), older_than=args.older_than, tables=tables,
                               keep_stale=args.keep_superseded, dry_run=args.dry_run)
        print(f"day files (days ended before {days.cutoff:%Y-%m-%d %H:%M} UTC): "
              f"{'would write' if args.dry_run else 'wrote'} {days.total('written')} "
              f"({days.total('bytes_written') / 1e6:.2f} MB), {days.total('current')} already current, "
              f"standing for {days.total('input_files')} hour files; {days.total('stale_deleted')} stale deleted"
              + (f"; {days.total('failed')} not written (their files changed meanwhile; next run)"
                 if days.total("failed") else ""))
    return 0
