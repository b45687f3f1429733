"""Day files: one read-optimised copy of a closed day's live files per table, source and date,
so that a month of report figures opens ~30 files per table and source instead of ~3,000.

    >>> build_day_files(Lake("./lake"), older_than=timedelta(hours=1))
    DayFilesReport(... written=150 ...)

Why: the lake keeps one file per table, source, hour and topic partition (the stream lands by
partition-hour, compaction merges per hour), and a month's figures opened ~17,000 of them at
~1-2 ms each (docs/architecture.md, Warehouse). A day file holds the same rows as the day's
hour files, with the Hive columns (source, date, hour) stored in it, under
`_days/<table>/source=<s>/date=<D>/<signature>.parquet` (contracts/lake.py). A windows day
file also flags the rows macros/window_latest.sql keeps (`_latest`), so the latest-version views
do not sort a closed day's windows again (docs/architecture.md, Warehouse).

It is derived, never the source of truth, so nothing else changes: the stream, compaction,
backfill, retention, `cityflow verify`, the views and Spark read the hour files as before, and
the period-scoped report path (warehouse/scoped.py) reads a day file instead of that day's
hour files only while it is *current*: its name is the signature of the live files it was
copied from (path, size, mtime; `contracts.lake.day_signature`), and the reader computes the
signature of the files it lists now. A late event, a compaction, a backfill or a deletion in
that day changes the signature, so the reader falls back to the hour files of that day (the
same rows, slower) until the next run writes a new day file. Hence:
- atomic: written as a hidden temp file and renamed (`Lake.write_parquet_atomic`); a reader
  sees a complete day file or none (a torn temp file is never read and is removed later);
- safe while workers write: the file copies exactly the files listed, whatever lands after;
- idempotent: a day whose current day file exists is left alone;
- checked: the rows written must equal the rows in the inputs' footers, else it is removed.
Cost: the bytes of the copied days again (zstd, typically no more than the hour files), and one
read and write of each closed day per run that finds it changed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa

from contracts import lake as L
from warehouse.db import (
    HIVE_COLUMNS,
    LATEST_ROW_SQL,
    _ident,
    lake_table_schema,
    lake_uri,
    prepare_connection,
)
from warehouse.scoped import PeriodScans, day_file_path, live_hour_files

log = logging.getLogger(__name__)

STALE_TEMP = timedelta(hours=1)  # a temp file older than this belongs to a dead writer
_BATCH_ROWS = 128_000  # rows per row group, as the lake's own files (contracts/lake.py)


class DayFileError(RuntimeError):
    """A day file would not have held exactly its inputs' rows; it was removed."""


@dataclass
class TableDayFiles:
    """What one run did in one table."""

    table: str
    days: int = 0  # closed (source, date) partitions with live files looked at
    written: int = 0  # day files written
    current: int = 0  # day files already current (left alone)
    failed: int = 0  # days whose files changed under the copy (retried next run)
    input_files: int = 0  # hour files the current day files stand for
    rows_written: int = 0
    bytes_written: int = 0
    stale_deleted: int = 0  # day files of an earlier state of their day, and dead temp files


@dataclass
class DayFilesReport:
    cutoff: datetime
    tables: dict[str, TableDayFiles] = field(default_factory=dict)
    dry_run: bool = False

    def total(self, attr: str) -> int:
        return sum(getattr(t, attr) for t in self.tables.values())


def closed_days(lake: L.Lake, table: str, cutoff: datetime) -> Iterator[tuple[str, str]]:
    """(source, date) of every date partition of `table` whose day ended at or before cutoff."""
    for source_dir in lake.list_dirs(table):
        source = os.path.basename(source_dir).removeprefix("source=")
        for date_dir in lake.list_dirs(source_dir):
            day = os.path.basename(date_dir).removeprefix("date=")
            try:
                end = datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), UTC)
            except ValueError:
                log.warning("day files skip unexpected directory %s", date_dir)
                continue
            if end <= cutoff:
                yield source, day


