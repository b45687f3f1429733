"""The Bytewax case (a child process): the traffic window job of bench/peer_job.py as a Bytewax
dataflow, the way its documentation builds one: `KafkaSource` (from the beginning, `tail=False`
so the flow ends at the end of the preloaded partitions) → JSON → `key_on` the detector →
`fold_window` with an `EventClock` on `ts` and a 60 s `TumblingWindower` → a Parquet sink.

    python -m bench.bytewax_case --bootstrap H:P --events N --workdir D --out result.json

Bytewax has no Parquet sink of its own; `ParquetSink` is the `DynamicSink` its docs describe for
custom outputs, buffering rows into files of FLUSH_ROWS windows (one per write would make tiny
files). One worker (`cli_main(flow, workers_per_process=1)`, what `python -m bytewax.run`
starts by default), like cityflow's one-worker case; Bytewax reads partitions itself, without a
consumer group.

Timing starts at the first message and ends when the dataflow has returned (the sink closed).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from confluent_kafka import OFFSET_BEGINNING

from bench.peer_job import GRACE_MS, KEY, SIZE_MS, TOPIC, WindowAccumulator
from bench.procstat import SelfUsage

FLUSH_ROWS = 50_000
ALIGN_TO = datetime(2000, 1, 1, tzinfo=UTC)  # windows start on whole minutes, like cityflow's


class ParquetSinkPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, directory: Path, worker_index: int):
        self.directory, self.worker_index = directory, worker_index
        self.rows: list[dict[str, Any]] = []
        self.part = 0

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self.rows.extend(items)
        if len(self.rows) >= FLUSH_ROWS:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"w{self.worker_index}-{self.part:06d}.parquet"
        pq.write_table(pa.Table.from_pylist(self.rows), path, compression="zstd")
        self.rows, self.part = [], self.part + 1


class ParquetSink(DynamicSink[dict[str, Any]]):
    """Closed windows as Parquet files, one series of files per worker."""

    def __init__(self, directory: Path):
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> ParquetSinkPartition:
        return ParquetSinkPartition(self.directory, worker_index)


class Progress:
    """Counts input events; starts the clock and the CPU reading at the first one."""

    def __init__(self) -> None:
        self.done = 0
        self.t0 = 0.0
        self.usage0 = SelfUsage.now()

    def decode(self, msg: Any) -> dict[str, Any]:
        if not self.done:
            self.t0, self.usage0 = time.perf_counter(), SelfUsage.now()
        self.done += 1
        return json.loads(msg.value)


def event_time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["ts"])


def window_row(key_window: tuple[str, tuple[int, WindowAccumulator]]) -> dict[str, Any]:
    entity, (window_id, acc) = key_window
    start = ALIGN_TO + timedelta(milliseconds=window_id * SIZE_MS)
    return {"entity": entity, "window_start_ms": round(start.timestamp() * 1000), **acc.result()}


def build_flow(bootstrap: str, outdir: Path, progress: Progress) -> Dataflow:
    flow = Dataflow("bench_traffic_windows")
    msgs = op.input("kafka", flow, KafkaSource([bootstrap], [TOPIC], tail=False, starting_offset=OFFSET_BEGINNING))
    records = op.map("decode", msgs, progress.decode)
    keyed = op.key_on("by_detector", records, lambda r: r[KEY])
    clock = win.EventClock(event_time, wait_for_system_duration=timedelta(milliseconds=GRACE_MS))
    windower = win.TumblingWindower(length=timedelta(milliseconds=SIZE_MS), align_to=ALIGN_TO)
    windows = win.fold_window("windows", keyed, clock, windower, WindowAccumulator,
                              WindowAccumulator.add, WindowAccumulator.merge)
    op.output("parquet", op.map("row", windows.down, window_row), ParquetSink(outdir))
    return flow


def run(bootstrap: str, events: int, workdir: Path) -> dict:
    outdir = workdir / "windows"
    progress = Progress()
    cli_main(build_flow(bootstrap, outdir, progress), workers_per_process=1)
    seconds = time.perf_counter() - progress.t0
    usage = SelfUsage.now()
    if progress.done < events:
        raise RuntimeError(f"bytewax: the flow ended after {progress.done} of {events} events "
                           "(end of partition reported early?)")
    return {"events": progress.done, "seconds": seconds, "cpu_s": usage.cpu_s - progress.usage0.cpu_s,
            "peak_rss_mb": usage.peak_rss_mb, "output": str(outdir), "key_column": "entity"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--events", type=int, required=True, help="traffic events preloaded")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--group-timeout", type=float, default=10.0, help="unused: Bytewax joins no group")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.bootstrap, args.events, args.workdir.resolve())
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
