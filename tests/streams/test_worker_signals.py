"""SIGTERM at any moment of a worker's life stops it cleanly: exit 0, both Kafka clients
closed, no traceback. Faust installs its signal handlers part-way through start-up and starts
the ingest service last, so there are three regimes: before Faust (the `cityflow` entry point
handles it), during Faust's start-up (the app stops; ingest must not start behind its back),
and running (Faust's graceful stop: flush and commit)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from jobs.runner import WorkerProcess
from streams.broker import city_topics, ensure_topics

pytestmark = pytest.mark.e2e

NOT_CLEAN = ("Traceback", "Unclosed AIOKafka", "never awaited")


@pytest.mark.parametrize("delay", [0.2, 0.9, 1.3, 1.8])
def test_sigterm_during_start_up_exits_zero_and_closes_clients(fresh_broker, tmp_path, delay):
    ensure_topics(fresh_broker, city_topics(4))
    worker = WorkerProcess(fresh_broker, str(tmp_path / "lake"), tmp_path / "w.log").start()
    time.sleep(delay)
    assert worker.alive, worker.log_tail()
    assert worker.stop() == 0, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert not [m for m in NOT_CLEAN if m in log], log[-3000:]


def test_sigterm_when_running_exits_zero_after_a_graceful_stop(fresh_broker, tmp_path):
    ensure_topics(fresh_broker, city_topics(4))
    worker = WorkerProcess(fresh_broker, str(tmp_path / "lake"), tmp_path / "w.log",
                           env={"CITYFLOW_GC_YOUNG_THRESHOLD": "12345"}).start()
    worker.wait_ready(timeout=60)
    assert worker.stop() == 0, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert "ingest stopped" in log
    assert "gc thresholds (12345, " in log  # the setting reaches the running worker
    assert not [m for m in NOT_CLEAN if m in log], log[-3000:]


@pytest.mark.parametrize(("command", "expected"), [(["worker"], 0), (["report"], 128 + signal.SIGTERM)])
def test_sigterm_before_a_command_runs_ends_it_through_the_entry_point(command, expected, tmp_path):
    # The imports take most of a second; the signal lands in them. A service stopped on request
    # exits 0; a one-shot job that did not finish says so with 128 + SIGTERM.
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *command], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.25)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == expected, err.decode()
    assert f"cityflow {command[0]}: stopped by SIGTERM" in err.decode()
