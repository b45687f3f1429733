"""`cityflow backfill`: re-derive a period's windows from the raw lake, e.g. after a window
setting changed, replacing what the workers landed one partition-hour at a time, atomically.

    >>> report = backfill(Lake("./lake"), CONTRACTS["traffic"], geometry, start_ms, end_ms)
    >>> print(format_report(report))

How (the same engine, the same order, so the same answers as the stream):
- Per topic partition, the landed raw rows whose event time lies from `start - margin` to
  `end + size + margin` are replayed through a fresh `WindowEngine` with the geometry in force,
  in Kafka offset order, as the worker saw them. The margin (the geometry's horizon plus an
  hour) lets the watermark reach the state it had at the period's start, so corrections and
  late events inside the period come out as they would have in the stream.
- For each table the stream derives from raw (`windows`, `district_windows` by window start,
  `late_events` by event time), each partition-hour of the period gets one file holding the
  latest version of every re-derived row. It is published like a compaction output (tag `c`,
  contracts/lake.py): named for an offset range that covers every live file of that directory
  and topic partition, so the instant it is renamed into place, readers see it *instead of*
  those files — never both, never neither — and the old files are deleted afterwards. A crash
  in between leaves hidden files that the next run (or compaction) deletes.
- A partition-hour whose re-derived rows equal the live ones (ignoring `emitted_at`) is left
  alone, so a second run is "unchanged" and rewrites nothing.
- Only final periods are backfilled: every window of the period must be past its grace at the
  partition's landed watermark (from its landing checkpoint), so no running worker lands into
  the hours being replaced. Otherwise nothing is written and the partitions that are not final
  yet are named.
- Anomalies are not re-derived: an alert records what the detectors knew when the window was
  final, and re-scoring needs the detectors' state at the period's start (landed per flush;
  see docs/architecture.md). Backfill says so in its report.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from contracts import lake as L
from contracts.schema import Contract
from contracts.tables import district_window_table, late_events_table, window_table
from contracts.windows import WindowGeometry
from streams.batch import events_frame
from streams.sink import late_events_rows, read_partition_raw, split_by_hour, windows_table
from streams.windows import WindowEngine

log = logging.getLogger(__name__)

REPLAY_CHUNK = 200_000  # rows per engine call: bounded memory for long periods
BACKFILL_TABLES = (L.WINDOWS, L.DISTRICT_WINDOWS, L.LATE_EVENTS)
_TIME_COLUMN = {L.WINDOWS: "window_start", L.DISTRICT_WINDOWS: "window_start", L.LATE_EVENTS: "ts"}


class BackfillRefused(ValueError):
    """The period cannot be backfilled (not final yet, nothing landed): nothing was written."""


@dataclass
class HourChange:
    """One partition-hour of one table that the backfill replaced."""

    table: str
    partition: int
    date: str
    hour: int
    files_replaced: int
    rows_before: int
    rows_after: int
    path: str


@dataclass
class BackfillReport:
    source: str
    start_ms: int
    end_ms: int
    geometry: WindowGeometry
    partitions: list[int] = field(default_factory=list)
    raw_rows: int = 0
    changed: list[HourChange] = field(default_factory=list)
    unchanged: int = 0  # partition-hours whose re-derived rows equal what was landed
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False


def _partitions_in(lake: L.Lake, table: str, source: str, topic: str, lo: int, hi: int) -> set[int]:
    out = set()
    for d in L.hour_dirs(table, source, lo, hi):
        for rel in lake.list_files(d):
            name = L.parse_data_file_name(rel)
            if name is not None and name.topic == topic:
                out.add(name.partition)
    return out


def _chunks(table: pa.Table, n: int) -> Iterator[pa.Table]:
    for i in range(0, table.num_rows, n):
        yield table.slice(i, n)


def _latest(table: pa.Table, key: list[str]) -> pa.Table:
    """Per key the row of the highest `version` (ties: the later row); a table without
    versions (late events) as it is."""
    if "version" not in table.column_names or table.num_rows == 0:
        return table
    t = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    order = t.sort_by([("version", "ascending"), ("_i", "ascending")])
    best = order.group_by(key, use_threads=False).aggregate([("_i", "last")]).column("_i_last")
    return table.take(pc.take(best, pc.sort_indices(best)))  # in row order


def _latest_versions(tables: list[pa.Table], key: list[str]) -> list[pa.Table]:
    """The engine's output of a whole replay reduced to the latest version per key."""
    if not tables:
        return []
    return [_latest(pa.concat_tables(tables, promote_options="permissive"), key)]


