"""Aggregate functions are objects in one registry: declaring a new one (p50) in one place
makes it work in the window engine, the landed schemas, the district merge and the docs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from contracts.aggregates import AGGREGATE_FUNCTIONS, AGGREGATES, Aggregate, Quantile, register
from contracts.windows import WindowGeometry
from streams.windows import WindowEngine

T0 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000


@pytest.fixture
def p50(monkeypatch):
    """A p50 function declared once (registered for this test only), and a traffic aggregate using it."""

    @register
    class P50(Quantile):
        name, q = "p50", 0.50
        doc = "median of the valid values, linear interpolation (null without any)"

    try:
        assert AGGREGATE_FUNCTIONS["p50"].q == 0.5
        agg = Aggregate("p50_speed_kmh", "p50", "avg_speed_kmh", "Median of reported speeds", "km/h")
        monkeypatch.setitem(AGGREGATES, "traffic", (*AGGREGATES["traffic"], agg))
        yield agg
    finally:
        del AGGREGATE_FUNCTIONS["p50"]


def test_unknown_function_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="unknown function 'p42'"):
        Aggregate("x", "p42", "avg_speed_kmh", "?")


def test_every_declared_aggregate_has_a_registered_function() -> None:
    for aggs in AGGREGATES.values():
        for a in aggs:
            assert a.function is AGGREGATE_FUNCTIONS[a.fn]
            assert a.function.doc


def test_a_p50_declared_once_flows_through_engine_schema_merge_and_docs(p50: Aggregate) -> None:
    from contracts.docs import render_contract_docs
    from contracts.tables import district_window_table, window_table
    from warehouse.db import _district_measures

    speeds = [10.0, 20.0, 30.0, 40.0, 100.0]
    n = len(speeds)
    events = pd.DataFrame({
        "ts": T0 + np.arange(n, dtype=np.int64) * 1000, "detector_id": "d1", "entity": "d1",
        "district": "Mitte", "offset": np.arange(n), "road": "A59", "lane": 1,
        "vehicle_count": np.ones(n, dtype=np.int64), "avg_speed_kmh": speeds, "occupancy_pct": 5.0,
        "travel_time_s": np.nan,
    })
    engine = WindowEngine(WindowGeometry(60), "traffic")
    engine.process(events)
    out = engine.process(events.assign(ts=T0 + 120_000, offset=n + np.arange(n)))
    row = out.windows.to_pylist()[0]
    assert row["p50_speed_kmh"] == pytest.approx(float(np.quantile(speeds, 0.5)))
    assert row["p95_speed_kmh"] == pytest.approx(float(np.quantile(speeds, 0.95)))

    assert window_table("traffic").schema.field("p50_speed_kmh").type == pa.float64()
    # a quantile is not mergeable: no district partial column and no merge expression
    assert "p50_speed_kmh" not in district_window_table("traffic").names
    assert "p50_speed_kmh" not in out.district_windows.column_names
    assert "p50_speed_kmh" not in _district_measures("traffic")
    docs = render_contract_docs()
    assert "| `p50_speed_kmh` | float64 | p50 | `avg_speed_kmh` | km/h | yes | Median of reported speeds |" in docs
    assert "| `p50` | float64 | not mergeable (none) | median of the valid values" in docs


def test_merge_sql_comes_from_the_functions() -> None:
    from warehouse.db import _district_measures

    sql = _district_measures("traffic")
    assert 'sum("avg_speed_kmh_sum") / nullif(sum("avg_speed_kmh_n"), 0) AS "avg_speed_kmh"' in sql
    assert 'max("max_speed_kmh") AS "max_speed_kmh"' in sql
    assert 'CAST(sum("vehicle_count") AS BIGINT) AS "vehicle_count"' in sql
    assert 'sum("energy_wh") AS "energy_wh"' in _district_measures("lighting")
