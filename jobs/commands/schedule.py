"""`cityflow schedule`: run the configured report exports on their cron schedules, catching up
missed periods once (jobs/schedule.py); `--once` does one catch-up pass and exits (for crontab
or a Kubernetes CronJob); `--list` shows the jobs and when each fires next."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule", help="run the report exports on a schedule (catch-up of missed periods, one per period)",
        description="Without --config: daily at 01:30, weekly on Monday 02:00 and monthly on the 1st 03:00, "
        "in CITYFLOW_REPORT_TZ, all formats, into --out. A TOML file of [[export]] tables (name, period, "
        "cron, formats, catch_up, allow_partial, out) replaces them. Each firing exports every completed "
        "period of the job's look-back that has no manifest yet; two schedulers on one lake never export "
        "a period at the same time.")
    p.add_argument("--config", type=Path, default=None, help="schedule file (TOML, [[export]] tables)")
    p.add_argument("--out", type=Path, default=Path("reports/exports"), help="export root (default reports/exports)")
    p.add_argument("--once", action="store_true", help="one catch-up pass, then exit (for crontab / CronJob)")
    p.add_argument("--job", default=None, help="with --once: only this job")
    p.add_argument("--list", action="store_true", help="show the jobs and their next firing, then exit")
    p.add_argument("--compact-cron", default=COMPACT_CRON, metavar="CRON",
                   help="when the scheduler also compacts the lake (merges closed hours, writes day files: "
                   "what keeps report figures fast), a crontab expression in CITYFLOW_REPORT_TZ; 'none' = "
                   "never, e.g. when cron or a CronJob runs `cityflow compact` (default '%(default)s'; "
                   "not with --once)")
    p.set_defaults(func=run)


COMPACT_CRON = "5 * * * *"  # hourly, after the hour's flushes settled; `compact --older-than 1h`


def compact_lake(settings: Any) -> str:
    """What `cityflow compact --older-than 1h` does (merge closed hours, then day files), as
    the scheduler's maintenance job; returns the summary it logs."""
    from datetime import timedelta

    from contracts.lake import Lake
    from jobs.compaction import compact
    from jobs.day_files import build_day_files

    lake = Lake(settings.lake)
    merged = compact(lake, older_than=timedelta(hours=1))
    days = build_day_files(lake, older_than=timedelta(hours=1))
    return (f"merged {merged.files_before} files into {merged.files_after} ({merged.merges} merges); day files: "
            f"{days.total('written')} written, {days.total('current')} current, {days.total('failed')} changed meanwhile")


class LakeExporter:
    """The scheduler's Exporter over the real export: a period is done when its directory has a
    manifest that is not partial."""

    def __init__(self, settings: Any, out: Path) -> None:
        self.settings = settings
        self.out = out

    def root(self, job: Any) -> Path:
        return Path(job.out) if job.out else self.out

    def is_done(self, job: Any, period: Any) -> bool:
        manifest = self.root(job) / period.kind / period.label / "manifest.json"
        try:
            return not json.loads(manifest.read_text()).get("partial", False)
        except (FileNotFoundError, ValueError):
            return False

    def export(self, job: Any, period: Any) -> str:
        from contracts.lake import Lake
        from contracts.registry import CONTRACTS
        from contracts.windows import window_geometry
        from jobs.export import export_period
        from warehouse.db import connect
        from warehouse.figures import figures

        lateness = {s: window_geometry(s, self.settings).allowed_lateness_s for s in CONTRACTS}
        con = connect(self.settings)
        try:
            result = export_period(con, Lake(self.settings.lake), period, figures(), out_dir=self.root(job),
                                   lateness_s=lateness, formats=job.formats, allow_partial=job.allow_partial,
                                   progress=lambda line: log.info("export job=%s period=%s %s", job.name,
                                                                  period.label, line))
        finally:
            con.close()
        return f"{result.status}{' (partial)' if result.partial else ''} {result.path}"


def run(args: argparse.Namespace) -> int:
    from contracts.settings import load_settings
    from jobs.schedule import (
        DEFAULT_JOBS,
        ExportScheduler,
        MaintenanceJob,
        ScheduleError,
        cron_trigger,
        load_jobs,
    )

    settings = load_settings()
    try:
        jobs = load_jobs(args.config) if args.config else DEFAULT_JOBS
    except ScheduleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.job and args.job not in {j.name for j in jobs}:
        print(f"error: --job {args.job}: no such job; jobs: {', '.join(j.name for j in jobs)}", file=sys.stderr)
        return 2
    tz = settings.report_tz
    maintenance: tuple[Any, ...] = ()
    if args.compact_cron.strip().lower() != "none":
        try:
            maintenance = (MaintenanceJob("compaction", args.compact_cron, lambda: compact_lake(settings)),)
        except ScheduleError as exc:
            print(f"error: --compact-cron: {exc}", file=sys.stderr)
            return 2
    if args.list:
        zone = ZoneInfo(tz)
        now = datetime.now(zone)
        for j in jobs:
            nxt = cron_trigger(j.cron, zone).get_next_fire_time(None, now)
            print(f"{j.name}: {j.period} at '{j.cron}' ({tz}), next {nxt.isoformat()}, formats {','.join(j.formats)}, "
                  f"looks back {j.look_back} {j.period}(s), into {j.out or args.out}")
        for task in maintenance:
            nxt = cron_trigger(task.cron, zone).get_next_fire_time(None, now)
            print(f"{task.name}: at '{task.cron}' ({tz}), next {nxt.isoformat()}: cityflow compact --older-than 1h")
        return 0
    exporter = LakeExporter(settings, args.out)
    scheduler = ExportScheduler(jobs, tz, exporter, args.out / ".locks")
    if args.once:
        results = scheduler.run_due(datetime.now(UTC), only=args.job)
        for r in results:
            done = ", ".join(f"{k} {v}" for k, v in r.exported.items()) or "nothing due"
            print(f"{r.job}: {done}" + (f"; waiting: {', '.join(r.waiting)}" if r.waiting else "")
                  + (f"; skipped (another scheduler): {', '.join(r.skipped_locked)}" if r.skipped_locked else "")
                  + (f"; FAILED: {', '.join(r.failed)}" if r.failed else ""))
        return 1 if any(r.failed for r in results) else 0
    log.info("schedule started jobs=%s tz=%s out=%s", ",".join(j.name for j in jobs), tz, args.out)
    scheduler.serve(maintenance)
    return 0
