"""The district stage over a real lake (events landed through real PartitionSinks, two
partitions per source, no broker): each injected district incident becomes one alert in the
`anomalies` view (DuckDB), a re-run adds nothing, a second writer racing for the same step
lands nothing, and a partition that has landed nothing holds the stage back, loudly."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pandas as pd
import pytest

from contracts import lake as L
from streams.detectors.district import CONGESTION_CORROBORATED, FAULT_CLUSTER
from streams.district_stage import MAX_STEP_MS, DistrictStage, StageHeldBack, StageTicker
from tests.support.district_city import district_city, lamp_city, land_city, monday_start
from warehouse.db import build_warehouse

PARTITIONS = 2


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """Both kinds: three weekdays of traffic (warm congestion baselines), lamps and trucks."""
    events, labels = district_city(monday_start())
    lake = L.Lake(str(tmp_path_factory.mktemp("district") / "lake"))
    land_city(lake, events, PARTITIONS)
    return lake, labels


@pytest.fixture(scope="module")
def lamps(tmp_path_factory):
    """Half a day of 28 lamps from a local noon, with one fault cluster in the evening."""
    noon = monday_start() + timedelta(hours=12)
    events, labels = lamp_city(noon)
    lake = L.Lake(str(tmp_path_factory.mktemp("lamps") / "lake"))
    land_city(lake, events, PARTITIONS)
    return lake, labels


def anomalies(lake: L.Lake, db) -> pd.DataFrame:
    build_warehouse(lake.root, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM anomalies ORDER BY window_start").df()
    finally:
        con.close()


def test_a_fault_cluster_lands_once_and_a_rerun_adds_nothing(lamps, tmp_path):
    lake, (label,) = lamps
    stage = DistrictStage(lake, PARTITIONS, (FAULT_CLUSTER,))
    (run,) = stage.run()
    assert run.alerts.num_rows == 1 and run.alerts.column("entity").to_pylist() == [label.entity]
    assert stage.run() == []
    view = anomalies(lake, tmp_path / "w.duckdb")
    assert view["kind"].tolist() == [FAULT_CLUSTER] and view["entity"].tolist() == [label.entity]


@pytest.mark.slow
def test_each_district_incident_lands_once_and_a_rerun_adds_nothing(city, tmp_path):
    lake, labels = city
    stage = DistrictStage(lake, PARTITIONS)
    runs: list = []
    for _ in range(10):  # a run covers at most a day: the backlog takes a few
        step = stage.run()
        if not step:
            break  # nothing new was landed: nothing is due
        runs += step
    assert {r.kind for r in runs} == {FAULT_CLUSTER, CONGESTION_CORROBORATED}
    assert stage.run() == []
    view = anomalies(lake, tmp_path / "w.duckdb")
    for kind in (FAULT_CLUSTER, CONGESTION_CORROBORATED):
        (label,) = [lb for lb in labels if lb.kind == kind]
        mine = view[view["kind"] == kind]
        assert len(mine) == 1, mine[["entity", "window_start", "evidence"]]
        row = mine.iloc[0]
        assert row["entity"] == row["district"] == label.entity
        start_ms = pd.Timestamp(row["window_start"]).value // 1_000_000
        assert label.start_ms - 15 * 60_000 <= start_ms <= label.end_ms
        assert row["kafka_partition"] == -1 and row["source"] == ("lighting" if kind == FAULT_CLUSTER else "cross")
    # the congestion the cross alert corroborates is a traffic alert of its own, kept apart
    assert (view["kind"] == "traffic.congestion").sum() >= 1
    # every step is committed and the landed alerts wait for the topic in the checkpoint
    for kind in (FAULT_CLUSTER, CONGESTION_CORROBORATED):
        paths, unsent = stage.unsent(kind)
        assert unsent.num_rows == 1
        stage.sent(kind, paths)
        assert stage.unsent(kind)[0] == []


def test_a_second_writer_racing_for_the_same_step_lands_nothing(lamps, tmp_path):
    lake, _ = lamps
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(lake.root, root, ignore=shutil.ignore_patterns("_district", "anomalies"))
    shutil.copytree(f"{lake.root}/anomalies", root / "anomalies",
                    ignore=lambda d, names: [n for n in names if n.startswith("district.")])
    copy = L.Lake(str(root))
    a, b = DistrictStage(copy, PARTITIONS, writer="a"), DistrictStage(copy, PARTITIONS, writer="b")
    kind = FAULT_CLUSTER
    ckpt = b.checkpoint(kind)  # b reads the log, then a commits the step first
    start = b._earliest_ms(kind)  # a lake's first run starts at its first hour
    until = min(b.due_until(kind, b.horizon(kind)), start + MAX_STEP_MS)
    state: dict = {}
    rows = b._detect(kind, start, until, state)
    assert rows.num_rows == 1
    assert a.run_kind(kind) is not None
    assert b._land(kind, ckpt, start, until, rows, state) is None
    files = [p for p in copy.list_files("anomalies/source=lighting") if "district." in p]
    assert len(files) == 1
    assert not copy.list_dirs(f"{L.district_stage_dir(kind)}/staging")  # the loser dropped its staging
    assert copy.read_table(files[0]).column("kind").to_pylist() == [kind]


def test_a_partition_that_landed_nothing_holds_the_stage_back_and_says_which(lamps, tmp_path):
    lake, _ = lamps
    ticker = StageTicker(lake, PARTITIONS + 1, (FAULT_CLUSTER,))
    with pytest.raises(StageHeldBack, match=r"city.lighting.v1 partition\(s\) 2 have landed nothing"):
        ticker.stage.run_kind(FAULT_CLUSTER)
    assert ticker.tick([FAULT_CLUSTER]) == [] and "partition(s) 2" in ticker.held[FAULT_CLUSTER]
    assert ticker.problem is None  # held back is not failing: it waits for data


def test_a_failing_kind_is_logged_counted_and_reported_after_repeats(tmp_path, caplog):
    lake = L.Lake(str(tmp_path / "lake"))
    ckpt = L.checkpoint_path("city.lighting.v1", 0)
    lake.write_json_atomic(ckpt, {"history": [[10, "not a number"]], "spec": [900, 900, 60, 600]})
    ticker = StageTicker(lake, 1, (FAULT_CLUSTER,))
    for _ in range(StageTicker.FAILURES_UNHEALTHY):
        assert ticker.tick([FAULT_CLUSTER]) == []
    assert "district stage kind=lighting.fault_cluster failed (3 in a row)" in caplog.text
    assert ticker.problem is not None and FAULT_CLUSTER in ticker.problem
