"""Period-scoped views: the warehouse's views re-created as temporary views that read only the
files of a period's `date=` partitions, each file's footer opened once, so a report over a day
does not pay for the whole lake and a report of ten figures does not pay ten times.

    >>> with period_views(con, lake, date(2026, 11, 2), date(2026, 11, 3)):
    ...     con.sql("SELECT sum(vehicle_count) FROM traffic_1m WHERE date = '2026-11-02'")

Why: a view scans its table with one glob and `union_by_name = true` (older files may lack
newer nullable columns). DuckDB unifies the schemas when it binds the scan, so it opens the
footer of every file of the table, across all days, before the `date` filter prunes any, and
again for every query that binds the view (measured on the bench's 30-day lake, 2,884 raw
traffic files: one day's rows took 0.75-0.9 s through the glob with union_by_name, 0.2 s without
it, 0.05 s from the list of that day's 96 files). Here:

1. the file list is built from the `date=` directories of the period (listing directories,
   opening no file); superseded files are dropped with compaction's rule
   (`Lake.list_files`, `contracts.lake.superseded`);
2. the footers of those files are read once (DuckDB `parquet_schema`) and the files grouped
   by schema (column names and DuckDB types): one group per contract version in practice;
3. each group is one `read_parquet([...], bound_schema = {...})`, which binds without opening
   any file, and the groups (and a typed empty relation from contracts/tables.py, so a period
   of only older files still has every column) are combined `UNION ALL BY NAME`: the same
   rows, columns and types as union_by_name, decided once per period instead of per query.
4. a closed day whose *day file* is current (jobs/day_files.py: one copy of the day's live
   files per table and source, named by their signature) is read from that one file instead
   of its hour files (a month: ~30 files per table and source instead of ~3,000); a day whose
   files changed since its copy is read from its hour files. The checked path reads hour files
   only.

The temp views carry the names of the built views and shadow them for this connection (DuckDB
resolves temp objects first); they are rendered from the same SQL models with the window sizes
and lake the database was built with (its build record), and dropped on exit. A query that
filters on the `date` partition within [first_day, last_day] gets the same rows as from the
built views, because every partition of those dates is read whole (the views' de-duplication
partitions by date and hour, so it never needs a row of another date). Every report figure
filters on `date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)` (warehouse/figures.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta

import duckdb

from contracts import lake as L
from contracts.registry import CONTRACTS
from warehouse.db import (
    BUILD_TABLE,
    HIVE_COLUMNS,
    SCAN_OPTIONS,
    RenderedView,
    WarehouseError,
    _ident,
    creation_order,
    duckdb_type,
    empty_relation,
    lake_table_schema,
    load_macros,
    load_models,
    render_view,
    with_latest_flag,
)

log = logging.getLogger(__name__)

# The views' scan options for files of one known schema: binding opens no file.
BOUND_SCAN_OPTIONS = (
    ", hive_partitioning = true, hive_types_autocast = false, hive_types = {"
    + ", ".join(f"'{n}': {t}" for n, t in HIVE_COLUMNS)
    + "}"
)
# A data file directly in an hour partition of a date (what SCAN_GLOB matches), not hidden.
_HOUR_FILE_RE = re.compile(r"/hour=\d{2}/[^./][^/]*\.parquet$")


def period_dates(first_day: date, last_day: date) -> list[str]:
    """The `date=` partition values from first_day to last_day, inclusive."""
    if last_day < first_day:
        raise ValueError(f"period ends ({last_day}) before it starts ({first_day})")
    return [(first_day + timedelta(days=i)).isoformat() for i in range((last_day - first_day).days + 1)]


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(_sql_str(i) for i in items) + "]"


class PeriodScans:
    """The scan of each table and source over a period's `date=` partitions: which live files,
    grouped by schema, and the SQL relation reading them (`render_view`'s scan_relation)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, lake: L.Lake, duckdb_root: str,
                 first_day: date, last_day: date, checked: bool = False, day_files: bool = True):
        self.con = con
        self.checked = checked
        # the checked path reads the hour files only: it exists for files of another schema
        self.use_day_files = day_files and not checked
        self.lake = lake
        self.root = duckdb_root.rstrip("/")
        self.dates = period_dates(first_day, last_day)
        self._files: dict[tuple[str, str], list[str]] = {}
        self._day_files: dict[tuple[str, str], list[str]] = {}
        self._sql: dict[tuple[str, str], str | None] = {}

    def _sources(self, table: str, source: str) -> list[str]:
        if source != "*":
            return [source]
        return [d.rsplit("source=", 1)[-1] for d in self.lake.list_dirs(table) if "source=" in d]

    def files(self, table: str, source: str) -> list[str]:
        """The live hour files of the period that are read (the days without a day file that
        is current), as paths DuckDB reads."""
        self._list(table, source)
        return self._files[(table, source)]

    def day_files(self, table: str, source: str) -> list[str]:
        """The current day files read instead of their days' hour files (jobs/day_files.py)."""
        self._list(table, source)
        return self._day_files[(table, source)]

    def _list(self, table: str, source: str) -> None:
        key = (table, source)
        if key in self._files:
            return
        rels: list[str] = []
        days: list[str] = []
        for s in self._sources(table, source):
            for day in self.dates:
                live = live_hour_files(self.lake, table, s, day)
                day_file = current_day_file(self.lake, table, s, day, live) if self.use_day_files and live else None
                if day_file is not None:
                    days.append(day_file)
                else:
                    rels += [f.path for f in live]
        self._files[key] = [f"{self.root}/{r}" for r in sorted(rels)]
        self._day_files[key] = [f"{self.root}/{r}" for r in sorted(days)]

    def schema_groups(self, files: list[str]) -> list[tuple[tuple[tuple[str, str], ...] | None, list[str]]]:
        """The files grouped by their columns (name, DuckDB type), in file order; a file with a
        nested column gets the key None (read with union_by_name, as the views do)."""
        rows = self.con.execute(
            "SELECT file_name, list((name, duckdb_type) ORDER BY column_id) FILTER (WHERE column_id > 0), "
            "bool_or(column_id > 0 AND num_children IS NOT NULL) "
            f"FROM parquet_schema({_sql_list(files)}) GROUP BY file_name").fetchall()
        key_of = {f: (None if nested else tuple(tuple(c) for c in cols)) for f, cols, nested in rows}
        groups: dict[tuple[tuple[str, str], ...] | None, list[str]] = {}
        for f in files:
            groups.setdefault(key_of[f], []).append(f)
        return list(groups.items())

    def __call__(self, table: str, source: str) -> str | None:
        key = (table, source)
        if key not in self._sql:
            files, days = self.files(table, source), self.day_files(table, source)
            parts = [with_latest_flag(table, self.relation(table, source, files))] if files else []
            if days:
                parts.append(self._day_relation(table, source, days))
            self._sql[key] = ("(" + "\nUNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts) + ")"
                              if len(parts) > 1 else parts[0] if parts else None)
        return self._sql[key]

    @staticmethod
    def _bound_struct(table: str, source: str, flagged: bool = False) -> str:
        """The current contract's columns of the table plus the Hive columns, as bound_schema
        (`flagged`: and a windows day file's LATEST_FLAG)."""
        schema = lake_table_schema(table, source)
        names = set(schema.names)
        bound = [(f.name, duckdb_type(f.type)) for f in schema]
        bound += [(n, t) for n, t in HIVE_COLUMNS if n not in names]
        bound += [(L.LATEST_FLAG, "BOOLEAN")] if flagged else []
        return "{" + ", ".join(f"{_sql_str(n)}: {_sql_str(t)}" for n, t in bound) + "}"

    def _contract_relation(self, table: str, source: str, files: list[str]) -> str:
        """All files read as the current contract's schema, opening none to bind (the fast
        path). A file without one of its columns (landed under an older contract) makes the
        scan fail with a schema mismatch when it is read; the caller then uses the checked
        path (schema groups)."""
        struct = self._bound_struct(table, source)
        return f"(SELECT * FROM read_parquet({_sql_list(files)}{BOUND_SCAN_OPTIONS}, bound_schema = {struct}))"

    def _day_relation(self, table: str, source: str, files: list[str]) -> str:
        """Day files, read as the current contract's schema: they hold the Hive columns
        themselves (their path has no hour). A day file written under an older contract lacks
        a column and fails like an older hour file (then the checked path reads hour files)."""
        struct = self._bound_struct(table, source, flagged=table == L.WINDOWS)
        return (f"(SELECT * FROM read_parquet({_sql_list(files)}, hive_partitioning = false, "
                f"bound_schema = {struct}))")

    def relation(self, table: str, source: str, files: list[str]) -> str:
        """The SQL relation reading `files` of one table and source: bound to the contract's
        schema, or on the checked path grouped by schema (see the module doc)."""
        if not self.checked:
            return self._contract_relation(table, source, files)
        parts = []
        for columns, group in self.schema_groups(files):
            if columns is None:
                parts.append(f"SELECT * FROM read_parquet({_sql_list(group)}{SCAN_OPTIONS})")
                continue
            names = {n for n, _ in columns}
            bound = [*columns, *((n, t) for n, t in HIVE_COLUMNS if n not in names)]
            schema = "{" + ", ".join(f"{_sql_str(n)}: {_sql_str(t)}" for n, t in bound) + "}"
            parts.append(f"SELECT * FROM read_parquet({_sql_list(group)}{BOUND_SCAN_OPTIONS}, "
                         f"bound_schema = {schema})")
        parts.append(f"SELECT * FROM {empty_relation(lake_table_schema(table, source))}")
        return "(" + "\nUNION ALL BY NAME ".join(parts) + ")"


