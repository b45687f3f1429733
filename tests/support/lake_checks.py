"""Shared helpers for landing, compaction and retention tests: deterministic partitions of
Kafka records fed through PartitionSinks (no broker), and snapshots of what readers see —
through the lake API and through the real DuckDB warehouse views — to compare before/after."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from contracts import lake as L
from contracts.decode import DecodeLimits
from contracts.registry import CONTRACTS
from contracts.windows import WindowGeometry
from streams.batch import ProcessedBatch, RecordBatch, process_records
from streams.simulator import generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine
from warehouse.db import build_warehouse, prepare_connection

CONTRACT = CONTRACTS["traffic"]
SPEC = WindowGeometry(60, allowed_lateness_s=10, grace_s=120)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LIMITS = DecodeLimits(max_future=timedelta(minutes=5), max_age=timedelta(days=7))


class Records:
    """One traffic partition's records: `span` of event time ending 30 min before NOW, with
    records held back (corrections and late events) and some that are not JSON (quarantine)."""

    def __init__(self, partition: int = 0, n: int = 900, seed: int = 3, span: timedelta = timedelta(hours=2)):
        self.partition = partition
        start = NOW - timedelta(minutes=30) - span
        events = list(generate(seed=seed, rate=n / 30, seconds=30, speedup=span.total_seconds() / 30,
                               start=start, sources=("traffic",)))
        pairs = [(e.key.encode(), orjson.dumps(e.record)) for e in events]
        if partition:  # devices are keyed to one partition: give each partition its own ids
            pairs = [(k.replace(b"tdet-0", b"tdet-%d" % partition), v.replace(b'"tdet-0', b'"tdet-%d' % partition))
                     for k, v in pairs]
        rng = random.Random(seed)
        for i in range(len(pairs) - 350, 0, -29):  # hold back ~20 positions (correction) or ~300 (late)
            pairs.insert(i + rng.choice((20, 300)), pairs.pop(i))
        for i in range(5, len(pairs), 97):
            pairs[i] = (pairs[i][0], b'{"detector_id": "broken')
        self.keys = [k for k, _ in pairs]
        self.values = [v for _, v in pairs]
        self.n = len(pairs)

    def batch(self, start: int, stop: int) -> ProcessedBatch:
        rb = RecordBatch(CONTRACT.topic, self.partition, list(range(start, stop)),
                         self.keys[start:stop], self.values[start:stop])
        return process_records(CONTRACT, rb, now=NOW, limits=LIMITS)

    def sink(self, lake: L.Lake, writer: str = "w") -> PartitionSink:
        return PartitionSink(lake, CONTRACT, self.partition, WindowEngine(SPEC, "traffic", self.partition),
                             writer=writer)

    def feed(self, sink: PartitionSink, start: int, batch_size: int, flush_every: int = 2) -> None:
        """Deliver records[start:] in batches, flushing every `flush_every` batches and at the end."""
        for k, i in enumerate(range(start, self.n, batch_size), 1):
            sink.add(self.batch(i, min(i + batch_size, self.n)))
            if k % flush_every == 0:
                sink.flush()
        sink.flush()

    def land(self, lake: L.Lake, batch_size: int = 100, flush_every: int = 1) -> PartitionSink:
        """Land every record from scratch (many small files: one flush per batch by default)."""
        sink = self.sink(lake)
        self.feed(sink, sink.recover(), batch_size, flush_every)
        return sink


# -- what readers see -----------------------------------------------------------------------
def read_live(lake: L.Lake, table: str, source: str = "traffic") -> pd.DataFrame:
    files = list(lake.list_files(f"{table}/source={source}"))
    if not files:
        return pd.DataFrame()
    return pa.concat_tables([lake.read_table(f) for f in files], promote_options="permissive").to_pandas()


def latest(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The latest version of each window (what the warehouse views show), emitted_at aside.
    Also checks a version is never landed twice with different content."""
    frame = frame.drop(columns=["emitted_at"]).drop_duplicates()
    assert not frame.duplicated(key + ["version"]).any(), "one window version with two contents"
    frame = frame.sort_values(key + ["version"]).drop_duplicates(key, keep="last")
    return frame.reset_index(drop=True)


