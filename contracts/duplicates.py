"""Exact-duplicate detection per topic partition (reason code `duplicate`).

A record is an exact duplicate when every contract field (so the key and `ts` too) equals an
earlier *accepted* record of the same topic partition, and its event time is still inside the
replay horizon: ``ts > max_ts_before_it - horizon``, where ``max_ts_before_it`` is the highest
event time accepted in the partition before it (in offset order) and the horizon is the window
engine's (window size + allowed lateness + grace). Beyond the horizon a re-sent record could no
longer change any window and is accepted as a late event; the bound keeps the state finite.

The decision depends only on the offset-ordered sequence of accepted records, so it is the same
after a restart: `rebuild_duplicate_index` reloads exactly the landed records that can still
match (``ts > max_ts - horizon``) from the raw lake, like the window engine's replay.

    >>> index = DuplicateIndex(horizon_ms=690_000)
    >>> dup, first = index.check(TRAFFIC, decoded_rows, offsets=np.array([10, 11]))
    >>> dup.tolist(), first.tolist()          # offset 11 re-sent the record of offset 10
    ([False, True], [-1, 10])

Fingerprints are 64-bit hashes of the typed values (not of the JSON bytes: a re-sent record
with other whitespace or key order is still a duplicate), after the contract's null rules
(contracts/rules.py): the lake holds a speed sent with no vehicles as null, so the index
rebuilt from it must fingerprint the live records the same way (two such records differing
only in that speed land equal, and the second is a duplicate). A false match needs a 64-bit
collision among one partition's records inside the horizon.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts import lake as L
from contracts.rules import null_meaningless
from contracts.schema import Contract

log = logging.getLogger(__name__)

NO_TS = np.iinfo(np.int64).min // 4
BUCKET_MS = 60_000
_MULT = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime, to combine column hashes
_NULL_TEXT = "\x00cityflow-null\x00"
_NULL_INT = np.iinfo(np.int64).min


def record_fingerprints(contract: Contract, table: pa.Table) -> np.ndarray:
    """A uint64 fingerprint per row over the contract fields' typed values.

    Every column is hashed on its own, with nulls mapped to a sentinel, so a row's fingerprint
    does not depend on the other rows of the table (e.g. on whether a column has nulls).
    Values the contract's null rules declare meaningless hash as null.
    """
    table = null_meaningless(contract, table)
    n = table.num_rows
    h = np.zeros(n, dtype=np.uint64)
    for f in contract.fields:
        col = table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.arrow_type)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if f.type in ("string", "id"):
            col_hash = _string_hashes(col.cast(pa.string()))
        else:
            if f.type == "float":
                values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)  # null -> NaN
            else:  # int, timestamp
                values = pc.fill_null(col.cast(pa.int64()), _NULL_INT).to_numpy(zero_copy_only=False)
            col_hash = pd.util.hash_array(values, categorize=False)
        with np.errstate(over="ignore"):
            h = (h ^ col_hash) * _MULT
    return h


def _string_hashes(col: pa.Array) -> np.ndarray:
    """Hash each distinct string once (ids, districts and roads repeat within a batch)."""
    encoded = pc.fill_null(col, _NULL_TEXT).dictionary_encode()
    distinct = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False), categorize=False)
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)]


class DuplicateIndex:
    """Fingerprints of one partition's accepted records inside the horizon, with the offset
    each was first accepted at, expired by minute of event time. Held as sorted numpy arrays
    (fingerprint, first offset, minute): lookups are one searchsorted per batch."""

    def __init__(self, horizon_ms: int):
        if horizon_ms <= 0:
            raise ValueError(f"duplicate horizon must be positive, got {horizon_ms} ms")
        self.horizon_ms = int(horizon_ms)
        self.max_ts = NO_TS
        self._fps = np.empty(0, dtype=np.uint64)  # sorted
        self._offsets = np.empty(0, dtype=np.int64)  # first offset of each fingerprint
        self._minutes = np.empty(0, dtype=np.int64)  # minute of its event time
        self._pruned_to = NO_TS

    def __len__(self) -> int:
        return len(self._fps)

    def check(self, contract: Contract, rows: pa.Table, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mark the rows (valid records in offset order) that duplicate an earlier one.

        Returns (duplicate mask, offset of the first occurrence or -1). Accepted rows inside the
        horizon are added to the index, so duplicates within the same batch are found too.
        """
        n = rows.num_rows
        dup = np.zeros(n, dtype=bool)
        first = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return dup, first
        ts = rows.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        offsets = np.asarray(offsets, dtype=np.int64)
        running = np.maximum.accumulate(np.concatenate(([self.max_ts], ts)))
        idx = np.flatnonzero(ts > running[:-1] - self.horizon_ms)  # eligible rows, in order
        if len(idx):
            fps = record_fingerprints(contract, rows.take(pa.array(idx)) if len(idx) < n else rows)
            earlier = self._lookup(fps)
            # within the batch: every occurrence after a fingerprint's first is a duplicate of it
            _, first_pos, inverse = np.unique(fps, return_index=True, return_inverse=True)
            first_in_batch = first_pos[inverse.reshape(-1)]
            in_batch = first_in_batch != np.arange(len(idx))
            is_dup = (earlier >= 0) | in_batch
            dup[idx] = is_dup
            first[idx] = np.where(earlier >= 0, earlier, offsets[idx][first_in_batch])
            new = ~is_dup
            self._add(fps[new], ts[idx][new], offsets[idx][new])
        self.max_ts = int(running[-1])
        self._prune()
        return dup, first

    def load(self, contract: Contract, rows: pa.Table) -> None:
        """Add landed rows (accepted earlier, in offset order) without checking them."""
        if rows.num_rows == 0:
            return
        ts = rows.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        offsets = rows.column("kafka_offset").to_numpy(zero_copy_only=False)
        self._add(record_fingerprints(contract, rows), ts, offsets)
        self.max_ts = max(self.max_ts, int(ts.max()))
        self._prune()

    def _lookup(self, fps: np.ndarray) -> np.ndarray:
        """First offset of each fingerprint, or -1 if unknown."""
        if not len(self._fps):
            return np.full(len(fps), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._fps, fps), len(self._fps) - 1)
        return np.where(self._fps[pos] == fps, self._offsets[pos], -1)

    def _add(self, fps: np.ndarray, ts: np.ndarray, offsets: np.ndarray) -> None:
        """Remember fingerprints (the first offset wins if one is already known)."""
        if not len(fps):
            return
        fps, first = np.unique(fps, return_index=True)  # sorted; first occurrence in offset order
        fresh = self._lookup(fps) < 0
        fps, first = fps[fresh], first[fresh]
        pos = np.searchsorted(self._fps, fps)
        self._fps = np.insert(self._fps, pos, fps)
        self._offsets = np.insert(self._offsets, pos, np.asarray(offsets, dtype=np.int64)[first])
        self._minutes = np.insert(self._minutes, pos, np.asarray(ts, dtype=np.int64)[first] // BUCKET_MS)

    def _prune(self) -> None:
        """Forget whole minutes whose every event time is at or behind the horizon."""
        cutoff = self.max_ts - self.horizon_ms
        if cutoff - self._pruned_to < BUCKET_MS:
            return
        keep = (self._minutes + 1) * BUCKET_MS - 1 > cutoff
        if not keep.all():
            self._fps, self._offsets, self._minutes = self._fps[keep], self._offsets[keep], self._minutes[keep]
        self._pruned_to = cutoff


def rebuild_duplicate_index(
    lake: L.Lake, contract: Contract, partition: int, committed: int, max_ts: int, horizon_ms: int
) -> DuplicateIndex:
    """The index as it stood after offset `committed`, rebuilt from the landed raw rows.

    `max_ts` is the partition's highest accepted event time up to `committed` (the window
    engine's after recovery). Only the hour directories that can hold ``ts > max_ts - horizon``
    are read.
    """
    index = DuplicateIndex(horizon_ms)
    if committed < 0 or max_ts <= NO_TS:
        return index
    cutoff = max_ts - horizon_ms
    tables = []
    for rel_dir in L.hour_dirs(L.RAW, contract.source, cutoff + 1, max_ts):
        for rel in lake.list_files(rel_dir):
            name = L.parse_data_file_name(rel)
            if name is None or name.topic != contract.topic or name.partition != partition:
                continue
            if name.first > committed:
                continue
            t = contract.conform_raw(lake.read_table(rel))
            keep = pc.and_(
                pc.less_equal(t.column("kafka_offset"), committed),
                pc.greater(t.column("ts").cast(pa.int64()), cutoff),
            )
            tables.append(t.filter(keep))
    if tables:
        rows = pa.concat_tables(tables).sort_by("kafka_offset")
        index.load(contract, rows)
    index.max_ts = max(index.max_ts, int(max_ts))
    log.info("duplicate index rebuilt topic=%s partition=%d records=%d", contract.topic, partition, len(index))
    return index
