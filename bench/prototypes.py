"""Prototypes of optimisations proposed for code owned elsewhere (contracts/decode.py,
streams/windows.py), kept here so bench/micro.py can check them against the originals and
measure them. Not used by cityflow.

- `decode_batch_fast`: one orjson call for the whole batch, pyarrow type inference, and the
  contract's checks as a handful of Arrow kernels; any doubt (a bad record, an odd type) falls
  back to contracts.decode.decode_batch for the whole batch, so rejects keep their exact reasons.
- `aggregate_groups_np`: streams.windows.aggregate_groups with the group keys factorised once
  and every aggregate computed by numpy over one sort, instead of one pandas groupby per
  aggregate (each of which factorises the keys again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts.decode import DecodedBatch, DecodeLimits, _reject_duplicates, decode_batch
from contracts.duplicates import DuplicateIndex
from contracts.schema import ID_PATTERN, TS_PATTERN, Contract

_TS = pa.timestamp("ms", tz="UTC")


class _Fallback(Exception):
    """The batch is not plainly valid: decode it record by record."""


def decode_batch_fast(
    contract: Contract, values: Sequence[bytes | None], now: datetime | None = None,
    limits: DecodeLimits | None = None, duplicates: DuplicateIndex | None = None,
    offsets: Sequence[int] | None = None,
) -> DecodedBatch:
    """contracts.decode.decode_batch, fast when every record is valid (the common case)."""
    now = now or datetime.now(UTC)
    limits = limits or DecodeLimits()
    try:
        decoded = _decode_all_valid(contract, values, now, limits)
    except (_Fallback, orjson.JSONDecodeError, pa.ArrowException, OverflowError, TypeError, ValueError):
        return decode_batch(contract, values, now=now, limits=limits, duplicates=duplicates, offsets=offsets)
    if duplicates is not None and decoded.good.num_rows:  # as decode_batch does, after decoding
        table, positions = _reject_duplicates(contract, decoded.good, decoded.good_positions,
                                              duplicates, offsets, decoded.rejects)
        return DecodedBatch(table, positions, decoded.rejects)
    return decoded


def _decode_all_valid(contract: Contract, values: Sequence[bytes | None], now: datetime,
                      limits: DecodeLimits) -> DecodedBatch:
    n = len(values)
    if not n or not all(values) or max(map(len, values)) > limits.max_record_bytes:  # type: ignore[arg-type]
        raise _Fallback
    objs = orjson.loads(b"[" + b",".join(values) + b"]")  # type: ignore[arg-type]
    # a value like b'{..},{..}' would smuggle in a second object: then the counts differ
    if len(objs) != n or not all(type(o) is dict for o in objs):
        raise _Fallback
    names = contract.field_names
    # no unknown fields, and every record has all fields of version 1 (later ones may be absent:
    # older producers omit them); the key counts add up only if none is missing
    later = [f.name for f in contract.fields if f.since_version > 1]
    present_later = sum(sum(map(dict.__contains__, objs, repeat(name))) for name in later)
    if not set().union(*objs) <= set(names) or sum(map(len, objs)) != n * (len(names) - len(later)) + present_later:
        raise _Fallback
    # types inferred from the values (strict: no coercion); from_pylist takes the column names
    # from the first row, so a row naming every field goes first
    inferred = pa.Table.from_pylist([dict.fromkeys(names), *objs]).slice(1)
    columns = []
    for f in contract.fields:
        col = inferred.column(f.name)
        t = col.type
        if pa.types.is_null(t):
            if not f.nullable:
                raise _Fallback
            col = col.cast(pa.string() if f.type == "timestamp" else f.arrow_type)
        elif f.type in ("string", "id", "timestamp"):
            if not pa.types.is_string(t):
                raise _Fallback
        elif f.type == "int":
            if not pa.types.is_int64(t):
                raise _Fallback
        elif pa.types.is_int64(t):  # a float field may hold JSON integers
            col = col.cast(pa.float64())
        elif not pa.types.is_float64(t):
            raise _Fallback
        if not f.nullable and col.null_count:
            raise _Fallback
        _check_field(f, col, now, limits)
        columns.append(col.cast(_TS) if f.type == "timestamp" else col)
    table = pa.Table.from_arrays(columns, schema=contract.arrow_schema())
    return DecodedBatch(table, np.arange(n, dtype=np.int64), [])


def _all(mask: Any) -> bool:
    """True if no element of a boolean Arrow array is false (nulls count as passing)."""
    return pc.all(pc.fill_null(mask, True)).as_py()


def _check_field(f: Any, col: pa.ChunkedArray, now: datetime, limits: DecodeLimits) -> None:
    if f.type == "float" and not _all(pc.is_finite(col)):
        raise _Fallback
    if f.type == "id" and not _all(pc.match_substring_regex(col, ID_PATTERN)):
        raise _Fallback
    if f.enum is not None and not _all(pc.is_in(col, value_set=pa.array(f.enum))):
        raise _Fallback
    if f.type in ("int", "float"):
        if f.min is not None and not _all(pc.greater_equal(col, f.min)):
            raise _Fallback
        if f.max is not None and not _all(pc.less_equal(col, f.max)):
            raise _Fallback
    if f.type == "string" and (f.min is not None or f.max is not None):
        lengths = pc.utf8_length(col)
        if f.min is not None and not _all(pc.greater_equal(lengths, f.min)):
            raise _Fallback
        if f.max is not None and not _all(pc.less_equal(lengths, f.max)):
            raise _Fallback
    if f.type == "timestamp":
        if not _all(pc.match_substring_regex(col, TS_PATTERN)):
            raise _Fallback
        epoch = col.cast(_TS).cast(pa.int64())  # raises on impossible dates: fall back
        now_ms = int(now.timestamp() * 1000)
        lo = now_ms - int(limits.max_age.total_seconds() * 1000)
        hi = now_ms + int(limits.max_future.total_seconds() * 1000)
        if not (_all(pc.greater_equal(epoch, lo)) and _all(pc.less_equal(epoch, hi))):
            raise _Fallback


# -- window aggregates ------------------------------------------------------------------------
def aggregate_groups_np(rows: pd.DataFrame, keys: list[str], aggregates: Sequence[Any], size_s: int) -> pd.DataFrame:
    """streams.windows.aggregate_groups computed from one factorisation and one sort."""
    codes, index = _group_codes(rows, keys)
    g = len(index)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    cols: dict[str, np.ndarray] = {}
    for agg in aggregates:
        if agg.fn == "count":
            cols[agg.name] = np.bincount(codes, minlength=g).astype(np.int64)
            continue
        if agg.fn == "count_eq":
            hit = (rows[agg.field].to_numpy(dtype=object) == agg.value).astype(np.int64)
            cols[agg.name] = np.bincount(codes, weights=hit, minlength=g).astype(np.int64)
            continue
        v = rows[agg.field].to_numpy(dtype=np.float64, na_value=np.nan)
        valid = ~np.isnan(v)
        n = np.bincount(codes, weights=valid, minlength=g)
        s = np.bincount(codes, weights=np.where(valid, v, 0.0), minlength=g)
        if agg.fn == "sum":
            out = s.astype(rows[agg.field].to_numpy().dtype) if rows[agg.field].dtype.kind in "iu" else s
        elif agg.fn in ("mean", "energy_wh"):
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
            if agg.fn == "energy_wh":
                out = out * (size_s / 3600.0)
        elif agg.fn == "max":
            out = np.fmax.reduceat(v[order], starts)
        elif agg.fn == "min":
            out = np.fmin.reduceat(v[order], starts)
        elif agg.fn == "p95":
            out = _quantile_linear(v, codes, n.astype(np.int64), g, 0.95)
        else:  # pragma: no cover
            raise ValueError(f"unknown aggregate function {agg.fn}")
        cols[agg.name] = out
    return pd.DataFrame(cols, index=index)


def _group_codes(rows: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.MultiIndex]:
    """Dense group codes in sorted key order (like groupby(sort=True)) and the group index."""
    per_key = [pd.factorize(rows[k], sort=True) for k in keys]
    codes = np.zeros(len(rows), dtype=np.int64)
    for c, u in per_key:
        codes = codes * len(u) + c
    uniq, dense = np.unique(codes, return_inverse=True)
    levels, level_codes = [], []
    rem = uniq
    for c, u in reversed(per_key):
        level_codes.append(rem % len(u))
        rem = rem // len(u)
        levels.append(u)
    index = pd.MultiIndex(levels=levels[::-1], codes=level_codes[::-1], names=keys)
    return dense.astype(np.int64), index


def _quantile_linear(v: np.ndarray, codes: np.ndarray, n: np.ndarray, g: int, q: float) -> np.ndarray:
    """Per-group quantile with linear interpolation, NaN ignored (pandas' quantile)."""
    order = np.lexsort((v, codes))  # NaN sorts last within its group
    sv = v[order]
    first = np.searchsorted(codes[order], np.arange(g))
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a, b = sv[np.minimum(first + lo, len(sv) - 1)], sv[np.minimum(first + hi, len(sv) - 1)]
    out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)
