""""No vehicles, no speed" (traffic contract v3): a speed sent with vehicle_count 0 is valid and
accepted from producers of every version, and lands as null through the rule table's null rule;
the decoders themselves return what was sent, and the duplicate index fingerprints the nulled
form, the one recovery rebuilds it from."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from contracts.decode import _decode_checked, decode_batch
from contracts.duplicates import record_fingerprints
from contracts.fastpath import decode_all_valid
from contracts.registry import CONTRACTS
from contracts.rules import NullRule, null_meaningless, rule_table
from contracts.schema import Contract, Field
from contracts.versions import compatibility_problems, published_contracts
from tests.contracts.test_contract_validation import LIMITS, NOW

TRAFFIC = CONTRACTS["traffic"]
T0_MS = int(NOW.timestamp() * 1000) - 3_600_000  # a whole minute, an hour before NOW


def _reading(**changes: Any) -> bytes:
    rec = {"detector_id": "tdet-0007", "ts": "2024-03-02T11:00:00Z", "district": "Mitte", "road": "A59",
           "lane": 1, "vehicle_count": 3, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0}
    rec.update(changes)
    return orjson.dumps(rec)


# a v1 empty interval (0.0), a v2 one with a stale speed, a v3 one (null), a v3 counting-only
# detector (vehicles but no speed), and an ordinary reading
VALUES = [
    _reading(vehicle_count=0, avg_speed_kmh=0.0, occupancy_pct=0.0),
    _reading(vehicle_count=0, avg_speed_kmh=37.5, road_temp_c=-1.0),
    _reading(vehicle_count=0, avg_speed_kmh=None, road_temp_c=2.0, travel_time_s=None),
    _reading(vehicle_count=4, avg_speed_kmh=None, travel_time_s=41.5),
    _reading(),
]


def test_the_traffic_rule_table_declares_one_null_rule() -> None:
    assert rule_table(TRAFFIC).null_rules == (NullRule("avg_speed_kmh", "vehicle_count"),)
    assert all(rule_table(c).null_rules == () for s, c in CONTRACTS.items() if s != "traffic")


def test_a_speed_without_vehicles_is_accepted_by_both_decoders_as_sent() -> None:
    fast = decode_all_valid(TRAFFIC, VALUES, NOW, LIMITS)
    good, positions, rejects = _decode_checked(TRAFFIC, VALUES, NOW, LIMITS)
    assert rejects == [] and positions.tolist() == [0, 1, 2, 3, 4]
    assert fast.equals(good)
    assert good.column("avg_speed_kmh").to_pylist() == [0.0, 37.5, None, None, 50.0]
    assert good.column("travel_time_s").to_pylist() == [None, None, None, 41.5, None]


def test_it_lands_as_null_for_every_producer_version() -> None:
    decoded = decode_batch(TRAFFIC, VALUES, NOW).good
    landed = null_meaningless(TRAFFIC, decoded)
    assert landed.column("avg_speed_kmh").to_pylist() == [None, None, None, None, 50.0]
    # only the speed changes: counts, occupancy and the rest are real data and stay
    for name in TRAFFIC.field_names:
        if name != "avg_speed_kmh":
            assert landed.column(name).equals(decoded.column(name)), name
    assert landed.schema == TRAFFIC.arrow_schema()
    assert null_meaningless(TRAFFIC, landed).equals(landed)  # idempotent


def test_a_batch_with_vehicles_everywhere_is_returned_untouched() -> None:
    decoded = decode_batch(TRAFFIC, [_reading(), _reading(lane=2)], NOW).good
    assert null_meaningless(TRAFFIC, decoded) is decoded


def test_a_landed_table_with_a_non_nullable_speed_column_is_nulled_too() -> None:
    """Raw files landed before v3 declare the column non-nullable (recovery reads them)."""
    decoded = decode_batch(TRAFFIC, VALUES[:2], NOW).good
    i = decoded.schema.get_field_index("avg_speed_kmh")
    old = decoded.set_column(i, decoded.schema.field(i).with_nullable(False), decoded.column(i))
    landed = null_meaningless(TRAFFIC, old)
    assert landed.column("avg_speed_kmh").to_pylist() == [None, None]
    assert landed.schema.field("avg_speed_kmh").nullable


def test_fingerprints_see_the_landed_form() -> None:
    """The live index fingerprints decoded rows (a v1 producer's 0.0) and recovery rebuilds it
    from landed rows (null): both must agree, or a re-sent copy after a restart would land."""
    decoded = decode_batch(TRAFFIC, VALUES, NOW).good
    live, rebuilt = record_fingerprints(TRAFFIC, decoded), record_fingerprints(TRAFFIC, null_meaningless(TRAFFIC, decoded))
    assert np.array_equal(live, rebuilt)
    # two empty intervals differing only in the meaningless speed land equal: duplicates
    a = decode_batch(TRAFFIC, [_reading(vehicle_count=0, avg_speed_kmh=0.0)], NOW).good
    b = decode_batch(TRAFFIC, [_reading(vehicle_count=0, avg_speed_kmh=12.0)], NOW).good
    assert record_fingerprints(TRAFFIC, a)[0] == record_fingerprints(TRAFFIC, b)[0]
    c = decode_batch(TRAFFIC, [_reading(vehicle_count=1, avg_speed_kmh=12.0)], NOW).good
    d = decode_batch(TRAFFIC, [_reading(vehicle_count=1, avg_speed_kmh=0.0)], NOW).good
    assert record_fingerprints(TRAFFIC, c)[0] != record_fingerprints(TRAFFIC, d)[0]


def test_the_duplicate_check_treats_such_copies_as_one_record() -> None:
    from contracts.duplicates import DuplicateIndex

    index = DuplicateIndex(horizon_ms=7 * 24 * 3600 * 1000)
    values = [_reading(vehicle_count=0, avg_speed_kmh=0.0), _reading(vehicle_count=0, avg_speed_kmh=None)]
    batch = decode_batch(TRAFFIC, values, NOW, duplicates=index, offsets=[0, 1])
    assert [(r.position, r.reason) for r in batch.rejects] == [(1, "duplicate")]


# -- the contract: v3 and the evolution rules ----------------------------------------------------
def test_traffic_v3_relaxes_speed_and_adds_travel_time() -> None:
    v2, v3 = published_contracts("traffic")[1:3]
    assert v3.version == 3
    assert set(v3.field_names) - set(v2.field_names) == {"travel_time_s"}
    t = v3.field("travel_time_s")
    assert (t.type, t.unit, t.nullable, t.since_version) == ("float", "s", True, 3)
    assert not v2.field("avg_speed_kmh").nullable
    speed = v3.field("avg_speed_kmh")
    assert speed.nullable and speed.null_when_zero == "vehicle_count"
    assert compatibility_problems(v2, v3) == []


def test_required_to_nullable_is_a_relaxation_but_dropping_the_null_rule_is_refused() -> None:
    dropped = replace(TRAFFIC, version=TRAFFIC.version + 1, fields=tuple(
        replace(f, null_when_zero=None) if f.name == "avg_speed_kmh" else f for f in TRAFFIC.fields))
    assert any("lost its rule null_when_zero='vehicle_count'" in p for p in compatibility_problems(TRAFFIC, dropped))
    relaxed = replace(TRAFFIC, version=TRAFFIC.version + 1, fields=tuple(
        replace(f, nullable=True) if f.name == "road" else f for f in TRAFFIC.fields))
    assert compatibility_problems(TRAFFIC, relaxed) == []


@pytest.mark.parametrize("field", [
    Field("speed", "float", "x", nullable=True, null_when_zero="nothing"),
    Field("speed", "float", "x", nullable=True, null_when_zero="ratio"),
    Field("speed", "float", "x", nullable=False, null_when_zero="count"),
], ids=["unknown-field", "not-an-int", "not-nullable"])
def test_a_null_rule_must_name_an_int_field_and_sit_on_a_nullable_one(field: Field) -> None:
    with pytest.raises(ValueError, match="null_when_zero"):
        Contract("demo", "city.demo.v1", "id", "thing", "demo", (
            Field("id", "id", "id"), Field("ts", "timestamp", "ts"), Field("count", "int", "n"),
            Field("ratio", "float", "r"), field), district_field=None)


def test_v1_producers_are_still_accepted_unchanged_by_the_decoder() -> None:
    """A v1 record (no road_temp_c, no travel_time_s) decodes; the later fields are null."""
    batch = decode_batch(TRAFFIC, [_reading(vehicle_count=0, avg_speed_kmh=0.0)], NOW)
    assert batch.rejects == []
    row = batch.good.to_pylist()[0]
    assert row["road_temp_c"] is None and row["travel_time_s"] is None
    assert pa.types.is_float64(batch.good.schema.field("travel_time_s").type)


# -- v4: occupancy is nullable (sensors without a loop) ------------------------------------------
def test_traffic_v4_makes_occupancy_nullable_and_nothing_else() -> None:
    v3, v4 = published_contracts("traffic")[2:4]
    assert v4.version == 4 and v4.field_names == v3.field_names
    assert not v3.field("occupancy_pct").nullable and v4.field("occupancy_pct").nullable
    changed = [f.name for f in v4.fields if f != v3.field(f.name) and f.description == v3.field(f.name).description]
    assert changed == ["occupancy_pct"] or changed == []  # only occupancy's schema changed
    assert compatibility_problems(v3, v4) == []


def test_a_sensor_without_occupancy_lands_null_and_its_windows_carry_travel_time() -> None:
    """A segment travel-time sensor and a radar speed sensor send a null occupancy: both
    decoders accept them (v3 rejected them), the window mean occupancy is null rather than an
    invented figure, and travel time gets a window mean. (The key must still be there, as for
    every field a v1 producer sent.)"""
    from contracts.windows import WindowGeometry
    from streams.windows import WindowEngine

    values = [_reading(occupancy_pct=None, avg_speed_kmh=None, travel_time_s=200.0),
              _reading(occupancy_pct=None, travel_time_s=300.0)]
    fast = decode_all_valid(TRAFFIC, values, NOW, LIMITS)
    good, _, rejects = _decode_checked(TRAFFIC, values, NOW, LIMITS)
    assert rejects == [] and fast.equals(good)
    assert good.column("occupancy_pct").to_pylist() == [None, None]
    v3 = published_contracts("traffic")[2]
    _, _, old_rejects = _decode_checked(v3, values, NOW, LIMITS)
    assert [r.field for r in old_rejects] == ["occupancy_pct", "occupancy_pct"]  # what v4 relaxed
    events = good.append_column("entity", good.column("detector_id")).append_column(
        "offset", pa.array([0, 1], pa.int64()))
    events = events.set_column(events.schema.get_field_index("ts"), "ts",
                               pa.array([T0_MS + 1_000, T0_MS + 2_000], pa.int64()))
    engine = WindowEngine(WindowGeometry(60), "traffic")
    outs = [engine.process(events), engine.process(events.set_column(
        events.schema.get_field_index("ts"), "ts", pa.array([T0_MS + 600_000] * 2, pa.int64())))]
    windows = pa.concat_tables([o.windows for o in outs if o.windows.num_rows])
    first = windows.filter(pc.equal(windows.column("window_start"), T0_MS))
    assert first.num_rows == 1
    assert first.column("avg_occupancy_pct").to_pylist() == [None]
    assert first.column("avg_travel_time_s").to_pylist() == [250.0]
