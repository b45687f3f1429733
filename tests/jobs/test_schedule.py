"""`cityflow schedule`'s logic with a fake clock: report periods, catch-up of missed periods
exactly once, failures retried, and two scheduler processes never exporting one period twice.
The exporter here records what it was asked to do in files, as the real export does (a period
is done when its manifest exists)."""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.periods import Period, completed_periods
from jobs.schedule import (
    DEFAULT_JOBS,
    ExportJob,
    ExportScheduler,
    ScheduleError,
    cron_trigger,
    load_jobs,
)

BERLIN = "Europe/Berlin"


# -- periods (the export's Period; its own tests are in test_periods.py) ----------------------
def test_completed_periods_end_before_now() -> None:
    now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # 01:30 on 1 Dec in Berlin
    assert [p.label for p in completed_periods("day", now, BERLIN, 3)] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    assert [p.label for p in completed_periods("month", now, BERLIN, 2)] == ["2026-10", "2026-11"]
    assert [p.label for p in completed_periods("month", now, "UTC", 1)] == ["2026-11"]
    weeks = completed_periods("week", now, BERLIN, 5)
    assert [p.label for p in weeks] == ["2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    for p in weeks:
        assert p.end_utc.replace(tzinfo=UTC) <= now
    assert completed_periods("day", now, BERLIN, 0) == []


# -- a recording exporter ----------------------------------------------------------------------
@dataclass
class DirExporter:
    """Writes <out>/<job>/<key>/manifest.json like the export; logs every export call."""

    out: Path
    fail: set[str] = field(default_factory=set)
    delay_s: float = 0.0

    def manifest(self, job: ExportJob, period: Period) -> Path:
        return self.out / job.name / period.label / "manifest.json"

    def is_done(self, job: ExportJob, period: Period) -> bool:
        return self.manifest(job, period).exists()

    def export(self, job: ExportJob, period: Period) -> str:
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "calls.log").open("a") as f:
            f.write(f"{job.name} {period.label}\n")
        time.sleep(self.delay_s)
        if period.label in self.fail:
            raise RuntimeError(f"data for {period.label} incomplete\nsecond line")
        path = self.manifest(job, period)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"period": period.label}))
        return "written"

    def calls(self) -> list[str]:
        log = self.out / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


DAILY = ExportJob("daily", "day", "30 1 * * *", catch_up=7)
MONTHLY = ExportJob("monthly", "month", "0 3 1 * *", catch_up=2)


def test_missed_periods_are_caught_up_once_after_downtime(tmp_path: Path) -> None:
    exporter = DirExporter(tmp_path / "out")
    clock = Clock(datetime(2026, 11, 30, 1, 0, tzinfo=UTC))
    sched = ExportScheduler((DAILY, MONTHLY), BERLIN, exporter, tmp_path / "locks", clock=clock)

    first = sched.run_due()
    assert list(first[0].exported) == [f"2026-11-{d:02d}" for d in range(23, 30)]  # oldest first
    assert list(first[1].exported) == ["2026-09", "2026-10"]
    assert sched.run_due() == [type(first[0])("daily"), type(first[0])("monthly")]  # nothing due twice

    clock.now += timedelta(days=3)  # down for three days
    again = sched.run_due()
    assert list(again[0].exported) == ["2026-11-30", "2026-12-01", "2026-12-02"]
    assert list(again[1].exported) == ["2026-11"]
    calls = exporter.calls()
    assert len(calls) == len(set(calls)) == 7 + 2 + 3 + 1


def test_a_failed_period_is_logged_retried_and_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = DirExporter(tmp_path / "out", fail={"2026-11-27"})
    sched = ExportScheduler((DAILY,), BERLIN, exporter, tmp_path / "locks",
                            clock=Clock(datetime(2026, 11, 30, 1, 0, tzinfo=UTC)))
    with caplog.at_level("INFO", logger="jobs.schedule"):
        result = sched.run_due()[0]
    assert result.failed == {"2026-11-27": "data for 2026-11-27 incomplete"}
    assert len(result.exported) == 6
    assert "export job=daily period=2026-11-27 failed: data for 2026-11-27 incomplete" in caplog.text
    assert "export job=daily period=2026-11-28 written" in caplog.text

    exporter.fail.clear()
    assert list(sched.run_due()[0].exported) == ["2026-11-27"]


