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
    assert _records(report["supply_by_district"]) == [
        {"district": "Mitte", "assets": 2, "energy_mwh": pytest.approx(2.0), "water_m3": pytest.approx(12.0),
         "heat_mwh": None, "min_pressure_bar": pytest.approx(2.9)},
        {"district": "Süd", "assets": 1, "energy_mwh": None, "water_m3": None, "heat_mwh": pytest.approx(0.25),
         "min_pressure_bar": None},
    ]
    assert _records(report["data_quality"]) == [
        {"kind": "quarantined", "source": "traffic", "reason": "not_json", "records": 2},
        {"kind": "quarantined", "source": "wifi", "reason": "out_of_range", "records": 1},
        {"kind": "late", "source": "traffic", "reason": "late_event", "records": 1},
    ]
    assert earlier["busiest_roads"]["road"].tolist() == ["A40"]
    assert earlier["lighting_by_district"].empty and earlier["fleet_status"].empty
    assert _records(earlier["supply_by_district"]) == [
        {"district": "Süd", "assets": 1, "energy_mwh": None, "water_m3": None, "heat_mwh": pytest.approx(0.999),
         "min_pressure_bar": None}]

    text = format_report(report)
    assert "2024-03-02" in text and "Mülheimer Str" in text and "out_of_range" in text
    assert "Supply networks per district" in text


def test_daily_report_on_an_empty_lake_has_empty_sections(lake: L.Lake, db_path: Path) -> None:
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)
    finally:
        con.close()
    assert report and all(f.empty and f.attrs["day"] is None for f in report.values())
    assert "no data" in format_report(report)


def _alert(anomaly_id: str, kind: str, entity: str, district: str | None, start: str,
           severity: str = "warning") -> dict[str, Any]:
    ws = pd.Timestamp(start, tz="UTC").to_pydatetime()
    return {"anomaly_id": anomaly_id, "source": kind.split(".")[0], "kind": kind, "severity": severity,
            "entity": entity, "district": district, "window_start": ws, "window_end": ws, "detected_at": ws,
            "value": 1.0, "expected": None, "score": 1.0, "evidence": "test", "kafka_partition": 0,
            "version": 0, "emitted_at": ws}


def test_daily_report_counts_anomalies_once_by_kind_district_and_entity(lake: L.Lake, db_path: Path) -> None:
    import pyarrow as pa

    from contracts.tables import ANOMALIES
    from tests.support.warehouse_lake import land

    report_lake(lake)
    alerts = pa.Table.from_pylist([
        _alert("a1", "logistics.cold_chain", "truck-0001", "Mitte", "2024-03-02 10:00", "critical"),
        _alert("a2", "logistics.stalled", "truck-0001", "Mitte", "2024-03-02 10:20"),
        _alert("a3", "logistics.stalled", "truck-0002", None, "2024-03-02 10:40"),
    ], schema=ANOMALIES.schema)
    land(lake, L.ANOMALIES, "logistics", alerts, "window_start", first=0, last=99)
    # the same alert landed again under another offset range (a replay): counted once
    land(lake, L.ANOMALIES, "logistics", alerts.slice(0, 1), "window_start", first=0, last=120)
    build_warehouse(lake.root, db_path)
    con = connect(load_settings(lake=lake.root, warehouse_db=db_path))
    try:
        report = daily_report(con)
    finally:
        con.close()
    assert _records(report["anomalies"]) == [
        {"kind": "logistics.cold_chain", "district": "Mitte", "anomalies": 1, "critical": 1, "entities": 1},
        {"kind": "logistics.stalled", "district": "(none)", "anomalies": 1, "critical": 0, "entities": 1},
        {"kind": "logistics.stalled", "district": "Mitte", "anomalies": 1, "critical": 0, "entities": 1},
    ]
    top = _records(report["anomaly_entities"].drop(columns=["first_start"]))
    assert top == [
        {"source": "logistics", "entity": "truck-0001", "anomalies": 2,
         "kinds": "logistics.cold_chain, logistics.stalled"},
        {"source": "logistics", "entity": "truck-0002", "anomalies": 1, "kinds": "logistics.stalled"},
    ]
    assert "Anomalies by kind and district" in format_report(report)
