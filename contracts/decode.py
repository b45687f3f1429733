"""Decode and validate a batch of raw Kafka values against a contract, column by column.

    >>> batch = decode_batch(TRAFFIC, [b'{"detector_id": "d1", ...}', b'not json'], now)
    >>> batch.good.num_rows, [r.reason for r in batch.rejects]
    (1, ['not_json'])

Every input record ends up either in ``good`` (with its input position in ``good_positions``)
or in ``rejects`` with a stable reason code: nothing is dropped. A record with several problems
gets the first one found: whole-record reasons (empty, too_large, not_json, not_object,
unknown_field) first, then per field in declaration order, in the order missing, null, type,
finite, id, enum, range, timestamp; `duplicate` (with a DuplicateIndex) only for otherwise valid
records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from contracts.duplicates import DuplicateIndex
from contracts.fastpath import FAST_PATH_ERRORS, decode_all_valid
from contracts.schema import ID_PATTERN, TS_PATTERN, Contract, Field, Reason

MAX_RECORD_BYTES = 64 * 1024
_MISSING = object()


@dataclass(frozen=True)
class Reject:
    """One rejected input record: its position in the batch and why."""

    position: int
    reason: str
    field: str
    detail: str


@dataclass
class DecodedBatch:
    """The outcome of decoding one batch: valid rows as Arrow, and every reject."""

    good: pa.Table
    good_positions: np.ndarray
    rejects: list[Reject]


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on event time and record size, relative to the wall clock at decode time."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)
    max_record_bytes: int = MAX_RECORD_BYTES


def decode_batch(
    contract: Contract,
    values: Sequence[bytes | None],
    now: datetime | None = None,
    limits: DecodeLimits = DecodeLimits(),
    duplicates: DuplicateIndex | None = None,
    offsets: Sequence[int] | None = None,
) -> DecodedBatch:
    """Decode JSON values into a table of the contract's schema; reject the rest with a reason.

    With `duplicates` (the partition's index; `offsets` are the records' Kafka offsets, in
    order), exact re-sent copies of accepted records are rejected as `duplicate`.
    """
    now = now or datetime.now(UTC)
    try:
        table = decode_all_valid(contract, values, now, limits)
        good_positions = np.arange(len(values), dtype=np.int64)
        rejects: list[Reject] = []
    except FAST_PATH_ERRORS:
        table, good_positions, rejects = _decode_checked(contract, values, now, limits)
    if duplicates is not None and table.num_rows:
        table, good_positions = _reject_duplicates(
            contract, table, good_positions, duplicates, offsets, rejects)
    return DecodedBatch(table, good_positions, rejects)


def _decode_checked(
    contract: Contract, values: Sequence[bytes | None], now: datetime, limits: DecodeLimits
) -> tuple[pa.Table, np.ndarray, list[Reject]]:
    """Record by record: every record is accepted or rejected with its first failing rule."""
    rejects: list[Reject] = []
    objs: list[dict[str, Any]] = []
    positions: list[int] = []
    known = frozenset(contract.field_names)
    for i, value in enumerate(values):
        reject = _parse_one(value, known, limits.max_record_bytes)
        if isinstance(reject, tuple):
            rejects.append(Reject(i, reject[0].value, reject[1], reject[2]))
        else:
            objs.append(reject)
            positions.append(i)

    n = len(objs)
    reason = np.full(n, None, dtype=object)
    field_of = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def mark(mask: np.ndarray, why: Reason, fname: str, text: Any) -> None:
        sel = mask & (reason == None)
        if sel.any():
            reason[sel] = why.value
            field_of[sel] = fname
            if callable(text):
                idx = np.flatnonzero(sel)
                detail[idx] = [text(j) for j in idx]
            else:
                detail[sel] = text

    columns: dict[str, pa.Array] = {}
    for f in contract.fields:
        raw = [o.get(f.name, _MISSING) for o in objs]
        missing = np.fromiter((v is _MISSING for v in raw), dtype=bool, count=n)
        if missing.any():
            if f.since_version == 1:  # added later: older producers omit it, it lands as null
                mark(missing, Reason.MISSING_FIELD, f.name, f"field {f.name!r} is missing")
            raw = [None if v is _MISSING else v for v in raw]
        columns[f.name] = _column(f, raw, mark, now, limits)

    ok = reason == None
    bad_idx = np.flatnonzero(~ok)
    for j in bad_idx:
        rejects.append(Reject(positions[j], reason[j], field_of[j], str(detail[j])[:500]))
    rejects.sort(key=lambda r: r.position)

    keep = pa.array(ok)
    table = pa.table(columns, schema=_nullable_schema(contract)).filter(keep)
    table = table.cast(contract.arrow_schema())
    good_positions = np.asarray(positions, dtype=np.int64)[ok]
    return table, good_positions, rejects


def _reject_duplicates(
    contract: Contract,
    table: pa.Table,
    good_positions: np.ndarray,
    duplicates: DuplicateIndex,
    offsets: Sequence[int] | None,
    rejects: list[Reject],
) -> tuple[pa.Table, np.ndarray]:
    good_offsets = np.asarray(offsets, dtype=np.int64)[good_positions] if offsets is not None else good_positions
    dup, first = duplicates.check(contract, table, good_offsets)
    if not dup.any():
        return table, good_positions
    key = table.column(contract.key)
    for j in np.flatnonzero(dup).tolist():
        rejects.append(Reject(int(good_positions[j]), Reason.DUPLICATE.value, contract.key,
                              f"exact duplicate of the record at offset {int(first[j])} "
                              f"({contract.key}={str(key[j].as_py())[:64]!r})"))
    rejects.sort(key=lambda r: r.position)
    keep = ~dup
    return table.filter(pa.array(keep)), good_positions[keep]


def _nullable_schema(contract: Contract) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.arrow_type, nullable=True) for f in contract.fields])


def _parse_one(
    value: bytes | None, known: frozenset[str], max_bytes: int
) -> dict[str, Any] | tuple[Reason, str, str]:
    if not value:
        return (Reason.EMPTY, "", "empty message value")
    if len(value) > max_bytes:
        return (Reason.TOO_LARGE, "", f"{len(value)} bytes > limit {max_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _not_json(value, exc)
    if type(obj) is not dict:
        return (Reason.NOT_OBJECT, "", f"expected a JSON object, got {type(obj).__name__}")
    if not known.issuperset(obj):
        extra = sorted(set(obj) - known)
        return (Reason.UNKNOWN_FIELD, extra[0][:64], f"unknown fields: {extra[:5]}")
    return obj


def _not_json(value: bytes, exc: Exception) -> tuple[Reason, str, str]:
    """Why orjson refused a value (cold path): NaN/Infinity literals and numbers overflowing a
    double are JSON to lenient encoders (Python's json.dumps), so name them `not_finite`."""
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):
        return (Reason.NOT_JSON, "", f"not valid JSON: {exc}")
    if type(obj) is dict:
        for name, v in obj.items():
            if type(v) is float and not math.isfinite(v):
                return (Reason.NOT_FINITE, str(name)[:64], f"field {str(name)[:64]!r} is {v!r} (not a finite number)")
    return (Reason.NOT_JSON, "", f"not valid JSON: {exc}")


