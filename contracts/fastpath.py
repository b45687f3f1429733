"""The fast path of batch decoding: when every record of a batch is plainly valid (the common
case), decode the whole batch with one orjson call and check the contract with a handful of
Arrow kernels. Any doubt raises NotPlainlyValid and contracts.decode falls back to the
record-by-record decoder, so rejects keep their exact reasons."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from contracts.schema import ID_PATTERN, TS_PATTERN, Contract

if TYPE_CHECKING:
    from contracts.decode import DecodeLimits

_TS = pa.timestamp("ms", tz="UTC")


class NotPlainlyValid(Exception):
    """The batch is not plainly valid: decode it record by record."""


FAST_PATH_ERRORS = (NotPlainlyValid, orjson.JSONDecodeError, pa.ArrowException, OverflowError,
                    TypeError, ValueError)


def decode_all_valid(contract: Contract, values: Sequence[bytes | None], now: datetime,
                     limits: DecodeLimits) -> pa.Table:
    """The batch as a table of the contract's schema, or NotPlainlyValid."""
    n = len(values)
    if not n or not all(values) or max(map(len, values)) > limits.max_record_bytes:  # type: ignore[arg-type]
        raise NotPlainlyValid
    blob = b"[" + b",".join(values) + b"]"  # type: ignore[arg-type]
    # No contract field is boolean, and Arrow's type inference would quietly turn a JSON
    # true/false among numbers into 1/0: any such literal (or a string merely containing the
    # word) sends the batch to the record-by-record decoder, which rejects it as wrong_type.
    if b"true" in blob or b"false" in blob:
        raise NotPlainlyValid
    objs = orjson.loads(blob)
    # a value like b'{..},{..}' would smuggle in a second object: then the counts differ
    if len(objs) != n or not all(type(o) is dict for o in objs):
        raise NotPlainlyValid
    names = contract.field_names
    # no unknown fields, and every record has all fields of version 1 (later ones may be absent:
    # older producers omit them); the key counts add up only if none is missing
    later = [f.name for f in contract.fields if f.since_version > 1]
    present_later = sum(sum(map(dict.__contains__, objs, repeat(name))) for name in later)
    if not set().union(*objs) <= set(names) or sum(map(len, objs)) != n * (len(names) - len(later)) + present_later:
        raise NotPlainlyValid
    # types inferred from the values (strict: no coercion); from_pylist takes the column names
    # from the first row, so a row naming every field goes first
    inferred = pa.Table.from_pylist([dict.fromkeys(names), *objs]).slice(1)
    columns = []
    for f in contract.fields:
        col = inferred.column(f.name)
        t = col.type
        if pa.types.is_null(t):
            if not f.nullable:
                raise NotPlainlyValid
            col = col.cast(pa.string() if f.type == "timestamp" else f.arrow_type)
        elif f.type in ("string", "id", "timestamp"):
            if not pa.types.is_string(t):
                raise NotPlainlyValid
        elif f.type == "int":
            if not pa.types.is_int64(t):
                raise NotPlainlyValid
        elif pa.types.is_int64(t):  # a float field may hold JSON integers
            col = col.cast(pa.float64())
        elif not pa.types.is_float64(t):
            raise NotPlainlyValid
        if not f.nullable and col.null_count:
            raise NotPlainlyValid
        _check_field(f, col, now, limits)
        columns.append(col.cast(_TS) if f.type == "timestamp" else col)
    return pa.Table.from_arrays(columns, schema=contract.arrow_schema())


def _all(mask: Any) -> bool:
    """True if no element of a boolean Arrow array is false (nulls count as passing)."""
    return pc.all(pc.fill_null(mask, True)).as_py()


def _check_field(f: Any, col: pa.ChunkedArray, now: datetime, limits: DecodeLimits) -> None:
    if f.type == "float" and not _all(pc.is_finite(col)):
        raise NotPlainlyValid
    if f.type == "id" and not _all(pc.match_substring_regex(col, ID_PATTERN)):
        raise NotPlainlyValid
    if f.enum is not None and not _all(pc.is_in(col, value_set=pa.array(f.enum))):
        raise NotPlainlyValid
    if f.type in ("int", "float"):
        if f.min is not None and not _all(pc.greater_equal(col, f.min)):
            raise NotPlainlyValid
        if f.max is not None and not _all(pc.less_equal(col, f.max)):
            raise NotPlainlyValid
    if f.type == "string" and (f.min is not None or f.max is not None):
        lengths = pc.utf8_length(col)
        if f.min is not None and not _all(pc.greater_equal(lengths, f.min)):
            raise NotPlainlyValid
        if f.max is not None and not _all(pc.less_equal(lengths, f.max)):
            raise NotPlainlyValid
    if f.type == "timestamp":
        if not _all(pc.match_substring_regex(col, TS_PATTERN)):
            raise NotPlainlyValid
        epoch = col.cast(_TS).cast(pa.int64())  # raises on impossible dates: fall back
        now_ms = int(now.timestamp() * 1000)
        lo = now_ms - int(limits.max_age.total_seconds() * 1000)
        hi = now_ms + int(limits.max_future.total_seconds() * 1000)
        if not (_all(pc.greater_equal(epoch, lo)) and _all(pc.less_equal(epoch, hi))):
            raise NotPlainlyValid
