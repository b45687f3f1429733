"""Exactly-once Parquet landing for one topic partition, and its recovery.

Flush protocol (a crash at any step loses nothing and doubles nothing, and of two workers that
both believe they own the partition exactly one lands each offset):
  1. stage: write every file of the flush flat under `_staging/<topic>+<p>/<chain>-<id>/`
     (`raw~source=...~<file>`, contracts.lake.staged_name; temp name, fsync, rename:
     contracts.lake.Lake); readers never look there;
  2. commit: create `_commits/<topic>+<p>/<chain>.json` naming the offset range, the files (and
     their staged names) and the running counts, *only if it does not exist* (chain =
     committed offset + 1). This is the commit point. Losing that race means another writer landed these offsets first:
     the staged files are dropped and FlushFenced is raised (the caller recovers and seeks);
  3. publish: move the staged files to their table paths (idempotent: a staged file that is
     gone was moved already);
  4. snapshot: rewrite `_checkpoints/<topic>+<p>.json` (committed offset, counts, replay
     history); only then does the caller commit offset last + 1 to Kafka.
Recovery reads the snapshot, then follows the commit log from committed + 1, publishing any
commit whose files are still staged; staged flushes that never committed are garbage. It
resumes at the last committed offset + 1 and rebuilds the window engine by replaying the raw
rows that can still change a window. The newest COMMIT_LOG_KEEP commits are kept: they are
what fences a writer that fell behind (the same idea as a Delta Lake log with put-if-absent).

Anomalies. `add` runs the partition's detectors (streams.alerts) on the windows each batch
finalised and on its raw rows (raw-row kinds only); their alerts land as the `anomalies` table
in the same flush as the windows that raised them, ids deterministic. The detectors' state
(per-entity baselines over up to a week, incident memory) is *landed, not replayed*: a flush
whose batches moved it stages `_state/detectors/<topic>+<p>/<first>.arrow` with its other
files and names it in the commit record (and the snapshot), so the published state is exactly
the one as of the committed offset, and recover() loads the one the last committed flush
named. Deriving it from the lake instead would mean re-running every detector over a week of
windows on each assignment (the window engine's replay horizon is minutes). The restored state
and the rebuilt window engine agree: the engine replays raw rows with emit=False, so windows
landed before the crash are not emitted again; the windows it emits afterwards became final
(or were corrected) after the committed offset, which the restored state has not scored; and a
detector scores each (entity, window) at most once (`scored_until` in its state), so not even
a re-emission is scored twice. Landed alerts not yet acknowledged by the anomalies topic are
listed in the snapshot (`alerts_unsent`) until the ingest service confirms them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts import lake as L
from contracts.schema import Contract
from contracts.tables import (
    ANOMALIES,
    LakeTable,
    district_window_table,
    late_events_table,
    window_table,
)
from streams.alerts import PartitionAlerts
from streams.batch import ProcessedBatch, events_frame
from streams.detectors import Detector
from streams.windows import WindowEngine, WindowOutput

log = logging.getLogger(__name__)
_TS = pa.timestamp("ms", tz="UTC")
HISTORY_LIMIT = 512
COMMIT_LOG_KEEP = 1000  # commits kept per partition (the fence against a writer far behind)
COMMIT_GC_EVERY = 100  # flushes between clean-ups of the commit log and of dead staged flushes
STATE_KEEP = 3  # detector state files kept per partition (the newest; older ones are garbage)
UNSENT_LIMIT = 1000  # landed alert files awaiting the anomalies topic, at most (a sink used without one)


class FlushFenced(RuntimeError):
    """Another writer committed this partition's next offsets first (the new owner after a
    rebalance, or an old owner that had not yet noticed it lost the partition). Nothing of this
    flush was landed; call PartitionSink.recover() and resume at the offset it returns."""


@dataclass
class FlushResult:
    first: int
    last: int
    files: list[str]
    rows: dict[str, int]
    seconds: float
    anomalies: pa.Table | None = None  # the alerts this flush landed (ANOMALIES columns)


@dataclass
class _Buffer:
    raw: list[pa.Table] = field(default_factory=list)
    quarantine: list[pa.Table] = field(default_factory=list)
    windows: list[pa.Table] = field(default_factory=list)
    district_windows: list[pa.Table] = field(default_factory=list)
    late: list[pa.Table] = field(default_factory=list)
    anomalies: list[pa.Table] = field(default_factory=list)
    first: int | None = None
    last: int = -1
    rows: int = 0  # records consumed into this buffer
    since: float = 0.0


def writer_id() -> str:
    """Who is writing (host, pid and a random tag): recorded in commits for forensics."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class PartitionSink:
    """Buffers one partition's processed batches and lands them atomically by offset range."""

    def __init__(self, lake: L.Lake, contract: Contract, partition: int, engine: WindowEngine,
                 writer: str | None = None, detectors: Mapping[str, Detector] | None = None):
        """`detectors`: the anomaly detectors to run (None: every default detector of the
        contract's source; {}: none)."""
        self.lake = lake
        self.contract = contract
        self.topic = contract.topic
        self.partition = partition
        self.engine = engine
        self.writer = writer or writer_id()
        self.committed = -1  # highest offset durably landed
        self.consumed = 0  # records landed so far (raw + quarantine), for the accounting invariant
        self.history: list[list[int]] = []  # [last_offset, max_ts] per flush, oldest first
        self.flushes = 0
        self._buf = _Buffer()
        self._ckpt = L.checkpoint_path(self.topic, partition)
        self.alerts = PartitionAlerts(contract.source, partition, detectors, engine.spec)
        self.detector_state: str | None = None  # the landed state file as of `committed`
        self.unsent: list[str] = []  # landed anomalies files not yet confirmed on the topic
        self._unsent_rows: dict[str, pa.Table] = {}  # their rows, for those this process landed
        # the landed tables' declared columns (contracts/tables.py)
        source = contract.source
        self._windows, self._district_windows = window_table(source), district_window_table(source)
        self._late_events = late_events_table(source)

    # -- buffering ------------------------------------------------------------------------
    @property
    def buffered_rows(self) -> int:
        return self._buf.rows

    @property
    def buffered_age(self) -> float:
        return time.monotonic() - self._buf.since if self._buf.first is not None else 0.0

    def add(self, batch: ProcessedBatch) -> WindowOutput:
        """Run the batch through the window engine and the detectors (on the windows it
        finalised and its raw rows) and buffer everything they produced."""
        if batch.consumed == 0:
            return WindowOutput()
        out = self.engine.process(batch.events)
        alerts = self.alerts.detect(out.windows, batch.raw, self.engine.watermark) if self.alerts else None
        b = self._buf
        if b.first is None:
            b.first, b.since = batch.first_offset, time.monotonic()
        b.last = batch.last_offset
        b.rows += batch.consumed
        if batch.raw.num_rows:
            b.raw.append(batch.raw)
        if batch.quarantine.num_rows:
            b.quarantine.append(batch.quarantine)
        if out.windows.num_rows:
            b.windows.append(out.windows)
        if out.district_windows.num_rows:
            b.district_windows.append(out.district_windows)
        if out.late_events.num_rows:
            b.late.append(out.late_events)
        if alerts is not None and alerts.num_rows:
            b.anomalies.append(alerts)
        return out

    # -- flush ----------------------------------------------------------------------------
    def flush(self) -> FlushResult | None:
        """Land everything buffered; afterwards `committed` is the last landed offset.

        Raises FlushFenced (buffer dropped, nothing landed) if another writer committed the
        partition's next offsets first."""
        b = self._buf
        if b.first is None:
            return None
        t0 = time.monotonic()
        chain = self.committed + 1
        name = L.DataFileName(self.topic, self.partition, b.first, b.last)
        planned: list[tuple[str, pa.Table]] = []
        rows: dict[str, int] = {}
        tables = self._tables(b)
        for table_name, (table, ts_col) in tables.items():
            if table is None or table.num_rows == 0:
                continue
            rows[table_name] = table.num_rows
            for (date, hour), part in split_by_hour(table, ts_col):
                planned.append((L.data_file_path(table_name, self.contract.source, date, hour, name), part))
        alert_files = {p: part for p, part in planned if p.startswith(f"{L.ANOMALIES}/")}
        state_path, state = self.detector_state, None
        if self.alerts.changed:  # the detectors' state as of b.last, landed with this flush
            state_path = L.detector_state_path(self.topic, self.partition, b.first)
            state = self.alerts.state_bytes()
        files = [p for p, _ in planned] + ([state_path] if state is not None and state_path else [])
        flush_id = uuid.uuid4().hex[:12]
        stage = L.staging_dir(self.topic, self.partition, chain, flush_id)
        staged = [L.staged_name(path) for path in files]
        for (_, part), staged_as in zip(planned, staged):  # 1. stage (made durable together below)
            self.lake.write_table_atomic(f"{stage}/{staged_as}", part, {"cityflow.flush": f"{b.first}-{b.last}"},
                                         compression=L.LANDING_COMPRESSION, sync=False)
        if state is not None:
            self.lake.write_bytes_atomic(f"{stage}/{staged[-1]}", state, sync=False)
        self.lake.sync([f"{stage}/{name}" for name in staged])  # every staged file durable before the commit
        commit = {"chain": chain, "first": b.first, "last": b.last, "files": files, "staging": stage, "staged": staged,
                  "flush_id": flush_id, "records": b.rows, "consumed": self.consumed + b.rows,
                  "max_ts": int(self.engine.max_ts), "writer": self.writer, "committed_at": time.time(),
                  "detector_state": state_path, "anomalies": list(alert_files)}
        self._commit(chain, commit)  # 2. commit (or FlushFenced)
        self._publish(commit)  # 3. publish
        self.committed = b.last
        self.consumed += b.rows
        self.detector_state = state_path
        self.alerts.changed = False
        self.unsent.extend(alert_files)
        self._unsent_rows.update(alert_files)
        if len(self.unsent) > UNSENT_LIMIT:
            log.warning("topic=%s partition=%d: %d landed alert files were never sent to the anomalies topic; "
                        "forgetting the oldest (they stay in the lake)", self.topic, self.partition, len(self.unsent))
            for p in self.unsent[:-UNSENT_LIMIT]:
                self._unsent_rows.pop(p, None)
            self.unsent = self.unsent[-UNSENT_LIMIT:]
        self.history.append([b.last, int(self.engine.max_ts)])
        self._trim_history()
        self._write_snapshot()  # 4. snapshot
        self._buf = _Buffer()
        self.flushes += 1
        if self.flushes % COMMIT_GC_EVERY == 0:
            self._gc_commits()
            self._gc_detector_states()
        if self.flushes % COMMIT_GC_EVERY == 1:  # the first flush after recovery, and now and then
            self._gc_staging()  # a flush staged at this chain position by a writer that died
        return FlushResult(name.first, name.last, files, rows, time.monotonic() - t0, tables[L.ANOMALIES][0])

    # -- alerts for the anomalies topic -----------------------------------------------------
    def unsent_alerts(self) -> tuple[list[str], pa.Table]:
        """The landed anomalies files not yet confirmed sent to the topic, and their rows (a
        file compacted away meanwhile is skipped with a warning: its alerts stay in the lake)."""
        paths, tables = list(self.unsent), []
        for path in paths:
            table = self._unsent_rows.get(path)
            if table is None:
                if not self.lake.exists(path):
                    log.warning("anomalies file %s is gone (compacted?); its alerts are not re-sent", path)
                    continue
                table = ANOMALIES.conform(self.lake.read_table(path))
            tables.append(table)
        return paths, pa.concat_tables(tables) if tables else ANOMALIES.schema.empty_table()

    def alerts_sent(self, paths: list[str]) -> None:
        """The alerts of these landed files are on the topic: forget them (snapshot updated)."""
        done = set(paths)
        self.unsent = [p for p in self.unsent if p not in done]
        for p in done:
            self._unsent_rows.pop(p, None)
        self._write_snapshot()

    def _commit(self, chain: int, commit: dict[str, Any]) -> None:
        rel = L.commit_path(self.topic, self.partition, chain)
        if self._snapshot_committed()[0] >= chain:
            self._abandon(commit)
            raise FlushFenced(f"{self.topic}:{self.partition} offset {chain} is already landed; "
                              f"this writer ({self.writer}) is stale and recovers")
        if not self.lake.create_exclusive(rel, commit):
            winner = self.lake.read_json(rel) or {}
            self._abandon(commit)
            raise FlushFenced(
                f"{self.topic}:{self.partition} offsets from {chain} were committed by "
                f"{winner.get('writer', 'another writer')} (up to {winner.get('last')}); this writer "
                f"({self.writer}) drops its buffer {commit['first']}-{commit['last']} and recovers")
        # A writer that fell more than COMMIT_LOG_KEEP commits behind between the check above and
        # the create could recreate a commit the log no longer holds: the snapshot tells. (If a
        # recovery elsewhere already rolled this very commit forward, the snapshot says so too.)
        committed, history = self._snapshot_committed()
        if committed >= chain and not any(last == commit["last"] for last, _ in history):
            self.lake.delete(rel)
            self._abandon(commit)
            raise FlushFenced(f"{self.topic}:{self.partition} offset {chain} is already landed "
                              f"(snapshot at {committed}); this writer is stale")

    def _snapshot_committed(self) -> tuple[int, list[list[int]]]:
        snapshot = self.lake.read_json(self._ckpt) or {}
        return int(snapshot.get("committed", -1)), list(snapshot.get("history", []))

    def _abandon(self, commit: dict[str, Any]) -> None:
        self.lake.delete_dir(commit["staging"])
        self._buf = _Buffer()

    def _publish(self, commit: dict[str, Any]) -> None:
        """Move a committed flush's staged files to their table paths (idempotent)."""
        for staged, path in L.staged_moves(commit):
            self.lake.move(staged, path)
        self.lake.delete_dir(commit["staging"])

    def _gc_detector_states(self) -> None:
        """Drop all but the newest STATE_KEEP detector state files (never the current one)."""
        entries = sorted(self.lake.list_files(L.detector_state_dir(self.topic, self.partition), suffix=".arrow"))
        for rel in entries[:-STATE_KEEP]:
            if rel != self.detector_state:
                self.lake.delete(rel)

    def _gc_commits(self) -> None:
        """Drop all but the newest COMMIT_LOG_KEEP commits at or below the committed offset."""
        entries = sorted(f.path for f in self.lake.list_entries(L.commit_dir(self.topic, self.partition), recursive=False)
                         if f.path.endswith(".json"))
        for rel in entries[:-COMMIT_LOG_KEEP] if len(entries) > COMMIT_LOG_KEEP else []:
            if int(os.path.basename(rel).split(".")[0]) <= self.committed:
                self.lake.delete(rel)

    def _tables(self, b: _Buffer) -> dict[str, tuple[pa.Table | None, str]]:
        raw = pa.concat_tables(b.raw) if b.raw else None
        quarantine = pa.concat_tables(b.quarantine) if b.quarantine else None
        return {
            L.RAW: (raw, "ts"),
            L.QUARANTINE: (quarantine, "received_at"),
            L.WINDOWS: (windows_table(b.windows, self._windows), "window_start"),
            L.DISTRICT_WINDOWS: (windows_table(b.district_windows, self._district_windows), "window_start"),
            L.LATE_EVENTS: (self._late_table(b.late), "ts"),
            L.ANOMALIES: (anomalies_table(b.anomalies), "window_start"),
        }

    def _late_table(self, tables: list[pa.Table]) -> pa.Table | None:
        return late_events_rows(self.contract, self.partition, tables, self._late_events)

    def _trim_history(self) -> None:
        """Keep the newest flush at or beyond the replay horizon and everything after it."""
        cutoff = self.engine.max_ts - self.engine.spec.horizon_ms
        keep_from = 0
        for i, (_, max_ts) in enumerate(self.history):
            if max_ts <= cutoff:
                keep_from = i
        self.history = self.history[keep_from:][-HISTORY_LIMIT:]

    def _snapshot(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "consumed": self.consumed,
            "history": self.history,
            "writer": self.writer,
            "detector_state": self.detector_state,
            "alerts_unsent": self.unsent,
            "spec": [self.engine.spec.size_s, self.engine.spec.hop, self.engine.spec.allowed_lateness_s, self.engine.spec.grace_s],
        }

    def _write_snapshot(self) -> None:
        """Rewrite the snapshot unless another writer already moved it past our offset."""
        current = self.lake.read_json(self._ckpt) or {}
        if int(current.get("committed", -1)) > self.committed:
            return
        self.lake.write_json_atomic(self._ckpt, self._snapshot())

    # -- recovery -------------------------------------------------------------------------
    def recover(self) -> int:
        """Restore committed offset and window state from the lake; return the next offset.

        Follows the commit log past the snapshot (publishing commits whose files are still
        staged), drops staged flushes that lost or never reached their commit, and replays."""
        self._buf = _Buffer()
        self.flushes = 0
        ckpt = self.lake.read_json(self._ckpt) or {}
        self.committed = int(ckpt.get("committed", -1))
        self.consumed = int(ckpt.get("consumed", 0))
        self.history = [list(h) for h in ckpt.get("history", [])]
        self.detector_state = ckpt.get("detector_state")
        self.unsent = list(ckpt.get("alerts_unsent", []))
        self._unsent_rows = {}
        if ckpt.get("pending"):
            self._recover_legacy_pending(ckpt["pending"])
        rolled = 0
        while (commit := self.lake.read_json(L.commit_path(self.topic, self.partition, self.committed + 1))) is not None:
            self._publish(commit)
            self.committed = int(commit["last"])
            self.consumed = int(commit["consumed"])
            self.history.append([self.committed, int(commit["max_ts"])])
            self.detector_state = commit.get("detector_state", self.detector_state)
            self.unsent.extend(commit.get("anomalies", []))
            rolled += 1
        if rolled:
            log.info("recover topic=%s partition=%d completed %d committed flush(es) up to offset %d",
                     self.topic, self.partition, rolled, self.committed)
        self._gc_staging()
        self._replay()
        self._load_detector_state()
        self._trim_history()
        self._write_snapshot()
        return self.committed + 1

    def _load_detector_state(self) -> None:
        """The detectors' state as of the committed offset: the file the last committed flush
        named (see the module docstring: landed, not replayed)."""
        if not self.alerts:
            return
        if self.detector_state is None:
            self.alerts.reset()
            if self.committed >= 0:
                log.info("recover topic=%s partition=%d no detector state landed: detectors start fresh",
                         self.topic, self.partition)
        else:
            self.alerts.load_state_bytes(self.lake.read_bytes(self.detector_state))
        self.alerts.changed = False

    def _gc_staging(self) -> None:
        """Delete staged flushes for offsets already committed: they lost the race or crashed
        before committing. Later ones are left alone (a live writer may be about to commit)."""
        for rel in self.lake.list_dirs(L.staging_dir(self.topic, self.partition)):
            parsed = L.parse_staging_name(rel)
            if parsed is not None and parsed[0] <= self.committed:
                log.info("recover topic=%s partition=%d dropping uncommitted staged flush %s",
                         self.topic, self.partition, rel)
                self.lake.delete_dir(rel)

    def _recover_legacy_pending(self, pending: dict[str, Any]) -> None:
        """Checkpoints written before the commit log named a pending flush's files directly."""
        present = [f for f in pending["files"] if self.lake.exists(f)]
        if len(present) == len(pending["files"]):
            self.committed = int(pending["last"])
            self.consumed += int(pending["records"])
            self.history.append([self.committed, int(pending["max_ts"])])
        else:
            for f in present:
                self.lake.delete(f)

    def _replay(self) -> None:
        """Rebuild open windows: replay landed raw rows after the last flush behind the horizon.

        Only rows with ts > newest - horizon are read (newest: the partition's max event time,
        from the last flush), so only the hour directories of that span are listed. Skipping the
        older rows changes nothing: the engine keeps only windows starting after newest -
        horizon (their events are newer), the versions of those depend only on their own events
        and on the running max event time, and an older row can neither raise the max (newest
        is a newer row's time) nor move the watermark past such a window's end."""
        start_after, start_max_ts = -1, None
        newest = self.history[-1][1] if self.history else None
        span = None
        if newest is not None:
            span = (newest - self.engine.spec.horizon_ms, newest)
            for last, max_ts in self.history:
                if max_ts <= span[0]:
                    start_after, start_max_ts = last, max_ts
        self.engine.reset(start_max_ts)
        raw = read_partition_raw(self.lake, self.contract, self.partition, start_after, self.committed, span)
        if raw.num_rows:
            self.engine.process(events_frame(self.contract, raw), emit=False)
        log.info("replay topic=%s partition=%d rows=%d from_offset=%d open_windows=%d",
                 self.topic, self.partition, raw.num_rows, start_after + 1, self.engine.open_windows)


