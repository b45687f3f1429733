"""`cityflow schedule`: run the configured report exports on a cron schedule, catch up the
periods missed while it was down exactly once, and never export one period twice at a time.

    >>> jobs = load_jobs(Path("cityflow-schedule.toml"))     # or DEFAULT_JOBS
    >>> scheduler = ExportScheduler(jobs, tz, exporter)
    >>> scheduler.run_due(now)          # what --once does, and what every cron firing does
    >>> scheduler.serve()               # APScheduler, one cron trigger per job

Exactly once comes from the export directory, not from the scheduler's memory: a period is done
when its directory holds a manifest (`Exporter.is_done`), so every firing (and a start after
downtime) exports each *completed* period of the last `catch_up` periods that is not done yet,
oldest first. The times the scheduler was down are not remembered anywhere, they are simply the
periods without a manifest. Two schedulers on one lake (or one scheduler and a manual run) are
kept apart by a lock per period (`PeriodLock`: `fcntl.flock` on a file in the export directory,
released by the kernel if the process dies): the loser skips the period, and a winner re-checks
"done" after taking the lock. A period whose data is not complete yet is refused by the export
and retried at the next firing; a failing export is logged and retried, it never stops the
other jobs.

APScheduler (3.x) does the timing: cron expressions with a time zone and DST rules, coalescing
of firings missed while a long export ran, one instance per job. We keep no job store: the
export directory is the state, so nothing has to be migrated or shared between schedulers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jobs.periods import PERIOD_KINDS, Period, completed_periods

log = logging.getLogger(__name__)

FORMATS = ("html", "csv", "parquet")
DEFAULT_CATCH_UP: dict[str, int] = {"day": 7, "week": 4, "month": 3}


class ScheduleError(ValueError):
    """A schedule file that cannot be used: says which job and which key, and what is valid."""


_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _crontab_dow(field: str) -> str:
    """Standard crontab day-of-week numbers (0 and 7 = Sunday, 1 = Monday) as names, which
    APScheduler 3 reads unambiguously (its numbers start at Monday = 0, unlike cron)."""
    def name(token: str) -> str:
        return _DOW[int(token)] if token.isdigit() and int(token) <= 7 else token

    parts = []
    for item in field.split(","):
        rng, _, step = item.partition("/")
        rng = "-".join(name(t) for t in rng.split("-"))
        parts.append(rng + (f"/{step}" if step else ""))
    return ",".join(parts)


def cron_trigger(expr: str, tz: tzinfo) -> Any:
    """An APScheduler cron trigger from a standard 5-field crontab expression, in `tz` (DST-aware)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month day-of-week), got {len(fields)}")
    minute, hour, day, month, dow = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_dow(dow), timezone=tz)


@dataclass(frozen=True)
class ExportJob:
    """One scheduled export: which period, when (a 5-field crontab expression in the report time
    zone), which formats, and how many past periods to look at for missed ones."""

    name: str
    period: str  # day, week or month
    cron: str
    formats: tuple[str, ...] = FORMATS
    catch_up: int = 0  # 0: DEFAULT_CATCH_UP[period]
    allow_partial: bool = False
    out: str = ""  # the job's export root ("" = the command's --out)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ScheduleError(f"job name {self.name!r}: use lower-case letters, digits, '-' and '_'")
        if self.period not in PERIOD_KINDS:
            raise ScheduleError(f"job {self.name}: period must be one of {', '.join(PERIOD_KINDS)}, "
                                f"got {self.period!r}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ScheduleError(f"job {self.name}: formats must be some of {', '.join(FORMATS)}, got {list(self.formats)}")
        if self.catch_up < 0:
            raise ScheduleError(f"job {self.name}: catch_up must be >= 0, got {self.catch_up}")
        try:
            cron_trigger(self.cron, UTC)
        except ValueError as exc:
            raise ScheduleError(f"job {self.name}: cron {self.cron!r} is not a 5-field crontab "
                                f"expression ({exc})") from None

    @property
    def look_back(self) -> int:
        return self.catch_up or DEFAULT_CATCH_UP[self.period]


# Daily after the night's late events settled; weekly on Monday, monthly on the 1st.
DEFAULT_JOBS: tuple[ExportJob, ...] = (
    ExportJob("daily", "day", "30 1 * * *"),
    ExportJob("weekly", "week", "0 2 * * 1"),
    ExportJob("monthly", "month", "0 3 1 * *"),
)

_JOB_KEYS = {"name", "period", "cron", "formats", "catch_up", "allow_partial", "out"}


def load_jobs(path: Path) -> tuple[ExportJob, ...]:
    """The `[[export]]` tables of a TOML schedule file, validated (ScheduleError names the job
    and key)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScheduleError(f"schedule file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"schedule file {path}: {exc}") from None
    tables = data.get("export")
    if not isinstance(tables, list) or not tables:
        raise ScheduleError(f"schedule file {path}: expected one or more [[export]] tables")
    jobs = []
    for i, table in enumerate(tables):
        where = f"{path} [[export]] #{i + 1}"
        unknown = sorted(set(table) - _JOB_KEYS)
        if unknown:
            raise ScheduleError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_JOB_KEYS))}")
        missing = sorted({"name", "period", "cron"} - set(table))
        if missing:
            raise ScheduleError(f"{where}: missing {', '.join(missing)}")
        formats = table.get("formats", list(FORMATS))
        if isinstance(formats, str):
            formats = [f.strip() for f in formats.split(",")]
        jobs.append(ExportJob(str(table["name"]), table["period"], str(table["cron"]), tuple(formats),
                              int(table.get("catch_up", 0)), bool(table.get("allow_partial", False)),
                              str(table.get("out", ""))))
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ScheduleError(f"schedule file {path}: job names must be unique, got {names}")
    return tuple(jobs)


@dataclass(frozen=True)
class MaintenanceJob:
    """A job the scheduler runs beside the exports on a cron of its own, e.g. the hourly
    compaction that keeps report figures fast (day files). A failure is logged and the job runs
    again at its next firing; it never stops the exports."""

    name: str
    cron: str
    work: Callable[[], str]  # returns a one-line summary for the log

    def __post_init__(self) -> None:
        try:
            cron_trigger(self.cron, UTC)
        except ValueError as exc:
            raise ScheduleError(f"{self.name}: cron {self.cron!r} is not a 5-field crontab expression ({exc})") from None

    def __call__(self) -> bool:
        started = time.monotonic()
        try:
            summary = self.work()
        except Exception:
            log.exception("schedule job=%s failed; it runs again at its next firing", self.name)
            return False
        log.info("schedule job=%s done in %.1fs: %s", self.name, time.monotonic() - started, summary)
        return True


class Exporter(Protocol):
    """What the scheduler needs from the export: is a period done, and export it."""

    def is_done(self, job: ExportJob, period: Period) -> bool: ...

    def export(self, job: ExportJob, period: Period) -> str:
        """Export one period; return a short status ('written', 'unchanged'); raise on failure."""
        ...


class PeriodLock:
    """An exclusive, non-blocking lock per (job, period) in `lock_dir`; the kernel drops it when
    the holder dies, so a crashed scheduler never blocks a period forever."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir

    @contextmanager
    def hold(self, job: ExportJob, period: Period) -> Iterator[bool]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"{job.name}.{period.kind}.{period.label}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {datetime.now(UTC).isoformat()}\n".encode())
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@dataclass
class RunResult:
    """What one firing of a job did, per period key."""

    job: str
    exported: dict[str, str] = field(default_factory=dict)  # key -> 'written' / 'unchanged'
    skipped_locked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> error message
    waiting: dict[str, str] = field(default_factory=dict)  # key -> why it is not ready (retried quietly)


