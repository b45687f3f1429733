"""Period-scoped views (warehouse/scoped.py): they read only the period's date partitions,
and files landed under an older contract (a column missing) are read right, through the
checked path that groups files by schema."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from tests.support.report_lake import PERIOD_END, PERIOD_START, build_known_lake
from tests.support.warehouse_lake import sql
from warehouse.figures import compute_figures, parse_figure
from warehouse.scoped import period_views

DAY = date(2024, 3, 2)


@pytest.fixture()
def lake_db(tmp_path: Path) -> tuple[L.Lake, Path]:
    lake = L.Lake(str(tmp_path / "lake"))
    build_known_lake(lake)
    db = tmp_path / "wh" / "city.duckdb"
    sql(lake, db, "SELECT 1")  # build the views
    return lake, db


def _connect(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _drop_column_in_one_file(lake: L.Lake, column: str) -> str:
    """Rewrite one raw traffic file of DAY without `column`, as a file landed before the
    contract version that added it would be (same name, same rows)."""
    rel = next(lake.list_files(f"{L.RAW}/source=traffic/date={DAY}"))
    path = lake.path(rel)
    table = pq.read_table(path, partitioning=None)
    pq.write_table(table.drop_columns([column]), path)
    return rel


def test_scoped_views_read_only_the_period_and_are_dropped(lake_db: tuple[L.Lake, Path]) -> None:
    lake, db = lake_db
    con = _connect(db)
    try:
        every = con.execute("SELECT DISTINCT date FROM raw_traffic ORDER BY 1").fetchall()
        assert len(every) > 1, "the known lake should hold other days than the period's"
        with period_views(con, lake, DAY, DAY, [["raw_traffic", "traffic_1m"]]) as scans:
            assert con.execute("SELECT DISTINCT date FROM raw_traffic").fetchall() == [(DAY,)]
            assert con.execute("SELECT DISTINCT date FROM traffic_1m").fetchall() == [(DAY,)]
            assert scans.files("raw", "traffic") and all(f"/date={DAY}/" in f for f in scans.files("raw", "traffic"))
        assert con.execute("SELECT DISTINCT date FROM raw_traffic ORDER BY 1").fetchall() == every
    finally:
        con.close()


def test_older_schema_file_is_read_through_the_checked_path(lake_db: tuple[L.Lake, Path]) -> None:
    lake, db = lake_db
    _drop_column_in_one_file(lake, "road_temp_c")
    query = ("SELECT detector_id, ts, road_temp_c, vehicle_count FROM raw_traffic "
             f"WHERE date = DATE '{DAY}' ORDER BY kafka_partition, kafka_offset")
    con = _connect(db)
    try:
        whole = con.execute(query).fetchall()  # the view: union_by_name over every file
        assert any(r[2] is None for r in whole)
        with period_views(con, lake, DAY, DAY, [["raw_traffic"]]), \
                pytest.raises(duckdb.InvalidInputException, match="schema mismatch"):
            con.execute(query).fetchall()  # the fast path refuses, never guesses
        with period_views(con, lake, DAY, DAY, [["raw_traffic"]], checked=True):
            assert con.execute(query).fetchall() == whole
    finally:
        con.close()


def test_compute_figures_falls_back_to_the_checked_path(lake_db: tuple[L.Lake, Path], tmp_path: Path) -> None:
    lake, db = lake_db
    _drop_column_in_one_file(lake, "road_temp_c")
    figure = tmp_path / "road_temperature.sql"
    figure.write_text(
        "-- road_temperature: readings with and without a road temperature in the period.\n"
        "-- param: start TIMESTAMP: period start (UTC, inclusive)\n"
        "-- param: end TIMESTAMP: period end (UTC, exclusive)\n"
        "-- title: Road temperature\n-- section: traffic\n"
        "-- definition: raw traffic readings of the period\n"
        "-- column: with_temp [readings]: readings with road_temp_c\n"
        "-- column: readings [readings]: all readings\n"
        "SELECT CAST(count(road_temp_c) AS BIGINT) AS with_temp, CAST(count(*) AS BIGINT) AS readings\n"
        "FROM raw_traffic WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)\n"
        "  AND ts >= $start AND ts < $end\n")
    fig = parse_figure(figure)
    con = _connect(db)
    try:
        whole = fig.compute(con, PERIOD_START, PERIOD_END)
        scoped = compute_figures(con, lake, [fig], PERIOD_START, PERIOD_END)
    finally:
        con.close()
    assert whole.column("readings")[0].as_py() > 0
    assert scoped[fig.name].equals(whole)


def test_a_shared_table_keeps_the_columns_its_readers_name(lake_db: tuple[L.Lake, Path]) -> None:
    """traffic_1m, read by two queries, is materialised once with only the columns their SQL
    names (fewer columns to de-duplicate and copy), and whole when a reader selects *; the rows
    are the view's either way."""
    lake, db = lake_db
    readers = [["traffic_1m"], ["traffic_1m"]]
    named = ["SELECT district, sum(vehicle_count) FROM traffic_1m WHERE date = $d GROUP BY 1",
             "SELECT count(*) FROM traffic_1m t WHERE t.avg_occupancy_pct >= 25 -- entity"]
    con = _connect(db)
    try:
        every = [d[0] for d in con.execute("SELECT * FROM traffic_1m LIMIT 0").description]
        whole = con.execute(f"SELECT district, date, vehicle_count, avg_occupancy_pct, entity FROM traffic_1m "
                            f"WHERE date = DATE '{DAY}' ORDER BY ALL").fetchall()
        with period_views(con, lake, DAY, DAY, readers, texts=named):
            kept = [d[0] for d in con.execute("SELECT * FROM traffic_1m LIMIT 0").description]
            assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = 'traffic_1m'"
                               ).fetchone() == (1,)
            scoped = con.execute("SELECT district, date, vehicle_count, avg_occupancy_pct, entity FROM traffic_1m "
                                 "ORDER BY ALL").fetchall()
        assert kept == [c for c in every if c in {"district", "date", "vehicle_count", "avg_occupancy_pct", "entity"}]
        assert scoped == whole and len(whole) > 0
        with period_views(con, lake, DAY, DAY, readers, texts=[named[0], "SELECT * FROM traffic_1m"]):
            assert [d[0] for d in con.execute("SELECT * FROM traffic_1m LIMIT 0").description] == every
    finally:
        con.close()
