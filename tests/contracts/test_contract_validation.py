"""Property tests of the contract validator (contracts/decode.py), with records generated from
the contract declarations: valid records always pass unchanged, and any single mutation out of
the contract fails that record, and only that record, with the expected reason and field."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.decode import DecodeLimits, decode_batch
from contracts.registry import CONTRACTS
from contracts.schema import ID_PATTERN, Contract, Field, Reason

NOW = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
LIMITS = DecodeLimits()
SOURCES = sorted(CONTRACTS)
_TEXT = st.characters(blacklist_categories=("Cs",))  # JSON cannot carry lone surrogates


def ts_text(dt: datetime, digits: int) -> str:
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return base + (("." + dt.strftime("%f")[:digits]) if digits else "") + "Z"


def valid_value(f: Field) -> st.SearchStrategy[Any]:
    """Values the contract accepts for field `f`."""
    if f.enum is not None:
        base: st.SearchStrategy[Any] = st.sampled_from(f.enum)
    elif f.type == "id":
        base = st.from_regex(ID_PATTERN, fullmatch=True)
    elif f.type == "string":
        base = st.text(_TEXT, min_size=int(f.min or 0), max_size=int(f.max or 200))
    elif f.type == "int":
        base = st.integers(int(f.min), int(f.max))
    elif f.type == "float":
        base = st.floats(f.min, f.max, allow_nan=False, allow_infinity=False)
    else:  # timestamp: inside [now - max_age, now + max_future], 0-6 fractional digits
        lo = (NOW - LIMITS.max_age + timedelta(seconds=1)).replace(tzinfo=None)
        hi = (NOW + LIMITS.max_future - timedelta(seconds=1)).replace(tzinfo=None)
        base = st.builds(ts_text, st.datetimes(lo, hi), st.integers(0, 6))
    return st.one_of(st.none(), base) if f.nullable else base


def valid_record(contract: Contract) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f.name: valid_value(f) for f in contract.fields})


@st.composite
def mutation(draw: st.DrawFn, contract: Contract, record: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """One contract violation applied to a valid record: (record, expected reason, field)."""
    rec = dict(record)
    f = draw(st.sampled_from(contract.fields))
    kinds = ["wrong_type", "unknown_field"]
    if not f.nullable:
        kinds.append("null")
    if f.since_version == 1:
        kinds.append("missing")
    if f.type in ("int", "float") and (f.min is not None or f.max is not None):
        kinds.append("out_of_range")
    if f.type == "string" and f.enum is None and (f.min or f.max is not None):
        kinds.append("length")
    if f.enum is not None:
        kinds.append("bad_enum")
    if f.type == "id":
        kinds.append("bad_id")
    if f.type == "timestamp":
        kinds += ["future", "too_old", "bad_timestamp"]
    kind = draw(st.sampled_from(kinds))
    name = f.name
    if kind == "wrong_type":
        if f.type in ("int", "float"):
            wrong = st.one_of(st.text(_TEXT, max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
            if f.type == "int":
                wrong = st.one_of(wrong, st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x) if abs(x) < 1e300 else True),
                                  st.integers(2**63, 2**70))
        else:
            wrong = st.one_of(st.integers(), st.booleans(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
        rec[name] = draw(wrong)
        return rec, Reason.WRONG_TYPE.value, name
    if kind == "unknown_field":
        extra = draw(st.text(_TEXT, min_size=1, max_size=12).filter(lambda s: s not in contract.field_names))
        rec[extra] = draw(st.integers())
        return rec, Reason.UNKNOWN_FIELD.value, extra
    if kind == "null":
        rec[name] = None
        return rec, Reason.NULL_FIELD.value, name
    if kind == "missing":
        del rec[name]
        return rec, Reason.MISSING_FIELD.value, name
    if kind == "out_of_range":
        sides = [s for s, b in (("low", f.min), ("high", f.max)) if b is not None]
        side = draw(st.sampled_from(sides))
        if f.type == "int":
            value: Any = (draw(st.integers(-(2**63), int(f.min) - 1)) if side == "low"
                          else draw(st.integers(int(f.max) + 1, 2**63 - 1)))
        else:
            value = (draw(st.floats(max_value=f.min, exclude_max=True, allow_nan=False, allow_infinity=False))
                     if side == "low" else
                     draw(st.floats(min_value=f.max, exclude_min=True, allow_nan=False, allow_infinity=False)))
        rec[name] = value
        return rec, Reason.OUT_OF_RANGE.value, name
    if kind == "length":
        options = []
        if f.min:
            options.append(st.text(_TEXT, max_size=int(f.min) - 1))
        if f.max is not None:
            options.append(st.text(_TEXT, min_size=int(f.max) + 1, max_size=int(f.max) + 20))
        rec[name] = draw(st.one_of(options))
        return rec, Reason.OUT_OF_RANGE.value, name
    if kind == "bad_enum":
        rec[name] = draw(st.text(_TEXT, max_size=20).filter(lambda s: s not in (f.enum or ())))
        return rec, Reason.BAD_ENUM.value, name
    if kind == "bad_id":
        rec[name] = draw(st.text(_TEXT, max_size=80).filter(lambda s: not re.fullmatch(ID_PATTERN, s)))
        return rec, Reason.BAD_ID.value, name
    if kind == "future":
        dt = NOW + LIMITS.max_future + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=3650)))
        rec[name] = ts_text(dt, 3)
        return rec, Reason.TS_IN_FUTURE.value, name
    if kind == "too_old":
        dt = NOW - LIMITS.max_age - draw(st.timedeltas(timedelta(seconds=1), timedelta(days=3650 * 5)))
        rec[name] = ts_text(dt, 0)
        return rec, Reason.TS_TOO_OLD.value, name
    # bad_timestamp: right instant, wrong shape (offset instead of Z, no zone, space, date only)
    good = datetime.strptime(rec[name][:19], "%Y-%m-%dT%H:%M:%S")
    rec[name] = draw(st.sampled_from([
        good.strftime("%Y-%m-%dT%H:%M:%S+00:00"), good.strftime("%Y-%m-%dT%H:%M:%S"),
        good.strftime("%Y-%m-%d %H:%M:%SZ"), good.strftime("%Y-%m-%d"), str(int(good.timestamp())),
        good.strftime("%Y-%m-%dT%H:%M:%S.1234567Z"),
    ]))
    return rec, Reason.BAD_TIMESTAMP.value, name


def _expected_value(f: Field, v: Any) -> Any:
    if v is None:
        return None
    if f.type == "timestamp":
        dt = datetime.strptime(v[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        micros = int((v[20:-1] + "000000")[:6]) if "." in v else 0
        return dt + timedelta(microseconds=micros - micros % 1000)
    if f.type == "float":
        return float(v)
    return v


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_records_always_pass_unchanged(source: str, data: st.DataObject) -> None:
    contract = CONTRACTS[source]
    records = data.draw(st.lists(valid_record(contract), min_size=1, max_size=20))
    batch = decode_batch(contract, [orjson.dumps(r) for r in records], now=NOW)
    assert batch.rejects == []
    assert batch.good_positions.tolist() == list(range(len(records)))
    landed = batch.good.to_pylist()
    for rec, row in zip(records, landed):
        for f in contract.fields:
            assert row[f.name] == _expected_value(f, rec[f.name]), (f.name, rec[f.name], row[f.name])


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_mutation_fails_that_record_with_the_expected_reason(source: str, data: st.DataObject) -> None:
    """A batch mixing valid and mutated records: each mutated record is rejected with its
    reason and field, every valid one passes, positions line up (vectorised bookkeeping)."""
    contract = CONTRACTS[source]
    n = data.draw(st.integers(1, 12))
    values, expected = [], {}
    for i in range(n):
        rec = data.draw(valid_record(contract))
        if data.draw(st.booleans()):
            rec, reason, field = data.draw(mutation(contract, rec))
            expected[i] = (reason, field)
        values.append(json.dumps(rec, ensure_ascii=False).encode())  # orjson stops at 64-bit ints
    batch = decode_batch(contract, values, now=NOW)
    got = {r.position: (r.reason, r.field) for r in batch.rejects}
    assert got == expected
    assert batch.good_positions.tolist() == [i for i in range(n) if i not in expected]
    assert batch.good.num_rows == n - len(expected)


@given(field=st.sampled_from([f for f in CONTRACTS["traffic"].fields if f.type == "float"]),
       constant=st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_nan_and_infinity_literals_are_not_finite(field: Field, constant: float) -> None:
    rec = {"detector_id": "d1", "ts": "2024-03-02T11:00:00Z", "district": "Mitte", "road": "A59",
           "lane": 1, "vehicle_count": 3, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0, "road_temp_c": 2.5}
    rec[field.name] = constant
    value = json.dumps(rec).encode()  # Python writes NaN / Infinity, as lenient device firmware does
    batch = decode_batch(CONTRACTS["traffic"], [value, b'{"detector_id": 1e999}'], now=NOW)
    assert [(r.reason, r.field) for r in batch.rejects] == [("not_finite", field.name), ("not_finite", "detector_id")]


def test_fields_added_by_a_later_version_may_be_absent_but_v1_fields_may_not() -> None:
    traffic = CONTRACTS["traffic"]
    v1 = {"detector_id": "d1", "ts": "2024-03-02T11:00:00Z", "district": "Mitte", "road": "A59",
          "lane": 1, "vehicle_count": 3, "avg_speed_kmh": 50.0, "occupancy_pct": 10.0}
    v2 = {**v1, "road_temp_c": -3.5}
    no_road = {k: v for k, v in v1.items() if k != "road"}
    batch = decode_batch(traffic, [orjson.dumps(v1), orjson.dumps(v2), orjson.dumps(no_road)], now=NOW)
    assert batch.good.column("road_temp_c").to_pylist() == [None, -3.5]
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [(2, "missing_field", "road")]
