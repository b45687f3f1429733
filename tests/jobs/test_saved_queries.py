"""`cityflow query` for analysts: named saved queries with typed parameters, `--out FILE` in
csv/json/parquet, and the `data_freshness` view; on real Parquet files and real DuckDB."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from jobs.commands import warehouse as cmd
from tests.support.warehouse_lake import land, query_args, raw_table, sql, traffic_row, window_table
from warehouse.saved import (
    QUERY_DIR,
    SavedQueryError,
    parse_params,
    parse_query,
    saved_queries,
    saved_query,
)

DAY = "2024-03-02"
ROADS = {"d1": ("A59", "Mitte"), "d2": ("A59", "Mitte"), "d3": ("A40", "Hamborn"),
         "d4": ("Mülheimer Str", "Mitte"), "d5": ("A3", "Süd")}



def traffic_day(lake: L.Lake, day: str, seed: int) -> pd.DataFrame:
    """Land one hour of random raw readings and their 1-minute windows; return the windows
    joined to their road (what the recompute works from)."""
    rng = random.Random(seed)
    raw, windows = [], []
    for minute in range(0, 60, 3):
        for det, (road, district) in ROADS.items():
            n = rng.randint(0, 40)
            speed = None if n == 0 else round(rng.uniform(10, 90), 1)
            ts = f"{day}T08:{minute:02d}:10"
            raw.append(traffic_row(det, ts, road=road, district=district, vehicle_count=n, avg_speed_kmh=speed))
            windows.append({"entity": det, "district": district, "window_start": f"{day}T08:{minute:02d}:00",
                            "vehicle_count": n, "avg_speed_kmh": speed, "n_events": 1})
    land(lake, L.RAW, "traffic", raw_table("traffic", raw), "ts")
    land(lake, L.WINDOWS, "traffic", window_table("traffic", windows), "window_start")
    frame = pd.DataFrame(windows)
    frame["road"] = frame["entity"].map(lambda d: ROADS[d][0])
    return frame


def busiest_roads_recompute(w: pd.DataFrame, top: int) -> pd.DataFrame:
    rows = []
    for (road, district), g in w.groupby(["road", "district"]):
        sped = g[g["avg_speed_kmh"].notna()]
        n = sped["vehicle_count"].sum()
        speed = round((sped["avg_speed_kmh"] * sped["vehicle_count"]).sum() / n, 1) if n else None
        rows.append({"road": road, "district": district, "vehicles": int(g["vehicle_count"].sum()),
                     "avg_speed_kmh": speed})
    out = pd.DataFrame(rows).sort_values(["vehicles", "road", "district"], ascending=[False, True, True])
    return out.head(top).reset_index(drop=True)


# -- the saved query files ----------------------------------------------------------------------
def test_every_saved_query_parses_and_runs_on_an_empty_lake(lake: L.Lake, db_path: Path) -> None:
    queries = saved_queries()
    assert {"busiest_roads", "anomalies_by_kind", "quarantine_by_reason", "stale_sources"} <= set(queries)
    for q in queries.values():
        assert q.description and all(p.doc for p in q.params), q.name
        sql(lake, db_path, "SELECT 1")  # build the views
        con = duckdb.connect(str(db_path), read_only=True)
        try:
            con.execute(q.sql, q.bind({}) or None)
            con.fetchall()
        finally:
            con.close()


def test_a_query_header_must_declare_exactly_the_parameters_it_uses(tmp_path: Path) -> None:
    bad = tmp_path / "q.sql"
    bad.write_text("-- q: something\n-- param: day DATE: the day\nSELECT $day, $other\n")
    with pytest.raises(SavedQueryError, match="differ"):
        parse_query(bad)
    bad.write_text("-- q: something\n-- param: day DATETIME: the day\nSELECT $day\n")
    with pytest.raises(SavedQueryError, match="TYPE one of"):
        parse_query(bad)
    bad.write_text("-- other: something\nSELECT 1\n")
    with pytest.raises(SavedQueryError, match="first line"):
        parse_query(bad)


def test_parameters_are_typed_and_checked_before_the_query_runs() -> None:
    q = saved_query("busiest_roads")
    assert q.bind({"day": DAY, "top": "3"}) == {"day": datetime(2024, 3, 2).date(), "top": 3}
    assert q.bind({}) == {"day": None, "top": None}
    with pytest.raises(SavedQueryError, match="--param day: expected DATE"):
        q.bind({"day": "2024-03-02'; DROP VIEW traffic_1m; --"})
    with pytest.raises(SavedQueryError, match="unknown parameter.*dya.*its parameters: day, top"):
        q.bind({"dya": DAY})
    with pytest.raises(SavedQueryError, match="expected key=value"):
        parse_params(["day"])
    with pytest.raises(SavedQueryError, match="given twice"):
        parse_params(["day=1", "day=2"])
    with pytest.raises(SavedQueryError, match="no saved query 'nope'.*busiest_roads"):
        saved_query("nope")


def test_a_text_parameter_is_bound_not_pasted(tmp_path: Path, lake: L.Lake, db_path: Path) -> None:
    qdir = tmp_path / "queries"
    qdir.mkdir()
    (qdir / "echo.sql").write_text("-- echo: returns its parameter\n-- param: who VARCHAR: anything\n"
                                   "SELECT $who AS who, (SELECT count(*) FROM raw_traffic) AS n\n")
    q = saved_query("echo", qdir)
    hostile = "x' AS who; DROP VIEW raw_traffic; SELECT '"
    sql(lake, db_path, "SELECT 1")
    con = duckdb.connect(str(db_path))
    try:
        assert con.execute(q.sql, q.bind({"who": hostile})).fetchall() == [(hostile, 0)]
        assert con.execute("SELECT count(*) FROM raw_traffic").fetchone() == (0,)
    finally:
        con.close()


# -- through the command -----------------------------------------------------------------------
def test_busiest_roads_equals_a_pandas_recompute_in_every_output(
    lake: L.Lake, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows = traffic_day(lake, DAY, seed=5)
    traffic_day(lake, "2024-03-01", seed=6)  # another day, which must not count
    expected = busiest_roads_recompute(windows, top=3)

    out = tmp_path / "exports" / "roads.parquet"
    assert cmd.run_query(query_args(name="busiest_roads", param=[f"day={DAY}", "top=3"], out=out)) == 0
    got = pq.read_table(out).to_pandas()
    pd.testing.assert_frame_equal(got[["road", "district"]], expected[["road", "district"]])
    assert got["vehicles"].tolist() == expected["vehicles"].tolist()
    assert got["avg_speed_kmh"].tolist() == pytest.approx(expected["avg_speed_kmh"].tolist())
    assert "wrote 3 rows" in capsys.readouterr().err
    assert [p.name for p in out.parent.iterdir()] == ["roads.parquet"]  # no temp file left

    csv_out = tmp_path / "roads.csv"
    assert cmd.run_query(query_args(name="busiest_roads", param=[f"day={DAY}", "top=3"], out=csv_out)) == 0
    assert pd.read_csv(csv_out)["vehicles"].tolist() == expected["vehicles"].tolist()

    # default day: the latest day with windows, which is DAY
    assert cmd.run_query(query_args(name="busiest_roads", format="json")) == 0
    got_json = pd.read_json(io.StringIO(capsys.readouterr().out))
    assert got_json["vehicles"].tolist() == busiest_roads_recompute(windows, top=10)["vehicles"].tolist()


def test_query_command_user_errors_exit_2_with_one_line(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (query_args(name="nope"), "no saved query 'nope'"),
        (query_args(name="busiest_roads", param=["day=yesterday"]), "--param day: expected DATE"),
        (query_args(sql="SELECT 1", format="parquet"), "add --out FILE"),
        (query_args(sql="SELECT 1", name="busiest_roads"), "not both"),
        (query_args(sql="SELECT 1", param=["day=2024-01-01"]), "--param goes with --name"),
        (query_args(), "give a SQL statement, --name NAME or --list"),
    ]
    for args, message in cases:
        assert cmd.run_query(args) == 2
        out, err = capsys.readouterr()
        assert out == "" and message in err and err.count("\n") == 1, (args, err)


def test_query_list_shows_every_query_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run_query(query_args(list=True)) == 0
    out = capsys.readouterr().out
    for q in saved_queries().values():
        assert f"cityflow query --name {q.name}" in out
        for p in q.params:
            assert f"{p.name} ({p.type}" in out
    assert len(list(QUERY_DIR.glob("*.sql"))) == len(saved_queries())


def test_sql_results_can_be_written_as_parquet_with_their_types(
    lake: L.Lake, cli_env: None, tmp_path: Path
) -> None:
    traffic_day(lake, DAY, seed=1)
    out = tmp_path / "raw.parquet"
    assert cmd.run_query(query_args(sql="SELECT detector_id, ts, vehicle_count FROM raw_traffic", out=out)) == 0
    table = pq.read_table(out)
    assert table.num_rows == 100
    assert str(table.schema.field("ts").type).startswith("timestamp")
    assert table.schema.field("vehicle_count").type.bit_width >= 32


# -- data_freshness --------------------------------------------------------------------------
def test_data_freshness_per_source(lake: L.Lake, db_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    recent = now - timedelta(minutes=10)
    older = now - timedelta(hours=3)
    hour = recent.replace(minute=0, second=0)
    rows = [traffic_row("d1", recent.isoformat()[:19]), traffic_row("d2", max(hour, recent - timedelta(minutes=1)).isoformat()[:19])]
    land(lake, L.RAW, "traffic", raw_table("traffic", rows), "ts")
    land(lake, L.RAW, "traffic", raw_table("traffic", [traffic_row("d3", older.isoformat()[:19])], first_offset=2),
         "ts", first=2)
    got = sql(lake, db_path, "SELECT * FROM data_freshness").set_index("source")
    assert set(got.index) == {"traffic", "lighting", "wifi", "logistics", "supply"}
    traffic = got.loc["traffic"]
    assert traffic["last_event_ts"].to_pydatetime() == recent
    assert traffic["rows_last_hour"] == 2
    assert 600 <= traffic["lag_s"] < 600 + 120  # seconds between landing and querying
    for source in ("lighting", "wifi", "logistics", "supply"):
        assert pd.isna(got.loc[source, "last_event_ts"]) and got.loc[source, "rows_last_hour"] == 0

    q = saved_query("stale_sources")
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        strict = [r[0] for r in con.execute(q.sql, q.bind({"max_lag_s": "60"})).fetchall()]
        lenient = [r[0] for r in con.execute(q.sql, q.bind({"max_lag_s": "3600"})).fetchall()]
    finally:
        con.close()
    assert strict == ["lighting", "logistics", "supply", "traffic", "wifi"]
    assert lenient == ["lighting", "logistics", "supply", "wifi"]


def test_a_missing_time_prints_as_a_dash(lake: L.Lake, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run_query(query_args(sql="SELECT source, last_event_ts FROM data_freshness")) == 0
    out = capsys.readouterr().out
    assert "NaT" not in out and "traffic    -" in out
