"""Period exports (`cityflow export`): every figure of warehouse/figures/ for one day, week or
month, as CSV and Parquet, one self-contained HTML report and a manifest.json, in one
directory per period (`OUT/<kind>/<label>/`).

Why it is safe to re-run and to kill:
- Atomic: everything is written into a hidden temp directory next to the target
  (`.<label>.tmp-<pid>-*`), fsynced, then renamed into place. A run killed at any point leaves
  no period directory, or the previous complete one; its temp directory is removed by the next
  run of that period (when its pid is gone). Replacing an existing period is two renames (old
  aside, new in) and then the old one is deleted: a reader sees the old or the new directory,
  and for an instant none, never a half-written one.
- Idempotent: figures have a total ORDER BY, and CSV, Parquet and HTML carry no time of their
  own (the generation time is in the manifest only), so the same data gives byte-identical
  files. When every file's SHA-256 equals the existing manifest's (and its partial flag is the
  same), nothing is replaced and the result says "unchanged".
- Complete or refused: a source is complete for the period when its landed watermark (newest
  landed event time, read from Parquet footers, minus the source's allowed lateness, the stream's own watermark rule)
  has reached the period end. If any source is not, the export is refused (PeriodIncomplete)
  unless allow_partial, and then the manifest says `"partial": true` and which sources.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contracts.lake import RAW, Lake, fsync_path
from contracts.registry import CONTRACTS
from jobs.periods import Period
from warehouse.figures import Figure, compute_figures

FORMATS = ("html", "csv", "parquet")
MANIFEST = "manifest.json"
HTML_FILE = "report.html"

Progress = Callable[[str], None]


class PeriodIncomplete(RuntimeError):
    """A source's data has not reached the period end yet (refused without allow_partial)."""

    retry_later = True  # the scheduler tries the period again at its next firing, quietly


@dataclass(frozen=True)
class SourceStatus:
    """How far one source's landed data reaches, against the period end."""

    source: str
    last_event_ts: datetime | None  # newest landed event time (naive UTC), None = nothing landed
    allowed_lateness_s: int
    period_end: datetime

    @property
    def watermark(self) -> datetime | None:
        if self.last_event_ts is None:
            return None
        return self.last_event_ts - timedelta(seconds=self.allowed_lateness_s)

    @property
    def complete(self) -> bool:
        return self.watermark is not None and self.watermark >= self.period_end

    def as_json(self) -> dict[str, Any]:
        wm = self.watermark
        return {
            "last_event_ts": _iso(self.last_event_ts),
            "allowed_lateness_s": self.allowed_lateness_s,
            "watermark": _iso(wm),
            "complete": self.complete,
            "watermark_behind_end_s": None if wm is None else max(0.0, (self.period_end - wm).total_seconds()),
        }

    def describe(self) -> str:
        if self.last_event_ts is None:
            return f"{self.source}: no landed events"
        return f"{self.source}: watermark {_iso(self.watermark)} < period end {_iso(self.period_end)}"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    status: str  # "written" or "unchanged"
    partial: bool
    manifest: dict[str, Any]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def newest_event_ts(lake: Lake, source: str) -> datetime | None:
    """The newest landed event time (naive UTC) of a source, or None if nothing landed. The
    newest `date=` directory is found by listing (date = the UTC date of ts), and in it only
    the Parquet footers are read: the `ts` max statistic of every row group (a superseded file
    repeats rows of its compacted file, which cannot change a max). A row group without
    statistics has its `ts` column read. Far cheaper than a view scan on a lake of many files."""
    newest_day = lake.latest_date(RAW, [source])
    if newest_day is None:
        return None
    best: datetime | None = None
    for rel in lake.list_files(f"{RAW}/source={source}/date={newest_day}", include_superseded=True):
        meta = lake.parquet_metadata(rel)
        idx = meta.schema.to_arrow_schema().get_field_index("ts")
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(idx).statistics
            if stats is not None and stats.has_min_max:
                value = stats.max
            else:
                value = pc.max(lake.read_table(rel).column("ts")).as_py()
            if value is not None:
                value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
                best = value if best is None or value > best else best
    return best


def source_statuses(lake: Lake, period: Period, lateness_s: dict[str, int]) -> list[SourceStatus]:
    """Each source's newest landed event against the period end."""
    return [SourceStatus(s, newest_event_ts(lake, s), lateness_s[s], period.end_utc) for s in CONTRACTS]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


FORMULA_PATTERN = r"^([=@\t\r]|[+-].)"  # a lone "-" (no district) is no formula