def _column(f: Field, raw: list[Any], mark: Any, now: datetime, limits: DecodeLimits) -> pa.Array:
    n = len(raw)
    nulls = np.fromiter((v is None for v in raw), dtype=bool, count=n)
    if not f.nullable and nulls.any():
        mark(nulls, Reason.NULL_FIELD, f.name, f"field {f.name!r} must not be null")

    if f.type in ("string", "id", "timestamp"):
        wrong = np.fromiter((v is not None and type(v) is not str for v in raw), bool, count=n)
        arr = _typed(raw, wrong, pa.string())
    elif f.type == "int":
        # bool is an int subclass in Python; a JSON true is not a count.
        wrong = np.fromiter(
            (v is not None and (type(v) is not int or not -(2**63) <= v < 2**63) for v in raw),
            bool,
            count=n,
        )
        arr = _typed(raw, wrong, pa.int64())
    else:
        wrong = np.fromiter(
            (v is not None and type(v) not in (int, float) for v in raw), bool, count=n
        )
        arr = _typed(raw, wrong, pa.float64())
    if wrong.any():
        mark(wrong, Reason.WRONG_TYPE, f.name,
             lambda j: f"field {f.name!r} expected {f.type}, got {type(raw[j]).__name__}")

    if f.type == "float":
        finite = pc.fill_null(pc.is_finite(arr), True).to_numpy(zero_copy_only=False)
        mark(~finite, Reason.NOT_FINITE, f.name, f"field {f.name!r} is NaN or infinite")
    if f.type == "id":
        ok = pc.fill_null(pc.match_substring_regex(arr, ID_PATTERN), True)
        mark(~ok.to_numpy(zero_copy_only=False), Reason.BAD_ID, f.name,
             lambda j: f"id {str(raw[j])[:80]!r} does not match {ID_PATTERN}")
    if f.enum is not None:
        ok = pc.fill_null(pc.is_in(arr, value_set=pa.array(f.enum)), True)
        mark(~ok.to_numpy(zero_copy_only=False), Reason.BAD_ENUM, f.name,
             lambda j: f"{str(raw[j])[:80]!r} not one of {list(f.enum or ())}")
    if f.type in ("int", "float") and (f.min is not None or f.max is not None):
        values = arr
        bad = pa.array(np.zeros(n, dtype=bool))
        if f.min is not None:
            bad = pc.or_(bad, pc.fill_null(pc.less(values, f.min), False))
        if f.max is not None:
            bad = pc.or_(bad, pc.fill_null(pc.greater(values, f.max), False))
        mark(bad.to_numpy(zero_copy_only=False), Reason.OUT_OF_RANGE, f.name,
             lambda j: f"{f.name}={raw[j]!r} outside [{f.min}, {f.max}]")
    if f.type == "string" and (f.min is not None or f.max is not None):
        lengths = pc.utf8_length(arr)
        bad = pc.or_(pc.fill_null(pc.less(lengths, f.min or 0), False),
                     pc.fill_null(pc.greater(lengths, f.max or math.inf), False))
        mark(bad.to_numpy(zero_copy_only=False), Reason.OUT_OF_RANGE, f.name,
             lambda j: f"{f.name} length outside [{f.min}, {f.max}]")
    if f.type == "timestamp":
        return _timestamps(f, arr, raw, mark, now, limits)
    return arr


