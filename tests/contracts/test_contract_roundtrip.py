"""Contract round trip (pure): simulator record -> JSON -> decode -> Arrow/Parquet -> same values."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from contracts.decode import decode_batch
from contracts.registry import CONTRACTS
from streams.simulator import encode, generate


@pytest.mark.parametrize("source", list(CONTRACTS))
def test_records_survive_decode_and_parquet(source):
    contract = CONTRACTS[source]
    start = datetime.now(UTC) - timedelta(hours=1)
    events = list(generate(9, rate=100, seconds=5, speedup=60, start=start, sources=[source]))
    values = [encode(e)[1] for e in events]
    batch = decode_batch(contract, values)
    assert batch.rejects == [] and batch.good.num_rows == len(events)
    assert batch.good.schema == contract.arrow_schema()

    buf = io.BytesIO()
    pq.write_table(batch.good, buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    assert back.schema.remove_metadata() == contract.arrow_schema().remove_metadata()
    for event, row in zip(events, back.to_pylist()):
        assert int(row.pop("ts").timestamp() * 1000) == event.ts_ms
        # fields a (v1) producer leaves out are null
        expected = {f: event.record.get(f) for f in contract.field_names if f != "ts"}
        assert row == expected


def _traffic_values(n: int) -> list[bytes]:
    start = datetime.now(UTC) - timedelta(hours=1)
    events = list(generate(4, rate=100, seconds=5, speedup=60, start=start, sources=["traffic"]))[:n]
    return [encode(e)[1] for e in events]


def test_a_plainly_valid_batch_takes_the_fast_path(monkeypatch):
    import contracts.decode as D

    def no_slow_path(*args, **kwargs):
        raise AssertionError("record-by-record decoder used for a valid batch")

    monkeypatch.setattr(D, "_decode_checked", no_slow_path)
    batch = decode_batch(CONTRACTS["traffic"], _traffic_values(200))
    assert batch.good.num_rows == 200 and batch.rejects == []


@pytest.mark.parametrize("field,bad", [("avg_speed_kmh", False), ("lane", True), ("vehicle_count", 3.0),
                                       ("occupancy_pct", "12"), ("road", 7)])
def test_the_fast_path_never_coerces_a_wrong_type(field, bad):
    """Arrow's type inference would turn [0.0, false] into doubles: such a batch must fall back
    and the record be rejected as wrong_type, exactly as the record-by-record decoder does."""
    import orjson

    values = _traffic_values(50)
    record = orjson.loads(values[7])
    record[field] = bad
    values[7] = orjson.dumps(record)
    batch = decode_batch(CONTRACTS["traffic"], values)
    assert batch.good.num_rows == 49
    assert [(r.position, r.reason, r.field) for r in batch.rejects] == [(7, "wrong_type", field)]
