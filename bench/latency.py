"""The latency case: a cityflow worker on a broker of its own, a simulator producing at a steady
rate (speedup 1: live data), and the time from each event's produce to the moment it is
queryable in DuckDB, as p50/p99 over every event.

- produced: the Kafka record timestamp (CreateTime, set by kafka-python at send);
- queryable: when the raw Parquet file holding the record's offset appears in the lake listing
  (files are renamed into place atomically, so from then on every DuckDB scan of the glob sees
  it). The lake is listed every 0.1 s; the offset range is in each file's name. When a flush is
  split over two hour directories the later of its files counts.

It also counts the Parquet files the run landed (every table) as files per hour, and times a
DuckDB scan of the raw table before and after `compact` merged them (issue 17: a 1 s flush
makes many small files; compaction is what keeps queries over them fast).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.settings import load_settings
from jobs.compaction import compact
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import EmbeddedBroker, city_topics, ensure_topics

WATCH_INTERVAL_S = 0.1
# issue 17: p99 produce -> queryable within half a second of the flush interval (1.5 s at 1 s)
TARGET_OVER_FLUSH_S = 0.5


class LakeWatcher:
    """Remembers when each raw file of the lake was first listed (wall clock)."""

    def __init__(self, lake_dir: Path):
        self.raw_dir = Path(lake_dir) / L.RAW
        self.seen: dict[str, float] = {}

    def poll(self) -> None:
        now = time.time()
        for dirpath, _, files in os.walk(self.raw_dir):
            for f in files:
                if f.endswith(".parquet") and not f.startswith(".") and f not in self.seen:
                    self.seen[f] = now

    def visible_ranges(self) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per topic partition: sorted first offsets, last offsets and visibility times."""
        by_range: dict[tuple[str, int, int, int], float] = {}
        for name, t in self.seen.items():
            parsed = L.parse_data_file_name(name)
            if parsed is None:
                continue
            key = (parsed.topic, parsed.partition, parsed.first, parsed.last)
            by_range[key] = max(t, by_range.get(key, t))
        grouped: dict[tuple[str, int], list[tuple[int, int, float]]] = defaultdict(list)
        for (topic, part, first, last), t in by_range.items():
            grouped[(topic, part)].append((first, last, t))
        out = {}
        for tp, rows in grouped.items():
            rows.sort()
            arr = np.array(rows, dtype=np.float64)
            out[tp] = (arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2])
        return out


async def _record_times(bootstrap: str, total: int) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """(offsets, produce time in s) per topic partition, read back from the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        await consumer.topics()  # fetches cluster metadata
        tps = [TopicPartition(c.topic, p) for c in CONTRACTS.values()
               for p in sorted(consumer.partitions_for_topic(c.topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        offsets: dict[tuple[str, int], list[int]] = defaultdict(list)
        stamps: dict[tuple[str, int], list[int]] = defaultdict(list)
        n = 0
        deadline = time.monotonic() + 120
        while n < total and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                offsets[(tp.topic, tp.partition)].extend(r.offset for r in records)
                stamps[(tp.topic, tp.partition)].extend(r.timestamp for r in records)
                n += len(records)
        return {k: (np.asarray(offsets[k]), np.asarray(stamps[k]) / 1000.0) for k in offsets}
    finally:
        await consumer.stop()


def latencies(watcher: LakeWatcher, produced: Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Produce -> visible seconds of every record that became visible, and how many did not."""
    ranges = watcher.visible_ranges()
    out, missing = [], 0
    for tp, (offsets, stamps) in produced.items():
        if tp not in ranges:
            missing += len(offsets)
            continue
        firsts, lasts, seen = ranges[tp]
        i = np.searchsorted(firsts, offsets, side="right") - 1
        ok = (i >= 0) & (offsets <= lasts[np.clip(i, 0, None)])
        missing += int((~ok).sum())
        out.append(seen[i[ok]] - stamps[ok])
    return (np.concatenate(out) if out else np.array([])), missing


@contextmanager
def live_worker(workdir: Path, name: str, env: Mapping[str, str] | None = None) -> Iterator[tuple[EmbeddedBroker, WorkerProcess, Path]]:
    """A fresh broker with the city topics, and one ready cityflow worker on a fresh lake."""
    workdir.mkdir(parents=True, exist_ok=True)
    lake = workdir / f"lake-{name}"
    with EmbeddedBroker().start(log_path=workdir / f"tansu-{name}.log") as broker:
        partitions = int((env or {}).get("CITYFLOW_PARTITIONS") or load_settings().partitions)
        ensure_topics(broker.bootstrap, city_topics(partitions))
        worker = WorkerProcess(broker.bootstrap, str(lake), workdir / f"{name}-worker.log", name=f"{name}-worker",
                               env={"CITYFLOW_GROUP_ID": f"bench-{name}-{uuid.uuid4().hex[:8]}", **(env or {})})
        try:
            worker.start()
            worker.wait_ready(timeout=120)
            yield broker, worker, lake
        finally:
            worker.stop()