def live_hour_files(lake: L.Lake, table: str, source: str, day: str) -> list[L.LakeFile]:
    """The live data files in the hour partitions of one table, source and date (hidden temp
    files and files a compacted file supersedes left out), with size and mtime, by path."""
    entries = [f for f in lake.list_entries(f"{table}/source={source}/date={day}")
               if _HOUR_FILE_RE.search("/" + f.path)]
    hidden = L.superseded(f.path for f in entries)
    return sorted((f for f in entries if f.path not in hidden), key=lambda f: f.path)


def day_file_path(table: str, source: str, day: str, live: list[L.LakeFile]) -> str:
    """The day file that holds exactly the rows of `live` (the day's live hour files)."""
    return f"{L.day_file_dir(table, source, day)}/{L.day_signature(live)}.parquet"


def current_day_file(lake: L.Lake, table: str, source: str, day: str, live: list[L.LakeFile]) -> str | None:
    """The day file made from exactly the day's live files `live`, if one was written (one
    existence check); None when there is none or the day's files changed since."""
    path = day_file_path(table, source, day, live)
    return path if lake.exists(path) else None


def built_window_sizes(con: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, int]]:
    """The lake (as DuckDB reads it) and window sizes the connected database was built with."""
    try:
        row = con.execute(f"SELECT lake, window_sizes FROM {BUILD_TABLE} LIMIT 1").fetchone()
    except duckdb.Error as exc:
        raise WarehouseError(f"the warehouse has no build record to scope a period with ({exc}); rebuild it: cityflow warehouse build") from None
    if row is None:
        raise WarehouseError("the warehouse has no build record to scope a period with")
    sizes = {s: int(v) for s, v in json.loads(row[1]).items() if s in CONTRACTS}
    return row[0], sizes


