"""The memory soak (`--soak-minutes M`, off by default): one cityflow worker under a steady
produce rate for warm-up + M minutes, its RSS sampled every few seconds; the result is the
growth of the last minute's mean RSS over the first minute's after warm-up (target: <= 10 %).

City time runs `speedup` times faster than the wall clock so that the widest window horizon
(lighting: 15 min + 1 min lateness + 30 min grace of event time) passes within the warm-up:
only then is the open-window state at its steady size.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.latency import live_worker, start_producer
from bench.procstat import ProcessSample, peak_rss_mb

SAMPLE_S = 5.0


def rss_growth(samples: list[tuple[float, float]], warmup_s: float) -> dict:
    """Mean RSS of the first and the last minute after warm-up, and the growth between them."""
    after = [(t, r) for t, r in samples if t >= warmup_s]
    if len(after) < 2:
        return {"first_min_mb": None, "last_min_mb": None, "growth_pct": None}
    end = after[-1][0]
    first = [r for t, r in after if t < warmup_s + 60] or [after[0][1]]
    last = [r for t, r in after if t > end - 60] or [after[-1][1]]
    a, b = statistics.mean(first), statistics.mean(last)
    return {"first_min_mb": a, "last_min_mb": b, "growth_pct": (b - a) / a * 100}


def run_soak(workdir: Path, minutes: float, warmup_minutes: float = 2.0, rate: float = 2000,
             speedup: float = 30.0, env: dict[str, str] | None = None) -> dict:
    """Run the worker for warm-up + `minutes` under `rate` events/s; report RSS over time."""
    seconds = (warmup_minutes + minutes) * 60
    samples: list[tuple[float, float]] = []
    with live_worker(workdir, "soak", env) as (broker, worker, _lake):
        producer = start_producer(broker.bootstrap, rate, seconds, speedup,
                                  workdir / "soak-counts.json", workdir / "soak-producer.log")
        t0 = time.monotonic()
        while producer.poll() is None:
            samples.append((time.monotonic() - t0, ProcessSample.of(worker.proc.pid).rss_mb))
            time.sleep(SAMPLE_S)  # sampling period, not synchronisation
        peak = peak_rss_mb(worker.proc.pid)
        if producer.returncode != 0:
            raise RuntimeError(f"soak producer failed ({producer.returncode}); see {workdir / 'soak-producer.log'}")
    return {
        "minutes": minutes,
        "warmup_minutes": warmup_minutes,
        "rate": rate,
        "speedup": speedup,
        "peak_rss_mb": peak,
        **rss_growth(samples, warmup_minutes * 60),
        "samples": [[round(t, 1), round(r, 1)] for t, r in samples],
    }
