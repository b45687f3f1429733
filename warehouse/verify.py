"""The correctness oracle: recompute every final window from the raw landed events with DuckDB
and compare with what the stream landed (`cityflow verify --windows`).

Recompute rules mirror the stream's contract, not its code: a (event, window) pair counts unless
it is recorded in late_events; a window is final when its end <= watermark of its partition
(max landed event time - allowed lateness); the stream's latest version of every final window
must equal the recompute, and the stream must have no final window the recompute lacks.

Values compare within REL_TOL; null equals only null, so a value where the other side is null
is a mismatch, reported like any other, never an error. NaN is a value, not null: the contracts
say an aggregate over no input is null, so a NaN the stream landed where the recompute gives
null (or a number) is reported as a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from contracts import lake as L
from contracts.aggregates import AGGREGATES, Aggregate
from contracts.registry import CONTRACTS
from contracts.windows import WindowGeometry
from warehouse.db import prepare_connection

REL_TOL = 1e-9


@dataclass
class SourceCheck:
    source: str
    windows_checked: int
    mismatches: pd.DataFrame  # entity, window_start, problem, column, streamed, recomputed

    @property
    def ok(self) -> bool:
        return self.mismatches.empty


@dataclass
class VerifyResult:
    checks: list[SourceCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def mismatch_count(self) -> int:
        return sum(len(c.mismatches) for c in self.checks)


def _scan(lake: L.Lake, table: str, source: str) -> str | None:
    rel = f"{table}/source={source}"
    if not any(True for _ in lake.list_files(rel)):
        return None
    # live files only: a compacted file hides the inputs it replaced (contracts/lake.py)
    return L.live_scan_sql(f"{lake.glob_uri(rel)}/date=*/hour=*/[!.]*.parquet",
                           ", hive_partitioning = true, union_by_name = true")


def _agg_sql(agg: Aggregate, size_s: int) -> str:
    f = agg.field
    return {
        "count": "count(*)",
        "count_eq": f"count_if({f} = '{agg.value}')",
        "sum": f"sum({f})",
        "mean": f"avg({f})",
        "max": f"max({f})",
        "min": f"min({f})",
        "p95": f"quantile_cont({f}, 0.95)",
        "energy_wh": f"avg({f}) * {size_s / 3600.0!r}",
    }[agg.fn]


def recompute_sql(lake: L.Lake, source: str, geometry: WindowGeometry) -> str | None:
    """SQL of the recomputed final windows of one source (None when nothing is landed)."""
    raw = _scan(lake, L.RAW, source)
    if raw is None:
        return None
    key = CONTRACTS[source].key
    size, hop = geometry.size_s * 1000, geometry.hop * 1000
    k = geometry.size_s // geometry.hop
    late = _scan(lake, L.LATE_EVENTS, source)
    late_cte = (f"SELECT kafka_partition, kafka_offset, epoch_ms(window_start) AS ws FROM {late}" if late
                else "SELECT NULL::INTEGER AS kafka_partition, NULL::BIGINT AS kafka_offset, NULL::BIGINT AS ws WHERE false")
    aggs = ",\n       ".join(f"{_agg_sql(a, geometry.size_s)} AS {a.name}" for a in AGGREGATES[source])
    return f"""
WITH raw AS (SELECT *, epoch_ms(ts) AS t FROM {raw}),
wm AS (SELECT kafka_partition, max(t) - {geometry.allowed_lateness_s * 1000} AS wm FROM raw GROUP BY 1),
late AS ({late_cte}),
pairs AS (
  SELECT raw.*, (floor(t / {hop})::BIGINT * {hop}) - g.k * {hop} AS ws
  FROM raw, range(0, {k}) AS g(k)
),
kept AS (
  SELECT p.* FROM pairs p
  ANTI JOIN late l ON p.kafka_partition = l.kafka_partition AND p.kafka_offset = l.kafka_offset AND p.ws = l.ws
)
SELECT {key} AS entity, ws AS window_start,
       {aggs}
FROM kept JOIN wm USING (kafka_partition)
WHERE ws + {size} <= wm.wm
GROUP BY ALL
"""


def streamed_sql(lake: L.Lake, source: str, geometry: WindowGeometry) -> str | None:
    win = _scan(lake, L.WINDOWS, source)
    if win is None:
        return None
    cols = ", ".join(a.name for a in AGGREGATES[source])
    return f"""