def read_partition_raw(lake: L.Lake, contract: Contract, partition: int, after: int, upto: int,
                       event_time: tuple[int, int] | None = None) -> pa.Table:
    """Landed raw rows of one topic partition with after < offset <= upto, in offset order.

    With event_time=(lo, hi) (epoch ms) only rows with ts > lo are returned and only the hour
    directories from lo to hi are listed (raw files are split by the hour of `ts`; hi must be
    at least the newest event time landed up to `upto`); without it, every file of the source."""
    if event_time is None:
        files = lake.list_files(f"{L.RAW}/source={contract.source}")
    else:
        dirs = L.hour_dirs(L.RAW, contract.source, event_time[0] + 1, event_time[1])
        files = (rel for d in dirs for rel in lake.list_files(d))
    tables = []
    for rel in files:
        name = L.parse_data_file_name(rel)
        if not name or name.topic != contract.topic or name.partition != partition:
            continue
        if name.last <= after or name.first > upto:
            continue
        t = contract.conform_raw(lake.read_table(rel))
        off = t.column("kafka_offset")
        keep = pc.and_(pc.greater(off, after), pc.less_equal(off, upto))
        if event_time is not None:
            keep = pc.and_(keep, pc.greater(t.column("ts").cast(pa.int64()), event_time[0]))
        tables.append(t.filter(keep))
    if not tables:
        return contract.raw_schema().empty_table()
    return pa.concat_tables(tables).sort_by("kafka_offset")


