"""Lake layout shared by writers (streams) and readers (warehouse, jobs): table paths, Hive
partitions by event time, offset-range file names, and atomic writes on local or object storage.

    lake/<table>/source=<s>/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first>-<last>.parquet

A compacted file carries the tag ``c`` (``<topic>+<p>+<first>-<last>.c.parquet``) and
*supersedes* every other file of the same directory and topic partition whose offset range it
covers: readers skip superseded files (``Lake.list_files``, ``live_scan_sql``), so between the
moment compaction publishes a merged file and the moment it deletes the inputs, queries see the
merged rows exactly once.

Bookkeeping lives next to the tables, under names no table glob matches:
``_checkpoints/`` (per-partition landing snapshot), ``_commits/`` (the per-partition flush log),
``_staging/`` (flushed files not yet committed), ``_state/`` (detector state landed with each
flush) and ``_retention/`` (what retention dropped).

Day files (``_days/<table>/source=<s>/date=YYYY-MM-DD/<signature>.parquet``) are a derived,
read-optimised copy of one closed day's live files of a table and source, written by
``cityflow compact`` (jobs/day_files.py) and read only by the period-scoped report path
(warehouse/scoped.py). The signature names exactly the live files (path, size, mtime) it was
copied from (`day_signature`), so a reader uses a day file only while the day's files are
still those; a file landed, compacted, backfilled or deleted since makes the reader read the
hour files of that day again. They are never the source of truth: deleting them loses nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Every lake URI scheme cityflow accepts, with the DuckDB extension that reads it (None: local).
# Settings validate CITYFLOW_LAKE against it; the warehouse loads the extension it names.
LAKE_SCHEMES: dict[str, str | None] = {
    "file": None,
    "s3": "httpfs", "s3a": "httpfs", "s3n": "httpfs", "gs": "httpfs", "gcs": "httpfs", "r2": "httpfs",
    "http": "httpfs", "https": "httpfs",
    "az": "azure", "azure": "azure", "abfs": "azure", "abfss": "azure",
}


def lake_scheme(root: str) -> str:
    """'file' for a path, else the URI's scheme, lower case."""
    return root.split("://", 1)[0].lower() if "://" in root else "file"


RAW = "raw"
WINDOWS = "windows"
DISTRICT_WINDOWS = "district_windows"
LATE_EVENTS = "late_events"
QUARANTINE = "quarantine"
ANOMALIES = "anomalies"
CHECKPOINTS = "_checkpoints"
COMMITS = "_commits"
STAGING = "_staging"
RETENTION = "_retention"
STATE = "_state"
DAYS = "_days"
TABLES = (RAW, WINDOWS, DISTRICT_WINDOWS, LATE_EVENTS, QUARANTINE, ANOMALIES)
COMPACTED_TAG = "c"

_FILE_RE = re.compile(r"^(?P<topic>[a-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)-(?P<last>\d+)(?:\.(?P<tag>[a-z0-9]+))?\.parquet$")
_TOPIC_RE = re.compile(r"^[a-z0-9._-]+$")
_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PARQUET_ROW_GROUP = 128_000
# The codec of the files a flush lands. A flush writes many small files (one per table, source,
# partition and hour), where zstd's per-column set-up dominates: snappy encoded the bench's
# landed files in half the time of zstd (0.68 against 1.37 ms per file, CPU) for ~20 % more
# bytes over all tables (the raw table, whose files are the largest: ~45 % more, 33 -> 48 MB in
# the bench's run). Compaction rewrites closed hours with zstd (`write_parquet_atomic`), so the
# extra bytes last until it runs (`cityflow compact --older-than 1h`).
LANDING_COMPRESSION = "snappy"


class LakePathError(ValueError):
    """A path component would not be a safe, validated lake path."""


class CorruptLakeFile(ValueError):
    """A bookkeeping file of the lake (checkpoint, commit record) cannot be parsed; the message
    names it."""


