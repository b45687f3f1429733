"""Landed-table schemas are declared once (contracts/tables.py): the window engine emits them,
the sink lands them, the warehouse's empty fallbacks and docs/contracts.md use them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts import lake as L
from contracts.docs import render_contract_docs
from contracts.registry import CONTRACTS
from contracts.tables import ANOMALIES, QUARANTINE, district_window_table, lake_table, window_table
from contracts.windows import WindowGeometry
from streams.windows import WindowEngine
from warehouse.db import WarehouseError, lake_table_schema

T0 = 1_795_000_000_000 - 1_795_000_000_000 % 900_000
SOURCES = list(CONTRACTS)


def _events(source: str, n: int = 20) -> pd.DataFrame:
    """Events with every contract field filled (values need not be realistic for the engine)."""
    contract = CONTRACTS[source]
    cols: dict[str, object] = {}
    for f in contract.fields:
        if f.type in ("int", "float"):
            cols[f.name] = np.arange(n, dtype=np.int64 if f.type == "int" else np.float64) % 5
        elif f.enum:
            cols[f.name] = [f.enum[i % len(f.enum)] for i in range(n)]
        else:
            cols[f.name] = [f"{f.name}-{i % 3}" for i in range(n)]
    cols["ts"] = T0 + np.arange(n, dtype=np.int64) * 1000
    cols["entity"] = cols[contract.key]
    cols["district"] = cols[contract.district_field] if contract.district_field else None
    cols["offset"] = np.arange(n, dtype=np.int64)
    return pd.DataFrame(cols)


@pytest.mark.parametrize("source", SOURCES)
def test_engine_emits_exactly_the_declared_columns(source: str) -> None:
    engine = WindowEngine(WindowGeometry(60, allowed_lateness_s=0), source)
    events = _events(source)
    engine.process(events)
    out = engine.process(events.assign(ts=T0 + 3_600_000, offset=events["offset"] + 100))
    assert out.windows.num_rows
    declared = [n for n in window_table(source).names if n != "emitted_at"]
    assert out.windows.column_names == declared
    if CONTRACTS[source].district_field:
        assert out.district_windows.column_names == [
            n for n in district_window_table(source).names if n != "emitted_at"]


@pytest.mark.parametrize("source", SOURCES)
def test_warehouse_fallbacks_use_the_declarations(source: str) -> None:
    for table in (L.RAW, L.WINDOWS, L.DISTRICT_WINDOWS, L.LATE_EVENTS):
        assert lake_table_schema(table, source).names == lake_table(table, source).names
    assert lake_table_schema(L.RAW, source).names == CONTRACTS[source].raw_schema().names
    assert lake_table_schema(L.QUARANTINE, "*") == QUARANTINE.schema
    assert lake_table_schema(L.ANOMALIES, "*") == ANOMALIES.schema
    with pytest.raises(WarehouseError, match="concrete source"):
        lake_table_schema(L.WINDOWS, "*")


def test_anomalies_table_has_a_deterministic_id_and_evidence() -> None:
    names = ANOMALIES.names
    for column in ("anomaly_id", "source", "kind", "severity", "entity", "district", "window_start", "window_end",
                   "detected_at", "score", "value", "expected", "evidence", "kafka_partition"):
        assert column in names
    assert ANOMALIES.key == ("anomaly_id",)
    assert not ANOMALIES.column("anomaly_id").nullable


def test_docs_document_every_landed_column_of_every_table() -> None:
    text = render_contract_docs()
    for source in SOURCES:
        landed = [L.RAW, L.WINDOWS, L.LATE_EVENTS] + ([L.DISTRICT_WINDOWS] if CONTRACTS[source].district_field else [])
        for table in landed:
            for name in lake_table(table, source).names:
                assert f"| `{name}` |" in text, (table, source, name)
    for table in (QUARANTINE, ANOMALIES):
        for name in table.names:
            assert f"| `{name}` |" in text, (table.name, name)
    for name in ("version", "window_end", "window_size_s", "hop_s", "is_correction", "kafka_partition", "emitted_at"):
        assert f"| `{name}` |" in text
