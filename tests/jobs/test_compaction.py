"""Compaction on a real (small) lake landed by PartitionSinks, read through the real DuckDB
warehouse views: query results are identical before, during (after a crash at any step) and
after; no file or row is lost; files of flushes in flight and recent hours are not touched."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import lake as L
from jobs.cli import main as cli
from jobs.compaction import compact
from jobs.runner import wait_for
from tests.support.faults import FaultyLake, SimulatedCrash
from tests.support.lake_checks import (
    NOW,
    Records,
    assert_views_equal,
    data_files,
    lake_state,
    view_frames,
)
from warehouse.accounting import partition_accounts

LATER = NOW + timedelta(hours=2)  # every landed hour (quarantine's is NOW's) ended > 1 h before
PARTS = (Records(partition=0, seed=3), Records(partition=1, seed=5, n=700))


@pytest.fixture(scope="module")
def small_files_lake(tmp_path_factory) -> tuple[Path, dict]:
    """Two partitions landed in many small flushes; the views as they read before compaction."""
    root = tmp_path_factory.mktemp("template") / "lake"
    for records in PARTS:
        records.land(L.Lake(str(root)), batch_size=60)
    return root, view_frames(str(root), root.parent / "before.duckdb")


def copy_lake(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def test_compaction_merges_small_files_without_changing_any_view(small_files_lake, tmp_path):
    template, before = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    state = lake_state(root)
    files_before = data_files(root)
    report = compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER)
    files_after = data_files(root)
    assert report.merges > 10 and report.files_before == len(files_before)
    assert report.files_after == len(files_after) < len(files_before) / 4
    # one file per table/source/hour and topic partition, named for the offsets it covers
    groups = [(f.rsplit("/", 1)[0], L.parse_data_file_name(f).partition) for f in files_after]
    assert len(groups) == len(set(groups))
    assert_views_equal(view_frames(str(root), tmp_path / "after.duckdb"), before, "after compaction")
    for name, frame in lake_state(root).items():
        assert frame.equals(state[name]), name
    assert all(a.balanced for a in partition_accounts(L.Lake(str(root))))
    again = compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER)
    assert again.merges == 0 and data_files(root) == files_after


def test_only_hours_older_than_the_cutoff_are_touched(small_files_lake, tmp_path):
    template, _ = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    before = data_files(root)
    compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=NOW - timedelta(minutes=30))
    after = data_files(root)
    hours = {f.split("/")[2] + "/" + f.split("/")[3] for f in before}
    touched = {h for h in hours if [f for f in before if h in f] != [f for f in after if h in f]}
    assert touched == {"date=2026-03-02/hour=09"}  # ended 10:00 <= 11:30 - 1 h; 10 and 11 not yet


def compaction_ops(template: Path, tmp_path: Path) -> list[str]:
    probe = FaultyLake(str(copy_lake(template, tmp_path / "probe")))
    compact(probe, older_than=timedelta(hours=1), now=LATER)
    return probe.ops


def check_crashes(template: Path, before: dict, tmp_path: Path, choose) -> int:
    """Crash compaction at the chosen lake operations; after each crash the views must read
    exactly as before (the half state is invisible), and a rerun must end with the same files
    as an uncrashed compaction (nothing lost, nothing left over). Returns the points tried."""
    ops = compaction_ops(template, tmp_path)
    reference = copy_lake(template, tmp_path / "reference")
    compact(L.Lake(str(reference)), older_than=timedelta(hours=1), now=LATER)
    layout = data_files(reference)
    points = choose(ops)
    for k in points:
        root = copy_lake(template, tmp_path / f"crash-{k}")
        with pytest.raises(SimulatedCrash):
            compact(FaultyLake(str(root), crash_at=k), older_than=timedelta(hours=1), now=LATER)
        assert_views_equal(view_frames(str(root), tmp_path / f"crash-{k}.duckdb"), before,
                           f"after a crash at op {k} ({ops[k]})")
        compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER)
        assert data_files(root) == layout, f"rerun after a crash at op {k} ({ops[k]})"
        shutil.rmtree(root)
    return len(points)


def test_compaction_crash_at_each_kind_of_step_is_invisible_and_rerun_completes(small_files_lake, tmp_path):
    """Every step of one merge (torn merged file, after it, after each input deletion), and a
    crash in the middle of a few later merges."""
    template, before = small_files_lake

    def choose(ops: list[str]) -> list[int]:
        writes = [i for i, op in enumerate(ops) if op.startswith("write_parquet")]
        assert len(writes) > 10
        return list(range(writes[1] + 1)) + [w + 2 for w in writes[4::5]]

    assert check_crashes(template, before, tmp_path, choose) > 10


@pytest.mark.slow
def test_compaction_crash_at_every_operation(small_files_lake, tmp_path):
    template, before = small_files_lake
    assert check_crashes(template, before, tmp_path, lambda ops: list(range(len(ops)))) > 100


def test_compaction_while_a_worker_writes_into_the_same_hours(tmp_path):
    """Compaction of every hour (cutoff in the future) between every flush of a sink, and with a
    flush stuck between its commit and its publish: the end result equals the uncompacted lake,
    and no file of a flush in flight is ever merged."""
    records = Records(partition=0, seed=3)
    plain = tmp_path / "plain"
    records.land(L.Lake(str(plain)), batch_size=60)
    expected = view_frames(str(plain), tmp_path / "plain.duckdb")

    root = tmp_path / "lake"
    sink = records.sink(L.Lake(str(root)))
    sink.recover()
    merges = 0
    for i in range(0, 450, 60):
        sink.add(records.batch(i, min(i + 60, 450)))
        sink.flush()
        merges += compact(L.Lake(str(root)), older_than=timedelta(0), now=LATER).merges
    assert merges > 5
    # a flush that dies after its commit, having published one file: in flight
    crashing = FaultyLake(str(root))
    stuck = records.sink(crashing, writer="stuck")
    assert stuck.recover() == 450
    stuck.add(records.batch(450, 600))
    crashing.crash_on = ("move", 2)
    with pytest.raises(SimulatedCrash):
        stuck.flush()
    in_flight = [f for f in data_files(root) if "+450-599" in f]
    assert len(in_flight) == 1  # one file published, the rest still staged
    compact(L.Lake(str(root)), older_than=timedelta(0), now=LATER)
    assert [f for f in data_files(root) if "+450-599" in f] == in_flight  # untouched
    # the worker restarts, completes the flush and lands the rest; compaction keeps going
    sink = records.sink(L.Lake(str(root)))
    assert sink.recover() == 600
    records.feed(sink, 600, 60, flush_every=1)
    compact(L.Lake(str(root)), older_than=timedelta(0), now=LATER)
    assert_views_equal(view_frames(str(root), tmp_path / "lake.duckdb"), expected, "compacted while writing")
    assert all(a.balanced and a.consumed == records.n for a in partition_accounts(L.Lake(str(root))))
    assert len(data_files(root)) < len(data_files(plain)) / 3


def test_keep_superseded_leaves_inputs_hidden_until_a_later_run(small_files_lake, tmp_path):
    template, before = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    n_before = len(data_files(root))
    first = compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER,
                    keep_superseded=timedelta(minutes=10))
    assert first.merges > 0 and len(data_files(root)) == n_before + first.merges  # inputs kept
    assert_views_equal(view_frames(str(root), tmp_path / "kept.duckdb"), before, "inputs kept")
    assert all(a.balanced for a in partition_accounts(L.Lake(str(root))))
    # the compacted files are "now" by mtime: a run 11 minutes later deletes the inputs
    later = datetime.now(UTC) + timedelta(minutes=11)
    second = compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=later,
                     keep_superseded=timedelta(minutes=10))
    assert second.merges == 0 and len(data_files(root)) == first.files_after
    assert_views_equal(view_frames(str(root), tmp_path / "after.duckdb"), before, "inputs deleted")


def test_max_file_size_splits_merges(small_files_lake, tmp_path):
    template, before = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    report = compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER, max_bytes=40_000)
    full = compact(L.Lake(str(copy_lake(template, tmp_path / "full"))), older_than=timedelta(hours=1), now=LATER)
    assert report.files_after > full.files_after
    assert_views_equal(view_frames(str(root), tmp_path / "split.duckdb"), before, "split merges")


def test_compact_command(small_files_lake, tmp_path, monkeypatch, capsys):
    template, _ = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    monkeypatch.setenv("CITYFLOW_LAKE", str(root))
    n = len(data_files(root))
    assert cli(["compact", "--older-than", "1h", "--dry-run"]) == 0
    assert len(data_files(root)) == n and "would merge" in capsys.readouterr().out
    assert cli(["compact", "--older-than", "1h"]) == 0  # now: every landed hour is older
    out = capsys.readouterr().out
    assert f"merged {n} files into {len(data_files(root))}" in out
    assert "day files (days ended before" in out and " 0 stale deleted" in out  # then the closed days are copied
    assert L.Lake(str(root)).list_entries(L.DAYS)
    with pytest.raises(SystemExit):
        cli(["compact", "--older-than", "soon"])


@pytest.mark.slow
def test_compaction_survives_kill_9_of_the_real_command(small_files_lake, tmp_path):
    """`cityflow compact` in a child process, SIGKILLed at seeded random moments and run again
    each time: the views read the same after every kill and after the final complete run."""
    import os
    import random
    import subprocess
    import sys

    template, before = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    reference = copy_lake(template, tmp_path / "reference")
    compact(L.Lake(str(reference)), older_than=timedelta(hours=1), now=datetime.now(UTC))
    seed = random.SystemRandom().randrange(10_000)
    rng = random.Random(seed)
    env = {**os.environ, "CITYFLOW_LAKE": str(root)}
    outcomes = []
    for i in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "compact", "--older-than", "1h"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill once the merging has begun (a merged or temp file shows up), a little later
        started = wait_for(lambda r=root, p=proc: p.poll() is not None or any(
            ".c.parquet" in f or "/.tmp-" in f for f in (e.path for e in L.Lake(str(r)).list_entries("raw"))),
            60, "compaction to start", interval=0.005)
        delay = rng.uniform(0.0, 0.25)
        try:
            proc.wait(delay)
            outcomes.append(f"run {i}: finished{'' if started else ' early'}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            outcomes.append(f"run {i}: killed {delay:.3f}s into merging")
        assert_views_equal(view_frames(str(root), tmp_path / f"kill-{i}.duckdb"), before,
                           f"seed {seed}: {outcomes}")
        if proc.returncode == 0:
            root = copy_lake(template, tmp_path / f"lake-{i}")  # start over on a fresh copy
            env["CITYFLOW_LAKE"] = str(root)
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "compact", "--older-than", "1h"], env=env,
                          capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert data_files(root) == data_files(reference), f"seed {seed}: {outcomes}"
    assert_views_equal(view_frames(str(root), tmp_path / "final.duckdb"), before, f"seed {seed}")
    print(f"\ncompaction kill test seed={seed}: " + "; ".join(outcomes))


def test_a_warehouse_file_named_like_a_scan_alias_reads_a_compacted_lake(small_files_lake, tmp_path):
    """DuckDB names the attached database after the file's stem, so a warehouse `c.duckdb` made
    `c.n` in the superseded-file join ambiguous ("Ambiguous reference to column name n")."""
    template, before = small_files_lake
    root = copy_lake(template, tmp_path / "lake")
    compact(L.Lake(str(root)), older_than=timedelta(hours=1), now=LATER)
    assert_views_equal(view_frames(str(root), tmp_path / "c.duckdb"), before, "warehouse c.duckdb")
