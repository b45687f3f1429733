"""Report figures: each one SQL file in warehouse/figures/ over the warehouse views, defined
once with its unit per column, computed for a period [start, end) and exported by
`cityflow export` (jobs/export.py).

A figure file is a saved query (warehouse/saved.py: first-line description, typed `-- param:`
lines bound by DuckDB) with the two required TIMESTAMP parameters `start` and `end` (UTC, the
period is half-open) and a richer header:

    -- traffic_volume: vehicles counted per district in the period, ...
    -- param: start TIMESTAMP: period start (UTC, inclusive)
    -- param: end TIMESTAMP: period end (UTC, exclusive)
    -- title: Traffic volume by district
    -- section: traffic
    -- definition: what exactly is counted (thresholds, which view, ...)
    -- column: vehicles [vehicles]: sum of vehicle_count over ...
    -- chart: bar x=district y=vehicles

`-- section:` is one of SECTIONS (the report's order), `-- column: name [unit]: definition` declares every output column, in order (the unit is
optional for labels such as district); `-- chart: bar|barh x=COL y=COL` draws one chart in
the HTML report. The tests run every figure and check that its columns are exactly the
declared ones, so a header cannot drift from its SQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from warehouse.saved import SavedQuery, SavedQueryError, parse_query
from warehouse.scoped import period_views

log = logging.getLogger(__name__)

FIGURE_DIR = Path(__file__).with_name("figures")
PERIOD_PARAMS = ("start", "end")
CHART_KINDS = ("bar", "barh")
# The report's sections, in report order; each figure names its own (`-- section:`).
SECTIONS = (*CONTRACTS, "anomalies", "data quality")

_COLUMN_LINE = re.compile(r"--\s*column:\s*(?P<name>[a-z_][a-z0-9_]*)\s*(?:\[(?P<unit>[^\]]+)\])?\s*:\s*(?P<doc>.+)$")
_CHART_LINE = re.compile(r"--\s*chart:\s*(?P<kind>[a-z]+)\s+x=(?P<x>[a-z_][a-z0-9_]*)\s+y=(?P<y>[a-z_][a-z0-9_]*)\s*$")


class FigureError(SavedQueryError):
    """A figure file whose header does not follow the format."""


@dataclass(frozen=True)
class Column:
    name: str
    unit: str | None
    doc: str


@dataclass(frozen=True)
class Chart:
    kind: str  # bar (vertical) or barh (horizontal, for long labels)
    x: str  # the label column
    y: str  # the value column


@dataclass(frozen=True)
class Figure:
    query: SavedQuery
    title: str
    section: str
    definition: str
    columns: tuple[Column, ...]
    chart: Chart | None

    @property
    def name(self) -> str:
        return self.query.name

    @property
    def description(self) -> str:
        return self.query.description

    def unit(self, column: str) -> str | None:
        return next((c.unit for c in self.columns if c.name == column), None)

    @property
    def views(self) -> frozenset[str]:
        """The warehouse views the figure's SQL selects from (CTE names left out)."""
        sql = self.query.sql
        for p in self.query.params:  # the parser needs no values, only a statement without $params
            sql = re.sub(rf"\${p.name}\b", "NULL", sql)
        return frozenset(duckdb.get_table_names(sql, qualified=False))

    def compute(self, con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pa.Table:
        """The figure for [start, end) as an Arrow table (bounds are naive UTC datetimes; the
        connection's TimeZone is UTC, as warehouse.db.prepare_connection sets it)."""
        relation = con.sql(self.query.sql, params={"start": start, "end": end})
        return relation.to_arrow_table()


def compute_figures(con: duckdb.DuckDBPyConnection, lake: Lake, figures: Iterable[Figure],
                    start: datetime, end: datetime,
                    done: Callable[[Figure, pa.Table], None] = lambda f, t: None,
                    day_files: bool = True) -> dict[str, pa.Table]:
    """Every figure for [start, end), by name, over period-scoped views
    (warehouse/scoped.py): the views the figures select from are re-created for this
    connection over the files of the period's `date=` partitions only (each figure filters on
    `date` between the bounds' dates first), so the rest of the lake is never opened and each
    file's footer is read once for all figures. `done(figure, table)` is called after each.
    `day_files`: read a closed day from its day file where one is current (jobs/day_files.py;
    the same rows in one file instead of ~100): False measures the lake without them."""
    figures = list(figures)
    try:
        return _compute_scoped(con, lake, figures, start, end, done, checked=False, day_files=day_files)
    except duckdb.InvalidInputException as exc:
        if "schema mismatch" not in str(exc):
            raise
        # a file of the period was landed under an older contract (a column is missing):
        # read the period again with its files grouped by schema (warehouse/scoped.py)
        log.info("figures period=%s..%s older schema in the lake, files grouped by schema", start, end)
        return _compute_scoped(con, lake, figures, start, end, done, checked=True)


def last_partition_day(start: datetime, end: datetime) -> date:
    """The last `date=` partition that can hold a row of [start, end) (UTC). Every table is
    partitioned by the UTC date of the very column its figures bound by [start, end) (raw and
    late events by `ts`, windows and anomalies by `window_start`, quarantine by `received_at`:
    streams/sink.py), so a period ending at midnight needs nothing of its end date: for a day
    that was a second day of traffic windows de-duplicated for nothing."""
    return max(start.date(), (end - timedelta(microseconds=1)).date())


def _compute_scoped(con: duckdb.DuckDBPyConnection, lake: Lake, figures: list[Figure], start: datetime,
                    end: datetime, done: Callable[[Figure, pa.Table], None], checked: bool,
                    day_files: bool = True) -> dict[str, pa.Table]:
    out: dict[str, pa.Table] = {}
    with period_views(con, lake, start.date(), last_partition_day(start, end), [f.views for f in figures],
                      checked=checked, day_files=day_files, texts=[f.query.sql for f in figures]):
        for fig in figures:
            out[fig.name] = fig.compute(con, start, end)
            done(fig, out[fig.name])
    return out


def _header_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        out.append(line)
    return out


def parse_figure(path: Path) -> Figure:
    """Read one figure file; a header that does not follow the format is an error."""
    query = parse_query(path)
    params = {p.name: p for p in query.params}
    if set(params) != set(PERIOD_PARAMS) or any(params[n].type != "TIMESTAMP" or params[n].optional
                                                 for n in PERIOD_PARAMS):
        raise FigureError(f"{path.name}: a figure takes exactly the required parameters "
                          "'start TIMESTAMP' and 'end TIMESTAMP'")
    title, section, definitions, columns, chart = "", "", [], [], None
    for line in _header_lines(query.sql):
        if line.startswith("-- title:"):
            title = line.split(":", 1)[1].strip()
        elif line.startswith("-- section:"):
            section = line.split(":", 1)[1].strip()
        elif line.startswith("-- definition:"):
            definitions.append(line.split(":", 1)[1].strip())
        elif line.startswith("-- column:"):
            m = _COLUMN_LINE.match(line)
            if not m:
                raise FigureError(f"{path.name}: bad column line {line!r}; expected "
                                  "'-- column: name [unit]: definition'")
            columns.append(Column(m["name"], m["unit"].strip() if m["unit"] else None, m["doc"].strip()))
        elif line.startswith("-- chart:"):
            m = _CHART_LINE.match(line)
            if not m or m["kind"] not in CHART_KINDS:
                raise FigureError(f"{path.name}: bad chart line {line!r}; expected "
                                  f"'-- chart: {'|'.join(CHART_KINDS)} x=COLUMN y=COLUMN'")
            chart = Chart(m["kind"], m["x"], m["y"])
    if section not in SECTIONS:
        raise FigureError(f"{path.name}: '-- section:' must be one of {', '.join(SECTIONS)}")
    names = [c.name for c in columns]
    if not title or not columns:
        raise FigureError(f"{path.name}: a figure needs a '-- title:' line and '-- column:' lines")
    if len(set(names)) != len(names):
        raise FigureError(f"{path.name}: a column is declared twice")
    if chart and not {chart.x, chart.y} <= set(names):
        raise FigureError(f"{path.name}: the chart uses a column that is not declared")
    return Figure(query, title, section, " ".join(definitions), tuple(columns), chart)


def figures(figure_dir: Path = FIGURE_DIR) -> dict[str, Figure]:
    """Every figure, by name, in report order: by section (SECTIONS), then file name."""
    parsed = [parse_figure(p) for p in sorted(figure_dir.glob("*.sql"))]
    parsed.sort(key=lambda f: SECTIONS.index(f.section))
    return {f.name: f for f in parsed}


__all__ = ["CHART_KINDS", "FIGURE_DIR", "PERIOD_PARAMS", "SECTIONS", "Chart", "Column", "Figure", "FigureError",
           "compute_figures", "figures", "parse_figure"]
