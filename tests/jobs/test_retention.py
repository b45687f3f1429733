"""Retention on a lake landed by a PartitionSink over three days of event time: whole old date
partitions go from every table, the kept dates read exactly as before through the warehouse
views, the accounts still balance (dropped rows are in the ledger), and a crash at any step is
completed by a rerun without counting anything twice."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from contracts import lake as L
from jobs.cli import main as cli
from jobs.retention import apply_retention
from tests.support.faults import FaultyLake, SimulatedCrash
from tests.support.lake_checks import NOW, Records, assert_views_equal, data_files, view_frames
from warehouse.accounting import partition_accounts

RECORDS = Records(n=900, seed=4, span=timedelta(days=3))  # 2026-02-27 11:30 .. 2026-03-02 11:30


@pytest.fixture(scope="module")
def three_days(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("template") / "lake"
    RECORDS.land(L.Lake(str(root)), batch_size=150)
    return root, view_frames(str(root), root.parent / "before.duckdb")


def kept(views: dict, cutoff: str) -> dict:
    """The views restricted to rows of dates >= cutoff (what retention must leave)."""
    import pandas as pd

    out = {}
    for name, df in views.items():
        if "date" in df.columns and len(df):
            df = df[pd.to_datetime(df["date"]) >= pd.Timestamp(cutoff)].reset_index(drop=True)
        out[name] = df
    return out


def test_retention_drops_old_dates_of_every_table_and_reports_them(three_days, tmp_path):
    template, before = three_days
    root = tmp_path / "lake"
    shutil.copytree(template, root)
    dates = {f.split("/")[2] for f in data_files(root)}
    assert dates == {"date=2026-02-27", "date=2026-02-28", "date=2026-03-01", "date=2026-03-02"}
    report = apply_retention(L.Lake(str(root)), keep_days=2, now=NOW)
    assert report.cutoff.isoformat() == "2026-02-28"
    dropped = {(d.table, d.date) for d in report.dropped}
    assert {t for t, _ in dropped} >= {L.RAW, L.WINDOWS, L.DISTRICT_WINDOWS}
    assert {d for _, d in dropped} == {"2026-02-27"}
    assert report.files == sum(d.files for d in report.dropped) > 0
    assert {f.split("/")[2] for f in data_files(root)} == dates - {"date=2026-02-27"}
    assert_views_equal(view_frames(str(root), tmp_path / "after.duckdb"), kept(before, "2026-02-28"))
    (account,) = partition_accounts(L.Lake(str(root)))
    raw_dropped = sum(d.rows for d in report.dropped if d.table == L.RAW)
    assert account.balanced and account.retired_rows == raw_dropped > 0
    assert apply_retention(L.Lake(str(root)), keep_days=2, now=NOW).dropped == []
    # the stream still recovers (and resumes after the last offset) from what is left
    assert RECORDS.sink(L.Lake(str(root))).recover() == RECORDS.n


def test_retention_crash_at_any_step_then_rerun(three_days, tmp_path):
    template, before = three_days
    probe = FaultyLake(str(tmp_path / "probe"))
    shutil.copytree(template, tmp_path / "probe")
    apply_retention(probe, keep_days=1, now=NOW)
    expected = kept(before, "2026-03-01")
    assert len(probe.ops) >= 6
    for k in range(len(probe.ops)):
        root = tmp_path / f"crash-{k}"
        shutil.copytree(template, root)
        with pytest.raises(SimulatedCrash):
            apply_retention(FaultyLake(str(root), crash_at=k), keep_days=1, now=NOW)
        apply_retention(L.Lake(str(root)), keep_days=1, now=NOW)
        assert {f.split("/")[2] for f in data_files(root)} == {"date=2026-03-01", "date=2026-03-02"}
        (account,) = partition_accounts(L.Lake(str(root)))
        assert account.balanced, f"crash at op {k} ({probe.ops[k]}): {account}"
    assert_views_equal(view_frames(str(root), tmp_path / "after.duckdb"), expected)


def test_retention_command(three_days, tmp_path, monkeypatch, capsys):
    template, _ = three_days
    root = tmp_path / "lake"
    shutil.copytree(template, root)
    monkeypatch.setenv("CITYFLOW_LAKE", str(root))
    n = len(data_files(root))
    assert cli(["retention", "--keep-days", "3650", "--dry-run"]) == 0
    assert "would delete 0 partitions" in capsys.readouterr().out
    assert cli(["retention", "--keep-days", "30", "--dry-run"]) == 0  # 2026-03 data is old now
    assert len(data_files(root)) == n and "would delete raw/source=traffic/date=2026-02-27" in capsys.readouterr().out
    assert cli(["retention", "--keep-days", "30"]) == 0
    out = capsys.readouterr().out
    assert "deleted raw/source=traffic/date=2026-03-02" in out and data_files(root) == []
    assert cli(["retention", "--keep-days", "0"]) == 2
