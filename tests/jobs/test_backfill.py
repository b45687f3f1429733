"""`cityflow backfill` on a lake the real PartitionSink landed (two traffic partitions, with
corrections, late events and quarantined records; no broker needed): the same settings give
back exactly what the stream landed; a changed window size re-derives the period so that the
views show the new windows and the independent recompute of `cityflow verify` agrees; a re-run
changes nothing; a crash between publishing and deleting never shows a reader two versions of
an hour; a period that is not final yet is refused with nothing written."""

from __future__ import annotations

import argparse
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from contracts import lake as L
from contracts.windows import WindowGeometry
from jobs.backfill import BackfillRefused, backfill, format_report
from jobs.commands import backfill as cmd
from tests.support.lake_checks import CONTRACT, NOW, SPEC, Records, data_files, lake_state
from warehouse.db import build_warehouse
from warehouse.verify import verify_windows

START = datetime(2026, 3, 2, 9, 0, tzinfo=NOW.tzinfo)  # the records span 09:30 .. 11:30
END = datetime(2026, 3, 2, 11, 0, tzinfo=NOW.tzinfo)
LAST_MS = END - timedelta(milliseconds=1)  # verify's --until is inclusive
TWO_MIN = WindowGeometry(120, allowed_lateness_s=SPEC.allowed_lateness_s, grace_s=SPEC.grace_s)


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture(scope="module")
def landed_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backfill") / "lake"
    lake = L.Lake(str(root))
    for p in (0, 1):
        Records(partition=p, n=900, seed=3 + p).land(lake, batch_size=60, flush_every=2)
    return root


@pytest.fixture
def landed(landed_once: Path, tmp_path: Path) -> L.Lake:
    """A copy of the landed lake per test (landing it takes most of the time)."""
    shutil.copytree(landed_once, tmp_path / "lake")
    return L.Lake(str(tmp_path / "lake"))


