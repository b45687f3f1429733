"""One rule table (contracts/rules.py) drives both decoders: the batch fast path and the
record-by-record path agree on every generated record, and a valid record whose Kafka key is
null or not its entity id is rejected as `key_mismatch` by both."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.decode import _decode_checked, decode_batch
from contracts.fastpath import FAST_PATH_ERRORS, decode_all_valid
from contracts.registry import CONTRACTS
from contracts.rules import rule_table
from contracts.schema import Reason
from tests.contracts.test_contract_validation import LIMITS, NOW, SOURCES, mutation, valid_record

TRAFFIC = CONTRACTS["traffic"]


def _fast(contract, values, keys):  # type: ignore[no-untyped-def]
    try:
        return decode_all_valid(contract, values, NOW, LIMITS, keys)
    except FAST_PATH_ERRORS:
        return None


@st.composite
def keyed_record(draw: st.DrawFn, contract: Any) -> tuple[bytes, bytes | None, bool]:
    """(value, key, whether the record is valid): valid or mutated, keyed right, null or wrong."""
    rec = draw(valid_record(contract))
    valid = draw(st.booleans())
    if not valid:
        rec, _, _ = draw(mutation(contract, rec))
    entity = rec.get(contract.key)
    how = draw(st.sampled_from(["entity", "entity", "null", "other"]))
    if how == "entity" and isinstance(entity, str):
        key: bytes | None = entity.encode()
    elif how == "null":
        key = None
    else:
        key = draw(st.binary(max_size=20).filter(lambda k: k != str(entity).encode()))
    return json.dumps(rec, ensure_ascii=False).encode(), key, valid and key == str(entity).encode()


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_paths_agree_on_every_generated_record(source: str, data: st.DataObject) -> None:
    contract = CONTRACTS[source]
    batch = data.draw(st.lists(keyed_record(contract), min_size=1, max_size=10))
    values = [v for v, _, _ in batch]
    keys = [k for _, k, _ in batch]
    with_keys = data.draw(st.booleans())
    use_keys = keys if with_keys else None
    good, positions, rejects = _decode_checked(contract, values, NOW, LIMITS, use_keys)
    fast = _fast(contract, values, use_keys)
    if fast is not None:  # the fast path accepts: the checked path accepts identically
        assert rejects == [] and positions.tolist() == list(range(len(values)))
        assert fast.equals(good) and fast.schema == good.schema
    else:  # the fast path refuses the batch: the checked path rejects at least one record
        assert rejects
    # record by record: the fast path accepts a record alone iff the checked path does
    for i, value in enumerate(values):
        one_keys = [keys[i]] if with_keys else None
        alone = _fast(contract, [value], one_keys)
        _, _, one_rejects = _decode_checked(contract, [value], NOW, LIMITS, one_keys)
        assert (alone is None) == bool(one_rejects), (value, one_keys, one_rejects)
        if with_keys and batch[i][2]:
            assert one_rejects == []
    # decode_batch (whichever path it takes) gives the checked path's answer
    decoded = decode_batch(contract, values, NOW, LIMITS, keys=use_keys)
    assert decoded.rejects == rejects and decoded.good.equals(good)
    assert decoded.good_positions.tolist() == positions.tolist()


def _reading(detector: str = "tdet-0007", **changes: Any) -> bytes:
    rec = {"detector_id": detector, "ts": "2024-03-02T11:00:00Z", "district": "Mitte", "road": "A59",
           "lane": 1, "vehicle_count": 3, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0}
    rec.update(changes)
    return orjson.dumps(rec)


@pytest.mark.parametrize("key", [None, b"", b"gateway-3", b"tdet-0008", b"TDET-0007", b"tdet-0007 "])
def test_a_null_or_wrong_key_is_a_key_mismatch(key: bytes | None) -> None:
    batch = decode_batch(TRAFFIC, [_reading()], NOW, keys=[key])
    assert batch.good.num_rows == 0
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [(0, "key_mismatch", "detector_id")]
    assert "tdet-0007" in batch.rejects[0].detail and "dlq replay" in batch.rejects[0].detail


def test_the_right_key_passes_and_no_keys_means_no_key_check() -> None:
    assert decode_batch(TRAFFIC, [_reading()], NOW, keys=[b"tdet-0007"]).rejects == []
    assert decode_batch(TRAFFIC, [_reading()], NOW).rejects == []


def test_a_mixed_batch_rejects_exactly_the_mis_keyed_records() -> None:
    values = [_reading(f"tdet-{i % 3}") for i in range(9)] + [_reading(lane=99)]
    keys: list[bytes | None] = [f"tdet-{i % 3}".encode() for i in range(9)] + [None]
    keys[2], keys[4], keys[7] = None, b"tdet-2", b"bridge-1"
    batch = decode_batch(TRAFFIC, values, NOW, keys=keys)
    assert [(r.position, r.reason) for r in batch.rejects] == [
        (2, "key_mismatch"), (4, "key_mismatch"), (7, "key_mismatch"), (9, "out_of_range")]
    assert batch.good_positions.tolist() == [0, 1, 3, 5, 6, 8]
    assert batch.good.column("detector_id").to_pylist() == [f"tdet-{i % 3}" for i in (0, 1, 3, 5, 6, 8)]


def test_a_correctly_keyed_batch_stays_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import contracts.decode as D

    def no_slow_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("record-by-record decoder used for a valid, correctly keyed batch")

    monkeypatch.setattr(D, "_decode_checked", no_slow_path)
    values = [_reading(f"tdet-{i}") for i in range(50)]
    batch = decode_batch(TRAFFIC, values, NOW, keys=[f"tdet-{i}".encode() for i in range(50)])
    assert batch.good.num_rows == 50


def test_other_reasons_come_before_key_mismatch_and_key_mismatch_before_duplicate() -> None:
    from contracts.duplicates import DuplicateIndex

    bad = _reading(ts="2024-03-02 11:00:00")
    batch = decode_batch(TRAFFIC, [bad], NOW, keys=[None])
    assert [r.reason for r in batch.rejects] == ["bad_timestamp"]
    index = DuplicateIndex(horizon_ms=7 * 24 * 3600 * 1000)
    first = decode_batch(TRAFFIC, [_reading()], NOW, duplicates=index, offsets=[0], keys=[b"tdet-0007"])
    assert first.rejects == []
    again = decode_batch(TRAFFIC, [_reading(), _reading()], NOW, duplicates=index, offsets=[1, 2],
                         keys=[None, b"tdet-0007"])
    assert [(r.position, r.reason) for r in again.rejects] == [(0, "key_mismatch"), (1, "duplicate")]


def test_every_contract_has_one_key_rule_last_and_every_value_rule_names_a_field() -> None:
    for contract in CONTRACTS.values():
        table = rule_table(contract)
        assert table.rules[-1].reason is Reason.KEY_MISMATCH and table.rules[-1].field == contract.key
        assert [r.reason for r in table.key_rules] == [Reason.KEY_MISMATCH]
        assert {r.field for r in table.rules} <= set(contract.field_names)
        assert rule_table(contract) is table
