"""The Quix Streams case (a child process): the traffic window job of bench/peer_job.py written
the way Quix's documentation shows it: an `Application`, the topic with a JSON deserializer and a
timestamp extractor reading `ts`, `tumbling_window(60 s, grace).agg(...).final()` and its
`LocalFileSink` in Parquet format (one file per topic partition and checkpoint; the detector is
its `_key` column, which needs the default bytes key deserializer: with "str" keys Quix 3.28's
ParquetFormat writes `str(item)` there instead of the key).

    python -m bench.quix_case --bootstrap H:P --events N --workdir D --out result.json

The aggregates are Quix's own (`Count`, `Sum`, `Mean`, `Max`, `Min`); the 95th percentile is
`Collect` of the speeds, finished after `.final()` (Quix has no percentile aggregator).
Settings a careful user sets on this broker: cityflow's short group timeouts (Tansu's joins wait
about half of them, so `max.poll.interval.ms`, librdkafka's rebalance timeout, too), and the input
topic created with Kafka's default configs (bench/peer_job.py). Everything else is the default:
changelog topics for the window state, at-least-once, a checkpoint every 5 s.

Timing starts at the first message and ends when `app.run()` has returned after the last of the
N events (the final checkpoint, which flushes the sink, is inside the timed span).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Collect, Count, Max, Mean, Min, Sum
from quixstreams.sinks.community.file.formats import ParquetFormat
from quixstreams.sinks.community.file.local import LocalFileSink

from bench.peer_job import AGGS, GRACE_MS, SIZE_MS, TOPIC, event_ms, quantile_linear
from bench.procstat import SelfUsage

OUTPUT_DIR = "windows"  # relative: Quix's FileSink refuses '-' and other characters in paths


def quix_aggregations() -> dict[str, Any]:
    """The traffic aggregates as Quix aggregators (p95: the collected values)."""
    kinds = {"count": lambda f: Count(), "sum": Sum, "mean": Mean, "max": Max, "min": Min, "p95": Collect}
    return {a.name: kinds[a.fn](a.field) for a in AGGS}


def finish_window(window: dict[str, Any]) -> dict[str, Any]:
    """A closed Quix window as the job's row: window start, the aggregates, p95 from the values."""
    row: dict[str, Any] = {"window_start_ms": window["start"]}
    for a in AGGS:
        v = window[a.name]
        row[a.name] = quantile_linear([x for x in v if x is not None]) if a.fn == "p95" else v
    return row


def extract_ts(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return event_ms(value)


class Progress:
    """Counts input events; starts the clock at the first one and stops the app after the last."""

    def __init__(self, app: Application, events: int):
        self.app, self.events, self.done = app, events, 0
        self.t0 = 0.0
        self.usage0 = SelfUsage.now()

    def __call__(self, value: Any) -> None:
        if not self.done:
            self.t0, self.usage0 = time.perf_counter(), SelfUsage.now()
        self.done += 1
        if self.done == self.events:
            self.app.stop()


def run(bootstrap: str, events: int, workdir: Path, group_timeout_s: float) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    timeout_ms = int(group_timeout_s * 1000)
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=str(workdir / "state"),
        loglevel="WARNING",
        consumer_extra_config={"session.timeout.ms": timeout_ms, "max.poll.interval.ms": timeout_ms,
                               "heartbeat.interval.ms": 1000},
    )
    topic = app.topic(TOPIC, value_deserializer="json", timestamp_extractor=extract_ts)
    sdf = app.dataframe(topic)
    progress = Progress(app, events)
    sdf = sdf.update(progress)
    sdf = sdf.tumbling_window(duration_ms=SIZE_MS, grace_ms=GRACE_MS).agg(**quix_aggregations()).final()
    sdf = sdf.apply(finish_window)
    sdf.sink(LocalFileSink(directory=OUTPUT_DIR, format=ParquetFormat(compression="zstd")))
    app.run()
    seconds = time.perf_counter() - progress.t0
    usage = SelfUsage.now()
    if progress.done < events:
        raise RuntimeError(f"quix: the app stopped after {progress.done} of {events} events")
    return {"events": progress.done, "seconds": seconds, "cpu_s": usage.cpu_s - progress.usage0.cpu_s,
            "peak_rss_mb": usage.peak_rss_mb, "output": str(workdir / OUTPUT_DIR), "key_column": "_key"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--events", type=int, required=True, help="traffic events preloaded")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--group-timeout", type=float, default=10.0, help="session and rebalance timeout, s")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.bootstrap, args.events, args.workdir.resolve(), args.group_timeout)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