def _closure(by_name: dict[str, RenderedView], views: Iterable[str]) -> set[str]:
    """The views named and every view they select from."""
    todo, found = [v for v in views if v in by_name], set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += [r for r in by_name[name].refs if r in by_name]
    return found


@contextmanager
def period_views(con: duckdb.DuckDBPyConnection, lake: L.Lake, first_day: date, last_day: date,
                 queries: Iterable[Iterable[str]] | None = None, checked: bool = False,
                 day_files: bool = True, texts: Sequence[str] | None = None) -> Iterator[PeriodScans]:
    """Shadow the views of the connected warehouse with temp views over the files of the
    `date=` partitions first_day..last_day (inclusive); drop them on exit. Yields the scans.

    `queries`: the views each query to come selects from (None: create every view). Only
    those views and the views they select from are created. A view that two or more queries
    select from and that computes something (de-duplication, a roll-up: QUALIFY or GROUP BY in
    its SQL) is computed once into a temp table they share (traffic_1m for three figures: at the
    demo rate the de-duplication of a day's ~864k windows, not the scan, is what each figure
    paid); a view that only projects a scan stays a view, so each query reads only its columns.
    `checked`: group files by schema (opens every footer first) instead of binding them to the
    contract's schema (see PeriodScans). `day_files`: read a closed day's day file (written by
    `cityflow compact`, jobs/day_files.py) instead of its hour files while it is current.
    `texts`: the SQL of each query (same order as `queries`); given, a shared temp table keeps
    only the view's columns named in the queries that read it (`_used_columns`)."""
    root, sizes = built_window_sizes(con)
    scans = PeriodScans(con, lake, root, first_day, last_day, checked, day_files)
    models, macros = load_models(), load_macros()
    # closed days may come from day files, whose windows are flagged: de-duplicate the rest only
    macros["window_latest"] = macros["window_latest_flagged"]
    # which views each query needs follows from the models: render once, touching no file
    outline = [render_view(m, root, con, macros, sizes, scan_relation=lambda t, s: None) for m in models]
    by_name = {r.name: r for r in outline}
    asked = [set(q) for q in queries] if queries is not None else [set(by_name)]
    needed = set().union(*(_closure(by_name, q) for q in asked))
    readers = Counter(v for q in asked for v in q)
    rendered = creation_order([render_view(m, root, con, macros, sizes, scan_relation=scans)
                               for m in models if m.name in needed])
    created: list[tuple[str, str]] = []  # (kind, name) to drop on exit
    try:
        for r in rendered:
            computes = re.search(r"\b(QUALIFY|GROUP\s+BY)\b", r.sql, re.IGNORECASE) is not None
            kind = "TABLE" if readers[r.name] > 1 and computes else "VIEW"
            sql = r.sql
            if kind == "TABLE" and texts is not None and not any(r.name in by_name[v].refs for v in needed):
                sql = _used_columns(con, sql, [t for q, t in zip(asked, texts, strict=True) if r.name in q])
            con.execute(f"CREATE OR REPLACE TEMP {kind} {_ident(r.name)} AS\n{sql}")
            created.append((kind, r.name))
        yield scans
    finally:
        for kind, name in reversed(created):
            con.execute(f"DROP {kind} IF EXISTS temp.main.{_ident(name)}")


