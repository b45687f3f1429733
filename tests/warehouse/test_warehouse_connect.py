"""Connecting to the warehouse builds it when missing and rebuilds it when a table gets files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from contracts import lake as L
from contracts.settings import load_settings
from tests.support.warehouse_lake import (
    land,
    raw_table,
    utc,
    window_table,
)
from warehouse.db import connect, query


# -- connect / query -------------------------------------------------------------------------
def test_connect_builds_when_missing_and_picks_up_a_table_that_got_files(
    lake: L.Lake, db_path: Path
) -> None:
    settings = load_settings(lake=lake.root, warehouse_db=db_path)
    assert query("SELECT count(*) AS n FROM raw_wifi", settings)["n"][0] == 0  # builds the db
    assert db_path.exists()
    row = {
        "ap_id": "ap-1",
        "ts": utc("2024-03-02T10:00:00"),
        "site_type": "zoo",
        "district": "Mitte",
        "connected_clients": 3,
        "bytes_in": 1,
        "bytes_out": 2,
        "auth_failures": 0,
        "latency_ms": 5.0,
        "status": "up",
    }
    land(lake, L.RAW, "wifi", raw_table("wifi", [row]), "ts")
    assert query("SELECT count(*) AS n FROM raw_wifi", settings)["n"][0] == 1  # fallback replaced
    con = connect(settings)
    try:
        with pytest.raises(duckdb.Error):  # read-only by default
            con.execute("CREATE TABLE scratch (x INTEGER)")
    finally:
        con.close()


def test_views_show_the_configured_window_size_and_rebuild_when_it_changes(
    lake: L.Lake, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CITYFLOW_WINDOW_TRAFFIC changes what the workers land; the latest-version views must show
    those windows (not the default size), and a changed setting rebuilds the views."""
    two_min = window_table("traffic", [{"entity": "d1", "window_start": "2024-03-02T10:00:00",
                                        "window_size_s": 120, "vehicle_count": 7}])
    one_min = window_table("traffic", [{"entity": "d1", "window_start": "2024-03-02T10:00:00", "vehicle_count": 3}])
    land(lake, L.WINDOWS, "traffic", two_min, "window_start", first=0)
    land(lake, L.WINDOWS, "traffic", one_min, "window_start", first=1)
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(db_path))

    def counts() -> list[tuple[int, int]]:
        con = connect(load_settings())
        try:
            return con.execute("SELECT window_size_s, vehicle_count FROM traffic_1m").fetchall()
        finally:
            con.close()

    assert counts() == [(60, 3)]
    monkeypatch.setenv("CITYFLOW_WINDOW_TRAFFIC", '{"size_s": 120}')
    assert counts() == [(120, 7)]


def test_a_duckdb_without_the_disabled_optimizer_rule_still_connects(
    lake: L.Lake, db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`duckdb>=1.0` admits versions that lack `top_n_window_elimination`; turning it off is a
    speed setting, so an unknown rule is logged and the warehouse works as before."""
    from warehouse import db

    con = duckdb.connect()
    db.prepare_connection(con, lake.root)
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0] == db.DISABLED_OPTIMIZERS
    monkeypatch.setattr(db, "DISABLED_OPTIMIZERS", "a_rule_this_duckdb_does_not_have")
    settings = load_settings(lake=lake.root, warehouse_db=db_path)
    assert query("SELECT count(*) AS n FROM raw_wifi", settings)["n"][0] == 0
    assert "does not know the optimizer rule a_rule_this_duckdb_does_not_have" in caplog.text