@dataclass(frozen=True)
class DataFileName:
    """The parsed name of a landed file: which topic partition and offset range it covers."""

    topic: str
    partition: int
    first: int
    last: int
    tag: str | None = None

    def __str__(self) -> str:
        tag = f".{self.tag}" if self.tag else ""
        return f"{self.topic}+{self.partition}+{self.first}-{self.last}{tag}.parquet"

    @property
    def compacted(self) -> bool:
        return self.tag == COMPACTED_TAG

    def covers(self, other: DataFileName) -> bool:
        """Same topic partition and `other`'s offset range lies inside this one."""
        return (self.topic, self.partition) == (other.topic, other.partition) and \
            self.first <= other.first and other.last <= self.last


def parse_data_file_name(name: str) -> DataFileName | None:
    m = _FILE_RE.match(os.path.basename(name))
    if not m:
        return None
    return DataFileName(m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]), m["tag"])


def partition_dir(table: str, source: str, date: str, hour: int) -> str:
    """Relative directory of one table/source/date/hour; every component is validated."""
    if table not in TABLES:
        raise LakePathError(f"unknown lake table {table!r}")
    if not _SOURCE_RE.match(source):
        raise LakePathError(f"unsafe source name {source!r}")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) or not 0 <= hour <= 23:
        raise LakePathError(f"bad date/hour {date!r}/{hour!r}")
    return f"{table}/source={source}/date={date}/hour={hour:02d}"


HOUR_MS = 3_600_000