# a star select (`SELECT *`, `t.*`, `, *`): a query that may read every column
_STAR_RE = re.compile(r"(\bSELECT\s+(DISTINCT\s+)?|\.|,\s*)\*", re.IGNORECASE)


def _used_columns(con: duckdb.DuckDBPyConnection, sql: str, readers: list[str]) -> str:
    """`sql` projected to the columns whose names occur in the readers' SQL (all of them if a
    reader selects `*`). Materialising a de-duplicated view for its readers costs per column:
    traffic_1m has 20, its three figures use 7, and at the demo rate (864k windows a day) the
    narrower table took 1.07 s instead of 1.54 s in a probe. A name is kept wherever it occurs
    (a comment, a string, another table's column): more columns than needed cost time only,
    and a column a reader needs can only be missing if its name does not occur, which makes
    that reader fail with a binder error, never answer wrongly."""
    text = "\n".join(readers)
    if _STAR_RE.search(text):
        return sql
    columns = [d[0] for d in con.execute(f"SELECT * FROM ({sql}) LIMIT 0").description]
    keep = [c for c in columns if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text, re.IGNORECASE)]
    if not keep:
        return sql
    return f"SELECT {', '.join(_ident(c) for c in keep)} FROM (\n{sql}\n)"


__all__ = ["PeriodScans", "built_window_sizes", "current_day_file", "day_file_path", "live_hour_files",
           "period_dates", "period_views"]
