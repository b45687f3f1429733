"""`cityflow validate` checks the landed window tables with contract-derived expectations: a
lake landed by the real sink passes, a window file with NaN (where the contract says null) or
an out-of-range aggregate fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from contracts.expectations import window_expectations
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from jobs.cli import main as cli
from streams.batch import RecordBatch, process_records
from streams.simulator import encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine


@pytest.fixture
def landed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Traffic and logistics landed by the sink (logistics has vehicles without reefers)."""
    lake = L.Lake(str(tmp_path / "lake"))
    start = datetime.now(UTC) - timedelta(hours=2)
    events = list(generate(5, rate=200, seconds=10, speedup=120, start=start, sources=["traffic", "logistics"]))
    for source in ("traffic", "logistics"):
        contract = CONTRACTS[source]
        sink = PartitionSink(lake, contract, 0, WindowEngine(window_geometry(source), source, 0))
        sink.recover()
        encoded = [encode(e) for e in events if e.source == source]
        sink.add(process_records(contract, RecordBatch(contract.topic, 0, list(range(len(encoded))),
                                                      [k for k, _ in encoded], [v for _, v in encoded])))
        sink.flush()
    monkeypatch.setenv("CITYFLOW_LAKE", str(tmp_path / "lake"))
    return tmp_path / "lake", tmp_path / "docs"


def test_window_suites_come_from_the_table_declarations() -> None:
    specs = {(s.expectation, s.column): s for s in window_expectations("logistics")}
    assert ("ExpectColumnValuesToNotBeNull", "window_start") in specs
    assert ("ExpectColumnValuesToNotBeNull", "max_cargo_temp_c") not in specs  # null without reefer data
    assert specs[("ExpectColumnValuesToBeBetween", "max_cargo_temp_c")].kwargs == {
        "column": "max_cargo_temp_c", "min_value": -40, "max_value": 60}
    assert specs[("ExpectColumnValuesToBeBetween", "n_events")].kwargs["min_value"] == 0


def test_landed_windows_validate(landed, capsys) -> None:
    lake, docs = landed
    assert list((lake / "windows" / "source=logistics").rglob("*.parquet"))
    assert cli(["validate", "--docs", str(docs)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "windows_traffic" in out and "windows_logistics" in out and "result: PASSED" in out


def test_a_nan_in_a_window_table_fails_validate(landed, capsys) -> None:
    lake, docs = landed
    (path,) = list((lake / "windows" / "source=logistics").rglob("*.parquet"))[:1]
    table = pq.read_table(path)
    col = table.column("max_cargo_temp_c")
    assert col.null_count > 0  # vehicles without reefers
    table = table.set_column(table.schema.get_field_index("max_cargo_temp_c"), "max_cargo_temp_c",
                             pc.fill_null(col, float("nan")))
    pq.write_table(table, path.with_name("city.logistics.v1+1+0-9.parquet"))
    assert cli(["validate", "--docs", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "FAILED windows_logistics: schema: column 'max_cargo_temp_c' holds" in out and "NaN" in out


def test_an_out_of_range_window_aggregate_fails_validate(landed, capsys) -> None:
    lake, docs = landed
    (path,) = list((lake / "windows" / "source=traffic").rglob("*.parquet"))[:1]
    table = pq.read_table(path).slice(0, 1)
    i = table.schema.get_field_index("avg_speed_kmh")
    table = table.set_column(i, "avg_speed_kmh", pa.array([999.0]))
    pq.write_table(table, path.with_name("city.traffic.v1+1+0-0.parquet"))
    assert cli(["validate", "--docs", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "FAILED windows_traffic: avg_speed_kmh expect_column_values_to_be_between" in out
