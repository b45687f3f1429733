"""kill -9 a real worker at random moments while events are produced, restart it each time,
let it finish: the lake holds every produced event exactly once (by partition and offset, with
the produced key and event time), the windows equal a recompute, the accounts balance.

The kill moments come from a seeded RNG and are printed (pytest -s shows them; a failure
message repeats them): CITYFLOW_CRASH_SEED=<n> replays a schedule."""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from jobs.runner import WorkerProcess, wait_for, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.simulator import generate
from tests.support.e2e_checks import (
    FAST_GROUP,
    TrackedProducer,
    assert_exactly_once,
    assert_windows_match_recompute,
    replayed_window_rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILLS = 7


def test_kill_9_at_random_moments_loses_and_doubles_nothing(fresh_broker, tmp_path):
    seed = int(os.environ.get("CITYFLOW_CRASH_SEED", random.SystemRandom().randrange(10_000)))
    rng = random.Random(seed)
    schedule: list[str] = [f"seed={seed}"]
    print(f"\ncrash test seed={seed} (CITYFLOW_CRASH_SEED={seed} replays this schedule)")
    ensure_topics(fresh_broker, city_topics(4))
    events = list(generate(seed=seed, rate=600, seconds=60, speedup=120,
                           start=datetime.now(UTC) - timedelta(hours=3)))
    producer = TrackedProducer(fresh_broker, events, seconds=90)
    lake = str(tmp_path / "lake")
    env = {**FAST_GROUP, "CITYFLOW_FLUSH_SECONDS": "0.5", "CITYFLOW_FLUSH_ROWS": "1500"}
    producer.start()
    t0 = time.monotonic()
    kills_while_producing = 0
    worker = None
    try:
        for i in range(KILLS):
            worker = WorkerProcess(fresh_broker, lake, tmp_path / f"worker-{i}.log", env=env, name=f"worker-{i}")
            worker.start()
            if rng.random() < 0.3:  # during start-up, group join or recovery
                delay, phase = rng.uniform(0.5, 6.0), "after start"
            else:  # while consuming and flushing
                worker.wait_ready(timeout=60)
                delay, phase = rng.uniform(0.2, 3.0), "after ready"
            deadline = time.monotonic() + delay
            wait_for(lambda d=deadline: time.monotonic() >= d, delay + 5, "the kill moment", [worker], interval=0.05)
            worker.kill()
            producing = producer.is_alive()
            kills_while_producing += producing
            schedule.append(f"kill {i + 1} at {delay:.2f}s {phase} (t={time.monotonic() - t0:.1f}s, "
                            f"sent {producer.sent}/{len(events)}{'' if producing else ', producer done'})")
            print(schedule[-1])
        worker = WorkerProcess(fresh_broker, lake, tmp_path / "worker-final.log", env=env, name="worker-final").start()
        # The last killed worker may have landed everything already; the final one must still
        # recover and join, or the wait below would prove nothing about it.
        worker.wait_ready(timeout=60)
        produced = producer.produced()
        wait_until_landed(lake, producer.counts(), timeout=90, workers=[worker])
        assert worker.stop() == 0, worker.log_tail()
        checked = assert_exactly_once(lake, produced, tmp_path / "w.duckdb")
        windows = assert_windows_match_recompute(lake, produced, tmp_path / "w.duckdb")
        replayed = replayed_window_rows(lake)
    except BaseException as exc:
        raise AssertionError("kill schedule:\n  " + "\n  ".join(schedule)) from exc
    finally:
        if worker is not None:
            worker.kill()
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    rolled = sum(int(n) for n in re.findall(r"completed (\d+) committed flush", logs))
    dropped = logs.count("dropping uncommitted staged flush")
    print(f"{KILLS} kills ({kills_while_producing} while producing), {sum(checked.values())} events "
          f"checked exactly once {checked}, {windows} windows equal the recompute ({replayed} window "
          f"rows landed twice by replays, deduplicated by the views); recoveries "
          f"completed {rolled} flush(es) killed after their commit and dropped {dropped} killed before it")
    assert kills_while_producing >= 5, schedule
