"""The supply contract's own fields: every measurement of each asset type is range-checked
(a fuzzed value just outside its range fails with that field, just inside passes), asset
types are an enum, and each type's record leaves the other types' fields null."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.decode import decode_batch
from contracts.registry import CONTRACTS
from contracts.supply import ASSET_TYPES

SUPPLY = CONTRACTS["supply"]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MEASURES = [f for f in SUPPLY.fields if f.type == "float"]
BASE = {"asset_id": "feeder-0001", "ts": "2026-11-30T11:59:00.000Z", "district": "Mitte", "asset_type": "feeder",
        **{f.name: None for f in MEASURES}}


def verdict(record: dict) -> tuple[str, str] | None:
    batch = decode_batch(SUPPLY, [orjson.dumps(record)], now=NOW, keys=[record["asset_id"].encode()])
    return (batch.rejects[0].reason, batch.rejects[0].field) if batch.rejects else None


@settings(max_examples=120, deadline=None)
@given(field=st.sampled_from(MEASURES), inside=st.floats(0, 1), outside=st.floats(1e-6, 1e6),
       below=st.booleans())
def test_each_measurement_is_checked_against_its_own_range(field, inside, outside, below) -> None:
    assert field.nullable and field.min is not None and field.max is not None and field.unit
    ok = field.min + inside * (field.max - field.min)
    assert verdict({**BASE, field.name: ok}) is None
    bad = field.min - outside if below else field.max + outside
    assert verdict({**BASE, field.name: bad}) == ("out_of_range", field.name)


@pytest.mark.parametrize("asset_type", ["gas", "Feeder", "", "heat "])
def test_asset_type_is_an_enum(asset_type: str) -> None:
    assert verdict({**BASE, "asset_type": asset_type}) == ("bad_enum", "asset_type")
    assert set(ASSET_TYPES) == {"feeder", "water", "heat"}


def test_a_dead_feeder_is_a_valid_record_and_a_key_by_meter_id_is_required() -> None:
    dead = {**BASE, "load_kw": 0.0, "voltage_v": 0.0, "frequency_hz": None}
    assert verdict(dead) is None
    batch = decode_batch(SUPPLY, [orjson.dumps(dead)], now=NOW, keys=[b"substation-7"])
    assert [(r.reason, r.field) for r in batch.rejects] == [("key_mismatch", "asset_id")]