class ExportScheduler:
    def __init__(self, jobs: tuple[ExportJob, ...], tz: str, exporter: Exporter, lock_dir: Path,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.jobs = jobs
        self.tz = tz
        self.exporter = exporter
        self.locks = PeriodLock(lock_dir)
        self.clock = clock

    def due(self, job: ExportJob, now: datetime | None = None) -> list[Period]:
        """Completed periods in the job's look-back that have no export yet, oldest first."""
        now = now or self.clock()
        return [p for p in completed_periods(job.period, now, self.tz, job.look_back)
                if not self.exporter.is_done(job, p)]

    def run_job(self, job: ExportJob, now: datetime | None = None) -> RunResult:
        """Export every due period of one job, each under its lock; log each run."""
        result = RunResult(job.name)
        for period in self.due(job, now):
            with self.locks.hold(job, period) as locked:
                if not locked:
                    log.info("export job=%s period=%s: another scheduler is exporting it, skipped", job.name, period.label)
                    result.skipped_locked.append(period.label)
                    continue
                if self.exporter.is_done(job, period):  # finished by another scheduler meanwhile
                    continue
                started = time.monotonic()
                try:
                    status = self.exporter.export(job, period)
                except Exception as exc:  # noqa: BLE001 - one failed period must not stop the others or the scheduler
                    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    if getattr(exc, "retry_later", False):  # e.g. its data has not all landed yet
                        log.info("export job=%s period=%s waits: %s", job.name, period.label, message)
                        result.waiting[period.label] = message
                        continue
                    log.error("export job=%s period=%s failed: %s (retried at the next firing)",
                              job.name, period.label, message)
                    result.failed[period.label] = message
                    continue
                log.info("export job=%s period=%s %s in %.1f s", job.name, period.label, status,
                         time.monotonic() - started)
                result.exported[period.label] = status
        return result

    def run_due(self, now: datetime | None = None, only: str | None = None) -> list[RunResult]:
        """Every job's due periods once: the catch-up after a start, and `--once`."""
        return [self.run_job(job, now) for job in self.jobs if only is None or job.name == only]

    def serve(self, maintenance: tuple[MaintenanceJob, ...] = ()) -> None:  # pragma: no cover - blocks
        """Catch up, then run each job (and each maintenance job) on its cron trigger until
        SIGTERM / Ctrl-C. Its parts are tested: run_due, run_job, MaintenanceJob.__call__."""
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.run_due()
        zone = ZoneInfo(self.tz)
        scheduler = BlockingScheduler(timezone=zone)
        for task in maintenance:
            scheduler.add_job(task, cron_trigger(task.cron, zone), id=task.name, name=task.name, max_instances=1,
                              coalesce=True, misfire_grace_time=None)
            log.info("schedule job=%s cron=%r next=%s", task.name, task.cron,
                     cron_trigger(task.cron, zone).get_next_fire_time(None, datetime.now(zone)))
        for job in self.jobs:
            scheduler.add_job(self.run_job, cron_trigger(job.cron, zone), args=[job], id=job.name,
                              name=f"export {job.period}", max_instances=1, coalesce=True,
                              misfire_grace_time=None)
            log.info("schedule job=%s period=%s cron=%r next=%s", job.name, job.period, job.cron,
                     cron_trigger(job.cron, zone).get_next_fire_time(None, datetime.now(zone)))
        scheduler.start()


__all__ = ["DEFAULT_JOBS", "ExportJob", "ExportScheduler", "Exporter", "MaintenanceJob", "PeriodLock", "RunResult", "ScheduleError",
           "cron_trigger", "load_jobs"]
