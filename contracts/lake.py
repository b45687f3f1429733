"""Lake layout shared by writers (streams) and readers (warehouse, jobs): table paths, Hive
partitions by event time, offset-range file names, and atomic writes on local or object storage.

    lake/<table>/source=<s>/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first>-<last>.parquet
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

RAW = "raw"
WINDOWS = "windows"
DISTRICT_WINDOWS = "district_windows"
LATE_EVENTS = "late_events"
QUARANTINE = "quarantine"
ANOMALIES = "anomalies"
CHECKPOINTS = "_checkpoints"
TABLES = (RAW, WINDOWS, DISTRICT_WINDOWS, LATE_EVENTS, QUARANTINE, ANOMALIES)

_FILE_RE = re.compile(r"^(?P<topic>[a-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)-(?P<last>\d+)(?:\.(?P<tag>[a-z0-9]+))?\.parquet$")
_TOPIC_RE = re.compile(r"^[a-z0-9._-]+$")
_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class LakePathError(ValueError):
    """A path component would not be a safe, validated lake path."""


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


def data_file_path(table: str, source: str, date: str, hour: int, name: DataFileName) -> str:
    if not _TOPIC_RE.match(name.topic):
        raise LakePathError(f"unsafe topic name {name.topic!r}")
    return f"{partition_dir(table, source, date, hour)}/{name}"


def checkpoint_path(topic: str, partition: int) -> str:
    if not _TOPIC_RE.match(topic):
        raise LakePathError(f"unsafe topic name {topic!r}")
    return f"{CHECKPOINTS}/{topic}+{int(partition)}.json"


class Lake:
    """A lake root on a pyarrow filesystem with atomic, durable writes.

    Local paths: write a hidden temp file, fsync it, rename over the target, fsync the directory.
    Object stores: upload under a hidden temp key, then move (a PUT is atomic per object there).
    """

    def __init__(self, root: str):
        if "://" in root:
            self.fs, path = pafs.FileSystem.from_uri(root)
        else:
            self.fs, path = pafs.LocalFileSystem(), os.path.abspath(root)
        self.root = path.rstrip("/")
        self.uri = root if "://" in root else self.root
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def glob_uri(self, rel: str) -> str:
        """A path DuckDB can read (local path or the original URI scheme)."""
        if self.is_local:
            return self.path(rel)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.path(rel)}"

    # -- writes ---------------------------------------------------------------------------
    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        parent, base = target.rsplit("/", 1)
        tmp = f"{parent}/.tmp-{base}-{uuid.uuid4().hex[:8]}"
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            dfd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        else:
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, target)

    def write_table_atomic(self, rel: str, table: pa.Table, metadata: dict[str, str] | None = None) -> None:
        if metadata:
            merged = dict(table.schema.metadata or {})
            merged.update({k.encode(): v.encode() for k, v in metadata.items()})
            table = table.replace_schema_metadata(merged)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=128_000)
        self.write_bytes_atomic(rel, buf.getvalue())

    def write_json_atomic(self, rel: str, obj: Any) -> None:
        self.write_bytes_atomic(rel, json.dumps(obj, sort_keys=True).encode())

    # -- reads ----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def read_json(self, rel: str) -> Any | None:
        if not self.exists(rel):
            return None
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read())

    def read_table(self, rel: str) -> pa.Table:
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.read_table(f)

    def delete(self, rel: str) -> None:
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))

    def list_files(self, rel_dir: str, suffix: str = ".parquet") -> Iterator[str]:
        """Relative paths of the files under rel_dir (recursive), hidden temp files excluded."""
        base = self.path(rel_dir)
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return
        sel = pafs.FileSelector(base, recursive=True)
        for info in self.fs.get_file_info(sel):
            name = info.base_name
            if info.type == pafs.FileType.File and name.endswith(suffix) and not name.startswith("."):
                yield info.path[len(self.root) + 1 :]
