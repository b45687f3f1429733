"""Every report figure (warehouse/figures/) on a small known lake equals an independent pandas
recompute from the rows that were landed; headers declare exactly the columns the SQL returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from tests.support.report_lake import PERIOD_END, PERIOD_START, KnownLake, build_known_lake
from tests.support.warehouse_lake import sql
from warehouse.figures import FigureError, compute_figures, figures, parse_figure

START = pd.Timestamp(PERIOD_START, tz="UTC")
END = pd.Timestamp(PERIOD_END, tz="UTC")


def in_period(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    return frame[(frame[col] >= START) & (frame[col] < END)]


def latest_traffic_windows(k: KnownLake) -> pd.DataFrame:
    w = k.traffic_windows.sort_values("version").groupby(["entity", "window_start"], as_index=False).last()
    return in_period(w, "window_start")


def weighted_speed(g: pd.DataFrame) -> float | None:
    s = g[g["avg_speed_kmh"].notna()]
    n = s["vehicle_count"].sum()
    return (s["avg_speed_kmh"] * s["vehicle_count"]).sum() / n if n else None


# -- recomputes, one per figure ----------------------------------------------------------------
def traffic_volume(k: KnownLake) -> pd.DataFrame:
    w = latest_traffic_windows(k)
    rows = [{"district": d, "detectors": g["entity"].nunique(), "vehicles": g["vehicle_count"].sum(),
             "avg_speed_kmh": weighted_speed(g)} for d, g in w.groupby("district")]
    return pd.DataFrame(rows).sort_values(["vehicles", "district"], ascending=[False, True])


def congestion_hours(k: KnownLake) -> pd.DataFrame:
    w = latest_traffic_windows(k)
    rows = []
    for d, g in w.groupby("district"):
        c = int((g["avg_occupancy_pct"] >= 25).sum())
        rows.append({"district": d, "detector_minutes": len(g), "congested_minutes": c,
                     "congestion_hours": c / 60, "congested_pct": 100 * c / len(g)})
    return pd.DataFrame(rows).sort_values(["congestion_hours", "district"], ascending=[False, True])


def worst_roads(k: KnownLake) -> pd.DataFrame:
    raw = in_period(k.raw_traffic, "ts")
    road_of = raw.groupby("detector_id")["road"].min()
    w = latest_traffic_windows(k)
    w = w[w["entity"].isin(road_of.index)].assign(road=lambda f: f["entity"].map(road_of))
    rows = []
    for road, g in w.groupby("road"):
        c = int((g["avg_occupancy_pct"] >= 25).sum())
        if c:
            rows.append({"road": road, "district": g["district"].min(), "congestion_hours": c / 60,
                         "vehicles": g["vehicle_count"].sum(), "avg_speed_kmh": weighted_speed(g)})
    out = pd.DataFrame(rows)
    out["_speed"] = out["avg_speed_kmh"].fillna(np.inf)
    out = out.sort_values(["congestion_hours", "_speed", "road"], ascending=[False, True, True]).head(10)
    return out.drop(columns="_speed")


def lighting_by_district(k: KnownLake) -> pd.DataFrame:
    w = in_period(k.lighting_windows, "window_start")
    rows = []
    for d, g in w.groupby("district"):
        day_on = g[(g["on_count"] + g["dimmed_count"] > 0) & (g["min_ambient_lux"] >= 1000)]
        rows.append({"district": d, "lamps": g["entity"].nunique(),
                     "availability_pct": 100 * (g["fault_count"] == 0).sum() / len(g),
                     "energy_kwh": g["energy_wh"].sum() / 1000, "lamps_on_in_daylight": day_on["entity"].nunique(),
                     "daylight_on_hours": len(day_on) * 0.25})
    return pd.DataFrame(rows).sort_values("district")


def wifi_by_site_type(k: KnownLake) -> pd.DataFrame:
    r = in_period(k.raw_wifi, "ts").copy()
    r["slot"] = r["ts"].dt.floor("5min")
    per_ap = r.groupby(["site_type", "ap_id", "slot"])["connected_clients"].mean().reset_index()
    peak = per_ap.groupby(["site_type", "slot"])["connected_clients"].sum().groupby("site_type").max()
    rows = [{"site_type": s, "access_points": g["ap_id"].nunique(), "mean_clients": g["connected_clients"].mean(),
             "peak_users": peak[s], "data_gb": (g["bytes_in"].sum() + g["bytes_out"].sum()) / 1e9,
             "auth_failures": g["auth_failures"].sum()} for s, g in r.groupby("site_type")]
    return pd.DataFrame(rows).sort_values("site_type")


def fleet_status(k: KnownLake) -> pd.DataFrame:
    w = in_period(k.logistics_windows, "window_start")
    total = w["n_events"].sum()
    rows = []
    for status in ("moving", "idle", "loading", "unloading"):
        col = w[f"{status}_count"]
        rows.append({"status": status, "vehicles": w.loc[col > 0, "entity"].nunique(), "fixes": col.sum(),
                     "share_pct": 100 * col.sum() / total, "hours": None})
    stalled = w[(w["idle_count"] == w["n_events"]) & (w["avg_speed_kmh"] < 1)]
    rows.append({"status": "stalled", "vehicles": stalled["entity"].nunique(), "fixes": stalled["n_events"].sum(),
                 "share_pct": 100 * stalled["n_events"].sum() / total, "hours": len(stalled) * 300 / 3600})
    return pd.DataFrame(rows)


def anomalies_by_kind(k: KnownLake) -> pd.DataFrame:
    a = in_period(k.anomalies, "window_start").assign(district=lambda f: f["district"].fillna("-"))
    rows = [{"kind": kind, "district": d, "alerts": len(g), "critical": (g["severity"] == "critical").sum(),
             "entities": g["entity"].nunique()} for (kind, d), g in a.groupby(["kind", "district"])]
    return pd.DataFrame(rows).sort_values(["alerts", "kind", "district"], ascending=[False, True, True])


def quarantine_by_reason(k: KnownLake) -> pd.DataFrame:
    q = in_period(k.quarantine, "received_at")
    out = q.groupby(["source", "reason"]).size().rename("records").reset_index()
    return out.sort_values(["records", "source", "reason"], ascending=[False, True, True])


def late_events(k: KnownLake) -> pd.DataFrame:
    e = in_period(k.late_events, "ts")
    rows = [{"source": "traffic", "late_records": e[["kafka_partition", "kafka_offset"]].drop_duplicates().shape[0],
             "max_lateness_s": e["lateness_s"].max()}] if len(e) else []
    return pd.DataFrame(rows, columns=["source", "late_records", "max_lateness_s"])


def source_freshness(k: KnownLake) -> pd.DataFrame:
    raws = {"traffic": k.raw_traffic, "wifi": k.raw_wifi, **k.raw_other}
    rows = []
    for source in sorted(raws):
        r = in_period(raws[source], "ts")
        last = r["ts"].max() if len(r) else None
        rows.append({"source": source, "events": len(r), "first_event_ts": r["ts"].min() if len(r) else None,
                     "last_event_ts": last, "gap_to_end_s": (END - last).total_seconds() if last is not None else None})
    return pd.DataFrame(rows)


def supply_by_district(k: KnownLake) -> pd.DataFrame:
    w = in_period(k.supply_windows, "window_start")
    rows = [{"district": d, "electricity_mwh": g["energy_kwh"].sum() / 1000, "water_m3": g["water_m3"].sum(),
             "heat_mwh": g["heat_kwh"].sum() / 1000,
             "peak_load_kw": g["max_load_kw"].max() if g["max_load_kw"].notna().any() else None}
            for d, g in w.groupby("district")]
    return pd.DataFrame(rows).sort_values("district")


def supply_night_flow(k: KnownLake) -> pd.DataFrame:
    w = in_period(k.supply_windows, "window_start")
    w = w[w["min_water_flow_m3h"].notna()]
    local = w["window_start"].dt.tz_convert("Europe/Berlin")
    w = w[local.dt.hour.isin([2, 3])].assign(night=local.dt.date)
    nightly = w.groupby(["entity", "district", "night"])["min_water_flow_m3h"].min().reset_index()
    rows = [{"entity": e, "district": d, "nights": len(g), "min_night_flow_m3h": g["min_water_flow_m3h"].min(),
             "max_night_flow_m3h": g["min_water_flow_m3h"].max()} for (e, d), g in nightly.groupby(["entity", "district"])]
    return pd.DataFrame(rows).sort_values("entity")


def supply_outages(k: KnownLake) -> pd.DataFrame:
    w = in_period(k.supply_windows, "window_start")
    w = w[w["max_load_kw"].notna() | w["min_voltage_v"].notna()]
    out = (w["max_load_kw"] <= 1.0) | (w["min_voltage_v"] < 207.0) | (w["max_voltage_v"] > 253.0)
    a = in_period(k.anomalies, "window_start")
    a = a[a["kind"] == "supply.power_outage"]
    rows = []
    for d in sorted(set(w["district"]) | set(a["district"])):
        g, o = w[w["district"] == d], w[out & (w["district"] == d)]
        rows.append({"district": d, "feeders": g["entity"].nunique(), "outage_hours": len(o) * 900 / 3600,
                     "feeders_out": o["entity"].nunique(), "outage_alerts": int((a["district"] == d).sum())})
    return pd.DataFrame(rows)


RECOMPUTES: dict[str, Callable[[KnownLake], pd.DataFrame]] = {
    f.__name__: f for f in (traffic_volume, congestion_hours, worst_roads, lighting_by_district, wifi_by_site_type,
                            fleet_status, anomalies_by_kind, quarantine_by_reason, late_events, source_freshness,
                            supply_by_district, supply_night_flow, supply_outages)
}


def assert_same(name: str, got: pd.DataFrame, expected: pd.DataFrame, decimals: dict[str, int]) -> None:
    """Same columns, rows and order; a number rounded by the SQL to d decimals may differ from
    the exact recompute by half a unit of its last place."""
    expected = expected.reset_index(drop=True)
    assert list(got.columns) == list(expected.columns), name
    assert len(got) == len(expected), (name, got, expected)
    for col in got.columns:
        g, e = got[col].tolist(), expected[col].tolist()
        for i, (a, b) in enumerate(zip(g, e)):
            if b is None or (isinstance(b, float) and np.isnan(b)) or b is pd.NaT:
                assert a is None or pd.isna(a), (name, col, i, a, b)
            elif isinstance(b, (int, float, np.integer, np.floating)) and not isinstance(b, bool):
                tol = 0.5 * 10 ** -decimals[col] + 1e-9 if col in decimals else 1e-9
                assert abs(float(a) - float(b)) <= tol, (name, col, i, a, b)
            else:
                assert a == b, (name, col, i, a, b)


def _decimals(fig_sql: str) -> dict[str, int]:
    """Decimals a figure rounds each column to, read from its SQL (`round(..., d) AS col`)."""
    import re

    out = {}
    for m in re.finditer(r",\s*(\d)\)\s+(?:END\s+)?AS\s+([a-z_][a-z0-9_]*)", fig_sql):
        out[m.group(2)] = int(m.group(1))
    return out


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> tuple[KnownLake, Path]:
    root = tmp_path_factory.mktemp("figures")
    lake = L.Lake(str(root / "lake"))
    k = build_known_lake(lake)
    db = root / "wh" / "city.duckdb"
    sql(lake, db, "SELECT 1")  # build the views
    return k, db


def test_every_figure_has_a_recompute() -> None:
    assert set(figures()) == set(RECOMPUTES)


@pytest.mark.parametrize("name", sorted(RECOMPUTES))
def test_figure_equals_pandas_recompute(name: str, known: tuple[KnownLake, Path]) -> None:
    k, db = known
    fig = figures()[name]
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        got = fig.compute(con, PERIOD_START, PERIOD_END).to_pandas()
    finally:
        con.close()
    expected = RECOMPUTES[name](k)
    assert len(expected) > 0, f"the known lake gives {name} no rows: the test would prove nothing"
    assert_same(name, got, expected, _decimals(fig.query.sql))


def test_every_figure_declares_exactly_its_columns_and_units(lake: L.Lake, db_path: Path) -> None:
    sql(lake, db_path, "SELECT 1")
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        for fig in figures().values():
            table = fig.compute(con, PERIOD_START, PERIOD_END)
            assert table.column_names == [c.name for c in fig.columns], fig.name
            assert table.num_rows == (len(CONTRACTS) if fig.name == "source_freshness" else 0), fig.name
            assert fig.title and fig.description and all(c.doc for c in fig.columns)
            numeric = [c for c in fig.columns if c.name not in ("district", "road", "source", "reason", "kind", "entity",
                                                                "site_type", "status", "first_event_ts",
                                                                "last_event_ts")]
            assert all(c.unit for c in numeric), (fig.name, [c.name for c in numeric if not c.unit])
    finally:
        con.close()


def test_a_figure_header_is_checked(tmp_path: Path) -> None:
    head = ("-- f: something\n-- param: start TIMESTAMP: s\n-- param: end TIMESTAMP: e\n"
            "-- title: F\n-- section: traffic\n")
    cases = [
        ("-- f: something\n-- param: day DATE: d\n-- title: F\n-- section: traffic\n-- column: a: x\nSELECT $day AS a\n",
         "exactly the required parameters"),
        (head + "-- column: a: x\n-- chart: pie x=a y=a\nSELECT $start, $end, 1 AS a\n", "bad chart line"),
        (head + "-- column: a: x\n-- chart: bar x=a y=b\nSELECT $start, $end, 1 AS a\n", "not declared"),
        (head + "-- column: A-1 [u]: x\nSELECT $start, $end\n", "bad column line"),
        (head.replace("traffic", "weather") + "-- column: a: x\nSELECT $start, $end\n", "section"),
    ]
    for text, message in cases:
        path = tmp_path / "f.sql"
        path.write_text(text)
        with pytest.raises(FigureError, match=message):
            parse_figure(path)


def test_readme_lists_every_figure() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in figures():
        assert f"| `{name}` |" in readme, name


def test_fleet_status_has_every_status_row_even_without_stalled_time(lake: L.Lake, db_path: Path) -> None:
    from tests.support.warehouse_lake import land, window_table

    rows = [{"entity": "truck-1", "window_start": "2024-03-02T06:00:00", "n_events": 4, "moving_count": 3,
             "idle_count": 1, "avg_speed_kmh": 30.0}]
    land(lake, L.WINDOWS, "logistics", window_table("logistics", rows), "window_start")
    sql(lake, db_path, "SELECT 1")
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        got = figures()["fleet_status"].compute(con, PERIOD_START, PERIOD_END).to_pylist()
    finally:
        con.close()
    assert [r["status"] for r in got] == ["moving", "idle", "loading", "unloading", "stalled"]
    assert [r["fixes"] for r in got] == [3, 1, 0, 0, 0] and [r["share_pct"] for r in got] == [75.0, 25.0, 0, 0, 0]
    assert got[-1]["hours"] == 0 and got[-1]["vehicles"] == 0 and got[0]["hours"] is None


@pytest.mark.parametrize("checked", [False, True], ids=["contract-bound", "schema-grouped"])
def test_period_scoped_figures_equal_the_views(checked: bool, known: tuple[KnownLake, Path]) -> None:
    """compute_figures reads only the period's date partitions (warehouse/scoped.py); both of
    its paths give every figure exactly as the views over the whole lake do (the known lake
    has rows on the days before and after the period)."""
    _, db = known
    figs = figures()
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        whole = {name: f.compute(con, PERIOD_START, PERIOD_END) for name, f in figs.items()}
        lake = L.Lake(con.execute("SELECT any_value(lake) FROM _cityflow_build").fetchone()[0])
        if checked:
            from warehouse.figures import _compute_scoped

            scoped = _compute_scoped(con, lake, list(figs.values()), PERIOD_START, PERIOD_END,
                                     lambda f, t: None, checked=True)
        else:
            scoped = compute_figures(con, lake, figs.values(), PERIOD_START, PERIOD_END)
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)
    finally:
        con.close()
    for name in figs:
        assert scoped[name].equals(whole[name]), name
