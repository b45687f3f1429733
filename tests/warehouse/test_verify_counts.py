"""`cityflow verify --counts`: good + quarantined == consumed per topic partition, on a lake
landed by the real partition sink; a lost file makes it fail and says where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from jobs.cli import main as cli
from streams.batch import RecordBatch, process_records
from streams.ingest import recover_partition
from streams.simulator import encode, generate

NOW = datetime.now(UTC)


def land(lake: Lake, source: str, partition: int, values: list[bytes]) -> None:
    contract = CONTRACTS[source]
    sink, duplicates, offset = recover_partition(lake, contract, partition)
    for i in range(0, len(values), 50):
        chunk = values[i:i + 50]
        rb = RecordBatch(contract.topic, partition, list(range(offset, offset + len(chunk))), [b"k"] * len(chunk), chunk)
        sink.add(process_records(contract, rb, duplicates=duplicates, check_keys=False))  # placeholder keys
        offset += len(chunk)
        sink.flush()


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    events = list(generate(seed=4, rate=100, seconds=3, speedup=30, start=NOW - timedelta(hours=1),
                           sources=["traffic", "wifi"]))
    for source in ("traffic", "wifi"):
        values = [encode(e)[1] for e in events if e.source == source]
        values[3:3] = [b"not json", b"", b'{"ts": 1}']  # three rejects per source
        land(lake, source, 0, values[: len(values) // 2])
        land(lake, source, 1, values[len(values) // 2:])
    monkeypatch.setenv("CITYFLOW_LAKE", lake.uri)
    return lake


def test_counts_balance_on_a_landed_lake(lake: Lake, capsys) -> None:
    assert cli(["verify", "--counts"]) == 0
    out = capsys.readouterr().out
    assert "city.traffic.v1" in out and "city.wifi.v1" in out
    assert "counts: 4 partitions" in out and "+ 6 quarantined" in out
    assert "UNBALANCED" not in out


def test_a_lost_file_unbalances_its_partition_and_fails(lake: Lake, capsys) -> None:
    lost = next(p for p in lake.list_files("quarantine/source=wifi"))
    partition = int(Path(lost).name.split("+")[1])
    lake.delete(lost)
    assert cli(["verify", "--counts"]) == 1
    out = capsys.readouterr().out
    assert f"1 of 4 partitions UNBALANCED: city.wifi.v1[{partition}] -3" in out
    assert any(line.startswith("city.wifi.v1") and line.rstrip().endswith("UNBALANCED") for line in out.splitlines())


def test_verify_with_no_flag_runs_every_check(lake: Lake, capsys) -> None:
    assert cli(["verify"]) == 0
    assert "counts:" in capsys.readouterr().out


def test_an_empty_lake_has_nothing_to_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CITYFLOW_LAKE", str(tmp_path / "empty"))
    assert cli(["verify", "--counts"]) == 0
    assert "nothing consumed yet" in capsys.readouterr().out
