"""Day files (jobs/day_files.py): a closed day's live files copied into one file per table,
source and date, read by the report figures instead of the hour files only while the day's
files are exactly those it was copied from. Real DuckDB and Parquet on the known report lake."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from contracts import lake as L
from jobs.day_files import STALE_TEMP, build_day_files
from jobs.retention import apply_retention
from tests.support.report_lake import PERIOD_END, PERIOD_START, build_known_lake
from tests.support.warehouse_lake import land, sql, window_table
from warehouse.figures import compute_figures, figures
from warehouse.scoped import PeriodScans, live_hour_files, period_views

DAY = PERIOD_START.date().isoformat()  # 2024-03-02, closed long ago
NOW = datetime(2024, 3, 10, tzinfo=UTC)


@pytest.fixture()
def known(tmp_path: Path) -> tuple[L.Lake, Path]:
    lake = L.Lake(str(tmp_path / "lake"))
    build_known_lake(lake)
    db = tmp_path / "wh" / "city.duckdb"
    sql(lake, db, "SELECT 1")  # build the views
    return lake, db


def _figures(lake: L.Lake, db: Path, day_files: bool) -> dict[str, pa.Table]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return compute_figures(con, lake, figures().values(), PERIOD_START, PERIOD_END, day_files=day_files)
    finally:
        con.close()


def _views(db: Path) -> dict[str, pa.Table]:
    """Every figure over the built views (whole-lake globs, no day file involved)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return {n: f.compute(con, PERIOD_START, PERIOD_END) for n, f in figures().items()}
    finally:
        con.close()