def _scheduler_process(out: str, locks: str, start_at: float) -> None:
    exporter = DirExporter(Path(out), delay_s=0.2)
    sched = ExportScheduler((DAILY,), BERLIN, exporter, Path(locks),
                            clock=lambda: datetime(2026, 11, 30, 1, 0, tzinfo=UTC))
    while time.time() < start_at:
        time.sleep(0.005)
    sched.run_due()


def test_two_scheduler_processes_never_export_one_period_twice(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=_scheduler_process, args=(str(tmp_path / "out"), str(tmp_path / "locks"), start_at))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    calls = DirExporter(tmp_path / "out").calls()
    assert sorted(calls) == sorted(set(calls)), calls  # no period exported twice
    # ...and none lost: whatever one skipped because the other held it, the other exported
    done = sorted(p.name for p in (tmp_path / "out" / "daily").iterdir())
    assert done == [f"2026-11-{d:02d}" for d in range(23, 30)]


# -- the schedule file and cron --------------------------------------------------------------------
def test_schedule_file_is_validated_with_the_job_and_key_named(tmp_path: Path) -> None:
    f = tmp_path / "schedule.toml"
    f.write_text('[[export]]\nname = "daily"\nperiod = "day"\ncron = "30 1 * * *"\nformats = "csv,html"\n'
                 '[[export]]\nname = "m"\nperiod = "month"\ncron = "0 3 1 * *"\ncatch_up = 12\n')
    jobs = load_jobs(f)
    assert jobs[0].formats == ("csv", "html") and jobs[1].look_back == 12
    cases = {
        'name = "x"\nperiod = "year"\ncron = "* * * * *"': "period must be one of day, week, month",
        'name = "x"\nperiod = "day"\ncron = "61 * * * *"': "job x: cron '61 * * * *' is not a 5-field",
        'name = "x"\nperiod = "day"\ncron = "0 1 * * *"\nformat = "csv"': "unknown key(s) format",
        'name = "x"\nperiod = "day"': "missing cron",
        'name = "x"\nperiod = "day"\ncron = "0 1 * * *"\nformats = ["pdf"]': "formats must be some of html, csv, parquet",
    }
    for body, message in cases.items():
        f.write_text("[[export]]\n" + body + "\n")
        with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
            load_jobs(f)
    with pytest.raises(ScheduleError, match="does not exist"):
        load_jobs(tmp_path / "missing.toml")


def test_cron_fires_in_the_report_time_zone_across_dst() -> None:
    zone = ZoneInfo(BERLIN)
    trigger = cron_trigger(DEFAULT_JOBS[0].cron, zone)  # 01:30 Berlin
    before = datetime(2026, 10, 24, 12, 0, tzinfo=zone)
    fire = trigger.get_next_fire_time(None, before)
    assert fire.astimezone(UTC) == datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # still summer time
    fire2 = trigger.get_next_fire_time(fire, fire + timedelta(minutes=1))
    assert fire2.astimezone(UTC) == datetime(2026, 10, 26, 0, 30, tzinfo=UTC)  # winter time


def test_cron_day_of_week_numbers_mean_what_crontab_says() -> None:
    zone = ZoneInfo(BERLIN)
    sunday_noon = datetime(2026, 11, 29, 12, 0, tzinfo=zone)  # a Sunday
    for expr, weekday in (("0 2 * * 1", 0), ("0 2 * * 0", 6), ("0 2 * * 7", 6), ("0 2 * * 5", 4)):
        fire = cron_trigger(expr, zone).get_next_fire_time(None, sunday_noon)
        assert fire.weekday() == weekday, (expr, fire)
    fire = cron_trigger("0 2 * * 1-5", zone).get_next_fire_time(None, datetime(2026, 12, 5, 12, 0, tzinfo=zone))
    assert fire.weekday() == 0  # Saturday -> Monday


