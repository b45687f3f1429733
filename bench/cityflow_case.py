"""The cityflow cases: the real worker (`cityflow worker` child processes via
jobs.runner.WorkerProcess) on a fresh lake and its own consumer group, timed from the moment the
last partition was assigned (the ingest service logs each assignment, after recovering its state
from the lake; consumption starts right after) until the lake holds all N events.

Start-up and the group join are not timed. If the workers' assignments were not one generation
(a worker joined late and partitions moved), the clock starts at the first assignment instead, so
the rebalance is timed too (conservative; flagged in the result).
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from bench.procstat import ProcessSample, peak_rss_mb
from jobs.runner import WorkerProcess, wait_until_landed

POLL_S = 0.25
# "[2026-11-25 09:16:10,263] [23210] [INFO] assigned topic=city.traffic.v1 partition=0 ..."
_ASSIGNED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[INFO\] assigned topic=")


def assignment_times(log_path: Path) -> list[float]:
    """Wall-clock times (epoch s) of the ingest service's partition assignments in a worker log."""
    times = []
    for line in log_path.read_text(errors="replace").splitlines():
        m = _ASSIGNED.match(line)
        if m:  # the worker logs local time
            times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def consumed_total(worker: WorkerProcess) -> float:
    """The worker's cityflow_consumed_total summed over sources and partitions (0 if down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("cityflow_consumed_total{"))


def run_cityflow(
    bootstrap: str,
    expected: Mapping[str, int],
    workers: int,
    workdir: Path,
    broker_pid: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    sources: tuple[str, ...] | None = None,
    tag: str | None = None,
) -> dict:
    """Run `workers` cityflow workers (consuming `sources`, default all) until every expected
    event is landed; return the case's events/s (landed and consumed), CPU and peak RSS."""
    tag = tag or f"cityflow-{workers}w"
    lake = workdir / f"lake-{tag}"
    group = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    procs = [
        WorkerProcess(bootstrap, str(lake), workdir / f"{tag}-{i}.log", name=f"{tag}-{i}",
                      env={"CITYFLOW_GROUP_ID": group, **(env or {})},
                      sources=",".join(sources) if sources else None)
        for i in range(workers)
    ]
    total = sum(expected.values())
    try:
        for w in procs:
            w.start()
        for w in procs:
            w.wait_ready(timeout=120)
        cpu0 = {w.name: ProcessSample.of(w.proc.pid).cpu_s for w in procs}
        broker0 = ProcessSample.of(broker_pid).cpu_s if broker_pid else 0.0
        assigned = [t for w in procs for t in assignment_times(w.log_path)]
        if not assigned:
            raise RuntimeError(f"{tag}: no 'assigned topic=' line in the worker logs ({workdir})")
        one_generation = max(assigned) - min(assigned) < 2.0
        t0 = max(assigned) if one_generation else min(assigned)
        # consumed: from the workers' counters; landed: from the lake (files and footers)
        deadline = time.time() + timeout
        while sum(consumed_total(w) for w in procs) < total:
            if time.time() > deadline:
                raise TimeoutError(f"{tag}: consumed fewer than {total} events in {timeout}s")
            for w in procs:
                if not w.alive:
                    raise RuntimeError(f"{w.name} died:\n{w.log_tail()}")
            time.sleep(POLL_S)
        t_consumed = time.time()
        wait_until_landed(str(lake), expected, timeout=max(10.0, deadline - t_consumed), workers=procs)
        t_landed = time.time()
        cpu_s = sum(ProcessSample.of(w.proc.pid).cpu_s - cpu0[w.name] for w in procs)
        broker_cpu = ProcessSample.of(broker_pid).cpu_s - broker0 if broker_pid else None
        peak = [peak_rss_mb(w.proc.pid) for w in procs]
    finally:
        for w in procs:
            w.stop()
    return {
        "events": total,
        "seconds": t_landed - t0,
        "consumed_seconds": t_consumed - t0,
        "one_assignment_generation": one_generation,
        "cpu_s": cpu_s,
        "broker_cpu_s": broker_cpu,
        "peak_rss_mb": max(peak),
        "peak_rss_mb_per_worker": peak,
        "workers": workers,
        "sources": list(sources or expected),
    }