def spreadsheet_safe(table: pa.Table) -> pa.Table:
    """Text cells that a spreadsheet program would run as a formula (starting with = or @, tab
    or CR, or + or - followed by anything: a device could name its road `=HYPERLINK(...)`) get
    a leading apostrophe, the usual guard (OWASP "CSV injection"), so they open as text.
    Numbers are untouched; the Parquet files keep the values as they are."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_PATTERN), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _csv_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(spreadsheet_safe(table), buf)
    return buf.getvalue()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, label: str) -> list[Path]:
    """Temp and set-aside directories of earlier runs of this period whose process is gone
    (a killed export); a live run's own are left alone."""
    removed = []
    for kind in ("tmp", "old"):
        for p in parent.glob(f".{label}.{kind}-*"):
            try:
                pid = int(p.name.split(f".{kind}-", 1)[1].split("-", 1)[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def _replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished temp directory at `target`; an existing one is set aside first and
    deleted after (os.rename cannot replace a non-empty directory)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        os.rename(target, old)
    os.rename(tmp, target)
    fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_manifest(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _same_files(existing: dict[str, Any] | None, files: list[dict[str, Any]], partial: bool) -> bool:
    if not existing or existing.get("partial") != partial:
        return False
    old = {f.get("path"): f.get("sha256") for f in existing.get("files", [])}
    return old == {f["path"]: f["sha256"] for f in files}


def cityflow_version() -> str:
    try:
        return metadata.version("cityflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def export_period(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    period: Period,
    figures: dict[str, Figure],
    *,
    out_dir: Path,
    lateness_s: dict[str, int],
    formats: Iterable[str] = FORMATS,
    allow_partial: bool = False,
    progress: Progress = lambda line: None,
    now: datetime | None = None,
    day_files: bool = True,
) -> ExportResult:
    """Export one period (see the module doc); raise PeriodIncomplete when a source has not
    reached the period end and allow_partial is False. `day_files` False: read hour files
    only, even where a current day file exists (the bench measures both)."""
    formats = tuple(f for f in FORMATS if f in set(formats))
    con.execute("SET enable_progress_bar = false")  # our own progress lines only, on stderr
    statuses = source_statuses(lake, period, lateness_s)
    incomplete = [s for s in statuses if not s.complete]
    if incomplete and not allow_partial:
        raise PeriodIncomplete(
            f"{period.kind} {period.label} is not complete yet: "
            + "; ".join(s.describe() for s in incomplete) + " (use --allow-partial to export it anyway)")
    partial = bool(incomplete)

    target = out_dir / period.kind / period.label
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, period.label)
    tmp = Path(tempfile.mkdtemp(prefix=f".{period.label}.tmp-{os.getpid()}-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the period directory is for readers
    try:
        files: list[dict[str, Any]] = []
        position = {name: i for i, name in enumerate(figures, 1)}

        def computed(fig: Figure, table: pa.Table) -> None:
            progress(f"[{position[fig.name]}/{len(figures)}] {fig.name}: {table.num_rows} row{'s' if table.num_rows != 1 else ''}")

        # all figures over the period's files only, each file read once (warehouse/scoped.py)
        tables = compute_figures(con, lake, figures.values(), period.start_utc, period.end_utc, computed,
                                 day_files=day_files)
        for fig in figures.values():
            table = tables[fig.name]
            for fmt, encode in (("csv", _csv_bytes), ("parquet", _parquet_bytes)):
                if fmt in formats:
                    name = f"{fig.name}.{fmt}"
                    _write_bytes(tmp / name, encode(table))
                    files.append({"path": name, "format": fmt, "figure": fig.name, "rows": table.num_rows})
        if "html" in formats:
            from jobs.report_html import render_report  # matplotlib loads only for HTML

            html = render_report(period, figures, tables, [s.source for s in incomplete])
            _write_bytes(tmp / HTML_FILE, html.encode("utf-8"))
            files.append({"path": HTML_FILE, "format": "html", "figure": None, "rows": None})
            progress(f"html: {HTML_FILE}")
        for f in files:
            f["bytes"] = (tmp / f["path"]).stat().st_size
            f["sha256"] = _sha256(tmp / f["path"])

        existing = _read_manifest(target)
        if _same_files(existing, files, partial):
            shutil.rmtree(tmp)
            return ExportResult(target, "unchanged", partial, existing or {})

        start_local, end_local = period.bounds_local()
        manifest = {
            "cityflow_version": cityflow_version(),
            "period": {"kind": period.kind, "label": period.label, "tz": period.tz,
                       "start": start_local, "end": end_local,
                       "start_utc": _iso(period.start_utc), "end_utc": _iso(period.end_utc)},
            "generated_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "partial": partial,
            "incomplete_sources": [s.source for s in incomplete],
            "sources": {s.source: s.as_json() for s in statuses},
            "files": files,
            "figures": {
                fig.name: {"title": fig.title, "section": fig.section, "description": fig.description,
                           "definition": fig.definition,
                           "columns": [{"name": c.name, "unit": c.unit, "doc": c.doc} for c in fig.columns]}
                for fig in figures.values()
            },
        }
        _write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        fsync_path(tmp)
        _replace_dir(tmp, target)
        return ExportResult(target, "written", partial, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["FORMATS", "HTML_FILE", "MANIFEST", "ExportResult", "PeriodIncomplete", "SourceStatus",
           "cityflow_version", "export_period", "newest_event_ts", "remove_stale_temps", "source_statuses"]
