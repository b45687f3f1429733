"""`verify --windows` on a lake landed by the real sink (no broker): clean lake passes, a
tampered or missing window is reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pytest

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.windows import WINDOW_DEFAULTS, window_geometry
from streams.batch import RecordBatch, process_records
from streams.simulator import Disorder, deliver_out_of_order, encode, generate
from streams.sink import PartitionSink
from streams.windows import WindowEngine
from warehouse.verify import verify_windows


@pytest.fixture
def landed_lake(tmp_path):
    contract = CONTRACTS["traffic"]
    start = datetime.now(UTC) - timedelta(hours=2)
    events = list(deliver_out_of_order(
        generate(3, rate=200, seconds=10, speedup=360, start=start, sources=["traffic"]),
        Disorder(jitter_s=20, correction_fraction=0.02, late_fraction=0.01, seed=1)))
    lake = L.Lake(str(tmp_path / "lake"))
    sink = PartitionSink(lake, contract, 0, WindowEngine(window_geometry("traffic"), "traffic", 0))
    sink.recover()
    encoded = [encode(e) for e in events]
    for i in range(0, len(encoded), 300):
        chunk = encoded[i:i + 300]
        sink.add(process_records(contract, RecordBatch(contract.topic, 0, list(range(i, i + len(chunk))),
                                                      [k for k, _ in chunk], [v for _, v in chunk])))
        sink.flush()
    return lake


def test_clean_lake_verifies(landed_lake):
    result = verify_windows(landed_lake.root, {"traffic": WINDOW_DEFAULTS["traffic"]})
    (check,) = result.checks
    assert check.windows_checked > 100
    assert result.ok, check.mismatches.head()


def test_tampered_and_missing_windows_are_reported(landed_lake):
    files = sorted(landed_lake.list_files("windows/source=traffic"))
    table = landed_lake.read_table(files[-1])
    # a higher version with a wrong count for one window, and drop all windows of another file
    bad = table.slice(0, 1)
    bad = bad.set_column(bad.schema.get_field_index("version"), "version", pc.add(bad["version"], 5))
    bad = bad.set_column(bad.schema.get_field_index("n_events"), "n_events", pc.add(bad["n_events"], 1))
    landed_lake.write_table_atomic(files[-1].replace(".parquet", ".tamper.parquet"), bad)
    dropped = landed_lake.read_table(files[0]).num_rows
    landed_lake.delete(files[0])

    result = verify_windows(landed_lake.root, {"traffic": WINDOW_DEFAULTS["traffic"]})
    m = result.checks[0].mismatches
    assert not result.ok
    differs = m[m.problem == "value_differs"]
    assert list(differs["column"]) == ["n_events"]
    assert int(differs["streamed"].iloc[0]) == int(differs["recomputed"].iloc[0]) + 1
    assert (m.problem == "missing_in_stream").sum() >= min(dropped, 1)


def test_verify_command_exit_codes(landed_lake, monkeypatch, capsys):
    import argparse

    from jobs.commands import verify as verify_cmd

    monkeypatch.setenv("CITYFLOW_LAKE", landed_lake.root)
    args = argparse.Namespace(counts=False, windows=True, since=None, until=None)
    assert verify_cmd.run(args) == 0
    assert "0 mismatches" in capsys.readouterr().out

    files = sorted(landed_lake.list_files("windows/source=traffic"))
    landed_lake.delete(files[0])
    assert verify_cmd.run(args) == 1
    out = capsys.readouterr().out
    assert "missing_in_stream" in out and "MISMATCH" in out


def test_verify_reads_only_live_files_after_compaction(landed_lake):
    """Merged files next to their not-yet-deleted inputs must not be counted twice."""
    import os
    from datetime import timedelta

    from jobs.compaction import compact

    report = compact(landed_lake, older_than=timedelta(0), keep_superseded=timedelta(hours=1))
    assert report.merges > 0
    on_disk = sum(len([f for f in fs if f.endswith(".parquet")])
                  for _, _, fs in os.walk(f"{landed_lake.root}/raw"))
    assert on_disk > len(list(landed_lake.list_files("raw")))  # inputs are still there
    result = verify_windows(landed_lake.root, {"traffic": WINDOW_DEFAULTS["traffic"]})
    assert result.checks[0].windows_checked > 100
    assert result.ok, result.checks[0].mismatches.head()