def _typed(raw: list[Any], wrong: np.ndarray, typ: pa.DataType) -> pa.Array:
    """Build an Arrow array of `typ`, nulling the values already marked as the wrong type."""
    if wrong.any():
        raw = [None if w else v for v, w in zip(raw, wrong)]
    if typ == pa.float64():
        return pa.array(raw, type=pa.float64(), from_pandas=False)
    return pa.array(raw, type=typ)


def _timestamps(
    f: Field, arr: pa.Array, raw: list[Any], mark: Any, now: datetime, limits: DecodeLimits
) -> pa.Array:
    shaped = pc.fill_null(pc.match_substring_regex(arr, TS_PATTERN), True)
    shaped_np = shaped.to_numpy(zero_copy_only=False)
    mark(~shaped_np, Reason.BAD_TIMESTAMP, f.name,
         lambda j: f"{str(raw[j])[:40]!r} is not ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)")
    candidates = pc.if_else(shaped, arr, pa.scalar(None, pa.string()))
    # Parse at microseconds (the pattern allows 6 digits), then truncate to the landed ms.
    us = pa.timestamp("us", tz="UTC")
    try:
        ts = candidates.cast(us)
    except pa.ArrowInvalid:  # well-shaped but impossible dates, e.g. month 13: find them one by one
        parsed, bad = [], np.zeros(len(raw), dtype=bool)
        for j, v in enumerate(candidates.to_pylist()):
            try:
                parsed.append(pa.scalar(v).cast(us).value if v else None)
            except pa.ArrowInvalid:
                parsed.append(None)
                bad[j] = True
        mark(bad, Reason.BAD_TIMESTAMP, f.name, lambda j: f"{str(raw[j])[:40]!r} is not a valid date")
        ts = pa.array(parsed, type=pa.int64()).cast(us)
    ts = pc.floor_temporal(ts, unit="millisecond").cast(pa.timestamp("ms", tz="UTC"))
    now_ms = int(now.timestamp() * 1000)
    epoch = ts.cast(pa.int64())
    future = pc.fill_null(pc.greater(epoch, now_ms + int(limits.max_future.total_seconds() * 1000)), False)
    mark(future.to_numpy(zero_copy_only=False), Reason.TS_IN_FUTURE, f.name,
         lambda j: f"ts {raw[j]} is more than {limits.max_future} ahead of {now.isoformat()}")
    old = pc.fill_null(pc.less(epoch, now_ms - int(limits.max_age.total_seconds() * 1000)), False)
    mark(old.to_numpy(zero_copy_only=False), Reason.TS_TOO_OLD, f.name,
         lambda j: f"ts {raw[j]} is older than {limits.max_age}")
    return ts
