"""`cityflow dlq list|show` and the replay plan over a quarantine table (the replay itself runs
against a real broker in test_e2e_contracts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from contracts.lake import Lake
from contracts.quarantine import QUARANTINE_SCHEMA
from jobs.cli import main as cli
from jobs.dlq import (
    REPLAY_LOG_DIR,
    REPLAY_LOG_SCHEMA,
    DlqError,
    QuarantineFilter,
    RecordRef,
    plan_replay,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def q(topic: str, partition: int, offset: int, reason: str, value: bytes | None, field: str = "",
      received: datetime = NOW) -> dict:
    return {"source_topic": topic, "kafka_partition": partition, "kafka_offset": offset, "reason": reason,
            "field": field, "detail": f"{reason} detail", "value": value, "key": b"dev-1", "received_at": received}


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    traffic = [q("city.traffic.v1", 0, 10, "not_json", b'{"detector_id": "d1", "ts'),
               q("city.traffic.v1", 0, 11, "ts_too_old", b'{"detector_id": "d1", "ts": "2020-01-01T00:00:00Z"}', "ts"),
               q("city.traffic.v1", 1, 5, "duplicate", b'{"detector_id": "d2"}', "detector_id"),
               q("city.traffic.v1", 1, 6, "not_json", bytes(range(200)))]
    lighting = [q("city.lighting.v1", 2, 3, "out_of_range", b'{"dim_level_pct": 400}', "dim_level_pct",
                  received=NOW - timedelta(days=3))]
    lake.write_table_atomic(f"quarantine/source=traffic/{NOW:date=%Y-%m-%d/hour=%H}/city.traffic.v1+0+10-11.parquet",
                            pa.Table.from_pylist(traffic, schema=QUARANTINE_SCHEMA))
    old = NOW - timedelta(days=3)
    lake.write_table_atomic(f"quarantine/source=lighting/{old:date=%Y-%m-%d/hour=%H}/city.lighting.v1+2+3-3.parquet",
                            pa.Table.from_pylist(lighting, schema=QUARANTINE_SCHEMA))
    monkeypatch.setenv("CITYFLOW_LAKE", lake.uri)
    return lake


def test_list_counts_by_source_and_reason_then_lists_records(lake: Lake, capsys) -> None:
    assert cli(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split()[:3] == ["traffic", "not_json", "2"] for line in lines)
    assert "total: 5" in out
    assert "city.traffic.v1:0:10" in out and "city.lighting.v1:2:3" in out
    assert "hex:0001020304" in out  # binary values are previewed as hex


def test_list_filters(lake: Lake, capsys) -> None:
    assert cli(["dlq", "list", "--source", "traffic", "--reason", "not_json", "--limit", "0"]) == 0
    out = capsys.readouterr().out
    assert "total: 2" in out and "lighting" not in out
    assert cli(["dlq", "list", "--since", "1d"]) == 0
    assert "total: 4" in capsys.readouterr().out


def test_show_prints_one_record_in_full(lake: Lake, capsys) -> None:
    assert cli(["dlq", "show", "city.traffic.v1:0:11"]) == 0
    out = capsys.readouterr().out
    assert "reason       ts_too_old  (the event time is older than allowed" in out
    assert '"ts": "2020-01-01T00:00:00Z"' in out and "replayed     no" in out
    assert cli(["dlq", "show", "city.traffic.v1:1:6"]) == 0
    assert "00000000  00 01 02 03" in capsys.readouterr().out  # hexdump of binary garbage
    assert cli(["dlq", "show", "city.traffic.v1:9:9"]) == 1
    assert cli(["dlq", "show", "../etc:1:2"]) == 2


def test_replay_plan_skips_what_was_replayed_and_duplicates(lake: Lake) -> None:
    plan = plan_replay(lake.uri, QuarantineFilter(source="traffic"))
    planned = [RecordRef(t, p, o) for t, p, o in zip(plan.records["source_topic"].to_pylist(),
                                                     plan.records["kafka_partition"].to_pylist(),
                                                     plan.records["kafka_offset"].to_pylist())]
    assert planned == [RecordRef("city.traffic.v1", 0, 10), RecordRef("city.traffic.v1", 0, 11),
                       RecordRef("city.traffic.v1", 1, 6)]
    assert [(str(r), "pass --reason duplicate" in why) for r, why in plan.skipped] == [("city.traffic.v1:1:5", True)]
    assert plan.records["value"].to_pylist()[0] == b'{"detector_id": "d1", "ts'  # original bytes

    log = pa.Table.from_pylist([{"replay_id": "replay-1", "replayed_at": NOW, "source_topic": "city.traffic.v1",
                                 "kafka_partition": 0, "kafka_offset": 11, "reason": "ts_too_old",
                                 "new_partition": 0, "new_offset": 99}], schema=REPLAY_LOG_SCHEMA)
    lake.write_table_atomic(f"{REPLAY_LOG_DIR}/replay-1.parquet", log)
    again = plan_replay(lake.uri, QuarantineFilter(source="traffic", reasons=("ts_too_old", "duplicate")))
    assert again.records.num_rows == 1 and again.records["reason"].to_pylist() == ["duplicate"]
    assert [(str(r), why.startswith("already replayed by replay-1")) for r, why in again.already_replayed] == [
        ("city.traffic.v1:0:11", True)]


def test_replay_dry_run_sends_nothing(lake: Lake, capsys) -> None:
    assert cli(["dlq", "replay", "--reason", "not_json", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: would replay 2 records" in out


def test_bad_filters_are_refused() -> None:
    with pytest.raises(DlqError, match="unknown source"):
        QuarantineFilter(source="bikes")
    with pytest.raises(DlqError, match="TOPIC:PARTITION:OFFSET"):
        RecordRef.parse("city.traffic.v1/0/1")


def test_replay_keys_a_key_mismatch_by_its_entity_and_every_other_reject_by_its_original_key() -> None:
    from jobs.dlq import replay_key

    value = b'{"detector_id": "tdet-0007", "ts": "2024-03-02T11:00:00Z"}'
    assert replay_key("city.traffic.v1", "key_mismatch", None, value) == b"tdet-0007"
    assert replay_key("city.traffic.v1", "key_mismatch", b"gateway-3", value) == b"tdet-0007"
    assert replay_key("city.lighting.v1", "key_mismatch", None, b'{"lamp_id": "lamp-1"}') == b"lamp-1"
    assert replay_key("city.traffic.v1", "ts_too_old", b"gateway-3", value) == b"gateway-3"
    assert replay_key("city.traffic.v1", "key_mismatch", b"k", b"not json") == b"k"
    assert replay_key("city.traffic.v1", "key_mismatch", b"k", b'{"detector_id": 7}') == b"k"