def _comparable(table: pa.Table, key: list[str]) -> pa.Table:
    """What a partition-hour says, whatever its history: latest versions, no emission times,
    in key order."""
    t = _latest(table, [k for k in key if k != "version"])
    t = t.drop_columns([c for c in ("emitted_at",) if c in t.column_names])
    return t.sort_by([(k, "ascending") for k in key])


def _final_watermark(lake: L.Lake, contract: Contract, partition: int, geometry: WindowGeometry) -> int | None:
    ckpt = lake.read_json(L.checkpoint_path(contract.topic, partition)) or {}
    history = ckpt.get("history") or []
    if not history:
        return None
    return int(history[-1][1]) - geometry.allowed_lateness_s * 1000


def backfill(lake: L.Lake, contract: Contract, geometry: WindowGeometry, start_ms: int, end_ms: int,
             dry_run: bool = False, progress: Callable[[str], None] | None = None) -> BackfillReport:
    """Re-derive windows, district partials and late events of [start_ms, end_ms) (whole UTC
    hours) for one source; see the module docstring."""
    if start_ms % L.HOUR_MS or end_ms % L.HOUR_MS or end_ms <= start_ms:
        raise BackfillRefused("the period must be whole UTC hours, start before end")
    source, topic = contract.source, contract.topic
    report = BackfillReport(source, start_ms, end_ms, geometry, dry_run=dry_run)
    size_ms, grace_ms = geometry.size_s * 1000, geometry.grace_s * 1000
    margin = geometry.horizon_ms + L.HOUR_MS
    lo, hi = start_ms - margin, end_ms + size_ms + margin
    partitions = _partitions_in(lake, L.RAW, source, topic, start_ms, end_ms - 1)
    for table in BACKFILL_TABLES:
        partitions |= _partitions_in(lake, table, source, topic, start_ms, end_ms - 1)
    report.partitions = sorted(partitions)
    if not partitions:
        return report

    not_final = []
    for p in report.partitions:
        wm = _final_watermark(lake, contract, p, geometry)
        if wm is None or end_ms + size_ms + grace_ms > wm:
            seen = "no landing checkpoint" if wm is None else f"watermark {_iso(wm)}"
            not_final.append(f"{topic}[{p}] ({seen})")
        ckpt = lake.read_json(L.checkpoint_path(topic, p)) or {}
        landed_spec = ckpt.get("spec")
        wanted = [geometry.size_s, geometry.hop, geometry.allowed_lateness_s, geometry.grace_s]
        if landed_spec and list(landed_spec) != wanted:
            report.warnings.append(
                f"{topic}[{p}]: its worker last landed with window geometry {landed_spec} "
                f"(size, hop, lateness, grace), this backfill uses {wanted}; restart the workers "
                "with the new setting so the windows they land next match")
    if not_final:
        raise BackfillRefused(
            f"{source}: the period ends {_iso(end_ms)}; its last windows are final (end + grace) only once every "
            f"partition's watermark passes {_iso(end_ms + size_ms + grace_ms)}, not yet for "
            + ", ".join(not_final) + ". Nothing was written.")

    declared = {L.WINDOWS: window_table(source), L.DISTRICT_WINDOWS: district_window_table(source),
                L.LATE_EVENTS: late_events_table(source)}
    for p in report.partitions:
        raw = read_partition_raw(lake, contract, p, -1, 2**62, (lo, hi))
        report.raw_rows += raw.num_rows
        engine = WindowEngine(geometry, source, p)
        out: dict[str, list[pa.Table]] = defaultdict(list)
        for chunk in _chunks(raw, REPLAY_CHUNK):
            result = engine.process(events_frame(contract, chunk))
            for name, t in ((L.WINDOWS, result.windows), (L.DISTRICT_WINDOWS, result.district_windows),
                            (L.LATE_EVENTS, result.late_events)):
                if t.num_rows:
                    out[name].append(t)
        derived = {
            L.WINDOWS: windows_table(_latest_versions(out[L.WINDOWS], ["entity", "window_start", "window_size_s"]),
                                     declared[L.WINDOWS]),
            L.DISTRICT_WINDOWS: windows_table(
                _latest_versions(out[L.DISTRICT_WINDOWS], ["district", "window_start", "window_size_s"]),
                declared[L.DISTRICT_WINDOWS]),
            L.LATE_EVENTS: late_events_rows(contract, p, out[L.LATE_EVENTS], declared[L.LATE_EVENTS]),
        }
        offsets = raw.column("kafka_offset") if raw.num_rows else None
        raw_range = (pc.min(offsets).as_py(), pc.max(offsets).as_py()) if offsets is not None else None
        for table in BACKFILL_TABLES:
            rows = _in_period(derived[table], _TIME_COLUMN[table], start_ms, end_ms)
            by_hour = dict(split_by_hour(rows, _TIME_COLUMN[table])) if rows is not None and rows.num_rows else {}
            for hour_ms in range(start_ms, end_ms, L.HOUR_MS):
                stamp = datetime.fromtimestamp(hour_ms / 1000, UTC)
                date, hour = stamp.strftime("%Y-%m-%d"), stamp.hour
                new = by_hour.get((date, hour))
                if new is None:
                    new = declared[table].schema.empty_table()
                change = _replace_hour(lake, table, contract, p, date, hour, new, declared[table].key, raw_range,
                                       dry_run)
                if change is None:
                    report.unchanged += 1
                else:
                    report.changed.append(change)
                    if progress:
                        progress(f"{'would replace' if dry_run else 'replaced'} {change.path}: "
                                 f"{change.files_replaced} file(s), {change.rows_before} -> {change.rows_after} rows")
    return report


