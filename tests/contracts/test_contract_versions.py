"""Schema evolution: declarations stay compatible with their published versions, incompatible
changes are refused with a message naming each problem, and v1 + v2 files of traffic form one
queryable table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.schema import Field, SchemaMismatch
from contracts.versions import (
    IncompatibleContractChange,
    assert_compatible,
    at_version,
    check_against_published,
    compatibility_problems,
    publish,
    published_contracts,
    snapshot,
)
from jobs.cli import main as cli

TRAFFIC = CONTRACTS["traffic"]
NEXT = TRAFFIC.version + 1  # the version a change to the declaration would need


@pytest.mark.parametrize("source", sorted(CONTRACTS))
def test_every_declaration_is_published_and_compatible_with_all_its_versions(source: str) -> None:
    assert check_against_published(CONTRACTS[source]) == []


def test_traffic_v2_added_one_nullable_field_to_the_published_v1() -> None:
    v1, v2, *_ = published_contracts("traffic")
    assert (v1.version, v2.version) == (1, 2)
    assert set(v2.field_names) - set(v1.field_names) == {"road_temp_c"}
    assert v2.field("road_temp_c").nullable and v2.field("road_temp_c").since_version == 2
    # the fields a v1 producer sends; later versions relaxed some of them (nullable since v3, v4)
    relaxed = {"avg_speed_kmh", "occupancy_pct"}
    assert [f for f in snapshot(at_version(TRAFFIC, 1))["fields"] if f["name"] not in relaxed] == \
        [f for f in snapshot(v1)["fields"] if f["name"] not in relaxed]
    assert at_version(TRAFFIC, 1).field_names == v1.field_names
    assert at_version(TRAFFIC, 2).field_names == v2.field_names


def _with_field(contract, name, **changes):
    return replace(contract, version=contract.version + 1,
                   fields=tuple(replace(f, **changes) if f.name == name else f for f in contract.fields))


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda c: replace(c, version=NEXT, fields=tuple(f for f in c.fields if f.name != "road")),
         "field 'road' was removed"),
        (lambda c: _with_field(c, "lane", type="float"), "field 'lane' changed type int -> float"),
        (lambda c: _with_field(c, "avg_speed_kmh", unit="m/s"), "changed unit 'km/h' -> 'm/s'"),
        (lambda c: replace(CONTRACTS["lighting"], version=2, fields=tuple(
            replace(f, nullable=False) if f.name == "fault_code" else f for f in CONTRACTS["lighting"].fields)),
         "field 'fault_code' became non-nullable"),
        (lambda c: _with_field(c, "vehicle_count", max=100), "range narrowed"),
        (lambda c: _with_field(c, "district", enum=("Mitte",)), "enum lost values"),
        (lambda c: replace(c, version=NEXT, key="road"), "key changed"),
        (lambda c: replace(c, version=NEXT, fields=c.fields + (
            Field("axle_count", "int", "Axles", nullable=True, since_version=NEXT - 1),)),
         f"new field 'axle_count' needs since_version > {NEXT - 1}"),
    ],
    ids=["removed", "retyped", "unit", "made-non-nullable", "narrowed-range", "narrowed-enum", "key", "since"],
)
def test_incompatible_changes_are_refused_with_a_clear_message(make, expect: str) -> None:
    new = make(TRAFFIC)
    old = CONTRACTS[new.source]
    with pytest.raises(IncompatibleContractChange) as err:
        assert_compatible(old, new)
    assert expect in str(err.value)
    assert f"incompatible with published v{old.version}" in str(err.value)


def test_a_new_non_nullable_field_is_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match="must be nullable"):
        replace(TRAFFIC, version=NEXT, fields=TRAFFIC.fields + (Field("axles", "int", "Axles", since_version=NEXT),))
    # and by the compatibility check when it claims to be a v1 field
    new = replace(TRAFFIC, version=NEXT, fields=TRAFFIC.fields + (Field("axles", "int", "Axles"),))
    assert any("new field 'axles' is not nullable" in p for p in compatibility_problems(TRAFFIC, new))


def test_compatible_changes_pass(tmp_path: Path) -> None:
    new = replace(TRAFFIC, version=NEXT, fields=tuple(
        replace(f, max=300.0) if f.name == "avg_speed_kmh" else f for f in TRAFFIC.fields
    ) + (Field("axle_count", "int", "Axles counted", nullable=True, min=0, max=5000, since_version=NEXT),))
    assert compatibility_problems(TRAFFIC, new) == []
    # publishing: into a scratch copy of the published directory
    for p in Path("contracts/published").glob("traffic.*.json"):
        (tmp_path / p.name).write_text(p.read_text())
    assert check_against_published(new, tmp_path) == []
    path = publish(new, tmp_path)
    assert path is not None and json.loads(path.read_text())["version"] == NEXT
    assert publish(new, tmp_path) is None  # idempotent


def test_changing_a_published_version_in_place_is_refused(tmp_path: Path) -> None:
    for p in Path("contracts/published").glob("traffic.*.json"):
        (tmp_path / p.name).write_text(p.read_text())
    edited = replace(TRAFFIC, fields=tuple(replace(f, max=300.0) if f.name == "avg_speed_kmh" else f
                                           for f in TRAFFIC.fields))
    [problem] = check_against_published(edited, tmp_path)
    assert f"differs from its published snapshot traffic.v{TRAFFIC.version}.json" in problem
    assert f"bump `version` to {NEXT}" in problem
    with pytest.raises(IncompatibleContractChange):
        publish(edited, tmp_path)


def test_contracts_check_command_passes_on_the_repository(capsys) -> None:
    assert cli(["contracts", "check"]) == 0
    assert f"traffic v{TRAFFIC.version}: ok" in capsys.readouterr().out


def test_v1_files_and_v2_files_form_one_table(tmp_path: Path) -> None:
    """A file landed before v2 (no road_temp_c column) and one after: conform_raw and a DuckDB
    union_by_name scan both see road_temp_c, null for the old rows."""
    lake = Lake(str(tmp_path))
    v1_schema = at_version(TRAFFIC, 1).raw_schema()
    row = {"detector_id": "d1", "ts": 1_709_373_600_000, "district": "Mitte", "road": "A59", "lane": 1,
           "vehicle_count": 3, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0, "kafka_partition": 0}
    old = pa.Table.from_pylist([{**row, "kafka_offset": 0}], schema=v1_schema)
    new = pa.Table.from_pylist([{**row, "kafka_offset": 1, "road_temp_c": -2.0}], schema=TRAFFIC.raw_schema())
    lake.write_table_atomic("raw/source=traffic/date=2024-03-02/hour=10/city.traffic.v1+0+0-0.parquet", old)
    lake.write_table_atomic("raw/source=traffic/date=2024-03-02/hour=10/city.traffic.v1+0+1-1.parquet", new)
    assert TRAFFIC.conform_raw(old).column("road_temp_c").to_pylist() == [None]
    got = duckdb.sql(
        f"SELECT kafka_offset, road_temp_c FROM read_parquet('{tmp_path}/raw/source=traffic/**/*.parquet', "
        "union_by_name = true) ORDER BY kafka_offset").fetchall()
    assert got == [(0, None), (1, -2.0)]
    with pytest.raises(SchemaMismatch, match="lacks non-nullable column 'road'"):
        TRAFFIC.conform_raw(old.drop_columns(["road"]))
