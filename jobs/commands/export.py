"""`cityflow export`: one period's figures as CSV, Parquet and a self-contained HTML report,
with a manifest (jobs/export.py does the work)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.settings import load_settings
from contracts.windows import window_geometry
from jobs.export import FORMATS, PeriodIncomplete, export_period
from jobs.periods import PERIOD_KINDS, last_complete_period, period_of
from warehouse.db import WarehouseError, connect
from warehouse.figures import figures

EXIT_INCOMPLETE = 3


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="export a day, week or month: figures as CSV/Parquet, an HTML report, a manifest",
        description="Export every figure of warehouse/figures/ for one period into OUT/<period>/<label>/ "
        "(atomically; an unchanged period is not rewritten). Periods follow the calendar of "
        f"CITYFLOW_REPORT_TZ (default UTC). Exit 0 written or unchanged, 2 bad arguments, "
        f"{EXIT_INCOMPLETE} period not complete (see --allow-partial), 1 failure.",
    )
    p.add_argument("--period", choices=PERIOD_KINDS, required=True, help="day, week (ISO, from Monday) or month")
    p.add_argument("--date", type=_parse_day, default=None,
                   help="any day of the period, YYYY-MM-DD in the report time zone (default: the last "
                   "period that has ended: yesterday, last week, last month)")
    p.add_argument("--format", type=_parse_formats, default=FORMATS, metavar="html,csv,parquet",
                   help="comma-separated formats to write (default: all)")
    p.add_argument("--out", type=Path, default=Path("reports/exports"),
                   help="output root; the period goes to OUT/<period>/<label>/ (default: reports/exports)")
    p.add_argument("--allow-partial", action="store_true",
                   help="export even if a source's data has not reached the period end (the manifest says partial)")
    p.set_defaults(func=run_export)


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _parse_formats(text: str) -> tuple[str, ...]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FORMATS))
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"formats are a comma-separated subset of {','.join(FORMATS)}, got {text!r}")
    return tuple(f for f in FORMATS if f in chosen)


def run_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    tz = settings.report_tz
    period = (period_of(args.period, args.date, tz) if args.date
              else last_complete_period(args.period, datetime.now(UTC), tz))
    lateness = {s: window_geometry(s, settings).allowed_lateness_s for s in CONTRACTS}
    t0 = time.perf_counter()

    def progress(line: str) -> None:
        print(f"export {period.kind} {period.label}: {line}", file=sys.stderr, flush=True)

    try:
        con = connect(settings)
    except (duckdb.Error, WarehouseError) as exc:
        return _fail(exc)
    try:
        result = export_period(con, Lake(settings.lake), period, figures(), out_dir=args.out,
                               lateness_s=lateness, formats=args.format, allow_partial=args.allow_partial,
                               progress=progress)
    except PeriodIncomplete as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except (duckdb.Error, OSError) as exc:
        return _fail(exc)
    finally:
        con.close()
    took = time.perf_counter() - t0
    partial = " (partial)" if result.partial else ""
    if result.status == "unchanged":
        print(f"unchanged: {result.path}{partial}, same checksums as its manifest ({took:.1f} s)")
    else:
        n = len(result.manifest["files"])
        print(f"wrote {result.path}{partial}: {n} files + manifest.json ({took:.1f} s)")
    return 0


def _fail(exc: BaseException) -> int:
    lines = str(exc).strip().splitlines()
    print(f"error: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
    return 1
