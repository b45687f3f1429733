"""Does a peer case compute the right windows? Its Parquet output against the same windows
recomputed by DuckDB from the events themselves (the traffic topic read back once, raw JSON per
partition, parsed by DuckDB): a case whose windows are wrong does not count.

    >>> dump_topic(bootstrap, TOPIC, n, workdir / "events")          # once per run
    >>> expected = recompute_windows(workdir / "events")
    >>> check_windows(read_windows(quix_output, key_column="_key"), expected)
    {'ok': True, 'reason': '', 'emitted': 1234, ...}

Rules: no window twice; every emitted window exists in the recompute with equal aggregates
(integers exact, floats to 1e-9 relative, null only where the recompute is null); and every
window that is surely closed (its end + the allowed lateness at or before the last event time of
its detector) was emitted. Windows still open when the input ended may or may not be emitted.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.peer_job import AGGS, GRACE_MS, KEY, SIZE_MS, WINDOW_COLUMNS
from contracts.registry import CONTRACTS

REL_TOL = 1e-9
_SQL_FN = {"count": "count(*)", "sum": "sum({f})", "mean": "avg({f})", "max": "max({f})",
           "min": "min({f})", "p95": "quantile_cont({f}, 0.95)"}


async def _read_values(bootstrap: str, topic: str, events: int) -> dict[int, list[bytes]]:
    """The topic's first `events` values, as newline-delimited chunks per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        chunks: dict[int, list[bytes]] = {p: [] for p in parts}
        done = 0
        while done < events:  # counts, not end offsets (unreliable on Tansu)
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                chunks[tp.partition].append(b"".join(r.value + b"\n" for r in records))
                done += len(records)
        return chunks
    finally:
        await consumer.stop()


def dump_topic(bootstrap: str, topic: str, events: int, outdir: Path, timeout: float = 300) -> int:
    """Write the topic's first `events` values as newline-delimited JSON, one file per partition;
    return how many lines were written."""
    outdir.mkdir(parents=True, exist_ok=True)
    chunks = asyncio.run(asyncio.wait_for(_read_values(bootstrap, topic, events), timeout))
    for partition, parts in chunks.items():
        (outdir / f"p{partition}.ndjson").write_bytes(b"".join(parts))
    return sum(c.count(b"\n") for parts in chunks.values() for c in parts)


def recompute_windows(events_dir: Path) -> pa.Table:
    """The job's windows by DuckDB from the dumped events, with each detector's last event time
    (`entity_max_ms`) that decides which windows are surely closed."""
    contract = CONTRACTS["traffic"]
    fields = {f.name for a in AGGS if a.field for f in contract.fields if f.name == a.field}
    columns = {KEY: "VARCHAR", "ts": "TIMESTAMPTZ", **{f: "DOUBLE" for f in sorted(fields)}}
    cols_sql = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    aggs = ",\n  ".join(f"{_SQL_FN[a.fn].format(f=a.field)} AS {a.name}" for a in AGGS)
    # integer aggregates stay integers (count; sums of integer fields)
    ints = {a.name for a in AGGS if a.fn == "count" or (a.fn == "sum" and _is_int_field(a.field))}
    casts = ", ".join(f"CAST({a.name} AS BIGINT) AS {a.name}" if a.name in ints else a.name for a in AGGS)
    sql = f"""
    WITH ev AS (
      SELECT {KEY} AS entity, epoch_ms(ts) AS t, * EXCLUDE ({KEY}, ts)
      FROM read_json('{events_dir}/*.ndjson', format='newline_delimited', columns={cols_sql})
    ), w AS (
      SELECT entity, t // {SIZE_MS} * {SIZE_MS} AS window_start_ms,
      {aggs}
      FROM ev GROUP BY ALL
    ), last AS (SELECT entity, max(t) AS entity_max_ms FROM ev GROUP BY entity)
    SELECT w.entity, w.window_start_ms, {casts}, last.entity_max_ms
    FROM w JOIN last USING (entity) ORDER BY ALL
    """
    with duckdb.connect() as con:
        return con.sql(sql).fetch_arrow_table()


def _is_int_field(name: str | None) -> bool:
    return any(f.name == name and f.type == "int" for f in CONTRACTS["traffic"].fields)


def read_windows(output: Path | str, key_column: str = "entity") -> pa.Table:
    """A case's Parquet output in the job's columns (the detector column renamed to `entity`)."""
    cols = ", ".join(c for c in WINDOW_COLUMNS if c != "entity")
    with duckdb.connect() as con:
        return con.sql(f"SELECT {key_column} AS entity, {cols} "
                       f"FROM read_parquet('{output}/**/*.parquet', union_by_name=true)").fetch_arrow_table()


def _differs(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return (got is None) != (want is None)
    if isinstance(want, float) or isinstance(got, float):
        return not math.isclose(float(got), float(want), rel_tol=REL_TOL, abs_tol=REL_TOL)
    return got != want


def check_windows(emitted: pa.Table, expected: pa.Table, examples: int = 3) -> dict:
    """Compare a case's windows with the recompute (rules in the module docstring)."""
    want = {(r["entity"], r["window_start_ms"]): r for r in expected.to_pylist()}
    seen: set[tuple[str, int]] = set()
    duplicates, extra, mismatched = [], [], []
    for row in emitted.to_pylist():
        key = (row["entity"], row["window_start_ms"])
        if key in seen:
            duplicates.append(key)
            continue
        seen.add(key)
        ref = want.get(key)
        if ref is None:
            extra.append(key)
            continue
        bad = [a.name for a in AGGS if _differs(row[a.name], ref[a.name])]
        if bad:
            mismatched.append((key, {c: (row[c], ref[c]) for c in bad}))
    closed = [k for k, r in want.items() if k[1] + SIZE_MS + GRACE_MS <= r["entity_max_ms"]]
    missing = [k for k in closed if k not in seen]
    reasons = []
    if duplicates:
        reasons.append(f"{len(duplicates)} windows emitted more than once, e.g. {duplicates[:examples]}")
    if extra:
        reasons.append(f"{len(extra)} windows not in the recompute, e.g. {extra[:examples]}")
    if mismatched:
        reasons.append(f"{len(mismatched)} windows with other aggregates (got, want), e.g. {mismatched[:examples]}")
    if missing:
        reasons.append(f"{len(missing)} of {len(closed)} closed windows not emitted, e.g. {missing[:examples]}")
    return {"ok": not reasons, "reason": "; ".join(reasons), "emitted": emitted.num_rows,
            "expected_closed": len(closed), "expected_all": len(want), "duplicates": len(duplicates),
            "extra": len(extra), "mismatched": len(mismatched), "missing": len(missing)}