def _in_period(table: pa.Table | None, col: str, start_ms: int, end_ms: int) -> pa.Table | None:
    if table is None:
        return None
    t = table.column(col).cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(t, start_ms), pc.less(t, end_ms)))


def _replace_hour(lake: L.Lake, table: str, contract: Contract, partition: int, date: str, hour: int,
                  new: pa.Table, key: tuple[str, ...], raw_range: tuple[int, int] | None,
                  dry_run: bool) -> HourChange | None:
    """Publish `new` as the one live file of this partition-hour; None when the latest versions
    live already say the same (or both are empty): the landed history is then kept."""
    directory = L.partition_dir(table, contract.source, date, hour)
    live = []
    for rel in lake.list_files(directory):
        name = L.parse_data_file_name(rel)
        if name is not None and name.topic == contract.topic and name.partition == partition:
            live.append((rel, name))
    if not live and new.num_rows == 0:
        return None
    old = pa.concat_tables([lake.read_table(rel) for rel, _ in live], promote_options="permissive") if live else None
    key_cols = [k for k in key if k in new.column_names]
    if old is not None:
        try:
            same = _comparable(old.select(new.column_names), key_cols).equals(_comparable(new, key_cols))
        except (KeyError, pa.ArrowInvalid):
            same = False
        if same:
            return None
    firsts = [n.first for _, n in live] + ([raw_range[0]] if raw_range else [])
    lasts = [n.last for _, n in live] + ([raw_range[1]] if raw_range else [])
    name = L.DataFileName(contract.topic, partition, min(firsts), max(lasts), L.COMPACTED_TAG)
    path = L.data_file_path(table, contract.source, date, hour, name)
    change = HourChange(table, partition, date, hour, len(live), old.num_rows if old is not None else 0,
                        new.num_rows, path)
    if dry_run:
        return change
    lake.write_table_atomic(path, new, {"cityflow.backfill": datetime.now(UTC).isoformat()})
    for rel, _ in live:  # hidden by the new file from the moment it was renamed into place
        if rel != path:
            lake.delete(rel)
    log.info("backfill replaced %s: %d file(s), %d -> %d rows", path, len(live), change.rows_before, new.num_rows)
    return change


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_report(reports: list[BackfillReport]) -> str:
    lines = []
    for r in reports:
        verb = "would replace" if r.dry_run else "replaced"
        tables: dict[str, int] = defaultdict(int)
        for c in r.changed:
            tables[c.table] += 1
        what = ", ".join(f"{n} {t}" for t, n in sorted(tables.items())) or "nothing"
        lines.append(f"{r.source}: {_iso(r.start_ms)} .. {_iso(r.end_ms)}, window {r.geometry.size_s} s, "
                     f"{len(r.partitions)} partition(s), {r.raw_rows:,} raw rows replayed: {verb} {what} "
                     f"partition-hour(s); {r.unchanged} unchanged")
        before = sum(c.rows_before for c in r.changed)
        after = sum(c.rows_after for c in r.changed)
        if r.changed:
            lines.append(f"  rows in the replaced partition-hours: {before:,} -> {after:,} "
                         f"({sum(c.files_replaced for c in r.changed)} file(s) replaced)")
        lines.extend(f"  warning: {w}" for w in r.warnings)
    lines.append("anomalies were not re-derived (alerts record what was known when each window was final)")
    return "\n".join(lines) + "\n"


__all__ = ["BackfillRefused", "BackfillReport", "HourChange", "backfill", "format_report"]
