"""Data-quality validation of the landed lake with Great Expectations (1.x): the suites derived
from the contracts (contracts/expectations.py) run in one checkpoint over the raw tables, the
window tables and the quarantine table, write Data Docs HTML, and return a summary.

    >>> run = validate_lake("./lake", Path("reports/validation"), since=None)
    >>> run.success, run.docs_index
    (True, PosixPath('reports/validation/index.html'))

Data path: DuckDB reads each table (Hive-pruned by --since) into one Parquet batch per suite in
a temporary directory; GX's pandas engine validates each batch once. Columns whose landed type
does not fit the contract are reported as schema problems (and fail the run) before GX runs, and
so are NaN values in float columns: the contracts' missing value is null, and GX's pandas engine
cannot tell NaN from null.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import lake as L
from contracts.expectations import ExpectationSpec, gx_suite, suite_specs
from contracts.quarantine import QUARANTINE_SCHEMA
from contracts.registry import CONTRACTS
from contracts.tables import window_table
from warehouse.db import prepare_connection

log = logging.getLogger(__name__)

_HIVE = "hive_partitioning = true, union_by_name = true, hive_types = {'source': VARCHAR, 'date': DATE, 'hour': INTEGER}"


@dataclass
class ExpectationOutcome:
    suite: str
    expectation: str
    column: str
    kwargs: dict[str, Any]
    reason: str
    success: bool
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)


@dataclass
class SuiteOutcome:
    name: str
    rows: int
    schema_problems: list[str] = field(default_factory=list)
    expectations: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]

    @property
    def success(self) -> bool:
        return not self.schema_problems and not self.failed


@dataclass
class ValidationRun:
    suites: list[SuiteOutcome]
    docs_index: Path | None
    since: datetime | None
    seconds: float
    gx_seconds: float

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.suites)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2024-03-01`, `2024-03-01T10:00` (UTC unless an offset is given), or `90m`/`24h`/`7d` ago."""
    now = now or datetime.now(UTC)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    t = text.strip()
    if t[:-1].isdigit() and t[-1:] in units:
        return now - timedelta(**{units[t[-1]]: int(t[:-1])})
    try:
        parsed = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"--since: expected YYYY-MM-DD[THH:MM[:SS]] or a span like 90m, 24h, 7d; got {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- staging: one Parquet batch per suite ------------------------------------------------------
def _lake_glob(lake: L.Lake, table: str, source: str) -> str:
    return lake.glob_uri(f"{table}/source={source}/date=*/hour=*/[!.]*.parquet")


def _read(con: duckdb.DuckDBPyConnection, pattern: str, ts_col: str, since: datetime | None) -> pa.Table | None:
    if not con.execute("SELECT 1 FROM glob(?) LIMIT 1", [pattern]).fetchall():
        return None
    where, params = "", []
    if since is not None:
        where = f"WHERE date >= ?::DATE AND {ts_col} >= ?::TIMESTAMPTZ"
        params = [since.date().isoformat(), since.isoformat()]
    # live files only: a compacted file hides the inputs it replaced (contracts/lake.py)
    scan = L.live_scan_sql(pattern, f", {_HIVE}")
    sql = f"SELECT * EXCLUDE (source, date, hour) FROM {scan} {where}"
    return con.sql(sql, params=params).to_arrow_table()


def _conform(table: pa.Table, schema: pa.Schema) -> tuple[pa.Table, list[str]]:
    """`table` in `schema` (column order and types); problems for missing or mistyped columns."""
    problems, columns = [], []
    for f in schema:
        if f.name not in table.column_names:
            if not f.nullable:
                problems.append(f"column {f.name!r} is missing from the landed files")
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                problems.append(f"column {f.name!r} has type {col.type} in the landed files, the contract says {f.type}")
                col = pa.nulls(table.num_rows, f.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in schema])), problems


def _nan_problems(table: pa.Table) -> list[str]:
    """A problem per float column holding NaN (where the contracts say null)."""
    problems = []
    for f in table.schema:
        if pa.types.is_floating(f.type):
            nans = pc.sum(pc.is_nan(table.column(f.name))).as_py() or 0
            if nans:
                problems.append(f"column {f.name!r} holds {nans:,} NaN values; a missing value must be null "
                                "[reason not_finite]")
    return problems


def stage_batches(
    lake_root: str, staging: Path, since: datetime | None
) -> dict[str, tuple[str | None, int, list[str]]]:
    """Write one Parquet file per suite into `staging`: {suite: (file name or None, rows, problems)}."""
    lake = L.Lake(lake_root)
    con = duckdb.connect()
    prepare_connection(con, lake_root)  # UTC; a remote lake without downloads
    out: dict[str, tuple[str | None, int, list[str]]] = {}
    targets = [(f"raw_{s}", L.RAW, s, "ts", c.raw_schema()) for s, c in CONTRACTS.items()]
    targets += [(f"windows_{s}", L.WINDOWS, s, "window_start", window_table(s).schema) for s in CONTRACTS]
    targets.append(("quarantine", L.QUARANTINE, "*", "received_at", QUARANTINE_SCHEMA))
    try:
        for name, table, source, ts_col, schema in targets:
            try:
                data = _read(con, _lake_glob(lake, table, source), ts_col, since)
            except duckdb.Error as exc:
                out[name] = (None, 0, [f"cannot read the landed files: {str(exc).splitlines()[0]}"])
                continue
            if data is None or data.num_rows == 0:
                out[name] = (None, 0, [])
                continue
            data, problems = _conform(data, schema)
            problems += _nan_problems(data)
            file_name = f"{name}.parquet"
            pq.write_table(data, staging / file_name)
            out[name] = (file_name, data.num_rows, problems)
    finally:
        con.close()
    return out


