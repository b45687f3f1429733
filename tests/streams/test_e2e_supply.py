"""The supply source end to end on the real embedded broker: simulated feeders, water points
and heating substations with an outage, a pressure drop and a hot return injected go through
one worker; the lake holds exactly what was produced, `cityflow verify` finds 0 mismatches
between the streamed windows and the DuckDB recompute, and each incident raised its alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from contracts.lake import Lake
from jobs.cli import main as cli
from jobs.evaluation import alert_rows, score_incidents
from jobs.runner import WorkerProcess, wait_until_landed
from streams.broker import city_topics, ensure_topics
from streams.incidents import IncidentLabel, IncidentPlan
from streams.simulator import generate, produce
from warehouse.accounting import partition_accounts

pytestmark = pytest.mark.e2e

KINDS = ("supply.power_outage", "supply.pressure_drop", "supply.heat_return_high")


def test_supply_lands_exactly_once_verifies_and_finds_its_incidents(fresh_broker, tmp_path, monkeypatch, capsys):
    ensure_topics(fresh_broker, city_topics(4))
    # 6 city hours of 24 assets reporting every minute (~8,600 events), one incident per kind
    start = (datetime.now(UTC) - timedelta(hours=7)).replace(minute=0, second=0, microsecond=0)
    labels: list[IncidentLabel] = []
    events = list(generate(seed=16, rate=24 / 60, seconds=6 * 3600, speedup=1.0, start=start, sources=["supply"],
                           incidents=IncidentPlan(KINDS, 1.0, 0.0), labels_out=labels))
    assert sorted(lb.kind for lb in labels) == sorted(KINDS)
    sent = produce(events, {"bootstrap_servers": fresh_broker})
    assert sent == {"supply": len(events)}

    lake = str(tmp_path / "lake")
    worker = WorkerProcess(fresh_broker, lake, tmp_path / "worker.log", env={"CITYFLOW_FLUSH_SECONDS": "1"}).start()
    try:
        wait_until_landed(lake, sent, timeout=120, workers=[worker])
    finally:
        assert worker.stop() == 0, worker.log_tail()

    accounts = [a for a in partition_accounts(Lake(lake)) if a.topic == "city.supply.v1"]
    assert accounts and all(a.balanced for a in accounts) and sum(a.consumed for a in accounts) == len(events)
    landed = duckdb.sql(f"SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM "
                        f"read_parquet('{lake}/raw/source=supply/**/*.parquet')").fetchall()[0]
    assert landed == (len(events), len(events))

    monkeypatch.setenv("CITYFLOW_LAKE", lake)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(tmp_path / "wh" / "city.duckdb"))
    assert cli(["verify"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "supply" in out, out

    alerts = duckdb.sql(f"SELECT kind, entity, epoch_ms(window_start) AS window_start FROM "
                        f"read_parquet('{lake}/anomalies/source=supply/**/*.parquet')").df()
    scores = score_incidents(labels, alert_rows(alerts.to_dict("records")), kinds=KINDS)
    assert [(s.kind, s.tp, s.fp, s.fn) for s in scores] == [(k, 1, 0, 0) for k in KINDS], alerts
