"""Retention: drop whole date partitions older than N days from every lake table, and record
what was dropped so the accounting (good + quarantined + retired == consumed) still balances.

    >>> apply_retention(Lake("./lake"), keep_days=30)
    RetentionReport(cutoff=2026-10-26, dropped=[DroppedPartition('raw', 'traffic', '2026-10-25', ...)])

A date partition `date=D` is dropped when D < today (UTC) - keep_days, i.e. every event kept is
at most keep_days (+ part of a day) old. Crash-safe and re-runnable: before deleting a
partition, its live files and their row counts per topic partition are written to a ledger
`_retention/<table>/source=<s>/date=<D>/<run>.json` (files already in a ledger are not counted
again); a crash after the ledger and before or during the delete is completed by the next run.
Events older than CITYFLOW_MAX_EVENT_AGE_DAYS are quarantined on arrival (by receipt time), so
with keep_days >= that age no new file lands in a dropped date.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from contracts import lake as L

log = logging.getLogger(__name__)
COUNTED_TABLES = (L.RAW, L.QUARANTINE)  # the per-offset tables of the accounting invariant


@dataclass(frozen=True)
class DroppedPartition:
    table: str
    source: str
    date: str
    files: int
    bytes: int
    rows: int  # rows of live files (raw and quarantine only; 0 for other tables)


@dataclass
class RetentionReport:
    cutoff: date
    dropped: list[DroppedPartition] = field(default_factory=list)
    dry_run: bool = False

    @property
    def files(self) -> int:
        return sum(d.files for d in self.dropped)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.dropped)


def expired_partitions(lake: L.Lake, cutoff: date) -> list[tuple[str, str, str, str]]:
    """(table, source, date, dir) of every date partition older than `cutoff`."""
    out = []
    for table in L.TABLES:
        for source_dir in lake.list_dirs(table):
            source = os.path.basename(source_dir).removeprefix("source=")
            for date_dir in lake.list_dirs(source_dir):
                day = os.path.basename(date_dir).removeprefix("date=")
                try:
                    d = date.fromisoformat(day)
                except ValueError:
                    log.warning("retention skips unexpected directory %s", date_dir)
                    continue
                if d < cutoff:
                    out.append((table, source, day, date_dir))
    return out


def apply_retention(lake: L.Lake, keep_days: int, now: datetime | None = None,
                    dry_run: bool = False) -> RetentionReport:
    """Drop every date partition older than keep_days (all tables); report what was dropped."""
    if keep_days < 1:
        raise ValueError(f"--keep-days must be at least 1 (the stream replays recent raw data), got {keep_days}")
    now = now or datetime.now(UTC)
    report = RetentionReport(cutoff=(now - timedelta(days=keep_days)).date(), dry_run=dry_run)
    for table, source, day, rel in expired_partitions(lake, report.cutoff):
        entries = lake.list_entries(rel)
        live = set(lake.list_files(rel))
        known = {f for rec in _ledgers(lake, table, source, day) for f in rec.get("files", {})}
        rows: dict[str, int] = {}
        for f in sorted(live - known):
            name = L.parse_data_file_name(f)
            counted = table in COUNTED_TABLES and name is not None
            rows[f] = lake.parquet_metadata(f).num_rows if counted else 0
        report.dropped.append(DroppedPartition(table, source, day, len(entries),
                                               sum(e.size for e in entries), sum(rows.values())))
        if dry_run:
            continue
        if rows:  # the ledger first: a crash before the delete leaves it for the next run
            by_partition: dict[str, int] = defaultdict(int)
            for f, n in rows.items():
                name = L.parse_data_file_name(f)
                if name is not None:
                    by_partition[f"{name.topic}+{name.partition}"] += n
            lake.write_json_atomic(f"{L.retention_ledger_dir(table, source, day)}/{uuid.uuid4().hex[:12]}.json",
                                   {"table": table, "source": source, "date": day, "files": rows,
                                    "rows": dict(by_partition), "dropped_at": now.isoformat()})
        # its derived day file first (jobs/day_files.py): a crash in between leaves no orphan
        lake.delete_dir(L.day_file_dir(table, source, day))
        lake.delete_dir(rel)
        log.info("retention dropped table=%s source=%s date=%s files=%d", table, source, day, len(entries))
    return report


def _ledgers(lake: L.Lake, table: str, source: str, day: str) -> list[dict]:
    return [lake.read_json(f) or {} for f in lake.list_files(L.retention_ledger_dir(table, source, day), suffix=".json")]