def build_day_files(lake: L.Lake, older_than: timedelta = timedelta(hours=1), now: datetime | None = None,
                    tables: tuple[str, ...] = L.TABLES, keep_stale: timedelta = timedelta(0),
                    dry_run: bool = False, con: duckdb.DuckDBPyConnection | None = None) -> DayFilesReport:
    """Write the day file of every (table, source, date) whose day ended at least `older_than`
    ago and whose current day file is missing; delete day files of an earlier state of their
    day once they are `keep_stale` old (readers that chose one a moment ago may still open it)."""
    now = now or datetime.now(UTC)
    report = DayFilesReport(cutoff=now - older_than, dry_run=dry_run)
    own = con is None
    con = con or duckdb.connect()
    try:
        root = lake_uri(lake.uri)
        prepare_connection(con, lake.uri)
        for table in tables:
            td = report.tables.setdefault(table, TableDayFiles(table))
            for source, day in closed_days(lake, table, report.cutoff):
                live = live_hour_files(lake, table, source, day)
                if not live:
                    continue
                td.days += 1
                target = day_file_path(table, source, day, live)
                if lake.exists(target):
                    td.current += 1
                    td.input_files += len(live)
                elif not dry_run:
                    try:
                        rows = write_day_file(lake, con, root, table, source, day, live, target)
                    except (duckdb.IOException, FileNotFoundError) as exc:
                        # an input was deleted (compaction, backfill) after it was listed
                        td.failed += 1
                        log.warning("day file %s not written, its inputs changed: %s", target, exc)
                        continue
                    td.written += 1
                    td.input_files += len(live)
                    td.rows_written += rows
                    td.bytes_written += lake.fs.get_file_info(lake.path(target)).size or 0
                else:
                    td.written += 1
                    continue
                _delete_stale(lake, L.day_file_dir(table, source, day), target, now, keep_stale, td, dry_run)
    finally:
        if own:
            con.close()
    log.info("day files cutoff=%s written=%d current=%d failed=%d stale_deleted=%d dry_run=%s",
             report.cutoff.isoformat(), report.total("written"), report.total("current"),
             report.total("failed"), report.total("stale_deleted"), dry_run)
    return report


def write_day_file(lake: L.Lake, con: duckdb.DuckDBPyConnection, root: str, table: str, source: str,
                   day: str, live: list[L.LakeFile], target: str) -> int:
    """Copy the rows of `live` (one day's live hour files) into `target`, atomically: the
    current contract's columns, then the Hive columns, as the period-scoped views read them
    (files of an older schema read the way the views' union_by_name does). Returns rows."""
    d = date.fromisoformat(day)
    scans = PeriodScans(con, lake, root, d, d, checked=True, day_files=False)
    files = [f"{root}/{f.path}" for f in live]
    schema = lake_table_schema(table, source)
    columns = [*schema.names, *(n for n, _ in HIVE_COLUMNS if n not in schema.names)]
    select = ", ".join(_ident(c) for c in columns)
    if table == L.WINDOWS:  # which row is its window's latest version, decided once per closed day:
        # the views' own rule (a day file holds every row of its date, and `date` is part of the
        # rule's partition, so the flag equals what the de-duplication keeps over any period)
        select += f", {LATEST_ROW_SQL} AS {L.LATEST_FLAG}"
    counted = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [files]).fetchone()
    expected = counted[0] if counted else 0
    rel = con.sql(f"SELECT {select} FROM {scans.relation(table, source, files)}")
    # DuckDB 2 names it to_arrow_reader, 1.x (pyproject admits >= 1.0) record_batch
    reader = getattr(rel, "to_arrow_reader" if hasattr(rel, "to_arrow_reader") else "record_batch")(_BATCH_ROWS)
    meta = {"cityflow.day_file_of": json.dumps([f.path for f in live])}
    rows = lake.write_parquet_atomic(target, reader.schema, _row_groups(reader), meta)
    if rows != expected:
        lake.delete(target)
        raise DayFileError(f"day file {target} got {rows} rows, its {len(live)} inputs hold {expected}; removed")
    log.info("day file %s from %d files rows=%d", target, len(live), rows)
    return rows


def _row_groups(reader: pa.RecordBatchReader) -> Iterator[pa.Table]:
    """The reader's batches gathered into tables of about _BATCH_ROWS rows: DuckDB hands out
    small batches, and each table becomes at least one row group (small row groups made the
    day file slower to read than it needs to be)."""
    pending: list[pa.RecordBatch] = []
    n = 0
    for batch in reader:
        pending.append(batch)
        n += batch.num_rows
        if n >= _BATCH_ROWS:
            yield pa.Table.from_batches(pending, reader.schema)
            pending, n = [], 0
    if pending:
        yield pa.Table.from_batches(pending, reader.schema)


def _delete_stale(lake: L.Lake, day_dir: str, current: str, now: datetime, keep: timedelta,
                  td: TableDayFiles, dry_run: bool) -> None:
    """Delete the day files of `day_dir` other than `current` once `current` is `keep` old (a
    reader that listed the day before its files changed may still open the old one), and
    temp files of writers that died."""
    published = lake.fs.get_file_info(lake.path(current)).mtime
    for f in lake.list_entries(day_dir, recursive=False):
        if f.path == current:
            continue
        if os.path.basename(f.path).startswith("."):  # a temp file: a live writer's, unless old
            if f.mtime is None or now - f.mtime <= STALE_TEMP:
                continue
        elif keep > timedelta(0) and (published is None or now - published < keep):
            continue
        td.stale_deleted += 1
        if not dry_run:
            lake.delete(f.path)


__all__ = ["DayFileError", "DayFilesReport", "TableDayFiles", "build_day_files", "closed_days", "write_day_file"]
