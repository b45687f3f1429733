"""The lake is plain Hive-partitioned Parquet, so an engine that scales past one machine reads it:
Apache Spark (pyspark, local mode, Java 17) gets the same rows per table and the same
latest-version window values as DuckDB's views, Hive partition columns included. This is the
proof behind docs/deploy.md's "read it from Spark or Trino"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts import lake as L
from tests.support.lake_checks import Records
from warehouse.db import build_warehouse

pytestmark = pytest.mark.slow  # a JVM start and a Spark session: ~1 min

pyspark = pytest.importorskip("pyspark", reason="pip install -e '.[spark]' (make test-slow does)")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java 17", allow_module_level=True)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("cityflow-lake")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_reads_what_duckdb_reads(spark, tmp_path: Path) -> None:
    import duckdb
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lake = L.Lake(str(tmp_path / "lake"))
    for p in (0, 1):  # two traffic partitions, with corrections, late events and quarantine
        Records(partition=p, n=600, seed=21 + p).land(lake, batch_size=60, flush_every=2)
    db = tmp_path / "wh.duckdb"
    build_warehouse(lake.root, db)
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    try:
        tables = [t for t in L.TABLES if (Path(lake.root) / t).exists()]
        assert {L.RAW, L.WINDOWS, L.QUARANTINE, L.LATE_EVENTS} <= set(tables)
        for table in tables:
            frame = spark.read.option("mergeSchema", "true").parquet(f"{lake.root}/{table}")
            assert {"source", "date", "hour"} <= set(frame.columns), frame.columns  # Hive partitions found
            by_partition = sorted((r["source"], str(r["date"]), int(r["hour"]), r["count"])
                                  for r in frame.groupBy("source", "date", "hour").count().collect())
            duck = sorted((s, str(d), int(h), n) for s, d, h, n in con.execute(
                f"SELECT source, date, hour, count(*) FROM read_parquet('{lake.root}/{table}/**/*.parquet', "
                "hive_partitioning = true, union_by_name = true) GROUP BY ALL").fetchall())
            assert by_partition == duck, table

        # the latest version of every window, as the traffic_1m view shows it
        windows = spark.read.option("mergeSchema", "true").parquet(f"{lake.root}/{L.WINDOWS}")
        latest = (windows.withColumn("rank", F.row_number().over(
            Window.partitionBy("entity", "window_start", "window_size_s").orderBy(F.col("version").desc())))
            .where("rank = 1 AND window_size_s = 60"))
        got = sorted((r["entity"], int(r["ws"]), r["version"], r["vehicle_count"],
                      None if r["avg_speed_kmh"] is None else round(r["avg_speed_kmh"], 9))
                     for r in latest.select("entity", (F.unix_millis("window_start")).alias("ws"), "version",
                                            "vehicle_count", "avg_speed_kmh").collect())
        want = sorted((e, int(ws), v, n, None if s is None else round(s, 9)) for e, ws, v, n, s in con.execute(
            "SELECT entity, epoch_ms(window_start), version, vehicle_count, avg_speed_kmh FROM traffic_1m").fetchall())
        assert len(got) > 100 and got == want
    finally:
        con.close()