# -- Great Expectations ------------------------------------------------------------------------
def quiet_great_expectations() -> None:
    """No progress bars, usage statistics or INFO chatter from GX (also used by workers)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="great_expectations")


def gx_context(docs_dir: Path) -> Any:
    """An ephemeral GX context: in-memory stores, one Data Docs site in `docs_dir`, no progress bars."""
    quiet_great_expectations()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            "cityflow": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir.resolve())},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def run_checkpoint(
    staging: Path, staged: dict[str, tuple[str | None, int, list[str]]],
    specs: dict[str, list[ExpectationSpec]], docs_dir: Path,
) -> dict[str, list[ExpectationOutcome]]:
    """One checkpoint over every staged batch; Data Docs updated; outcomes per suite."""
    import great_expectations as gx

    context = gx_context(docs_dir)
    source = context.data_sources.add_pandas_filesystem("lake", base_directory=staging)
    definitions = []
    for name, (file_name, _, _) in staged.items():
        if file_name is None:
            continue
        batch = source.add_parquet_asset(name).add_batch_definition_path("landed", path=file_name)
        suite = context.suites.add(gx_suite(name, specs[name]))
        definitions.append(context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)))
    if not definitions:
        return {}
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="cityflow_lake", validation_definitions=definitions,
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")], result_format="SUMMARY"))
    result = checkpoint.run()
    outcomes: dict[str, list[ExpectationOutcome]] = {}
    for suite_result in result.run_results.values():
        name = suite_result.suite_name
        rows = []
        for r in suite_result.results:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            res = r.result or {}
            rows.append(ExpectationOutcome(
                suite=name, expectation=cfg.type, column=str(kwargs.get("column", "")), kwargs=kwargs,
                reason=str((cfg.meta or {}).get("reason", "")), success=bool(r.success),
                unexpected_count=res.get("unexpected_count"),
                examples=list(res.get("partial_unexpected_list") or [])[:5]))
        outcomes[name] = rows
    return outcomes


def validate_lake(
    lake_root: str, docs_dir: Path, since: datetime | None = None, now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
) -> ValidationRun:
    """Run every suite over the landed lake (rows with event/receipt time >= since)."""
    t0 = time.perf_counter()
    quiet_great_expectations()
    now = now or datetime.now(UTC)
    specs = suite_specs(now, max_future)
    docs_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cityflow-validate-") as tmp:
        staging = Path(tmp)
        staged = stage_batches(lake_root, staging, since)
        outcomes: dict[str, list[ExpectationOutcome]] = {}
        gx_seconds = 0.0
        if any(f for f, _, _ in staged.values()):
            import great_expectations  # noqa: F401 - timed apart: importing GX takes ~3 s

            t_gx = time.perf_counter()
            outcomes = run_checkpoint(staging, staged, specs, docs_dir)
            gx_seconds = time.perf_counter() - t_gx
    suites = [SuiteOutcome(name, rows, problems, outcomes.get(name, []))
              for name, (_, rows, problems) in staged.items()]
    index = docs_dir / "index.html"
    return ValidationRun(suites, index if index.exists() and outcomes else None, since,
                         time.perf_counter() - t0, gx_seconds)


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return str(value.isoformat()).replace("+00:00", "Z")
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return "[" + ", ".join(_short(v) for v in value[:4]) + f", … ({len(value)})]"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value)


def _expectation_text(e: ExpectationOutcome) -> str:
    args = ", ".join(f"{k}={_short(v)}" for k, v in e.kwargs.items() if k not in ("column",))
    where = f"{e.column} " if e.column else ""
    return f"{where}{e.expectation}({args})"


def format_summary(run: ValidationRun) -> str:
    """A short, plain-text summary: one line per suite, then every failure."""
    lines = []
    since = f" since {run.since.isoformat()}" if run.since else ""
    lines.append(f"validated {run.rows:,} landed rows{since} in {run.seconds:.1f} s "
                 f"(of which the Great Expectations checkpoint run {run.gx_seconds:.1f} s)")
    for s in run.suites:
        if s.rows == 0 and not s.schema_problems:
            lines.append(f"  {s.name:<16} {0:>10,} rows  (no data)")
            continue
        ok = sum(e.success for e in s.expectations)
        status = "ok" if s.success else "FAILED"
        lines.append(f"  {s.name:<16} {s.rows:>10,} rows  {ok}/{len(s.expectations)} expectations  {status}")
    failures = [(s.name, p) for s in run.suites for p in s.schema_problems]
    for name, problem in failures:
        lines.append(f"FAILED {name}: schema: {problem}")
    for s in run.suites:
        for e in s.failed:
            count = f"{e.unexpected_count:,} unexpected" if e.unexpected_count is not None else "failed"
            examples = f", e.g. {_short(e.examples[:3])}" if e.examples else ""
            reason = f" [reason {e.reason}]" if e.reason else ""
            lines.append(f"FAILED {s.name}: {_expectation_text(e)}: {count}{examples}{reason}")
    if run.docs_index:
        lines.append(f"Data Docs: {run.docs_index}")
    lines.append("result: " + ("PASSED" if run.success else "FAILED"))
    return "\n".join(lines)
