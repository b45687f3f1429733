"""Deferred durability of lake writes: a flush writes its staged files with sync=False and
makes them durable together (`Lake.sync`) before it commits. Which fsyncs happen is observed by
recording os.fsync (the call the lake makes for files and directories alike)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from tests.support.lake_checks import Records


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths os.fsync was called on, in this test (file or directory)."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_unsynced_writes_are_complete_and_sync_makes_each_file_and_its_directory_durable(tmp_path, fsynced):
    lake = L.Lake(str(tmp_path))
    table = pa.table({"device_id": ["a", "b", "a"], "value": [1.0, 2.0, 3.0]})
    rels = [f"_staging/t+0/0-ab/{i}~x.parquet" for i in range(5)]
    for rel in rels:
        lake.write_table_atomic(rel, table, compression=L.LANDING_COMPRESSION, sync=False)
    lake.write_bytes_atomic("_staging/t+0/0-ab/state.arrow", b"state", sync=False)
    assert fsynced == []  # nothing durable yet, but every file is complete under its final name
    assert all(pq.read_table(lake.path(rel)).equals(table) for rel in rels)
    lake.sync([*rels, "_staging/t+0/0-ab/state.arrow"])
    staged = {lake.path(rel) for rel in rels} | {lake.path("_staging/t+0/0-ab/state.arrow")}
    assert set(fsynced) == staged | {lake.path("_staging/t+0/0-ab")} and len(fsynced) == len(staged) + 1


def test_sync_of_a_missing_file_raises(tmp_path):
    lake = L.Lake(str(tmp_path))
    lake.write_bytes_atomic("a/one", b"1", sync=False)
    with pytest.raises(FileNotFoundError):
        lake.sync(["a/one", "a/gone"])


def test_a_default_write_is_durable_at_once(tmp_path, fsynced):
    lake = L.Lake(str(tmp_path))
    lake.write_bytes_atomic("a/b.json", b"{}")
    assert len(fsynced) == 2 and fsynced[1] == lake.path("a")  # the temp file, then the directory


def test_a_flush_makes_every_staged_file_durable_before_its_commit(tmp_path, fsynced):
    records = Records(n=200)
    not_durable: dict[str, set[str]] = {}

    class Watching(L.Lake):
        def create_exclusive(self, rel, obj):
            if rel.startswith(L.COMMITS):
                staged = {self.path(f"{obj['staging']}/{name}") for name in obj["staged"]}
                not_durable[rel] = staged - set(fsynced)
            return super().create_exclusive(rel, obj)

    sink = records.sink(Watching(str(tmp_path)), "w")
    records.feed(sink, sink.recover(), 50, flush_every=1)
    assert len(not_durable) >= 3 and all(not missing for missing in not_durable.values())