def _scans(lake: L.Lake, db: Path) -> tuple[list[str], list[str]]:
    """(hour files, day files) the figures would read for the traffic windows of DAY."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        with period_views(con, lake, PERIOD_START.date(), PERIOD_START.date(), [["traffic_1m"]]) as scans:
            return scans.files(L.WINDOWS, "traffic"), scans.day_files(L.WINDOWS, "traffic")
    finally:
        con.close()


def _day_files(lake: L.Lake) -> list[str]:
    return sorted(f.path for f in lake.list_entries(L.DAYS) if not os.path.basename(f.path).startswith("."))


def _assert_figures_equal(got: dict[str, pa.Table], expected: dict[str, pa.Table]) -> None:
    assert set(got) == set(expected)
    for name, table in expected.items():
        assert got[name].equals(table), name


def test_day_files_hold_exactly_the_hour_files_rows_and_give_the_same_figures(known: tuple[L.Lake, Path]) -> None:
    lake, db = known
    before = _figures(lake, db, day_files=False)
    report = build_day_files(lake, now=NOW)
    assert report.total("written") > 0 and report.total("failed") == 0
    written = _day_files(lake)
    assert len(written) == report.total("written")
    # each day file holds the rows of its day's hour files, no more, no fewer (every column)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for rel in written:
            table, source, day = (p.split("=", 1)[-1] for p in rel.split("/")[1:4])
            live = live_hour_files(lake, table, source, day)
            scans = PeriodScans(con, lake, lake.root, PERIOD_START.date(), PERIOD_START.date(), checked=True)
            hours = scans.relation(table, source, [lake.path(f.path) for f in live])
            day_rel = f"read_parquet('{lake.path(rel)}', hive_partitioning = false)"
            names = list(con.execute(f"SELECT * FROM {day_rel} LIMIT 0").fetchdf().columns)
            assert (L.LATEST_FLAG in names) == (table == L.WINDOWS), rel  # windows' rows are flagged
            cols = ", ".join(f'"{c}"' for c in names if c != L.LATEST_FLAG)
            for a, b in ((f"SELECT {cols} FROM {day_rel}", f"SELECT {cols} FROM {hours}"),
                         (f"SELECT {cols} FROM {hours}", f"SELECT {cols} FROM {day_rel}")):
                assert con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone() == (0,), rel
            if table == L.WINDOWS:  # the flag keeps exactly one row per window: its highest version
                key = "entity, window_start, window_size_s, date, hour"
                kept = con.execute(f"SELECT count(*), count(DISTINCT ({key})) FROM {day_rel} WHERE _latest").fetchone()
                assert kept[0] == kept[1] == con.execute(f"SELECT count(DISTINCT ({key})) FROM {day_rel}").fetchone()[0]
                assert con.execute(f"""SELECT count(*) FROM {day_rel} AS d WHERE _latest AND version <
                    (SELECT max(version) FROM {day_rel} AS o WHERE o.entity = d.entity AND o.window_start = d.window_start
                     AND o.window_size_s = d.window_size_s)""").fetchone() == (0,), rel
                if source == "traffic":  # the known lake corrects some traffic windows: rows flagged false
                    assert con.execute(f"SELECT count(*) FROM {day_rel} WHERE NOT _latest").fetchone()[0] > 0
            n = con.execute(f"SELECT count(*) FROM {day_rel}").fetchone()[0]
            assert n == sum(lake.parquet_metadata(f.path).num_rows for f in live) > 0, rel
    finally:
        con.close()
    hour_files, day_files = _scans(lake, db)
    assert hour_files == [] and len(day_files) == 1  # the figures read the day file, not the hours
    after = _figures(lake, db, day_files=True)
    _assert_figures_equal(after, before)
    _assert_figures_equal(after, _views(db))


def test_a_second_run_writes_nothing(known: tuple[L.Lake, Path]) -> None:
    lake, _ = known
    first = build_day_files(lake, now=NOW)
    stamps = {f.path: f.mtime for f in lake.list_entries(L.DAYS)}
    again = build_day_files(lake, now=NOW)
    assert again.total("written") == 0 and again.total("current") == first.total("written") > 0
    assert {f.path: f.mtime for f in lake.list_entries(L.DAYS)} == stamps


def test_a_file_landed_after_the_copy_is_read_and_the_next_run_replaces_the_day_file(known: tuple[L.Lake, Path]) -> None:
    """A late correction lands into the copied day while the figures are read: the day file no
    longer names the day's files, so that day is read from its hour files (the new row counts),
    and the next run writes a new day file and deletes the old one."""
    lake, db = known
    build_day_files(lake, now=NOW)
    old = _day_files(lake)
    before = _figures(lake, db, day_files=True)
    late = window_table("traffic", [{"entity": "det-late", "district": "Mitte", "window_start": f"{DAY}T10:07:00",
                                     "n_events": 1, "vehicle_count": 5000, "avg_speed_kmh": 50.0,
                                     "avg_occupancy_pct": 10.0}])
    land(lake, L.WINDOWS, "traffic", late, "window_start", first=900_000, last=900_000)
    hour_files, day_files = _scans(lake, db)
    assert day_files == [] and any("900000" in f for f in hour_files)
    stale = _figures(lake, db, day_files=True)
    assert not stale["traffic_volume"].equals(before["traffic_volume"])  # the late row counts
    _assert_figures_equal(stale, _views(db))

    rerun = build_day_files(lake, now=NOW)
    assert rerun.total("written") == 1 and rerun.total("stale_deleted") == 1
    new = _day_files(lake)
    assert len(new) == len(old) and len(set(new) - set(old)) == 1
    assert _scans(lake, db)[0] == []
    _assert_figures_equal(_figures(lake, db, day_files=True), stale)


def test_a_file_rewritten_under_its_own_name_makes_the_day_file_stale(known: tuple[L.Lake, Path]) -> None:
    """A backfill publishes new content under an existing name: size and mtime are part of the
    day file's signature, so it is not read for the new content."""
    lake, db = known
    build_day_files(lake, now=NOW)
    victim = live_hour_files(lake, L.WINDOWS, "traffic", DAY)[0]
    time.sleep(0.01)  # a new mtime even on coarse clocks
    table = lake.read_table(victim.path)
    table = table.set_column(table.schema.get_field_index("vehicle_count"), "vehicle_count",
                             pa.array([10_000.0] * table.num_rows))
    lake.write_table_atomic(victim.path, table)
    assert _scans(lake, db)[1] == []
    _assert_figures_equal(_figures(lake, db, day_files=True), _views(db))


def test_open_days_are_not_copied(known: tuple[L.Lake, Path]) -> None:
    lake, _ = known
    last = max(d.rsplit("date=", 1)[-1] for d in lake.list_dirs(f"{L.WINDOWS}/source=traffic"))
    end_of_last = datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)
    build_day_files(lake, older_than=timedelta(hours=1), now=end_of_last + timedelta(minutes=30))
    assert _day_files(lake) and not any(f"date={last}/" in f for f in _day_files(lake))
    build_day_files(lake, older_than=timedelta(hours=1), now=end_of_last + timedelta(hours=1))
    assert any(f"date={last}/" in f for f in _day_files(lake))