def start_producer(bootstrap: str, rate: float, seconds: float, speedup: float, out: Path, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "bench.producer", "--bootstrap", bootstrap, "--rate", str(rate),
            "--seconds", str(seconds), "--speedup", str(speedup), "--out", str(out)]
    with open(log, "ab") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)


def run_latency(workdir: Path, rate: float, seconds: float, env: Mapping[str, str] | None = None) -> dict:
    """Produce `rate` events/s for `seconds` into a live worker (CITYFLOW_* `env` on top of the
    defaults); p50/p99 produce -> queryable."""
    env = dict(env or {})
    flush_s = float(env.get("CITYFLOW_FLUSH_SECONDS") or load_settings().flush_seconds)
    with live_worker(workdir, "latency", env) as (broker, worker, lake):
        watcher = LakeWatcher(lake)
        counts_path = workdir / "latency-counts.json"
        producer = start_producer(broker.bootstrap, rate, seconds, 1.0, counts_path, workdir / "latency-producer.log")
        while producer.poll() is None:
            watcher.poll()
            time.sleep(WATCH_INTERVAL_S)
        if producer.returncode != 0:
            raise RuntimeError(f"latency producer failed ({producer.returncode}); see {workdir / 'latency-producer.log'}")
        counts = json.loads(counts_path.read_text())
        total = sum(counts.values())
        deadline = time.monotonic() + flush_s + 60
        landed: dict[str, int] = {}
        while time.monotonic() < deadline:
            watcher.poll()
            landed = wait_until_landed(str(lake), {}, timeout=1)
            if all(landed.get(s, 0) >= n for s, n in counts.items()):
                break
            time.sleep(WATCH_INTERVAL_S)
        watcher.poll()
        produced = asyncio.run(_record_times(broker.bootstrap, total))
        flushing = flush_breakdown(worker.web_port, seconds)
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/raw/*/*/*/[!.]*.parquet')").fetchall()[0][0]
    lat, missing = latencies(watcher, produced)
    files = files_and_compaction(Path(lake), seconds)
    return {
        "events": total,
        "rate": rate,
        "seconds": seconds,
        "flush_seconds": flush_s,
        "p50_s": float(np.percentile(lat, 50)) if len(lat) else None,
        "p90_s": float(np.percentile(lat, 90)) if len(lat) else None,
        "p99_s": float(np.percentile(lat, 99)) if len(lat) else None,
        "max_s": float(lat.max()) if len(lat) else None,
        "measured": len(lat),
        "not_visible": missing,
        "duckdb_rows": int(rows),
        "target_p99_s": flush_s + TARGET_OVER_FLUSH_S,
        "flushing": flushing,
        **files,
    }


def flush_breakdown(web_port: int, seconds: float) -> dict:
    """From the worker's own /metrics: flushes (one per partition landing), their mean time and
    the share of the run's wall time the consume loop spent landing (it does not fetch then)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError as exc:
        return {"error": str(exc)}
    total, count = 0.0, 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "cityflow_flush_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return {"flushes": int(count), "flush_mean_ms": 1000 * total / count if count else None,
            "flushes_per_s": count / seconds, "busy_share": total / seconds}


def _landed_files(lake: Path) -> int:
    """Published data files of every table (not staged, hidden or bookkeeping ones)."""
    return sum(1 for p in lake.rglob("*.parquet")
               if not p.name.startswith(".") and not p.relative_to(lake).parts[0].startswith("_"))


def _time_raw_scan(lake: Path, repeat: int = 3) -> float:
    """Median seconds of an aggregate over the raw table (through the compaction-aware scan)."""
    sql = f"SELECT source, count(*) FROM {L.live_scan_sql(f'{lake}/raw/*/*/*/*.parquet', ', hive_partitioning = true')} GROUP BY ALL"
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        duckdb.sql(sql).fetchall()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def files_and_compaction(lake: Path, seconds: float) -> dict:
    """Files the run landed (all tables) and per hour at that pace; a raw scan's time before and
    after compacting every committed file."""
    files = _landed_files(lake)
    before = _time_raw_scan(lake)
    report = compact(L.Lake(str(lake)), older_than=timedelta(0), now=datetime.now(UTC) + timedelta(days=1))
    after = _time_raw_scan(lake)
    return {"files": files, "files_per_hour": files / seconds * 3600, "files_after_compaction": _landed_files(lake),
            "raw_scan_s": before, "raw_scan_compacted_s": after, "compaction": str(report)[:300]}
