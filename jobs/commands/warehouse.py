"""CLI commands over the DuckDB warehouse: `cityflow warehouse build`, `cityflow query` and
`cityflow report`."""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.lake import Lake
from contracts.settings import load_settings
from jobs.commands import help_when_bare
from warehouse.db import WarehouseError, build_warehouse, configured_window_sizes, connect
from warehouse.report import daily_report, format_report, format_table
from warehouse.saved import SavedQueryError, describe, parse_params, saved_queries, saved_query

FORMATS = ("table", "csv", "json", "parquet")


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
    help_when_bare(wh)

    q = subparsers.add_parser(
        "query", help="run SQL or a named saved query against the warehouse views",
        description="Run a SQL statement, or a saved query from warehouse/queries/ by name "
        "(--list shows them with their parameters).",
    )
    q.add_argument("sql", nargs="?", help='a SQL statement, e.g. "SELECT * FROM traffic_1m LIMIT 5"')
    q.add_argument("--name", help="run the saved query NAME instead of SQL (see --list)")
    q.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a saved query's parameter, e.g. --param day=2026-11-30 (repeatable)")
    q.add_argument("--list", action="store_true", help="list the saved queries and their parameters")
    q.add_argument(
        "--format", choices=FORMATS, default=None,
        help="output format (default: table; with --out, from the file's extension, else csv); "
        "parquet needs --out",
    )
    q.add_argument("--out", type=Path, default=None,
                   help="write the result to FILE (atomically: a temp file, then renamed) instead of stdout")
    q.set_defaults(func=run_query)

    r = subparsers.add_parser("report", help="print the daily city report")
    r.add_argument(
        "--day",
        type=_parse_day,
        default=None,
        help="UTC day YYYY-MM-DD (default: the latest day with data)",
    )
    r.set_defaults(func=run_report)


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
        views = build_warehouse(settings.lake, settings.warehouse_db, configured_window_sizes(settings))
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


def _query_statement(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The SQL to run and its bound parameters: the positional SQL, or a saved query."""
    if args.name and args.sql:
        raise SavedQueryError("give either SQL or --name, not both")
    if args.name:
        query = saved_query(args.name)
        return query.sql, query.bind(parse_params(args.param))
    if args.param:
        raise SavedQueryError("--param goes with --name (a saved query)")
    if not args.sql:
        raise SavedQueryError("give a SQL statement, --name NAME or --list")
    return args.sql, {}


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        if args.format == "parquet" and args.out is None:
            raise SavedQueryError("--format parquet writes a file: add --out FILE")
        return args.format
    if args.out is None:
        return "table"
    suffix = args.out.suffix.lower().lstrip(".")
    return suffix if suffix in ("csv", "json", "parquet") else "csv"


def _write_atomically(path: Path, write: Any) -> None:
    """Call write(tmp_path) on a temp file next to `path`, then rename it over `path`, so a
    reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_query(args: argparse.Namespace) -> int:
    try:
        if args.list:
            sys.stdout.write(describe(saved_queries()))
            return 0
        statement, params = _query_statement(args)
        fmt = _output_format(args)
    except SavedQueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    try:
        con = connect(settings)
    except (duckdb.Error, WarehouseError) as exc:
        return _error(exc)
    try:
        if fmt == "parquet":
            relation = con.sql(statement, params=params or None)
            table = relation.to_arrow_table() if relation is not None else pa.table({})
        else:
            con.execute(statement, params or None)
            description = con.description or []
            frame = con.fetchdf() if description else pd.DataFrame()
    except duckdb.Error as exc:
        return _error(exc)
    finally:
        con.close()
    if fmt == "parquet":
        _write_atomically(args.out, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        print(f"wrote {table.num_rows} row{'s' if table.num_rows != 1 else ''} to {args.out}", file=sys.stderr)
        return 0
    for name, type_code, *_ in description:  # DATE arrives as datetime64: show it as a day
        if str(type_code) == "DATE" and name in frame.columns:
            frame[name] = frame[name].map(lambda v: v.date().isoformat() if pd.notna(v) else None)
    frame = _printable(frame, fmt)
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", date_unit="ms") + "\n"
    else:
        text = format_table(frame) + f"\n({len(frame)} row{'s' if len(frame) != 1 else ''})\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        _write_atomically(args.out, lambda tmp: tmp.write_text(text))
        print(f"wrote {len(frame)} row{'s' if len(frame) != 1 else ''} to {args.out}", file=sys.stderr)
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
