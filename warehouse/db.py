"""The DuckDB warehouse: views over the Parquet lake built from the SQL models in
warehouse/sql/, with typed empty fallbacks for tables that have no files yet, and the query API.

    >>> build_warehouse("./lake", Path("warehouse/city.duckdb"))
    ['anomalies', 'district_lighting_15m', ..., 'wifi_5m_history']
    >>> query("SELECT district, sum(vehicle_count) FROM traffic_1m GROUP BY 1", settings)

Each SQL file in warehouse/sql/ holds one view, dbt-style: a header comment (grain, keys,
columns) and a small body with placeholders. ``{scan:<table>:<source>}`` is the one way a view
reads the lake (the live files of one table and source, Hive partitions typed, unioned by name);
when its glob matches no file (a fresh lake) it becomes an empty relation typed from the
contracts, so every view exists from the start. Every scan skips files superseded by a compacted
file (``contracts.lake.live_scan_sql``), so compaction never makes a view count a row twice.
``{ref:<view>}`` selects from another view, which is created first (the latest-version views
select from their ``_history`` view). SQL shared by several views is a macro in
warehouse/sql/macros/ (``{window_history:traffic}``, ``{district_rollup:wifi}``, and
``{union_all:late_events_of}`` for one branch per source). The build is recorded in the table
``_cityflow_build``; ``connect`` rebuilds when a scan that was empty has files now, the lake root
changed, or the view definitions (models, macros, contracts) changed. Everything is views, so
new files are visible without rebuilding.

Object stores: a lake root such as ``s3://bucket/lake`` (or gs://, r2://, https://) loads
DuckDB's ``httpfs`` extension, az:// or abfss:// loads ``azure``. Credentials are not part of
cityflow's settings: configure them as a DuckDB secret, e.g.
``CREATE PERSISTENT SECRET lake (TYPE s3, PROVIDER credential_chain)``, which every connection
to the database then picks up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa

from contracts import lake as L
from contracts.aggregates import AGGREGATES
from contracts.registry import CONTRACTS, contract_for_source
from contracts.tables import input_type, lake_table
from contracts.windows import WINDOW_DEFAULTS
from warehouse.remote import RemoteLakeError, duckdb_root, prepare_remote

if TYPE_CHECKING:
    from contracts.settings import Settings

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
BUILD_TABLE = "_cityflow_build"
# Bump when the way views are rendered changes, so existing databases are rebuilt.
BUILD_FORMAT = "4"

# Hive partition columns every lake path carries (see contracts/lake.py).
HIVE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "VARCHAR"),
    ("date", "DATE"),
    ("hour", "INTEGER"),
)

_DUCKDB_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.binary(): "BLOB",
    pa.large_binary(): "BLOB",
    pa.date32(): "DATE",
}
# A placeholder in a SQL model or macro: {name} or {name:arg} or {name:arg:arg}.
_PLACEHOLDER_RE = re.compile(r"\{(?P<name>[a-z_]+)(?P<args>(?::(?:\*|[a-z][a-z0-9_]*))*)\}")
# Every lake scan reads the same files the same way: the live (not superseded) Parquet files of
# one table and source (or all sources), Hive partitions typed, columns unioned by name (older
# files may lack newer nullable columns), and never a hidden file (temp files start with '.').
SCAN_GLOB = "date=*/hour=*/[!.]*.parquet"
SCAN_OPTIONS = (
    ", hive_partitioning = true, union_by_name = true, hive_types = {"
    + ", ".join(f"'{n}': {t}" for n, t in HIVE_COLUMNS)
    + "}"
)
# The relation one {scan:<table>:<source>} reads instead of its glob (see render_view).
ScanRelation = Callable[[str, str], "str | None"]
# DuckDB optimizer rules every warehouse connection turns off (see prepare_connection).
DISABLED_OPTIMIZERS = "top_n_window_elimination"
# How deep macros may expand macros before a cycle is assumed.
_MAX_MACRO_DEPTH = 5


class WarehouseError(RuntimeError):
    """The warehouse cannot be built or opened; the message says what to fix."""


@dataclass(frozen=True)
class ViewModel:
    """One SQL model file: the view name (the file's stem) and its template text."""

    name: str
    path: Path
    template: str


@dataclass(frozen=True)
class RenderedView:
    """A view's final SQL and the lake globs that matched no file when it was rendered."""

    name: str
    sql: str
    empty_scans: tuple[str, ...]
    refs: tuple[str, ...] = ()  # views this one selects from ({ref:<view>}), created first


# -- schemas of the lake tables (for empty fallbacks), declared in contracts/tables.py ---------
def lake_table_schema(table: str, source: str) -> pa.Schema:
    """The schema of one lake table for one source ('*' for the cross-source tables)."""
    try:
        return lake_table(table, source).schema
    except KeyError as exc:
        raise WarehouseError(exc.args[0]) from None


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB type DuckDB gives a Parquet column of Arrow type `t`."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    try:
        return _DUCKDB_TYPES[t]
    except KeyError:
        raise WarehouseError(f"no DuckDB type mapping for Arrow type {t}") from None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def empty_relation(schema: pa.Schema) -> str:
    """A zero-row subquery with the columns of `schema` plus the Hive partition columns."""
    cols = [(f.name, duckdb_type(f.type)) for f in schema]
    names = {n for n, _ in cols}
    cols += [(n, t) for n, t in HIVE_COLUMNS if n not in names]
    select = ", ".join(f"CAST(NULL AS {t}) AS {_ident(n)}" for n, t in cols)
    return f"(SELECT {select} WHERE false)"


def with_latest_flag(table: str, relation: str) -> str:
    """A scan of the windows table carries `_latest` (contracts.lake.LATEST_FLAG): true or
    false in a closed day's day file (jobs/day_files.py decided it), NULL in hour files, whose
    rows macros/window_latest_flagged.sql de-duplicates; other tables' scans are left as they are."""
    if table != L.WINDOWS:
        return relation
    return f"(SELECT *, CAST(NULL AS BOOLEAN) AS {_ident(L.LATEST_FLAG)} FROM {relation})"


# -- rendering -------------------------------------------------------------------------------
def load_models(sql_dir: Path = SQL_DIR) -> list[ViewModel]:
    """The view models, one per `*.sql` file, sorted by name."""
    models = [ViewModel(p.stem, p, p.read_text()) for p in sorted(sql_dir.glob("*.sql"))]
    if not models:
        raise WarehouseError(f"no SQL models found in {sql_dir}")
    return models


def load_macros(sql_dir: Path = SQL_DIR) -> dict[str, ViewModel]:
    """The macros, one per `macros/*.sql` file: SQL shared by several views, by name."""
    macros = {
        p.stem: ViewModel(p.stem, p, p.read_text())
        for p in sorted((sql_dir / "macros").glob("*.sql"))
    }
    clash = set(macros) & set(_BUILTINS)
    if clash:
        raise WarehouseError(f"macros {sorted(clash)} shadow built-in placeholders; rename them")
    return macros


def lake_uri(lake_root: str) -> str:
    """The lake root as DuckDB reads it: an absolute local path, or the URI without its query
    options (they configure the filesystem: warehouse/remote.py)."""
    return duckdb_root(lake_root)


def _district_measures(source: str) -> str:
    """Combine per-partition partials, as each aggregate function declares (contracts/aggregates.py)."""
    exprs = [e for a in AGGREGATES[source] for e in a.function.merge_sql(a, input_type(source, a))]
    return ",\n       ".join(exprs)


def _macro_body(macro: ViewModel) -> str:
    """A macro's SQL without its leading comment (which documents the macro, not the view)."""
    lines = macro.template.splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip()


def _macro_variables(source: str) -> dict[str, str]:
    """What a macro's {source}, {entity_key} and {district_column} stand for, per source."""
    contract = contract_for_source(source)
    has_district = any(f.name == "district" for f in contract.fields)
    return {
        "source": source,
        "entity_key": contract.key,
        "district_column": "district" if has_district else "CAST(NULL AS VARCHAR)",
    }


def _expand_macro(macro: ViewModel, source: str) -> str:
    body = _macro_body(macro)
    for var, value in _macro_variables(source).items():
        body = body.replace(f"{{{var}}}", value)
    return body


# Built-in placeholders and how many arguments each takes. Any other name is a macro.
# The latest version of a per-entity window: the highest version, and of its copies (a replay
# writes the same key again) the last emitted. Defined once: the latest-version views
# de-duplicate with it ({latest_row}, macros/window_latest*.sql) and the day files flag the rows
# it keeps (jobs/day_files.py), so the two can never disagree.
LATEST_ROW_SQL = ("row_number() OVER (PARTITION BY entity, window_start, window_size_s, date, hour "
                  "ORDER BY version DESC, emitted_at DESC) = 1")

_BUILTINS: dict[str, int] = {
    "latest_row": 0,  # {latest_row}: true for the row LATEST_ROW_SQL keeps (a window function)
    "scan": 2,  # {scan:<table>:<source or *>}: that lake table's live files (or a typed empty one)
    "ref": 1,  # {ref:<view>}: another view, which is then created first (dbt's ref())
    "window_size_s": 1,  # {window_size_s:<source>}: the source's default window size
    "district_measures": 1,  # {district_measures:<source>}: merge of the district partials
    "union_all": 1,  # {union_all:<macro>}: the macro once per source, joined by UNION ALL
}


def render_view(
    model: ViewModel,
    lake_root: str,
    con: duckdb.DuckDBPyConnection,
    macros: dict[str, ViewModel] | None = None,
    window_sizes: Mapping[str, int] | None = None,
    scan_relation: ScanRelation | None = None,
) -> RenderedView:
    """Expand a model's placeholders and macros into its final SQL; a scan whose glob matches
    no file becomes an empty relation typed from the contracts, so the view exists anyway.
    `window_sizes` (source -> seconds) are the configured window sizes the latest-version views
    show (default: WINDOW_DEFAULTS). `scan_relation(table, source)`, if given, is the SQL
    relation a scan reads instead of the glob over the whole table (warehouse/scoped.py: one
    period's files), or None when there is no file (then the typed empty relation)."""
    root = lake_uri(lake_root)
    sizes = resolved_window_sizes(window_sizes)
    macros = load_macros() if macros is None else macros
    empty: list[str] = []
    refs: list[str] = []

    def fail(m: re.Match[str], why: str) -> WarehouseError:
        return WarehouseError(f"{model.path.name}: placeholder {m.group(0)} {why}")

    def source_arg(m: re.Match[str], arg: str) -> str:
        if arg not in CONTRACTS:
            raise fail(m, f"needs a known source, got {arg!r}; known: {', '.join(CONTRACTS)}")
        return arg

    def render(text: str, depth: int) -> str:
        if depth > _MAX_MACRO_DEPTH:
            raise WarehouseError(f"{model.path.name}: macros nest deeper than {_MAX_MACRO_DEPTH}")
        return _PLACEHOLDER_RE.sub(lambda m: substitute(m, depth), text)

    def substitute(m: re.Match[str], depth: int) -> str:
        name, args = m["name"], m["args"].split(":")[1:]
        if name not in _BUILTINS and name not in macros:
            raise fail(
                m,
                f"is unknown; built-ins: {', '.join(_BUILTINS)}; macros: "
                f"{', '.join(macros) or 'none'}",
            )
        arity = _BUILTINS.get(name, 1)
        if len(args) != arity:
            raise fail(m, f"takes {arity} argument(s), got {len(args)}")
        if name == "scan":
            table, source = args
            if table not in L.TABLES:
                raise fail(m, f"names no lake table; known: {', '.join(L.TABLES)}")
            if source != "*":
                source_arg(m, source)
            if scan_relation is not None:  # it flags windows' rows itself (warehouse/scoped.py)
                relation = scan_relation(table, source)
                return relation if relation is not None else with_latest_flag(table, empty_relation(lake_table_schema(table, source)))
            pattern = f"{root}/{table}/source={source}/{SCAN_GLOB}"
            if con.execute("SELECT 1 FROM glob(?) LIMIT 1", [pattern]).fetchone():
                # skip files a compacted file supersedes (jobs/compaction.py, contracts/lake.py)
                return with_latest_flag(table, L.live_scan_sql(pattern, SCAN_OPTIONS))
            empty.append(pattern)
            return with_latest_flag(table, empty_relation(lake_table_schema(table, source)))
        if name == "ref":
            refs.append(args[0])
            return _ident(args[0])
        if name == "latest_row":
            return LATEST_ROW_SQL
        if name == "window_size_s":
            return str(sizes[source_arg(m, args[0])])
        if name == "district_measures":
            return _district_measures(source_arg(m, args[0]))
        if name == "union_all":
            if args[0] not in macros:
                raise fail(m, f"names no macro; macros: {', '.join(macros) or 'none'}")
            parts = [render(_expand_macro(macros[args[0]], s), depth + 1) for s in CONTRACTS]
            return "\nUNION ALL\n".join(parts)
        return render(_expand_macro(macros[name], source_arg(m, args[0])), depth + 1)

    sql = render(model.template, 0)
    return RenderedView(model.name, sql, tuple(empty), tuple(dict.fromkeys(refs)))


def creation_order(rendered: list[RenderedView]) -> list[RenderedView]:
    """The views in an order that creates every view after the views it refers to."""
    by_name = {r.name: r for r in rendered}
    ordered: list[RenderedView] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(view: RenderedView, path: tuple[str, ...]) -> None:
        if state.get(view.name) == "done":
            return
        if state.get(view.name) == "visiting":
            raise WarehouseError(
                f"views refer to each other in a cycle: {' -> '.join((*path, view.name))}"
            )
        state[view.name] = "visiting"
        for ref in view.refs:
            if ref not in by_name:
                raise WarehouseError(
                    f"view {view.name} refers to {ref!r}, which no SQL model defines"
                )
            visit(by_name[ref], (*path, view.name))
        state[view.name] = "done"
        ordered.append(view)

    for view in rendered:
        visit(view, ())
    return ordered


def resolved_window_sizes(window_sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Window size in seconds per source: the given ones over WINDOW_DEFAULTS."""
    sizes = {s: g.size_s for s, g in WINDOW_DEFAULTS.items()}
    sizes.update(window_sizes or {})
    return sizes


def configured_window_sizes(settings: Settings) -> dict[str, int]:
    """The window sizes CITYFLOW_WINDOW_<SOURCE> configures: what the workers land, so what the
    views show."""
    from contracts.windows import window_geometry

    return {s: window_geometry(s, settings).size_s for s in CONTRACTS}


def fingerprint(models: list[ViewModel], macros: dict[str, ViewModel] | None = None,
                window_sizes: Mapping[str, int] | None = None) -> str:
    """Changes whenever a view's definition would: SQL files, macros, contracts, window sizes,
    the declared lake tables (empty fallbacks) and the aggregates' district merges."""
    macros = load_macros() if macros is None else macros
    h = hashlib.sha256(BUILD_FORMAT.encode())
    h.update(repr(sorted(resolved_window_sizes(window_sizes).items())).encode())
    for m in [*models, *macros.values()]:
        h.update(f"\0{m.path.parent.name}/{m.name}\0{m.template}".encode())
    h.update(LATEST_ROW_SQL.encode())
    h.update(repr(sorted(AGGREGATES.items())).encode())
    h.update(repr(sorted(WINDOW_DEFAULTS.items())).encode())
    for source in sorted(CONTRACTS):
        h.update(str(CONTRACTS[source].raw_schema()).encode())
        h.update(_district_measures(source).encode())
        for table in (L.RAW, L.WINDOWS, L.DISTRICT_WINDOWS, L.LATE_EVENTS):
            h.update(str(lake_table(table, source).schema).encode())
    h.update(str(lake_table(L.QUARANTINE, "*").schema).encode())
    h.update(str(lake_table(L.ANOMALIES, "*").schema).encode())
    return h.hexdigest()


# -- building and connecting ------------------------------------------------------------------
def prepare_connection(con: duckdb.DuckDBPyConnection, lake_root: str, remote_io: str = "auto") -> None:
    """Session settings every warehouse connection needs: UTC, the optimizer rule below off,
    and for a remote lake a way to read it that downloads nothing (warehouse/remote.py).

    `top_n_window_elimination` rewrites the views' de-duplication (QUALIFY row_number() = 1)
    into an aggregate plus a semi-join back to the scan by file row number, so every file is
    scanned twice; on a lake of many small files (one per partition-hour and table) that doubled
    the cost: a month of lighting windows (2,827 files) took 5.2-7.0 s with it, 2.7-3.8 s
    without, one scan instead of two (DuckDB 2.0.1, EXPLAIN ANALYZE). Results are the same."""
    con.execute("SET TimeZone = 'UTC'")
    try:
        con.execute(f"SET disabled_optimizers = '{DISABLED_OPTIMIZERS}'")
    except duckdb.Error as exc:  # a DuckDB (>= 1.0 is allowed) without that rule: no rewrite to undo
        log.warning("DuckDB %s does not know the optimizer rule %s, left as it is: %s",
                    duckdb.__version__, DISABLED_OPTIMIZERS, exc)
    try:
        prepare_remote(con, lake_root, remote_io)
    except RemoteLakeError as exc:
        raise WarehouseError(str(exc)) from None


def build_warehouse(lake_root: str, db_path: Path, window_sizes: Mapping[str, int] | None = None,
                    remote_io: str = "auto") -> list[str]:
    """Create or replace every view in the DuckDB file `db_path`; return the view names.
    `window_sizes`: the configured size per source (`configured_window_sizes(settings)`); the
    latest-version views show windows of that size (default: WINDOW_DEFAULTS).

    Idempotent and atomic (one transaction); views whose SQL file was removed are dropped.
    """
    models, macros = load_models(), load_macros()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    try:
        prepare_connection(con, lake_root, remote_io)
        rendered = creation_order([render_view(m, lake_root, con, macros, window_sizes) for m in models])
        previous = _built_views(con)
        con.execute("BEGIN TRANSACTION")
        try:
            for old in sorted(previous - {r.name for r in rendered}):
                con.execute(f"DROP VIEW IF EXISTS {_ident(old)}")
            for r in rendered:
                try:
                    con.execute(f"CREATE OR REPLACE VIEW {_ident(r.name)} AS\n{r.sql}")
                except duckdb.Error as exc:
                    first = str(exc).strip().splitlines()[0]
                    raise WarehouseError(
                        f"view {r.name} ({SQL_DIR / r.name}.sql): {first}"
                    ) from exc
            _record_build(con, rendered, lake_uri(lake_root), fingerprint(models, macros, window_sizes),
                          resolved_window_sizes(window_sizes))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    fallbacks = sum(1 for r in rendered if r.empty_scans)
    log.info(
        "warehouse built db=%s lake=%s views=%d with_empty_scans=%d",
        db_path,
        lake_uri(lake_root),
        len(rendered),
        fallbacks,
    )
    return [r.name for r in rendered]


def _built_views(con: duckdb.DuckDBPyConnection) -> set[str]:
    try:
        return {row[0] for row in con.execute(f"SELECT view FROM {BUILD_TABLE}").fetchall()}
    except duckdb.CatalogException:
        return set()


def _record_build(
    con: duckdb.DuckDBPyConnection, rendered: list[RenderedView], root: str, digest: str,
    window_sizes: Mapping[str, int],
) -> None:
    """One row per view: the lake and window sizes (JSON, source -> seconds) it was rendered
    with (period-scoped views re-render them the same way: warehouse/scoped.py)."""
    con.execute(
        f"CREATE OR REPLACE TABLE {BUILD_TABLE} (view VARCHAR, lake VARCHAR, fingerprint VARCHAR,"
        " empty_scans VARCHAR[], built_at TIMESTAMPTZ, window_sizes VARCHAR)"
    )
    sizes = json.dumps(dict(sorted(window_sizes.items())))
    con.executemany(
        f"INSERT INTO {BUILD_TABLE} VALUES (?, ?, ?, ?, now(), ?)",
        [[r.name, root, digest, list(r.empty_scans), sizes] for r in rendered],
    )


def stale_reason(db_path: Path, lake_root: str, window_sizes: Mapping[str, int] | None = None,
                 remote_io: str = "auto") -> str | None:
    """Why the views in `db_path` must be (re)built for `lake_root`, or None if they are current."""
    if not Path(db_path).exists():
        return "database missing"
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        prepare_connection(con, lake_root, remote_io)
        try:
            rows = con.execute(
                f"SELECT view, lake, fingerprint, empty_scans FROM {BUILD_TABLE}"
            ).fetchall()
        except duckdb.CatalogException:
            return "no build record"
        if not rows:
            return "no build record"
        if {r[1] for r in rows} != {lake_uri(lake_root)}:
            return "lake root changed"
        if {r[2] for r in rows} != {fingerprint(load_models(), window_sizes=window_sizes)}:
            return "view definitions changed (SQL, contracts or window sizes)"
        for pattern in sorted({p for r in rows for p in r[3]}):
            if con.execute("SELECT 1 FROM glob(?) LIMIT 1", [pattern]).fetchone():
                return f"files arrived for {pattern}"
        return None
    finally:
        con.close()


def connect(settings: Settings, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the warehouse database, building (or refreshing) its views first when needed.

    Read-only by default, so any number of `cityflow query`/report processes can read at once.
    """
    db_path = Path(settings.warehouse_db)
    sizes = configured_window_sizes(settings)
    reason = stale_reason(db_path, settings.lake, sizes, settings.warehouse_remote_io)
    if reason:
        log.info("warehouse rebuild db=%s reason=%r", db_path, reason)
        try:
            build_warehouse(settings.lake, db_path, sizes, settings.warehouse_remote_io)
        except duckdb.IOException as exc:
            if not db_path.exists():
                raise
            # Another process holds the write lock: its views are usable, just not refreshed.
            log.warning("warehouse rebuild skipped db=%s reason=%r error=%s", db_path, reason, exc)
    con = duckdb.connect(str(db_path), read_only=read_only)
    try:
        prepare_connection(con, settings.lake, settings.warehouse_remote_io)
    except BaseException:
        con.close()
        raise
    return con


def query(sql: str, settings: Settings) -> pd.DataFrame:
    """Run one SQL statement against the warehouse and return its result (empty if none)."""
    con = connect(settings)
    try:
        con.execute(sql)
        if con.description is None:
            return pd.DataFrame()
        return con.fetchdf()
    finally:
        con.close()