def split_by_hour(table: pa.Table, ts_col: str):
    """Yield ((date, hour), rows) groups of a table by the UTC hour of a timestamp column, in
    hour order; rows keep their order within an hour (one stable sort, then zero-copy slices)."""
    ts = table.column(ts_col)
    if pa.types.is_integer(ts.type):
        ts = ts.cast(pa.int64()).cast(_TS)
    hours = pc.floor_temporal(ts, unit="hour").cast(pa.int64()).to_numpy()
    if (hours[1:] < hours[:-1]).any():  # not in hour order yet (already sorted: no copy)
        order = np.argsort(hours, kind="stable")
        table, hours = table.take(pa.array(order)), hours[order]
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]]) if len(hours) else np.empty(0, dtype=np.int64)
    for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(hours)]):
        dt = pd.Timestamp(int(hours[a]), unit="ms", tz="UTC")
        yield (dt.strftime("%Y-%m-%d"), dt.hour), table.slice(a, b - a)


def late_events_rows(contract: Contract, partition: int, tables: list[pa.Table], declared: LakeTable) -> pa.Table | None:
    """The window engine's late-event tables as one table to land in the `declared` columns:
    the record's fields, its Kafka coordinates, the window it missed and by how much."""
    if not tables:
        return None
    late = pa.concat_tables(tables)
    n = late.num_rows
    cols = {name: late.column(name) for name in contract.field_names}
    cols["kafka_partition"] = pa.array(np.full(n, partition, dtype=np.int32))
    cols["kafka_offset"] = late.column("offset")
    cols["window_start"] = late.column("window_start")
    cols["lateness_s"] = late.column("lateness_s")
    return declared.conform(_ms_to_ts(pa.table(cols), ["ts", "window_start"]))


