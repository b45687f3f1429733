"""Decode and validate a batch of raw Kafka values against a contract, column by column.

    >>> batch = decode_batch(TRAFFIC, [b'{"detector_id": "d1", ...}', b'not json'], now)
    >>> batch.good.num_rows, [r.reason for r in batch.rejects]
    (1, ['not_json'])

Every input record ends up either in ``good`` (with its input position in ``good_positions``)
or in ``rejects`` with a stable reason code: nothing is dropped. A record with several problems
gets the first one found: whole-record reasons (empty, too_large, not_json, not_object,
unknown_field) first, then per field in declaration order missing, type, and the field's rules
of the contract's rule table (contracts/rules.py: null, finite, id, enum, range, timestamp);
then, when the Kafka keys are given, `key_mismatch`; `duplicate` (with a DuplicateIndex) only
for otherwise valid records.

Two decoders evaluate the one rule table: the batch fast path (contracts/fastpath.py) for a
batch where no rule fails anywhere, and, when any does, `_decode_checked` here, record by
record, to find each record's first failing rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from contracts.duplicates import DuplicateIndex
from contracts.fastpath import FAST_PATH_ERRORS, decode_all_valid
from contracts.rules import (
    DEFAULT_LIMITS,
    INT64_RANGE,
    JSON_TYPES,
    MAX_RECORD_BYTES,
    DecodeLimits,
    Rule,
    RuleContext,
    RuleTable,
    event_times,
    key_array,
    rule_table,
)
from contracts.schema import Contract, Field, Reason

__all__ = ["MAX_RECORD_BYTES", "DecodeLimits", "DecodedBatch", "Reject", "decode_batch"]

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


def decode_batch(
    contract: Contract,
    values: Sequence[bytes | None],
    now: datetime | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    duplicates: DuplicateIndex | None = None,
    offsets: Sequence[int] | None = None,
    keys: Sequence[bytes | None] | None = None,
) -> DecodedBatch:
    """Decode JSON values into a table of the contract's schema; reject the rest with a reason.

    With `keys` (the records' Kafka keys, in order), a valid record whose key is null or not
    its entity id (`contract.key`) is rejected as `key_mismatch` (see contracts/rules.py).
    With `duplicates` (the partition's index; `offsets` are the records' Kafka offsets, in
    order), exact re-sent copies of accepted records are rejected as `duplicate`.
    """
    now = now or datetime.now(UTC)
    try:
        table = decode_all_valid(contract, values, now, limits, keys)
        good_positions = np.arange(len(values), dtype=np.int64)
        rejects: list[Reject] = []
    except FAST_PATH_ERRORS:
        table, good_positions, rejects = _decode_checked(contract, values, now, limits, keys)
    if duplicates is not None and table.num_rows:
        table, good_positions = _reject_duplicates(
            contract, table, good_positions, duplicates, offsets, rejects)
    return DecodedBatch(table, good_positions, rejects)


def _decode_checked(
    contract: Contract, values: Sequence[bytes | None], now: datetime, limits: DecodeLimits,
    keys: Sequence[bytes | None] | None = None,
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
    kept_keys = [keys[i] for i in positions] if keys is not None else None
    ctx = RuleContext(now, limits, key_array(kept_keys) if kept_keys is not None else None)
    verdicts = _Verdicts(n)
    table = rule_table(contract)
    columns: dict[str, pa.Array] = {}
    raws: dict[str, list[Any]] = {}
    for f in contract.fields:
        raw = [o.get(f.name, _MISSING) for o in objs]
        missing = np.fromiter((v is _MISSING for v in raw), dtype=bool, count=n)
        if missing.any():
            if f.since_version == 1:  # added later: older producers omit it, it lands as null
                verdicts.mark(missing, Reason.MISSING_FIELD, f.name, f"field {f.name!r} is missing")
            raw = [None if v is _MISSING else v for v in raw]
        raws[f.name] = raw
        columns[f.name] = _column(f, raw, table, verdicts, ctx)
    if ctx.keys is not None:
        for rule in table.key_rules:
            _apply(rule, columns[rule.field], raws[rule.field], verdicts, ctx, kept_keys)

    ok = verdicts.pending
    for j in np.flatnonzero(~ok):
        rejects.append(Reject(positions[j], verdicts.reason[j], verdicts.field[j], str(verdicts.detail[j])[:500]))
    rejects.sort(key=lambda r: r.position)

    keep = pa.array(ok)
    good = pa.table(columns, schema=_nullable_schema(contract)).filter(keep)
    good = good.cast(contract.arrow_schema())
    good_positions = np.asarray(positions, dtype=np.int64)[ok]
    return good, good_positions, rejects


class _Verdicts:
    """Per parsed record: the first reason, field and detail it was rejected with (None: none)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.field = np.full(n, "", dtype=object)
        self.detail = np.full(n, "", dtype=object)

    @property
    def pending(self) -> np.ndarray:
        """Records not rejected so far."""
        return self.reason == None  # elementwise

    def mark(self, mask: np.ndarray, why: Reason, fname: str, text: str | Callable[[int], str]) -> None:
        """Reject the records in `mask` not rejected yet (the first failure wins)."""
        sel = mask & self.pending
        if sel.any():
            self.reason[sel] = why.value
            self.field[sel] = fname
            if callable(text):
                idx = np.flatnonzero(sel).tolist()
                self.detail[idx] = [text(j) for j in idx]
            else:
                self.detail[sel] = text


def _apply(rule: Rule, column: Any, raw: list[Any], verdicts: _Verdicts, ctx: RuleContext,
           keys: list[bytes | None] | None = None) -> None:
    """Evaluate one rule of the table on a column; reject the records it fails."""
    ok = pc.fill_null(rule.passes(column, ctx), True).to_numpy(zero_copy_only=False)
    verdicts.mark(~ok, rule.reason, rule.field,
                  lambda j: rule.detail(raw[j], keys[j] if keys is not None else None, ctx))


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


def _column(f: Field, raw: list[Any], table: RuleTable, verdicts: _Verdicts, ctx: RuleContext) -> pa.Array:
    """The field's Arrow column (values of the wrong JSON type as null, rejected as such),
    after evaluating the field's rules of the table in order."""
    n = len(raw)
    accepted = JSON_TYPES[f.type]
    if f.type == "int":
        wrong = np.fromiter((v is not None and (type(v) is not int or v not in INT64_RANGE) for v in raw),
                            bool, count=n)
    elif len(accepted) == 1:
        t = accepted[0]
        wrong = np.fromiter((v is not None and type(v) is not t for v in raw), bool, count=n)
    else:
        wrong = np.fromiter((v is not None and type(v) not in accepted for v in raw), bool, count=n)
    if wrong.any():
        verdicts.mark(wrong, Reason.WRONG_TYPE, f.name,
                      lambda j: f"field {f.name!r} expected {f.type}, got {type(raw[j]).__name__}")
        raw = [None if w else v for v, w in zip(raw, wrong)]
    arr = pa.array(raw, type=pa.string() if f.type == "timestamp" else f.arrow_type, from_pandas=False)
    landed, epoch = arr, None
    for rule in table.of_field(f.name):
        if rule.on == "epoch_ms" and epoch is None:
            landed = _parse_timestamps(f, arr, raw, verdicts)
            epoch = landed.cast(pa.int64())
        _apply(rule, epoch if rule.on == "epoch_ms" else arr, raw, verdicts, ctx)
    return landed


def _parse_timestamps(f: Field, arr: pa.Array, raw: list[Any], verdicts: _Verdicts) -> pa.Array:
    """The timestamps of the records not rejected so far (their shape checked) at ms; the
    well-shaped but impossible dates (month 13) are rejected as bad_timestamp."""
    candidates = pc.if_else(pa.array(verdicts.pending), arr, pa.scalar(None, pa.string()))
    try:
        return event_times(candidates)
    except pa.ArrowInvalid:  # find the impossible dates one by one
        parsed, bad = [], np.zeros(len(raw), dtype=bool)
        for j, v in enumerate(candidates.to_pylist()):
            try:
                parsed.append(event_times(pa.array([v], pa.string()))[0].value if v else None)
            except pa.ArrowInvalid:
                parsed.append(None)
                bad[j] = True
        verdicts.mark(bad, Reason.BAD_TIMESTAMP, f.name, lambda j: f"{str(raw[j])[:40]!r} is not a valid date")
        return pa.array(parsed, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
