"""Compaction: merge the small files of each table/source/date/hour and topic partition into
larger ones, atomically and without changing any query result, safe while workers write.

    >>> compact(Lake("./lake"), older_than=timedelta(hours=1))
    CompactionReport(... files_before=5120, files_after=64 ...)

Why it is safe (see contracts/lake.py for the naming rule):
- The merged file is named for the offset range it covers, with the tag `c`:
  `<topic>+<p>+<first>-<last>.c.parquet`. Once it is published (temp file, fsync, atomic
  rename), every reader that goes through `Lake.list_files` or the warehouse views skips the
  inputs it covers, so the inputs can be deleted afterwards one by one: before the rename
  readers see the inputs, after it the merged file, never both and never neither.
- Only files of offsets the partition's landing snapshot says are committed are merged, so a
  flush still in progress (staged, or committed and being published) is never touched, and a
  merged range can never cover a file that is not one of its inputs (checked after writing).
- Re-runnable after a crash at any point: a torn temp file is hidden and removed later; a
  published merged file whose inputs were not all deleted yet hides them, and the next run
  deletes them; a rerun of the same merge produces the same name and content.
- Only hours that ended at least `older_than` ago are touched; late events may still land
  there and are merged by the next run.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from contracts import lake as L

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
STALE_TEMP = timedelta(hours=1)  # a temp file older than this belongs to a dead writer


class CompactionError(RuntimeError):
    """A merge would not have preserved query results; nothing was changed for that group."""


@dataclass
class TableCompaction:
    """What compaction did in one table."""

    table: str
    hours: int = 0  # hour directories old enough to look at
    merges: int = 0  # merged files written
    files_before: int = 0  # live data files in those hours before
    files_after: int = 0  # and after
    bytes_before: int = 0
    bytes_after: int = 0
    superseded_deleted: int = 0  # inputs of earlier merges (this run's and crashed runs')
    temp_deleted: int = 0


@dataclass
class CompactionReport:
    cutoff: datetime
    tables: dict[str, TableCompaction] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def files_before(self) -> int:
        return sum(t.files_before for t in self.tables.values())

    @property
    def files_after(self) -> int:
        return sum(t.files_after for t in self.tables.values())

    @property
    def merges(self) -> int:
        return sum(t.merges for t in self.tables.values())


def committed_offsets(lake: L.Lake) -> dict[tuple[str, int], int]:
    """Highest committed offset per (topic, partition), from the landing snapshots."""
    out = {}
    for rel in lake.list_files(L.CHECKPOINTS, suffix=".json"):
        ckpt = lake.read_json(rel) or {}
        if "topic" in ckpt and "partition" in ckpt:
            out[(str(ckpt["topic"]), int(ckpt["partition"]))] = int(ckpt.get("committed", -1))
    return out


def hour_dirs(lake: L.Lake, table: str, cutoff: datetime) -> Iterator[str]:
    """The `<table>/source=*/date=*/hour=*` directories whose hour ended at or before cutoff."""
    for source_dir in lake.list_dirs(table):
        for date_dir in lake.list_dirs(source_dir):
            date = _partition_value(date_dir, "date")
            for hour_dir in lake.list_dirs(date_dir):
                hour = _partition_value(hour_dir, "hour")
                try:
                    start = datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                except (TypeError, ValueError):
                    log.warning("compaction skips unexpected directory %s", hour_dir)
                    continue
                if start + timedelta(hours=1) <= cutoff:
                    yield hour_dir


def _partition_value(rel: str, key: str) -> str | None:
    base = os.path.basename(rel)
    return base.split("=", 1)[1] if base.startswith(f"{key}=") else None


def compact(lake: L.Lake, older_than: timedelta, now: datetime | None = None,
            tables: tuple[str, ...] = L.TABLES, max_bytes: int = DEFAULT_MAX_BYTES,
            keep_superseded: timedelta = timedelta(0), dry_run: bool = False) -> CompactionReport:
    """Merge the files of every hour older than `older_than` per table, source and topic
    partition into files of up to about `max_bytes`; delete the merged inputs (at once, or
    once their merged file is `keep_superseded` old, for readers that listed them already)."""
    now = now or datetime.now(UTC)
    report = CompactionReport(cutoff=now - older_than, dry_run=dry_run)
    committed = committed_offsets(lake)
    for table in tables:
        tc = report.tables.setdefault(table, TableCompaction(table))
        for hour_dir in hour_dirs(lake, table, report.cutoff):
            tc.hours += 1
            compact_hour(lake, hour_dir, committed, tc, now, max_bytes, keep_superseded, dry_run)
    log.info("compaction cutoff=%s merges=%d files_before=%d files_after=%d dry_run=%s",
             report.cutoff.isoformat(), report.merges, report.files_before, report.files_after, dry_run)
    return report


def compact_hour(lake: L.Lake, hour_dir: str, committed: dict[tuple[str, int], int], tc: TableCompaction,
                 now: datetime, max_bytes: int, keep_superseded: timedelta, dry_run: bool) -> None:
    entries = {f.path: f for f in lake.list_entries(hour_dir, recursive=False)}
    data = {p: f for p, f in entries.items() if p.endswith(".parquet") and not os.path.basename(p).startswith(".")}
    for p, f in entries.items():  # temp files of writers that died (kill -9 mid-write)
        if os.path.basename(p).startswith(".tmp-") and f.mtime is not None and now - f.mtime > STALE_TEMP:
            tc.temp_deleted += 1
            if not dry_run:
                lake.delete(p)
    hidden = L.superseded(data)
    live = {p: f for p, f in data.items() if p not in hidden}
    tc.files_before += len(live)
    tc.bytes_before += sum(f.size for f in live.values())
    _delete_superseded(lake, hidden, data, now, keep_superseded, tc, dry_run)

    groups: dict[tuple[str, int], list[tuple[L.DataFileName, L.LakeFile]]] = defaultdict(list)
    after: dict[str, int] = {p: f.size for p, f in live.items()}
    for p, f in live.items():
        name = L.parse_data_file_name(p)
        if name is not None:
            groups[(name.topic, name.partition)].append((name, f))
    for tp, files in sorted(groups.items()):
        limit = committed.get(tp, -1)  # never touch offsets not yet committed (a flush in flight)
        eligible = [(n, f) for n, f in sorted(files, key=lambda nf: nf[0].first) if n.last <= limit]
        for run in _runs(eligible, max_bytes):
            if len(run) < 2:
                continue
            merged = L.DataFileName(tp[0], tp[1], run[0][0].first, run[-1][0].last, L.COMPACTED_TAG)
            merged_rel = f"{hour_dir}/{merged}"
            tc.merges += 1
            if dry_run:
                for _, f in run:
                    after.pop(f.path)
                after[merged_rel] = sum(f.size for _, f in run)
                continue
            merge_files(lake, merged_rel, [f.path for _, f in run], already_hidden=hidden)
            for _, f in run:
                after.pop(f.path)
            after[merged_rel] = lake.fs.get_file_info(lake.path(merged_rel)).size or 0
            if keep_superseded <= timedelta(0):
                for _, f in run:
                    lake.delete(f.path)
                    tc.superseded_deleted += 1
    tc.files_after += len(after)
    tc.bytes_after += sum(after.values())


def _delete_superseded(lake: L.Lake, hidden: set[str], data: dict[str, L.LakeFile], now: datetime,
                       keep: timedelta, tc: TableCompaction, dry_run: bool) -> None:
    """Delete files hidden by a compacted file that is at least `keep` old."""
    compacted = [(p, L.parse_data_file_name(p)) for p in data if p not in hidden]
    for p in sorted(hidden):
        name = L.parse_data_file_name(p)
        cover = next((data[cp] for cp, c in compacted if c is not None and c.compacted and name is not None
                      and c.covers(name)), None)
        if cover is None or (keep > timedelta(0) and cover.mtime is not None and now - cover.mtime < keep):
            continue
        tc.superseded_deleted += 1
        if not dry_run:
            lake.delete(p)


def _runs(files: list[tuple[L.DataFileName, L.LakeFile]], max_bytes: int) -> Iterator[list[tuple[L.DataFileName, L.LakeFile]]]:
    """Consecutive files (by offset) in groups of at most ~max_bytes."""
    run: list[tuple[L.DataFileName, L.LakeFile]] = []
    size = 0
    for n, f in files:
        if run and size + f.size > max_bytes:
            yield run
            run, size = [], 0
        run.append((n, f))
        size += f.size
    if run:
        yield run


def merge_files(lake: L.Lake, merged_rel: str, inputs: list[str],
                already_hidden: set[str] | frozenset[str] = frozenset()) -> int:
    """Write the rows of `inputs` (in order) as one file named for their offset range, then
    check that it hides nothing but those inputs (and files hidden already). Returns rows."""
    schemas = [lake.parquet_metadata(p).schema.to_arrow_schema().remove_metadata() for p in inputs]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CompactionError(f"cannot merge into {merged_rel}: input schemas differ: {exc}") from exc
    expected = sum(lake.parquet_metadata(p).num_rows for p in inputs)

    def tables() -> Iterator[pa.Table]:
        for p in inputs:
            yield _conform(lake.read_table(p), schema)

    rows = lake.write_parquet_atomic(merged_rel, schema, tables(),
                                     {"cityflow.compacted_from": str(len(inputs))})
    hidden = set(L.superseded(lake.list_files(os.path.dirname(merged_rel), include_superseded=True)))
    name = L.parse_data_file_name(merged_rel)
    covered = {p for p in hidden if (n := L.parse_data_file_name(p)) is not None and name is not None and name.covers(n)}
    if rows != expected or covered - set(already_hidden) != set(inputs):
        lake.delete(merged_rel)
        raise CompactionError(
            f"merge into {merged_rel} would hide {sorted(covered - set(inputs))} (not inputs) or "
            f"lose rows ({rows} written, {expected} in inputs); merged file removed")
    log.info("compacted %d files into %s rows=%d", len(inputs), merged_rel, rows)
    return rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns of `schema` (absent ones as nulls) in its order and types."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)