def windows_table(tables: list[pa.Table], declared: LakeTable) -> pa.Table | None:
    """The window engine's output tables (epoch-ms columns) as one table to land in the
    `declared` columns: UTC timestamp columns and the emission time."""
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.append_column("emitted_at", pa.array(np.full(table.num_rows, int(time.time() * 1000), dtype=np.int64)))
    return declared.conform(_ms_to_ts(table, ["window_start", "window_end", "emitted_at"]))


def anomalies_table(tables: list[pa.Table]) -> pa.Table | None:
    """Buffered alert rows (PartitionAlerts.detect, epoch-ms times) as one table to land in the
    ANOMALIES columns, with the emission time; an id twice in one flush is kept once."""
    if not tables:
        return None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = table.column("anomaly_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    if len(first) < table.num_rows:
        table = table.take(pa.array(np.sort(first)))
    table = table.append_column("emitted_at", pa.array(np.full(table.num_rows, int(time.time() * 1000), dtype=np.int64)))
    return ANOMALIES.conform(_ms_to_ts(table, ["window_start", "window_end", "detected_at", "emitted_at"]))


def _ms_to_ts(table: pa.Table, cols: list[str]) -> pa.Table:
    for c in cols:
        i = table.schema.get_field_index(c)
        if i >= 0 and pa.types.is_integer(table.schema.field(i).type):
            table = table.set_column(i, c, table.column(c).cast(pa.int64()).cast(_TS))
    return table