def hour_dirs(table: str, source: str, from_ms: int, to_ms: int) -> list[str]:
    """The `date=/hour=` directories of a table/source that hold event times from_ms..to_ms
    (epoch ms, inclusive), oldest first: what a reader of a recent event-time span lists,
    instead of every hour the lake keeps.

        >>> hour_dirs("raw", "traffic", 1_795_075_200_000 - 1, 1_795_075_200_000)
        ['raw/source=traffic/date=2026-11-19/hour=07', 'raw/source=traffic/date=2026-11-19/hour=08']
    """
    dirs = []
    for hour_start in range((max(from_ms, 0) // HOUR_MS) * HOUR_MS, to_ms + 1, HOUR_MS):
        stamp = datetime.fromtimestamp(hour_start / 1000, UTC)
        dirs.append(partition_dir(table, source, stamp.strftime("%Y-%m-%d"), stamp.hour))
    return dirs


def data_file_path(table: str, source: str, date: str, hour: int, name: DataFileName) -> str:
    if not _TOPIC_RE.match(name.topic):
        raise LakePathError(f"unsafe topic name {name.topic!r}")
    return f"{partition_dir(table, source, date, hour)}/{name}"


def _topic_partition(topic: str, partition: int) -> str:
    if not _TOPIC_RE.match(topic):
        raise LakePathError(f"unsafe topic name {topic!r}")
    return f"{topic}+{int(partition)}"


def checkpoint_path(topic: str, partition: int) -> str:
    """The landing snapshot of one topic partition (committed offset, counts, replay history)."""
    return f"{CHECKPOINTS}/{_topic_partition(topic, partition)}.json"


def commit_dir(topic: str, partition: int) -> str:
    """The flush log of one topic partition: one `<first>.json` per committed flush."""
    return f"{COMMITS}/{_topic_partition(topic, partition)}"


def commit_path(topic: str, partition: int, first: int) -> str:
    return f"{commit_dir(topic, partition)}/{int(first):020d}.json"


DISTRICT_STAGE = "_district"


def district_stage_dir(kind: str) -> str:
    """The district stage's own log for one district kind (streams/district_stage.py):
    `checkpoint.json`, `commits/<chain>.json` and `staging/`. Apart from `_checkpoints/` and
    `_commits/`, which hold only topic partitions (accounting and compaction read them)."""
    if not _TOPIC_RE.match(kind):
        raise LakePathError(f"unsafe detector kind {kind!r}")
    return f"{DISTRICT_STAGE}/{kind}"


def detector_state_dir(topic: str, partition: int) -> str:
    """Where a partition's detector state is landed: one file per flush that changed it."""
    return f"{STATE}/detectors/{_topic_partition(topic, partition)}"


def detector_state_path(topic: str, partition: int, first: int) -> str:
    """The detector state as of the flush whose offsets start at `first` (an Arrow IPC stream
    of a few large, mostly-NaN float arrays per detector kind, zstd-compressed)."""
    return f"{detector_state_dir(topic, partition)}/{int(first):020d}.arrow"


def staging_dir(topic: str, partition: int, first: int | None = None, flush_id: str | None = None) -> str:
    """Where a flush writes its files before it commits: `_staging/<topic>+<p>/<first>-<id>`."""
    base = f"{STAGING}/{_topic_partition(topic, partition)}"
    if first is None:
        return base
    if flush_id is None or not re.fullmatch(r"[0-9a-f]+", flush_id):
        raise LakePathError(f"bad flush id {flush_id!r}")
    return f"{base}/{int(first):020d}-{flush_id}"


def staged_name(path: str) -> str:
    """The flat name under which a flush stages the file it publishes at `path` (the path with
    `~` for `/`, so a staged file still says what it is): a flush's staging directory is one
    flat directory, so staging creates no mirrored table tree and clearing it after publish
    removes one empty directory (deleting each flush's mirrored tree cost ~16 % of landing,
    issue 17)."""
    return path.replace("/", "~")


def staged_moves(commit: dict[str, Any]) -> list[tuple[str, str]]:
    """(staged path, table path) of each file a flush's commit record names. Records written
    before flat staging have no `staged` list: their files were staged at the mirrored path."""
    staging, files = commit["staging"], commit["files"]
    staged = commit.get("staged")
    if staged is None:
        return [(f"{staging}/{path}", path) for path in files]
    if len(staged) != len(files):
        raise CorruptLakeFile(f"commit {commit.get('chain')} names {len(files)} files but {len(staged)} staged ones")
    return [(f"{staging}/{name}", path) for name, path in zip(staged, files)]


def retention_ledger_dir(table: str, source: str, date: str) -> str:
    """Where retention records the files (and rows) it dropped from one date partition."""
    if table not in TABLES or not _SOURCE_RE.match(source) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise LakePathError(f"bad retention partition {table!r}/{source!r}/{date!r}")
    return f"{RETENTION}/{table}/source={source}/date={date}"


def day_file_dir(table: str, source: str, date: str) -> str:
    """Where the day files of one table, source and date live (see the module docstring)."""
    if table not in TABLES or not _SOURCE_RE.match(source) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise LakePathError(f"bad day-file partition {table!r}/{source!r}/{date!r}")
    return f"{DAYS}/{table}/source={source}/date={date}"


# What a day file holds, in its signature: a day file of an earlier format is not current (the
# next `cityflow compact` rewrites it). 2: windows' day files carry LATEST_FLAG.
DAY_FILE_FORMAT = 2
# The column of a windows day file saying whether a row is the latest version of its window
# (jobs/day_files.py); hour files do not have it (warehouse/scoped.py reads it as NULL there).
LATEST_FLAG = "_latest"


def day_signature(files: Iterable[LakeFile]) -> str:
    """A name for exactly this set of live files: their paths, sizes and modification times
    (a backfill can publish new content under an old name, so the name alone is not enough),
    and the day files' format."""
    h = hashlib.sha256(f"day file format {DAY_FILE_FORMAT}\n".encode())
    for f in sorted(files, key=lambda f: f.path):
        mtime = "" if f.mtime is None else str(int(f.mtime.timestamp() * 1_000_000))
        h.update(f"{f.path}\t{f.size}\t{mtime}\n".encode())
    return h.hexdigest()[:32]


def parse_staging_name(name: str) -> tuple[int, str] | None:
    """(first offset, flush id) of a staging directory name `<first>-<id>`."""
    m = re.fullmatch(r"(\d{20})-([0-9a-f]+)", os.path.basename(name.rstrip("/")))
    return (int(m[1]), m[2]) if m else None


def superseded(paths: Iterable[str]) -> set[str]:
    """The paths hidden by a compacted file of the same directory and topic partition that
    covers their offset range (an older, narrower compacted file included)."""
    groups: dict[tuple[str, str, int], list[tuple[str, DataFileName]]] = defaultdict(list)
    for p in paths:
        name = parse_data_file_name(p)
        if name is not None:
            groups[(os.path.dirname(p), name.topic, name.partition)].append((p, name))
    hidden: set[str] = set()
    for files in groups.values():
        compacted = [(p, n) for p, n in files if n.compacted]
        if not compacted:
            continue
        for p, n in files:
            if any(cp != p and c.covers(n) for cp, c in compacted):
                hidden.add(p)
    return hidden


def live_scan_sql(pattern: str, options: str = "") -> str:
    """A DuckDB relation reading the Parquet files matching `pattern` minus superseded ones.

    `options` is the rest of the read_parquet argument list (", hive_partitioning = true, ...").
    Mirrors `superseded`: a file is skipped when a compacted file (tag `c`) in its directory,
    for its topic partition, covers its offset range. Only compacted files are joined against,
    so the cost is one glob plus a join against a handful of rows.
    """
    lit = "'" + pattern.replace("'", "''") + "'"
    name_re = r"'^(.*)/([a-z0-9._-]+)\+(\d+)\+(\d+)-(\d+)(?:\.([a-z0-9]+))?\.parquet$'"
    # Long aliases on purpose: DuckDB names an attached database after its file's stem, and with
    # the aliases `c`/`f` and column `n`, a warehouse called c.duckdb made `c.n` ambiguous.
    files = (f"SELECT file, regexp_extract(file, {name_re}, ['dir', 'topic', 'part', 'first', 'last', 'tag']) "
             f"AS cf_name FROM glob({lit})")
    hidden = (
        f"SELECT cf_input.file FROM ({files}) AS cf_input JOIN ({files}) AS cf_cover "
        "ON cf_input.cf_name.dir = cf_cover.cf_name.dir AND cf_input.cf_name.topic = cf_cover.cf_name.topic "
        "AND cf_input.cf_name.part = cf_cover.cf_name.part "
        f"WHERE cf_cover.cf_name.tag = '{COMPACTED_TAG}' AND cf_input.file <> cf_cover.file "
        "AND TRY_CAST(cf_cover.cf_name.first AS BIGINT) <= TRY_CAST(cf_input.cf_name.first AS BIGINT) "
        "AND TRY_CAST(cf_input.cf_name.last AS BIGINT) <= TRY_CAST(cf_cover.cf_name.last AS BIGINT)"
    )
    return (f"(SELECT * EXCLUDE (filename) FROM read_parquet({lit}{options}, filename = true) "
            f"WHERE filename NOT IN ({hidden}))")


@dataclass(frozen=True)
class LakeFile:
    """A file's relative path, size and modification time."""

    path: str
    size: int
    mtime: datetime | None


class Lake:
    """A lake root on a pyarrow filesystem with atomic, durable writes.

    Local paths: write a hidden temp file, fsync it, rename over the target, fsync the directory.
    Any other pyarrow filesystem (S3, GCS, Azure, or one passed in): upload under a hidden temp
    name, then move it over the target (an object store PUT/copy is atomic per object).

        Lake("./lake"); Lake("s3://bucket/lake")
        Lake("lake", filesystem=pafs.SubTreeFileSystem("/data", pafs.LocalFileSystem()))
    """

    def __init__(self, root: str, filesystem: pafs.FileSystem | None = None):
        if filesystem is not None:
            self.fs, path = filesystem, root.split("://", 1)[-1]
        elif "://" in root:
            self.fs, path = pafs.FileSystem.from_uri(root)
        else:
            self.fs, path = pafs.LocalFileSystem(), os.path.abspath(root)
        self.root = path.rstrip("/")
        self.uri = root if "://" in root or filesystem is not None else self.root
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"Lake({self.uri!r}, fs={self.fs.type_name})"

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def rel(self, path: str) -> str:
        return path[len(self.root) + 1:] if self.root else path

    def glob_uri(self, rel: str) -> str:
        """A path DuckDB can read (local path or the original URI scheme)."""
        if self.is_local or "://" not in self.uri:
            return self.path(rel)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.path(rel)}"

    # -- writes ---------------------------------------------------------------------------
    def _tmp_for(self, target: str) -> tuple[str, str]:
        parent, base = target.rsplit("/", 1)
        return parent, f"{parent}/.tmp-{base}-{uuid.uuid4().hex[:8]}"

    def _write_local_tmp(self, tmp: str, data: bytes, sync: bool = True) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def write_bytes_atomic(self, rel: str, data: bytes, sync: bool = True) -> None:
        """Write a file atomically (temp name, rename). sync=False skips the fsyncs: the file is
        complete once visible but not yet durable; whoever needs it durable calls `sync` (the
        landing does, once for all of a flush's staged files, before its commit)."""
        parent, tmp = self._tmp_for(self.path(rel))
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            self._write_local_tmp(tmp, data, sync)
            os.replace(tmp, self.path(rel))
            if sync:
                fsync_path(parent)
        else:
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, self.path(rel))

    def write_table_atomic(self, rel: str, table: pa.Table, metadata: dict[str, str] | None = None,
                           compression: str = "zstd", sync: bool = True) -> None:
        """One Parquet file, atomically (`sync`: see write_bytes_atomic). `compression`: zstd
        by default; landing passes LANDING_COMPRESSION (see there). Only string columns are
        dictionary-encoded."""
        buf = io.BytesIO()
        pq.write_table(_with_metadata(table, metadata), buf, compression=compression,
                       row_group_size=_PARQUET_ROW_GROUP, use_dictionary=_dictionary_columns(table.schema))
        self.write_bytes_atomic(rel, buf.getvalue(), sync=sync)

    def sync(self, rels: list[str]) -> None:
        """Make files written with sync=False durable, and their directories. Locally each file
        is fsynced on a small thread pool: an fsync waits on the disk, not the CPU (~1.2 ms per
        small file on the bench machine), and a flush stages dozens of files, so waiting for
        them together instead of one after the other is what makes a flush's durability cheap.
        Object stores: nothing to do (an upload is durable once it returns)."""
        if not self.is_local or not rels:
            return
        paths = [self.path(r) for r in rels]
        if len(paths) == 1:
            fsync_path(paths[0])
        else:
            list(_sync_pool().map(fsync_path, paths))
        for parent in sorted({p.rsplit("/", 1)[0] for p in paths}):
            fsync_path(parent)

    def write_parquet_atomic(self, rel: str, schema: pa.Schema, tables: Iterable[pa.Table],
                             metadata: dict[str, str] | None = None) -> int:
        """Stream tables (each cast to `schema`) into one Parquet file, atomically; return rows.
        Only one input table is held in memory at a time."""
        schema = _with_metadata(schema.empty_table(), metadata).schema
        parent, tmp = self._tmp_for(self.path(rel))
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            with open(tmp, "wb") as f:
                rows = _write_parquet(f, schema, tables)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(rel))
            fsync_path(parent)
        else:
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                rows = _write_parquet(out, schema, tables)
            self.fs.move(tmp, self.path(rel))
        return rows

    def write_json_atomic(self, rel: str, obj: Any) -> None:
        self.write_bytes_atomic(rel, json.dumps(obj, sort_keys=True).encode())

    def create_exclusive(self, rel: str, obj: Any) -> bool:
        """Write JSON to `rel` only if nothing is there; False if it already exists.

        Local filesystems: atomic (hard-link the fsynced temp file; link fails if the name
        exists), so of two writers racing for one name exactly one wins. Other filesystems:
        pyarrow has no conditional put, so this is check-then-write (see DESIGN: fencing).
        """
        data = json.dumps(obj, sort_keys=True).encode()
        target = self.path(rel)
        parent, tmp = self._tmp_for(target)
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            self._write_local_tmp(tmp, data)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            fsync_path(parent)
            return True
        if self.exists(rel):
            return False
        self.write_bytes_atomic(rel, data)
        return True

    def move(self, src_rel: str, dst_rel: str) -> bool:
        """Rename a file over `dst_rel` (atomic replace locally); False if `src_rel` is gone."""
        src, dst = self.path(src_rel), self.path(dst_rel)
        parent = dst.rsplit("/", 1)[0]
        try:
            if self.is_local:
                os.makedirs(parent, exist_ok=True)
                os.replace(src, dst)
                fsync_path(parent)
            else:
                self.fs.create_dir(parent, recursive=True)
                self.fs.move(src, dst)
        except FileNotFoundError:
            if self.exists(src_rel):
                raise
            return False
        return True

    def delete(self, rel: str) -> bool:
        """Delete a file; False if it was not there."""
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            return False
        return True

    def delete_dir(self, rel: str) -> bool:
        """Delete a directory and everything under it; False if it was not there.

        Another process may be deleting it at the same time (a recovery rolling a committed
        flush forward while the stale writer, woken up, publishes it too): an entry vanishing
        under the recursive delete is then no error, and whatever is left is deleted again."""
        if not self.is_dir(rel):
            return False
        while self.is_dir(rel):
            try:
                self.fs.delete_dir(self.path(rel))
            except FileNotFoundError:
                continue  # deleted under us, in part or whole: look again
        return True

    # -- reads ----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def is_dir(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def read_bytes(self, rel: str) -> bytes:
        """The whole file (FileNotFoundError naming it if absent)."""
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_json(self, rel: str) -> Any | None:
        """The parsed JSON file, or None if it does not exist; CorruptLakeFile if it is not JSON."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                data = f.read()
            try:
                return json.loads(data)
            except ValueError as exc:
                raise CorruptLakeFile(f"{self.path(rel)} is not valid JSON ({exc})") from exc
        except FileNotFoundError:
            return None
        except OSError:
            if self.exists(rel):
                raise
            return None

    def read_table(self, rel: str) -> pa.Table:
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.read_table(f)

    def parquet_metadata(self, rel: str) -> pq.FileMetaData:
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.ParquetFile(f).metadata

    def list_entries(self, rel_dir: str, recursive: bool = True) -> list[LakeFile]:
        """Every file under rel_dir (hidden ones too), with size and mtime."""
        base = self.path(rel_dir)
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(base, recursive=recursive)
        return [LakeFile(self.rel(i.path), i.size or 0, i.mtime)
                for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    def list_dirs(self, rel_dir: str) -> list[str]:
        """Relative paths of the directories directly under rel_dir."""
        base = self.path(rel_dir)
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(base, recursive=False)
        return sorted(self.rel(i.path) for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.Directory)

    def latest_date(self, table: str, sources: Iterable[str]) -> str | None:
        """The newest `date=` partition (YYYY-MM-DD) of a table that holds a data file, over
        the given sources; None if there is none. Lists directories, opens no file."""
        best: str | None = None
        for source in sources:
            dates = sorted((d.rsplit("date=", 1)[-1] for d in self.list_dirs(f"{table}/source={source}")
                            if re.fullmatch(r".*date=\d{4}-\d{2}-\d{2}", d)), reverse=True)
            for date in dates:
                if best is not None and date <= best:
                    break
                if next(self.list_files(f"{table}/source={source}/date={date}"), None) is not None:
                    best = date
                    break
        return best

    def list_files(self, rel_dir: str, suffix: str = ".parquet", include_superseded: bool = False) -> Iterator[str]:
        """Relative paths of the files under rel_dir (recursive): hidden temp files and files
        superseded by a compacted file excluded (pass include_superseded=True to keep those)."""
        paths = [f.path for f in self.list_entries(rel_dir)
                 if f.path.endswith(suffix) and not os.path.basename(f.path).startswith(".")]
        hidden = set() if include_superseded else superseded(paths)
        yield from (p for p in paths if p not in hidden)


def _with_metadata(table: pa.Table, metadata: dict[str, str] | None) -> pa.Table:
    if not metadata:
        return table
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth a Parquet dictionary: strings (ids, districts, kinds). On the flush's
    small files a dictionary for every numeric column cost time and made them larger (measured
    on the bench's landed files, zstd: 1.37 -> 1.17 ms per file, 18.3 -> 16.6 MB)."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _write_parquet(sink: Any, schema: pa.Schema, tables: Iterable[pa.Table]) -> int:
    rows = 0
    with pq.ParquetWriter(sink, schema, compression="zstd", use_dictionary=_dictionary_columns(schema)) as writer:
        for t in tables:
            writer.write_table(t.cast(schema), row_group_size=_PARQUET_ROW_GROUP)
            rows += t.num_rows
    return rows


_SYNC_THREADS = 8
_sync_executor: ThreadPoolExecutor | None = None


def _sync_pool() -> ThreadPoolExecutor:
    global _sync_executor
    if _sync_executor is None:
        _sync_executor = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="lake-fsync")
    return _sync_executor


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a local file, or a directory (which makes the renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