SELECT entity, epoch_ms(window_start) AS window_start, version, {cols}
FROM {win}
WHERE window_size_s = {geometry.size_s}
QUALIFY row_number() OVER (PARTITION BY entity, window_start ORDER BY version DESC) = 1
"""


def verify_source(con: duckdb.DuckDBPyConnection, lake: L.Lake, source: str, geometry: WindowGeometry,
                  since: datetime | None = None, until: datetime | None = None) -> SourceCheck:
    rec_sql, str_sql = recompute_sql(lake, source, geometry), streamed_sql(lake, source, geometry)
    empty = pd.DataFrame(columns=["entity", "window_start", "problem", "column", "streamed", "recomputed"])
    if rec_sql is None and str_sql is None:
        return SourceCheck(source, 0, empty)
    names = [a.name for a in AGGREGATES[source]]
    null_cols = ", ".join(f"NULL::DOUBLE AS {n}" for n in names)
    rec_sql = rec_sql or f"SELECT NULL::VARCHAR AS entity, NULL::BIGINT AS window_start, {null_cols} WHERE false"
    str_sql = str_sql or f"SELECT NULL::VARCHAR AS entity, NULL::BIGINT AS window_start, NULL::INTEGER AS version, {null_cols} WHERE false"
    lo = int(since.timestamp() * 1000) if since else -(2**62)
    hi = int(until.timestamp() * 1000) if until else 2**62
    # never NULL: when one side is null the tolerance test is NULL, and that counts as differing
    diff_cols = ",\n  ".join(
        f"NOT coalesce(s.{n} IS NOT DISTINCT FROM r.{n} "
        f"OR abs(s.{n} - r.{n}) <= {REL_TOL} * greatest(1, abs(r.{n})), false) AS d_{n}"
        for n in names
    )
    joined = con.sql(f"""
WITH r AS ({rec_sql}), s AS ({str_sql})
SELECT coalesce(s.entity, r.entity) AS entity, coalesce(s.window_start, r.window_start) AS window_start,
  s.entity IS NULL AS missing_in_stream, r.entity IS NULL AS missing_in_recompute,
  {", ".join(f"s.{n} AS s_{n}, r.{n} AS r_{n}, s.{n} IS NULL AS sn_{n}, r.{n} IS NULL AS rn_{n}"
             for n in names)},
  {diff_cols}
FROM s FULL OUTER JOIN r ON s.entity = r.entity AND s.window_start = r.window_start
WHERE coalesce(s.window_start, r.window_start) BETWEEN {lo} AND {hi}
""").df()
    problems = []
    for row in joined.itertuples(index=False):
        if row.missing_in_stream:
            problems.append((row.entity, row.window_start, "missing_in_stream", "", None, None))
        elif row.missing_in_recompute:
            problems.append((row.entity, row.window_start, "not_final_or_unknown", "", None, None))
        else:
            for n in names:
                if getattr(row, f"d_{n}"):
                    # pandas reads SQL NULL as NaN: report null as None so NaN stays visible
                    streamed = None if getattr(row, f"sn_{n}") else getattr(row, f"s_{n}")
                    recomputed = None if getattr(row, f"rn_{n}") else getattr(row, f"r_{n}")
                    problems.append((row.entity, row.window_start, "value_differs", n,
                                     streamed, recomputed))
    mism = pd.DataFrame(problems, columns=empty.columns, dtype=object) if problems else empty
    if not mism.empty:
        mism["window_start"] = pd.to_datetime(mism["window_start"].astype("int64"), unit="ms", utc=True)
    return SourceCheck(source, len(joined), mism)


def verify_windows(lake_root: str, geometries: dict[str, WindowGeometry],
                   since: datetime | None = None, until: datetime | None = None) -> VerifyResult:
    """Compare every final streamed window with its DuckDB recompute from the raw lake."""
    lake = L.Lake(lake_root)
    con = duckdb.connect()
    prepare_connection(con, lake_root)  # UTC; a remote lake without downloads
    result = VerifyResult()
    for source, geometry in geometries.items():
        result.checks.append(verify_source(con, lake, source, geometry, since, until))
    return result
