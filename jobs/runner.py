"""Run stream workers as child processes and wait on the lake: shared by `cityflow demo`, the
benchmark harness and the end-to-end tests."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from contracts.lake import Lake
from streams.broker import free_port
from warehouse.accounting import landed_by_source

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkerError(RuntimeError):
    """A worker process died or did not become ready; the message includes its log tail."""


class WorkerProcess:
    """One `cityflow worker` child process with its own web port and log file."""

    def __init__(self, bootstrap: str, lake: str, log_path: Path, env: Mapping[str, str] | None = None,
                 sources: str | None = None, name: str = "worker"):
        self.name = name
        self.web_port = free_port()
        self.log_path = Path(log_path)
        self.env = dict(os.environ)
        self.env.update({
            "CITYFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "CITYFLOW_LAKE": lake,
            "CITYFLOW_WEB_PORT": str(self.web_port),
            "CITYFLOW_DATADIR": str(self.log_path.parent / f".{name}-data"),
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env or {})
        self.args = [sys.executable, "-m", "jobs.cli", "worker"] + (["--sources", sources] if sources else [])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict:
        """The worker's /ready document ({} while its web server is not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/ready", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 60) -> dict:
        """Poll /ready until the worker has been assigned partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise WorkerError(f"{self.name} exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}")
            st = self.status()
            if st.get("ready"):
                return st
            time.sleep(0.2)
        raise WorkerError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30) -> int | None:
        """Graceful stop (SIGTERM: flush and commit); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no flush, no commit (the landing protocol must cope)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def pause(self) -> None:
        """SIGSTOP: the worker freezes (no heartbeats) but keeps its state - a stale owner
        once the group gives its partitions to another worker."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def partitions(self) -> set[str]:
        """The `topic:partition`s this worker owns now (empty while it is not ready)."""
        return set(self.status().get("partitions", []))


def wait_for(condition: Callable[[], T | None], timeout: float, what: str,
             workers: Iterable[WorkerProcess] = (), interval: float = 0.2) -> T:
    """Poll `condition` until it returns something truthy and return that; raise TimeoutError
    naming `what` after `timeout` seconds, or WorkerError as soon as a worker has died."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for w in workers:
            if not w.alive:
                raise WorkerError(f"{w.name} died while waiting for {what}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s")
        time.sleep(interval)


def wait_until_landed(
    lake_root: str,
    expected: Mapping[str, int],
    timeout: float = 120,
    workers: list[WorkerProcess] | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Poll the lake until raw + quarantined rows per source reach the expected counts."""
    lake = Lake(lake_root)
    deadline = time.monotonic() + timeout
    landed: dict[str, int] = {}
    while time.monotonic() < deadline:
        landed = landed_by_source(lake)
        if progress:
            progress(landed)
        if all(landed.get(s, 0) >= n for s, n in expected.items()):
            return landed
        for w in workers or ():
            if not w.alive:
                raise WorkerError(f"{w.name} died while landing:\n{w.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"landed {landed} of expected {dict(expected)} after {timeout}s")


def wait_for_district_stage(lake_root: str, kinds: Iterable[str], partitions: int, timeout: float = 120,
                            workers: Iterable[WorkerProcess] = ()) -> None:
    """Poll until the workers' district stage (streams/district_stage.py) has evaluated, landed
    and sent every window of `kinds` that every partition has closed. Call it once everything
    was landed: partitions that landed nothing are taken to be empty (as the worker found)."""
    from streams.district_stage import DistrictStage, StageHeldBack, unlanded_partitions

    stage = DistrictStage(Lake(lake_root), partitions, tuple(kinds))

    def caught_up() -> bool:
        stage.empty = set(unlanded_partitions(stage.lake, stage.kinds, partitions))
        for kind in stage.kinds:
            try:
                end, due, unsent = stage.progress(kind)
            except StageHeldBack:
                return False
            if end is None or end < due or unsent:
                return False
        return True

    wait_for(caught_up, timeout, f"the district stage ({', '.join(stage.kinds)}) to catch up", workers, interval=0.5)
