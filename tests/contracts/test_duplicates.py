"""Exact-duplicate detection (reason `duplicate`): within and across batches, bounded by the
replay horizon, and identical after a restart that rebuilds the index from the lake."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.decode import decode_batch
from contracts.duplicates import DuplicateIndex
from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.windows import window_geometry
from streams.batch import RecordBatch, process_records
from streams.ingest import recover_partition

TRAFFIC = CONTRACTS["traffic"]
NOW = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
HORIZON_MS = window_geometry("traffic").horizon_ms


def reading(detector: str, minute: int, lane: int = 1, speed: float = 50.0, temp: float | None = None) -> dict:
    ts = NOW - timedelta(hours=2) + timedelta(minutes=minute)
    rec = {"detector_id": detector, "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "district": "Mitte",
           "road": "A59", "lane": lane, "vehicle_count": 7, "avg_speed_kmh": speed, "occupancy_pct": 12.5}
    if temp is not None:
        rec["road_temp_c"] = temp
    return rec


def test_a_resent_copy_is_a_duplicate_even_with_other_key_order_and_whitespace() -> None:
    a, b = reading("d1", 0), reading("d2", 0)
    resent = b'{ "avg_speed_kmh": 50.0, ' + orjson.dumps({k: v for k, v in a.items() if k != "avg_speed_kmh"})[1:]
    index = DuplicateIndex(HORIZON_MS)
    batch = decode_batch(TRAFFIC, [orjson.dumps(a), orjson.dumps(b), resent], now=NOW,
                         duplicates=index, offsets=[100, 101, 102])
    assert batch.good_positions.tolist() == [0, 1]
    [reject] = batch.rejects
    assert (reject.position, reject.reason, reject.field) == (2, "duplicate", "detector_id")
    assert "offset 100" in reject.detail
    # the next batch: the same record again is still a duplicate of offset 100
    again = decode_batch(TRAFFIC, [orjson.dumps(a)], now=NOW, duplicates=index, offsets=[250])
    assert [(r.reason, "offset 100" in r.detail) for r in again.rejects] == [("duplicate", True)]


@pytest.mark.parametrize("change", [{"lane": 2}, {"avg_speed_kmh": 50.5}, {"road_temp_c": 1.0},
                                    {"detector_id": "d9"}, {"ts": "2024-03-02T10:00:00.001Z"}])
def test_a_record_differing_in_any_field_is_not_a_duplicate(change: dict) -> None:
    a = reading("d1", 0)
    index = DuplicateIndex(HORIZON_MS)
    batch = decode_batch(TRAFFIC, [orjson.dumps(a), orjson.dumps({**a, **change})], now=NOW,
                         duplicates=index, offsets=[0, 1])
    assert batch.rejects == [] and batch.good.num_rows == 2


def test_a_copy_rejected_for_another_reason_keeps_that_reason_and_does_not_enter_the_index() -> None:
    bad = {**reading("d1", 0), "lane": 99}
    index = DuplicateIndex(HORIZON_MS)
    batch = decode_batch(TRAFFIC, [orjson.dumps(bad)] * 2, now=NOW, duplicates=index, offsets=[0, 1])
    assert [r.reason for r in batch.rejects] == ["out_of_range", "out_of_range"]
    assert len(index) == 0


def test_beyond_the_horizon_a_resent_record_is_accepted_as_a_late_event() -> None:
    """The documented bound: ts <= max_ts_before - horizon can no longer change a window."""
    index = DuplicateIndex(HORIZON_MS)
    first = reading("d1", 0)
    later = reading("d1", -(-HORIZON_MS // 60_000) + 1)  # moves max_ts a minute past first.ts + horizon
    batch = decode_batch(TRAFFIC, [orjson.dumps(first), orjson.dumps(later), orjson.dumps(first)],
                         now=NOW, duplicates=index, offsets=[0, 1, 2])
    assert batch.rejects == [] and batch.good.num_rows == 3
    assert len(index) == 1  # the old minute was pruned


def _run(lake: Lake | None, batches: list[list[bytes]], crash_after: int | None) -> list[int]:
    """Offsets rejected as duplicate when `batches` go through sink + index; with crash_after,
    the worker lands that many batches, loses its memory and recovers from the lake."""
    sink, index, _ = recover_partition(lake, TRAFFIC, 0)
    dups, offset = [], 0
    for i, values in enumerate(batches):
        if crash_after is not None and i == crash_after:
            sink.flush()
            sink, index, next_offset = recover_partition(lake, TRAFFIC, 0)
            assert next_offset == offset
        rb = RecordBatch(TRAFFIC.topic, 0, list(range(offset, offset + len(values))), [b"k"] * len(values), values)
        processed = process_records(TRAFFIC, rb, now=NOW, duplicates=index, check_keys=False)  # placeholder keys
        dups += [rb.offsets[r.position] for r in processed.rejects if r.reason == "duplicate"]
        assert not [r for r in processed.rejects if r.reason != "duplicate"]
        sink.add(processed)
        offset += len(values)
        if i % 2:
            sink.flush()
    sink.flush()
    return dups


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), crash_after=st.integers(1, 7))
def test_duplicate_decisions_are_the_same_after_a_restart_rebuilt_from_the_lake(tmp_path_factory, seed: int, crash_after: int) -> None:
    """Oracle: an uninterrupted run vs a run that lands, forgets everything and recovers."""
    rng = random.Random(seed)
    pool = [reading(f"d{rng.randrange(6)}", rng.randrange(0, 20), lane=rng.randrange(1, 3),
                    temp=rng.choice([None, 1.5])) for _ in range(12)]
    # event time drifts forward every two batches, so early re-sends fall out of the horizon;
    # every odd batch re-sends a record of the batch before (a duplicate across batches, and
    # across the crash when crash_after is odd)
    batches: list[list[bytes]] = []
    for b in range(8):
        recs = []
        for _ in range(rng.randrange(1, 12)):
            r = dict(rng.choice(pool))
            ts = datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%S.000Z") + timedelta(minutes=(b // 2) * 6)
            r["ts"] = ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            recs.append(orjson.dumps(r))
        if b % 2:
            recs.insert(rng.randrange(len(recs) + 1), rng.choice(batches[-1]))
        batches.append(recs)
    expected = _run(Lake(str(tmp_path_factory.mktemp("a"))), batches, None)
    got = _run(Lake(str(tmp_path_factory.mktemp("b"))), batches, crash_after)
    assert got == expected
    assert expected, "the scenario should contain duplicates"