def test_a_torn_day_file_is_never_read_and_is_removed_once_old(known: tuple[L.Lake, Path]) -> None:
    """A writer killed mid-copy leaves a hidden temp file: readers only open the name of the
    day's current signature, and a later run removes the temp file once it is old."""
    lake, db = known
    d = L.day_file_dir(L.WINDOWS, "traffic", DAY)
    lake.write_bytes_atomic(f"{d}/.tmp-dead.parquet", b"PAR1 torn")
    assert _scans(lake, db)[1] == []
    build_day_files(lake, now=NOW)
    assert lake.exists(f"{d}/.tmp-dead.parquet")  # young: may be a live writer's
    report = build_day_files(lake, now=datetime.now(UTC) + STALE_TEMP + timedelta(minutes=1))
    assert not lake.exists(f"{d}/.tmp-dead.parquet") and report.total("stale_deleted") >= 1
    assert len(_scans(lake, db)[1]) == 1


def test_retention_drops_the_day_files_of_the_days_it_drops(known: tuple[L.Lake, Path]) -> None:
    lake, _ = known
    build_day_files(lake, now=NOW)
    days = {f.split("date=", 1)[1][:10] for f in _day_files(lake)}
    assert DAY in days and len(days) > 1
    apply_retention(lake, keep_days=1, now=datetime.fromisoformat(f"{DAY}T12:00:00+00:00") + timedelta(days=1))
    left = {f.split("date=", 1)[1][:10] for f in _day_files(lake)}
    assert left and all(d >= DAY for d in left) and left < days


def test_an_input_deleted_under_the_copy_is_reported_and_copied_next_run(known: tuple[L.Lake, Path],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction or a backfill deletes a file the copy has just listed: that day is not
    written (counted as failed, logged), the others are, and the next run copies it."""
    import jobs.day_files as D

    lake, db = known
    listed = D.live_hour_files
    saved: dict[str, bytes] = {}  # the deleted file, to put back

    def list_then_delete(lake_: L.Lake, table: str, source: str, day: str) -> list[L.LakeFile]:
        live = listed(lake_, table, source, day)
        if not saved and table == L.WINDOWS and source == "traffic" and day == DAY:
            saved[live[0].path] = lake_.read_bytes(live[0].path)
            lake_.delete(live[0].path)
        return live

    monkeypatch.setattr(D, "live_hour_files", list_then_delete)
    report = build_day_files(lake, now=NOW)
    assert report.tables[L.WINDOWS].failed == 1 and report.total("written") > 0
    assert not any(f"windows/source=traffic/date={DAY}/" in f for f in _day_files(lake))
    for rel, data in saved.items():
        lake.write_bytes_atomic(rel, data)
    monkeypatch.setattr(D, "live_hour_files", listed)
    again = build_day_files(lake, now=NOW)
    assert again.total("written") == 1 and again.total("failed") == 0
    assert len(_scans(lake, db)[1]) == 1



def test_a_day_file_of_an_older_schema_is_read_through_the_checked_path(known: tuple[L.Lake, Path]) -> None:
    """A day file written before a contract added a column lacks it: the contract-bound read
    fails with a schema mismatch and the figures are computed again on the checked path, which
    reads hour files only, so they still equal the views."""
    lake, db = known
    build_day_files(lake, now=NOW)
    (rel,) = [f for f in _day_files(lake) if f"windows/source=traffic/date={DAY}/" in f]
    older = lake.read_table(rel)
    lake.write_table_atomic(rel, older.drop_columns(["avg_occupancy_pct"]))
    from warehouse.figures import _compute_scoped

    con = duckdb.connect(str(db), read_only=True)
    try:  # the contract-bound path alone refuses it (what sends compute_figures to the checked one)
        with pytest.raises(duckdb.InvalidInputException, match="schema mismatch"):
            _compute_scoped(con, lake, list(figures().values()), PERIOD_START, PERIOD_END,
                            lambda f, t: None, checked=False, day_files=True)
    finally:
        con.close()
    _assert_figures_equal(_figures(lake, db, day_files=True), _views(db))
