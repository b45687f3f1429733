"""The daily report on a tiny known lake and on an empty one."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contracts import lake as L
from contracts.settings import load_settings
from tests.support.warehouse_lake import (
    report_lake,
)
from warehouse.db import build_warehouse, connect
from warehouse.report import daily_report, format_report, latest_day


# -- daily report ----------------------------------------------------------------------------
def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def test_daily_report_on_a_tiny_known_dataset(lake: L.Lake, db_path: Path) -> None:
    report_lake(lake)
    build_warehouse(lake.root, db_path)
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)  # default: latest day with data = 2024-03-02
        earlier = daily_report(con, date(2024, 3, 1))
        # the CLI finds the latest day from the date= directories: the same answer as SQL,
        # and a newer date directory holding only a temp file or nothing does not count
        for empty in ("date=2024-03-05/hour=1", "date=2024-03-04/hour=2"):
            os.makedirs(os.path.join(lake.root, "raw", "source=traffic", empty), exist_ok=True)
        Path(
            lake.root, "raw", "source=traffic", "date=2024-03-04", "hour=2", ".tmp-x.parquet"
        ).write_bytes(b"")
        assert latest_day(con, lake) == latest_day(con) == date(2024, 3, 2)
        assert daily_report(con, lake=lake)["busiest_roads"].equals(report["busiest_roads"])
    finally:
        con.close()

    assert all(f.attrs["day"] == "2024-03-02" for f in report.values())
    roads = _records(report["busiest_roads"])
    assert roads == [
        {"road": "A59", "detectors": 1, "vehicles": 40, "mean_speed_kmh": pytest.approx(65.0)},
        {
            "road": "Mülheimer Str",
            "detectors": 1,
            "vehicles": 5,
            "mean_speed_kmh": pytest.approx(30.0),
        },
    ]
    assert _records(report["lighting_by_district"]) == [
        {
            "district": "Mitte",
            "lamps": 2,
            "lamps_with_faults": 1,
            "fault_reports": 3,
            "energy_kwh": pytest.approx(0.2),
        },
        {
            "district": "Süd",
            "lamps": 1,
            "lamps_with_faults": 1,
            "fault_reports": 1,
            "energy_kwh": pytest.approx(0.05),
        },
    ]
    assert _records(report["wifi_by_site_type"]) == [
        {
            "site_type": "street",
            "access_points": 1,
            "mean_clients": 10.0,
            "max_clients": 10,
            "gb_transferred": 0.0,
            "auth_failures": 0,
        },
        {
            "site_type": "zoo",
            "access_points": 1,
            "mean_clients": 200.0,
            "max_clients": 300,
            "gb_transferred": pytest.approx(2.0),
            "auth_failures": 3,
        },
    ]
    assert _records(report["fleet_status"]) == [
        {
            "vehicles": 2,
            "position_fixes": 8,
            "moving_share": 0.25,
            "idle_share": 0.125,
            "loading_share": 0.125,
            "unloading_share": 0.5,
            "max_cargo_temp_c": 4.5,
        },
    ]
    assert _records(report["data_quality"]) == [
        {"kind": "quarantined", "source": "traffic", "reason": "not_json", "records": 2},
        {"kind": "quarantined", "source": "wifi", "reason": "out_of_range", "records": 1},
        {"kind": "late", "source": "traffic", "reason": "late_event", "records": 1},
    ]
    assert earlier["busiest_roads"]["road"].tolist() == ["A40"]
    assert earlier["lighting_by_district"].empty and earlier["fleet_status"].empty

    text = format_report(report)
    assert "2024-03-02" in text and "Mülheimer Str" in text and "out_of_range" in text


def test_daily_report_on_an_empty_lake_has_empty_sections(lake: L.Lake, db_path: Path) -> None:
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)
    finally:
        con.close()
    assert report and all(f.empty and f.attrs["day"] is None for f in report.values())
    assert "no data" in format_report(report)