def lake_state(root: Path | str | L.Lake) -> dict[str, pd.DataFrame]:
    """What a reader sees through the lake API, normalised: raw by offset, quarantine offsets,
    the latest version of every window, late events. (Which intermediate versions a window
    gets may depend on batch boundaries, which a restart changes; the latest may not.)"""
    lake = root if isinstance(root, L.Lake) else L.Lake(str(root))
    raw = read_live(lake, L.RAW).sort_values(["kafka_partition", "kafka_offset"]).reset_index(drop=True)
    quarantine = read_live(lake, L.QUARANTINE)[["kafka_partition", "kafka_offset", "reason"]]
    quarantine = quarantine.sort_values(["kafka_partition", "kafka_offset"]).reset_index(drop=True)
    windows = latest(read_live(lake, L.WINDOWS), ["entity", "window_start"])
    districts = latest(read_live(lake, L.DISTRICT_WINDOWS), ["district", "window_start", "kafka_partition"])
    late = read_live(lake, L.LATE_EVENTS).sort_values(["kafka_partition", "kafka_offset", "window_start"])
    return {"raw": raw, "quarantine": quarantine, "windows": windows, "districts": districts,
            "late": late.reset_index(drop=True)}


def view_frames(lake_root: str, db_path: Path) -> dict[str, pd.DataFrame]:
    """Every warehouse view (real DuckDB views over the lake), rows in a canonical order;
    emitted_at (wall clock of emission) and the anomalies' detected_at (the watermark after
    the batch that raised an alert: batching-dependent, so a crash and replay may change it)
    left out, and data_freshness, which depends on when it is read."""
    views = build_warehouse(lake_root, db_path)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        prepare_connection(con, lake_root)  # as warehouse.db.connect: UTC, a remote lake's filesystem
        out = {}
        for v in views:
            if v == "data_freshness":  # a function of now() (lag, rows of the last hour)
                continue
            cols = [c[0] for c in con.execute(f'DESCRIBE "{v}"').fetchall()]
            unstable = [c for c in ("emitted_at", "detected_at") if c in cols]
            select = f"* EXCLUDE ({', '.join(unstable)})" if unstable else "*"
            df = con.execute(f'SELECT {select} FROM "{v}"').df()
            for c in df.columns:  # BLOBs (quarantined payloads) come back as bytearray
                if df[c].dtype == object:
                    df[c] = df[c].map(lambda x: bytes(x) if isinstance(x, bytearray) else x)
            exact = [c for c in df.columns if df[c].dtype.kind != "f"]
            floats = [c for c in df.columns if df[c].dtype.kind == "f"]
            out[v] = df.sort_values(exact + floats, na_position="first").reset_index(drop=True) if len(df) else df
        return out
    finally:
        con.close()


def assert_views_equal(actual: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame], where: str = "") -> None:
    """Same views, same rows; floats equal up to summation order (DuckDB sums in parallel)."""
    assert actual.keys() == expected.keys()
    for v, e in expected.items():
        a = actual[v]
        assert len(a) == len(e), f"{where}: view {v} has {len(a)} rows, expected {len(e)}"
        assert list(a.columns) == list(e.columns), f"{where}: view {v} columns differ"
        for c in e.columns:
            if e[c].dtype.kind == "f":
                ok = np.isclose(a[c].to_numpy(float), e[c].to_numpy(float), rtol=1e-12, atol=1e-12, equal_nan=True)
                assert ok.all(), f"{where}: view {v} column {c} differs in {(~ok).sum()} rows"
            else:
                assert a[c].equals(e[c]) or (a[c].isna() == e[c].isna()).all() and \
                    (a[c][a[c].notna()] == e[c][e[c].notna()]).all(), f"{where}: view {v} column {c} differs"


def data_files(root: Path) -> list[str]:
    """Every visible Parquet file under the table directories (superseded ones too)."""
    lake = L.Lake(str(root))
    return sorted(f for t in L.TABLES for f in lake.list_files(t, include_superseded=True))