# -- with the real export, on a known lake -----------------------------------------------------------
def test_the_scheduler_exports_real_periods_once_and_waits_for_incomplete_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from contracts import lake as L
    from contracts.settings import load_settings
    from jobs.commands.schedule import LakeExporter
    from tests.support.report_lake import build_known_lake

    lake = L.Lake(str(tmp_path / "lake"))
    build_known_lake(lake)  # events from 2024-03-01 23:00 to 2024-03-03 01:59 UTC
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(tmp_path / "wh.duckdb"))
    monkeypatch.delenv("CITYFLOW_REPORT_TZ", raising=False)
    out = tmp_path / "exports"
    daily = ExportJob("daily", "day", "30 1 * * *", formats=("csv",), catch_up=3)
    exporter = LakeExporter(load_settings(), out)
    clock = Clock(datetime(2024, 3, 4, 1, 30, tzinfo=UTC))  # due: 03-01, 03-02, 03-03
    sched = ExportScheduler((daily,), "UTC", exporter, out / ".locks", clock=clock)

    with caplog.at_level("INFO", logger="jobs.schedule"):
        first = sched.run_due()[0]
    # 03-03 is incomplete (its data ends at 01:59) and waits quietly; the two before are exported
    assert list(first.exported) == ["2024-03-01", "2024-03-02"]
    assert all(status.startswith("written") for status in first.exported.values())
    assert list(first.waiting) == ["2024-03-03"]
    assert not first.failed
    manifest = json.loads((out / "day" / "2024-03-02" / "manifest.json").read_text())
    assert manifest["partial"] is False and any(f["path"].endswith(".csv") for f in manifest["files"])
    assert "waits: day 2024-03-03 is not complete yet" in caplog.text

    again = sched.run_due()[0]
    assert "2024-03-02" not in again.exported  # done: not exported twice
    assert sorted(again.waiting) == sorted(first.waiting)


# -- the compaction job the scheduler runs beside the exports -----------------------------------
def test_the_scheduler_compacts_the_lake_and_writes_day_files(tmp_path: Path, monkeypatch, capsys) -> None:
    """`cityflow schedule` runs `compact --older-than 1h` on its own cron (what keeps report
    figures fast); --list shows it, 'none' turns it off, a bad cron is refused, and a failing
    run is logged without raising (the exports go on)."""
    from contracts import lake as L
    from contracts.settings import load_settings
    from jobs.cli import main as cli
    from jobs.commands.schedule import compact_lake
    from jobs.schedule import MaintenanceJob
    from tests.support.report_lake import build_known_lake

    lake = L.Lake(str(tmp_path / "lake"))
    build_known_lake(lake)
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    summary = compact_lake(load_settings())
    day_files = sorted(Path(lake.root, "_days").rglob("*.parquet"))
    assert day_files and "day files: " in summary and f"{len(day_files)} written" in summary
    assert "0 written" in compact_lake(load_settings())  # the next firing: nothing new

    assert cli(["schedule", "--list", "--compact-cron", "15 * * * *"]) == 0
    assert "compaction: at '15 * * * *'" in capsys.readouterr().out
    assert cli(["schedule", "--list", "--compact-cron", "none"]) == 0
    assert "compaction" not in capsys.readouterr().out
    assert cli(["schedule", "--list", "--compact-cron", "every hour"]) == 2
    assert "--compact-cron: compaction: cron 'every hour'" in capsys.readouterr().err

    def broken() -> str:
        raise OSError("lake unreachable")

    assert MaintenanceJob("compaction", "5 * * * *", broken)() is False
    assert MaintenanceJob("compaction", "5 * * * *", lambda: "ok")() is True
