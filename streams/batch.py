"""Turn one partition's batch of Kafka records into landed-table pieces (pure: no Kafka).

decode + validate (contracts) -> the contract's null rules ("no vehicles, no speed") -> raw
Arrow rows with Kafka coordinates, quarantine rows for rejects, and the event frame the window
engine consumes. The null rules apply here, once, so the raw lake and the windows agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from contracts.decode import DecodeLimits, Reject, decode_batch
from contracts.districts import district_of
from contracts.duplicates import DuplicateIndex
from contracts.quarantine import QUARANTINE_SCHEMA
from contracts.rules import DEFAULT_LIMITS, null_meaningless
from contracts.schema import Contract

__all__ = ["QUARANTINE_SCHEMA", "ProcessedBatch", "RecordBatch", "process_records", "quarantine_table"]


@dataclass
class RecordBatch:
    """Raw records of one topic partition, in offset order."""

    topic: str
    partition: int
    offsets: Sequence[int]
    keys: Sequence[bytes | None]
    values: Sequence[bytes | None]


@dataclass
class ProcessedBatch:
    raw: pa.Table
    quarantine: pa.Table
    rejects: list[Reject]
    events: pa.Table  # the window engine's input (events_frame)
    first_offset: int
    last_offset: int
    consumed: int


def process_records(
    contract: Contract,
    batch: RecordBatch,
    now: datetime | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    duplicates: DuplicateIndex | None = None,
    check_keys: bool = True,
) -> ProcessedBatch:
    """Decode a record batch; split it into raw rows, quarantine rows and window-engine events.

    `duplicates` is the partition's DuplicateIndex (None: no duplicate detection). With
    `check_keys` (the default, and what the worker does), a record whose Kafka key is null or not
    its entity id is rejected as `key_mismatch`: windowed where it happened to land, it would
    split its entity's windows over partitions (contracts/rules.py). Only a caller whose keys are
    placeholders (a replay of values without their keys) passes `check_keys=False`, by name."""
    now = now or datetime.now(UTC)
    decoded = decode_batch(contract, batch.values, now=now, limits=limits, duplicates=duplicates,
                           offsets=batch.offsets, keys=batch.keys if check_keys else None)
    offsets = np.asarray(batch.offsets, dtype=np.int64)
    good_offsets = offsets[decoded.good_positions]
    raw = null_meaningless(contract, decoded.good).append_column(
        pa.field("kafka_partition", pa.int32(), False),
        pa.array(np.full(len(good_offsets), batch.partition, dtype=np.int32)),
    ).append_column(pa.field("kafka_offset", pa.int64(), False), pa.array(good_offsets))
    quarantine = quarantine_table(batch, decoded.rejects, now)
    return ProcessedBatch(
        raw=raw,
        quarantine=quarantine,
        rejects=decoded.rejects,
        events=events_frame(contract, raw),
        first_offset=int(offsets[0]) if len(offsets) else 0,
        last_offset=int(offsets[-1]) if len(offsets) else -1,
        consumed=len(offsets),
    )


def quarantine_table(batch: RecordBatch, rejects: list[Reject], now: datetime) -> pa.Table:
    pos = [r.position for r in rejects]
    return pa.table(
        {
            "source_topic": pa.array([batch.topic] * len(pos), pa.string()),
            "kafka_partition": pa.array([batch.partition] * len(pos), pa.int32()),
            "kafka_offset": pa.array([int(batch.offsets[p]) for p in pos], pa.int64()),
            "reason": [r.reason for r in rejects],
            "field": [r.field for r in rejects],
            "detail": [r.detail for r in rejects],
            "value": pa.array([batch.values[p] for p in pos], pa.binary()),
            "key": pa.array([batch.keys[p] for p in pos], pa.binary()),
            "received_at": pa.array([now] * len(pos), pa.timestamp("ms", tz="UTC")),
        },
        schema=QUARANTINE_SCHEMA,
    )


def events_frame(contract: Contract, raw: pa.Table) -> pa.Table:
    """The window engine's input: ts as epoch ms, the value fields, entity, district, offset."""
    cols = {"ts": raw.column("ts").cast(pa.int64())}
    cols.update((name, raw.column(name)) for name in contract.field_names if name != "ts")
    cols["entity"] = raw.column(contract.key)
    cols["district"] = record_districts(contract, raw)
    cols["offset"] = raw.column("kafka_offset")
    return pa.table(cols)


def record_districts(contract: Contract, raw: pa.Table) -> pa.Array | pa.ChunkedArray:
    """Each record's district: the contract's district field, or for records with a position
    but no district (logistics fixes) the district the position lies in
    (contracts.districts.district_of), so their windows and district partials have one and the
    district stage can place vehicles; null for neither."""
    if contract.district_field:
        return raw.column(contract.district_field)
    if {"lat", "lon"} <= set(contract.field_names) and raw.num_rows:
        lat = raw.column("lat").to_numpy(zero_copy_only=False).astype(np.float64)
        lon = raw.column("lon").to_numpy(zero_copy_only=False).astype(np.float64)
        return pa.array(district_of(lat, lon), pa.string())
    return pa.nulls(raw.num_rows, pa.string())
