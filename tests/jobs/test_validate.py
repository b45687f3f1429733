"""`cityflow validate`: the Great Expectations suites derived from the contracts pass on a
contract-valid lake and fail, naming the broken expectation, on a hand-written bad file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from contracts.decode import decode_batch
from contracts.expectations import raw_expectations, suite_specs
from contracts.lake import Lake
from contracts.quarantine import QUARANTINE_SCHEMA
from contracts.registry import CONTRACTS
from jobs.cli import main as cli
from jobs.validation import parse_since, validate_lake
from streams.simulator import encode, generate

NOW = datetime.now(UTC)


def land_valid_lake(root: Path) -> Lake:
    """Simulator records decoded by the contracts, landed as one raw file per source, plus a
    quarantine file."""
    lake = Lake(str(root))
    events = list(generate(seed=3, rate=200, seconds=5, speedup=30, start=NOW - timedelta(hours=3)))
    for source, contract in CONTRACTS.items():
        values = [encode(e)[1] for e in events if e.source == source]
        good = decode_batch(contract, values).good
        raw = good.append_column(pa.field("kafka_partition", pa.int32(), False),
                                 pa.array(np.zeros(good.num_rows, dtype=np.int32))).append_column(
            pa.field("kafka_offset", pa.int64(), False), pa.array(np.arange(good.num_rows, dtype=np.int64)))
        hour = (NOW - timedelta(hours=3)).strftime("date=%Y-%m-%d/hour=%H")
        lake.write_table_atomic(f"raw/source={source}/{hour}/{contract.topic}+0+0-{good.num_rows - 1}.parquet", raw)
    quarantine = pa.Table.from_pylist([{
        "source_topic": "city.traffic.v1", "kafka_partition": 1, "kafka_offset": 7, "reason": "not_json",
        "field": "", "detail": "not valid JSON", "value": b"\xff", "key": b"k", "received_at": NOW,
    }], schema=QUARANTINE_SCHEMA)
    lake.write_table_atomic(f"quarantine/source=traffic/{NOW:date=%Y-%m-%d/hour=%H}/city.traffic.v1+1+7-7.parquet",
                            quarantine)
    return lake


def bad_traffic_file(lake: Lake, when: datetime, rows: list[dict], name: str = "city.traffic.v1+3+0-9.parquet") -> None:
    base = {"detector_id": "tdet-0001", "ts": when, "district": "Mitte", "road": "A59", "lane": 1,
            "vehicle_count": 5, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0, "road_temp_c": None,
            "kafka_partition": 3}
    table = pa.Table.from_pylist([{**base, "kafka_offset": i, **r} for i, r in enumerate(rows)],
                                 schema=CONTRACTS["traffic"].raw_schema())
    lake.write_table_atomic(f"raw/source=traffic/{when:date=%Y-%m-%d/hour=%H}/{name}", table)


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Lake, Path]:
    lake = land_valid_lake(tmp_path / "lake")
    monkeypatch.setenv("CITYFLOW_LAKE", str(tmp_path / "lake"))
    return lake, tmp_path / "docs"


def test_suites_are_derived_from_the_contracts() -> None:
    specs = raw_expectations(CONTRACTS["lighting"], NOW)
    by = {(s.expectation, s.column): s for s in specs}
    assert by[("ExpectColumnValuesToBeBetween", "dim_level_pct")].kwargs == {
        "column": "dim_level_pct", "min_value": 0, "max_value": 100}
    assert by[("ExpectColumnValuesToBeInSet", "status")].kwargs["value_set"] == ["on", "off", "dimmed", "fault"]
    assert ("ExpectColumnValuesToNotBeNull", "fault_code") not in by  # nullable
    assert by[("ExpectColumnValueLengthsToBeBetween", "fault_code")].reason == "out_of_range"
    assert set(suite_specs(NOW)) == {"raw_traffic", "raw_lighting", "raw_wifi", "raw_logistics", "raw_supply",
                                     "quarantine", "windows_traffic", "windows_lighting", "windows_wifi",
                                     "windows_logistics", "windows_supply"}


def test_validate_passes_on_a_contract_valid_lake_and_writes_data_docs(lake_env, capsys) -> None:
    _, docs = lake_env
    assert cli(["validate", "--docs", str(docs)]) == 0
    out = capsys.readouterr().out
    assert "result: PASSED" in out and "raw_traffic" in out and "quarantine" in out
    assert "FAILED" not in out
    index = docs / "index.html"
    assert index.exists() and "raw_traffic" in index.read_text()


def test_validate_fails_on_a_hand_written_bad_file_and_names_what_broke(lake_env, capsys) -> None:
    lake, docs = lake_env
    when = NOW - timedelta(hours=1)
    bad_traffic_file(lake, when, [
        {"avg_speed_kmh": 999.0},                       # out of range
        {"district": "Atlantis"},                       # not an enum value
        {"detector_id": "../../etc/passwd"},            # bad id
        {"road": ""},                                   # string too short
        {"ts": NOW + timedelta(days=3)},                # in the future
        {"kafka_offset": 0},                            # the same Kafka record twice
    ])
    assert cli(["validate", "--docs", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "result: FAILED" in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED raw_traffic")]
    for expected in (("avg_speed_kmh expect_column_values_to_be_between(min_value=0.0, max_value=250.0): "
                      "1 unexpected, e.g. [999.0] [reason out_of_range]"),
                     "district expect_column_values_to_be_in_set(", "e.g. ['Atlantis'] [reason bad_enum]",
                     "detector_id expect_column_values_to_match_regex(", "[reason bad_id]",
                     "road expect_column_value_lengths_to_be_between(min_value=1, max_value=80)",
                     "ts expect_column_values_to_be_between(max_value=", "[reason ts_in_future]",
                     "expect_compound_columns_to_be_unique(column_list=['kafka_partition', 'kafka_offset']): 2 unexpected"):
        assert any(expected in line for line in failed), (expected, failed)
    assert not any(line.startswith("FAILED raw_lighting") for line in out.splitlines())


def test_validate_fails_on_a_file_whose_column_has_the_wrong_type(lake_env, capsys) -> None:
    lake, docs = lake_env
    table = pa.table({"detector_id": ["tdet-1"], "ts": pa.array([NOW], pa.timestamp("ms", tz="UTC")),
                      "district": ["Mitte"], "road": ["A59"], "lane": [1], "vehicle_count": [5],
                      "avg_speed_kmh": ["fast"], "occupancy_pct": [1.0], "kafka_partition": pa.array([2], pa.int32()),
                      "kafka_offset": [0]})
    lake.write_table_atomic(f"raw/source=traffic/{NOW:date=%Y-%m-%d/hour=%H}/city.traffic.v1+2+0-0.parquet", table)
    assert cli(["validate", "--docs", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "FAILED raw_traffic: schema: column 'avg_speed_kmh' has type string" in out


def test_since_limits_validation_to_recent_rows(lake_env) -> None:
    lake, docs = lake_env
    bad_traffic_file(lake, NOW - timedelta(days=3), [{"avg_speed_kmh": 999.0}])
    assert validate_lake(lake.uri, docs).success is False
    recent = validate_lake(lake.uri, docs, since=parse_since("2d"))
    assert recent.success is True
    assert 0 < recent.rows < validate_lake(lake.uri, docs).rows


def test_parse_since() -> None:
    now = datetime(2024, 3, 2, 12, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2024-03-01", now) == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_since("2024-03-01T10:00+01:00", now) == datetime(2024, 3, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday", now)


def test_validate_skips_files_a_compacted_file_supersedes(lake_env, capsys) -> None:
    """A merged file beside its not-yet-deleted inputs (compaction with --keep-superseded, or a
    crash before the deletes) must not be read twice: that would break offset uniqueness."""
    lake, docs = lake_env
    (src,) = [f for f in lake.list_files("raw/source=traffic")]
    merged = src.replace(".parquet", ".c.parquet")
    lake.write_table_atomic(merged, lake.read_table(src))
    assert cli(["validate", "--docs", str(docs)]) == 0, capsys.readouterr().out
