"""The Faust competitor cases (a child process each), one agent per source topic:

- naive: `async for value in stream`, orjson and per-event Python window accumulators, closed
  windows and the raw rows written to Parquet every FLUSH_ROWS events (the Faust tutorial way);
- take:  `async for values in stream.take(5000, within=1)`, orjson into a pyarrow table, window
  aggregates by pyarrow group_by, raw rows and aggregates written to Parquet (the careful way).

    python -m bench.faust_agents take --bootstrap H:P --max-events N --seconds 20 --out r.json

Timing starts at the first event any agent sees (after start-up and the group join) and ends
when `--max-events` were processed or `--seconds` passed; the result is written and the process
exits at once (nothing of a Faust shutdown is measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import faust
import orjson
import pyarrow as pa

from bench.procstat import SelfUsage
from bench.workload import PerEventWindows, decode_values, window_aggregates, write_parquet
from contracts.registry import CONTRACTS

FLUSH_ROWS = 50_000  # like cityflow's default flush_rows
TAKE_MAX, TAKE_WITHIN = 5000, 1.0


class Run:
    """Counts events over all agents and ends the process when the budget is spent."""

    def __init__(self, max_events: int, seconds: float, out: Path):
        self.max_events, self.seconds, self.out = max_events, seconds, out
        self.done = 0
        self.t0 = 0.0
        self.usage0 = SelfUsage.now()

    def count(self, n: int) -> None:
        if not self.done:
            self.t0, self.usage0 = time.perf_counter(), SelfUsage.now()
        self.done += n
        elapsed = time.perf_counter() - self.t0
        if self.done >= self.max_events or elapsed >= self.seconds:
            usage = SelfUsage.now()
            result = {"events": self.done, "seconds": elapsed, "cpu_s": usage.cpu_s - self.usage0.cpu_s,
                      "peak_rss_mb": usage.peak_rss_mb}
            self.out.write_text(json.dumps(result))
            logging.shutdown()
            os._exit(0)


def build_app(mode: str, bootstrap: str, run: Run, outdir: Path, app_id: str, group_timeout_s: float = 10.0) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(outdir / "faust-data"),
        web_enabled=False,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        # short group timeouts: see docs/architecture.md, broker quirk 2 (joins wait ~half of these)
        broker_session_timeout=group_timeout_s,
        broker_rebalance_timeout=group_timeout_s,
        broker_heartbeat_interval=1,
        # what a careful user tunes for batches of 5000: fetch and buffer that many at once
        broker_max_poll_records=TAKE_MAX if mode == "take" else None,
        stream_buffer_maxsize=2 * TAKE_MAX if mode == "take" else 4096,
    )
    for source, contract in CONTRACTS.items():
        topic = app.topic(contract.topic, value_serializer="raw", key_serializer="raw")
        agent = _naive_agent(source, run, outdir) if mode == "naive" else _take_agent(source, run, outdir)
        app.agent(topic, name=f"{mode}_{source}")(agent)
    return app


def _naive_agent(source: str, run: Run, outdir: Path):
    async def process(stream):  # type: ignore[no-untyped-def]
        windows = PerEventWindows(source)
        rows: list[dict] = []
        part = 0
        async for value in stream:
            record = orjson.loads(value)
            windows.add(record)
            rows.append(record)
            if len(rows) >= FLUSH_ROWS:
                part += 1
                write_parquet(outdir / f"raw/{source}-{part}.parquet", pa.Table.from_pylist(rows))
                closed = windows.drain()
                if closed:
                    write_parquet(outdir / f"windows/{source}-{part}.parquet", pa.Table.from_pylist(closed))
                rows = []
            run.count(1)
    return process


def _take_agent(source: str, run: Run, outdir: Path):
    async def process(stream):  # type: ignore[no-untyped-def]
        raw: list[pa.Table] = []
        aggs: list[pa.Table] = []
        buffered = part = 0
        async for values in stream.take(TAKE_MAX, within=TAKE_WITHIN):
            table = decode_values(source, values)
            raw.append(table)
            aggs.append(window_aggregates(source, table))
            buffered += len(values)
            if buffered >= FLUSH_ROWS:
                part += 1
                write_parquet(outdir / f"raw/{source}-{part}.parquet", pa.concat_tables(raw))
                write_parquet(outdir / f"windows/{source}-{part}.parquet", pa.concat_tables(aggs))
                raw, aggs, buffered = [], [], 0
            run.count(len(values))
    return process


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("naive", "take"))
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--max-events", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20.0, help="time budget after the first event")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--group-timeout", type=float, default=10.0, help="session and rebalance timeout, s")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    outdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-{args.mode}-"))
    outdir.mkdir(parents=True, exist_ok=True)
    run = Run(args.max_events, args.seconds, args.out)
    app = build_app(args.mode, args.bootstrap, run, outdir, f"bench-{args.mode}-{uuid.uuid4().hex[:8]}",
                    args.group_timeout)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