def _in_period(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    t = pd.to_datetime(frame[col], utc=True)
    return frame[(t >= START) & (t < END)].reset_index(drop=True)


def test_same_settings_give_back_what_the_stream_landed(landed: L.Lake) -> None:
    before_files = data_files(Path(landed.root))
    report = backfill(landed, CONTRACT, SPEC, ms(START), ms(END))
    assert report.partitions == [0, 1] and report.raw_rows > 1000
    assert report.changed == [], format_report([report])  # the replay reproduces the stream
    assert report.unchanged == 2 * 3 * 2  # partitions x tables x hours
    assert data_files(Path(landed.root)) == before_files


def test_a_new_window_size_is_re_derived_and_verify_agrees(landed: L.Lake, tmp_path: Path) -> None:
    before = lake_state(landed)
    late_before = _in_period(before["late"], "ts")
    assert len(late_before) > 0  # the fixture has late events in the period

    report = backfill(landed, CONTRACT, TWO_MIN, ms(START), ms(END))
    changed_tables = {c.table for c in report.changed}
    assert {L.WINDOWS, L.DISTRICT_WINDOWS} <= changed_tables
    assert all(c.files_replaced >= 1 or c.rows_before == 0 for c in report.changed)
    text = format_report([report])
    assert "replaced" in text and "anomalies were not re-derived" in text

    after = lake_state(landed)
    win = _in_period(after["windows"], "window_start")
    assert set(win["window_size_s"]) == {120}
    t = pd.to_datetime(after["windows"]["window_start"], utc=True)
    assert set(after["windows"][(t < START) | (t >= END)]["window_size_s"]) == {60}  # untouched
    # one live file per table, partition and hour of the period
    for table in (L.WINDOWS, L.DISTRICT_WINDOWS):
        for hour in ("09", "10"):
            files = list(landed.list_files(f"{table}/source=traffic/date=2026-03-02/hour={hour}"))
            assert sorted(L.parse_data_file_name(f).partition for f in files) == [0, 1], files
            assert all(L.parse_data_file_name(f).compacted for f in files)

    # the warehouse shows the new size; verify's independent recompute agrees over the period
    db = tmp_path / "wh.duckdb"
    build_warehouse(landed.root, db, {"traffic": 120})
    con = duckdb.connect(str(db), read_only=True)
    try:
        sizes = con.execute("SELECT DISTINCT window_size_s FROM traffic_1m").fetchall()
        n_view = con.execute("SELECT count(*) FROM traffic_1m").fetchone()[0]
    finally:
        con.close()
    assert sizes == [(120,)] and n_view == len(win)
    result = verify_windows(landed.root, {"traffic": TWO_MIN}, START, LAST_MS)
    check = result.checks[0]
    assert check.windows_checked > 0 and check.ok, check.mismatches.head(10)

    # a second run changes nothing and rewrites nothing
    files = {f: (Path(landed.root) / f).stat().st_mtime_ns for f in data_files(Path(landed.root))}
    again = backfill(landed, CONTRACT, TWO_MIN, ms(START), ms(END))
    assert again.changed == [] and again.unchanged == report.unchanged + len(report.changed)
    assert {f: (Path(landed.root) / f).stat().st_mtime_ns for f in data_files(Path(landed.root))} == files


def test_a_crash_before_the_old_files_are_deleted_shows_each_hour_once(
    landed: L.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_delete = L.Lake.delete

    def failing_delete(self: L.Lake, rel: str) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real_delete(self, rel)

    monkeypatch.setattr(L.Lake, "delete", failing_delete)
    with pytest.raises(OSError):
        backfill(landed, CONTRACT, TWO_MIN, ms(START), ms(END))
    monkeypatch.setattr(L.Lake, "delete", real_delete)
    # the hour being replaced when it crashed: its new file hides every old one
    state = lake_state(landed)
    win = _in_period(state["windows"], "window_start")
    assert not win.duplicated(["entity", "window_start"]).any()
    rerun = backfill(landed, CONTRACT, TWO_MIN, ms(START), ms(END))  # finishes the job
    final = _in_period(lake_state(landed)["windows"], "window_start")
    assert set(final["window_size_s"]) == {120} and not final.duplicated(["entity", "window_start"]).any()
    assert verify_windows(landed.root, {"traffic": TWO_MIN}, START, LAST_MS).ok
    assert rerun.partitions == [0, 1]


def test_a_period_that_is_not_final_is_refused_and_nothing_is_written(landed: L.Lake) -> None:
    before = data_files(Path(landed.root))
    with pytest.raises(BackfillRefused, match=r"city.traffic.v1\[0\].*city.traffic.v1\[1\].*Nothing was written"):
        backfill(landed, CONTRACT, TWO_MIN, ms(START), ms(END.replace(hour=12)))
    assert data_files(Path(landed.root)) == before


def test_backfill_command(landed: L.Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITYFLOW_LAKE", landed.root)
    monkeypatch.setenv("CITYFLOW_WINDOW_TRAFFIC", '{"size_s": 120, "allowed_lateness_s": 10, "grace_s": 120}')
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.register(sub)
    args = parser.parse_args(["backfill", "--from", "2026-03-02T09", "--to", "2026-03-02T10", "--source", "traffic",
                              "--dry-run"])
    before = data_files(Path(landed.root))
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "would replace" in out and "would replace windows/source=traffic/date=2026-03-02/hour=09" in err
    assert data_files(Path(landed.root)) == before

    args = parser.parse_args(["backfill", "--from", "2026-03-02", "--to", "2026-03-02", "--source", "traffic"])
    assert args.func(args) == 1  # the whole day is not over yet
    out, err = capsys.readouterr()
    error = err.splitlines()[-1]
    assert error.startswith("error: traffic: the period ends 2026-03-03T00:00:00Z") and "Nothing was written" in error

    with pytest.raises(SystemExit):
        parser.parse_args(["backfill", "--from", "yesterday", "--to", "2026-03-02"])
    args = parser.parse_args(["backfill", "--from", "2026-03-02T10", "--to", "2026-03-02T09"])
    assert args.func(args) == 2
