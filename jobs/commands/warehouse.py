"""CLI commands over the DuckDB warehouse: `cityflow warehouse build`, `cityflow query` and
`cityflow report`."""

from __future__ import annotations

import argparse
import base64
import sys
from datetime import date, datetime
from typing import Any

import duckdb
import pandas as pd

from contracts.lake import Lake
from contracts.settings import load_settings
from warehouse.db import WarehouseError, build_warehouse, connect
from warehouse.report import daily_report, format_report, format_table

FORMATS = ("table", "csv", "json")


def register(subparsers: Any) -> None:
    """Add the `warehouse`, `query` and `report` subcommands."""
    wh = subparsers.add_parser(
        "warehouse", help="manage the DuckDB warehouse (views over the Parquet lake)"
    )
    actions = wh.add_subparsers(dest="warehouse_action", metavar="ACTION")
    build = actions.add_parser(
        "build", help="create or replace all views in CITYFLOW_WAREHOUSE_DB over CITYFLOW_LAKE"
    )
    build.set_defaults(func=run_build)
    wh.set_defaults(func=lambda args: _usage(wh))

    q = subparsers.add_parser("query", help="run SQL against the warehouse views")
    q.add_argument("sql", help='a SQL statement, e.g. "SELECT * FROM traffic_1m LIMIT 5"')
    q.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    q.set_defaults(func=run_query)

    r = subparsers.add_parser("report", help="print the daily city report")
    r.add_argument(
        "--day",
        type=_parse_day,
        default=None,
        help="UTC day YYYY-MM-DD (default: the latest day with data)",
    )
    r.set_defaults(func=run_report)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _error(exc: BaseException) -> int:
    lines = str(exc).strip().splitlines()
    print(f"error: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
    return 1


def run_build(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        views = build_warehouse(settings.lake, settings.warehouse_db)
    except (duckdb.Error, WarehouseError) as exc:
        return _error(exc)
    print(f"built {len(views)} views in {settings.warehouse_db} over {settings.lake}:")
    for name in views:
        print(f"  {name}")
    return 0


def _printable(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """Values every output format can show: BLOBs (quarantined payloads) as UTF-8 text (base64
    in JSON when not UTF-8), dates (the `date` partition column) as YYYY-MM-DD."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype != object:
            continue
        frame[col] = frame[col].map(lambda v: _plain(v, fmt))
    return frame


def _plain(value: Any, fmt: str) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if fmt == "json":
                return "base64:" + base64.b64encode(raw).decode("ascii")
            return raw.decode("utf-8", errors="backslashreplace")
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def run_query(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        con = connect(settings)
    except (duckdb.Error, WarehouseError) as exc:
        return _error(exc)
    try:
        con.execute(args.sql)
        description = con.description or []
        frame = con.fetchdf() if description else pd.DataFrame()
    except duckdb.Error as exc:
        return _error(exc)
    finally:
        con.close()
    for name, type_code, *_ in description:  # DATE arrives as datetime64: show it as a day
        if str(type_code) == "DATE" and name in frame.columns:
            frame[name] = frame[name].map(lambda v: v.date().isoformat() if pd.notna(v) else None)
    frame = _printable(frame, args.format)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso", date_unit="ms") + "\n")
    else:
        print(format_table(frame))
        print(f"({len(frame)} row{'s' if len(frame) != 1 else ''})")
    return 0


def run_report(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        con = connect(settings)
    except (duckdb.Error, WarehouseError) as exc:
        return _error(exc)
    try:
        sections = daily_report(con, args.day, lake=Lake(settings.lake))
    except duckdb.Error as exc:
        return _error(exc)
    finally:
        con.close()
    sys.stdout.write(format_report(sections))
    return 0
