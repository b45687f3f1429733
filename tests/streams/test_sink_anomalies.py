"""Anomalies in the worker's sink, without a broker: a simulated incident lands exactly one
alert in the same flush as its windows; a crash at any step of that flush, or a restart in the
middle of the incident, gives the same anomalies table and detector state as an uninterrupted
run (the state is landed with the flush and restored by recover()); landed alerts stay listed
as unsent until the anomalies topic confirmed them, also across a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from contracts import lake as L
from contracts.tables import ANOMALIES
from streams.sink import PartitionSink
from tests.support.faults import FaultyLake, SimulatedCrash
from tests.support.incidents import (
    COLD_CHAIN,
    CONTRACT,
    REEFER,
    Partition,
    landed_anomalies,
    logistics_city,
    states_frame,
)

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
EVENTS, INCIDENT = logistics_city(START)
CITY = Partition(EVENTS)


def cold_chain(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["kind"] == COLD_CHAIN] if len(frame) else frame


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """An uninterrupted run: its anomalies, final detector state and lake operations."""
    root = tmp_path_factory.mktemp("reference")
    lake = FaultyLake(str(root))
    sink = CITY.sink(lake)
    assert sink.recover() == 0
    CITY.feed(sink, 0, 100)
    return landed_anomalies(root), states_frame(sink), lake.ops


def test_the_incident_lands_exactly_one_alert(reference) -> None:
    anomalies, _, _ = reference
    alerts = cold_chain(anomalies)
    assert len(alerts) == 1, alerts
    alert = alerts.iloc[0]
    assert alert["entity"] == REEFER and alert["source"] == "logistics" and alert["severity"] == "critical"
    start, end = (pd.Timestamp(alert[c]).value // 1_000_000 for c in ("window_start", "window_end"))
    assert INCIDENT.start_ms - 5 * 60_000 < start <= INCIDENT.start_ms  # the window the warming began in
    assert end - start >= 15 * 60_000 and end <= INCIDENT.end_ms  # raised once 15 min were over 8 °C
    assert alert["value"] == 12.0 and alert["expected"] == 8.0 and "12.0 °C" in alert["evidence"]
    assert alert["kafka_partition"] == 0 and alert["version"] == 0
    assert anomalies["anomaly_id"].is_unique


def test_landed_rows_have_the_declared_columns_and_land_with_their_windows(tmp_path) -> None:
    lake = L.Lake(str(tmp_path / "lake"))
    sink = CITY.sink(lake)
    sink.recover()
    committed_with_alert = None
    for i in range(0, CITY.n, 200):
        sink.add(CITY.batch(i, min(i + 200, CITY.n)))
        result = sink.flush()
        if result is not None and result.anomalies is not None and result.anomalies.num_rows:
            assert committed_with_alert is None or COLD_CHAIN not in result.anomalies.column("kind").to_pylist()
            if COLD_CHAIN in result.anomalies.column("kind").to_pylist():
                committed_with_alert = result
    assert committed_with_alert is not None
    # the alert and the window that raised it are in the same flush (same offset-range name)
    anomaly_files = [f for f in committed_with_alert.files if f.startswith(f"{L.ANOMALIES}/")]
    window_files = [f for f in committed_with_alert.files if f.startswith(f"{L.WINDOWS}/")]
    assert anomaly_files and window_files
    assert {f.rsplit("/", 1)[1] for f in anomaly_files} <= {f.rsplit("/", 1)[1] for f in window_files}
    table = lake.read_table(anomaly_files[0])
    assert ANOMALIES.conform(table).schema.names == ANOMALIES.names
    full = landed_anomalies(lake, with_unstable=True)
    assert (full["detected_at"] >= full["window_end"]).all()
    windows = pd.concat([lake.read_table(f).to_pandas() for f in lake.list_files(f"{L.WINDOWS}/source=logistics")])
    row = cold_chain(full).iloc[0]
    raised_by = windows[(windows["entity"] == REEFER) & (windows["window_end"] == row["window_end"])]
    assert len(raised_by) == 1 and raised_by["max_cargo_temp_c"].iloc[0] == 12.0


def test_no_incident_no_cold_chain_alert(tmp_path) -> None:
    events, _ = logistics_city(START, incident=False)
    city = Partition(events, now=CITY.now)
    sink = city.sink(L.Lake(str(tmp_path / "lake")))
    city.feed(sink, sink.recover(), 250)
    assert len(cold_chain(landed_anomalies(tmp_path / "lake"))) == 0


def test_other_batch_sizes_land_the_same_anomalies_and_state(tmp_path, reference) -> None:
    anomalies, states, _ = reference
    sink = CITY.sink(L.Lake(str(tmp_path / "lake")))
    CITY.feed(sink, sink.recover(), 333, flush_every=3)
    pd.testing.assert_frame_equal(landed_anomalies(tmp_path / "lake"), anomalies)
    for kind, frame in states.items():
        pd.testing.assert_frame_equal(states_frame(sink)[kind], frame, obj=kind)


def alert_flush_ops(ops: list[str]) -> list[int]:
    """The lake operations of the flush that lands the cold-chain alert's file, from its
    first staged file to its snapshot, plus the first operation of the next flush."""
    staged = next(i for i, op in enumerate(ops) if op.startswith("write _staging/") and "/anomalies~" in op)
    first = max(i for i in range(staged) if ops[i].startswith("write _checkpoints")) + 1
    snapshot = next(i for i in range(staged, len(ops)) if ops[i].startswith("write _checkpoints"))
    return list(range(first, snapshot + 2))


def test_crash_at_every_step_of_the_alerts_flush_gives_the_same_anomalies(tmp_path, reference) -> None:
    """Crash between staging and commit (and at every other step of the flush that lands the
    alert), restart, redeliver from the resume offset in other batch sizes: the same anomalies
    table and detector state as the uninterrupted run."""
    anomalies, states, ops = reference
    points = alert_flush_ops(ops)
    assert any(ops[k].startswith("create_exclusive") for k in points)
    assert any("_state/detectors" in ops[k] for k in points)  # the state is staged with the flush
    for k in points:
        root = tmp_path / f"crash-{k}"
        with pytest.raises(SimulatedCrash):
            sink = CITY.sink(FaultyLake(str(root), crash_at=k), writer="before")
            sink.recover()
            CITY.feed(sink, 0, 100)
        again = CITY.sink(L.Lake(str(root)), writer="after")
        CITY.feed(again, again.recover(), 70)
        where = f"crash before op {k} ({ops[k]})"
        pd.testing.assert_frame_equal(landed_anomalies(root), anomalies, obj=where)
        for kind, frame in states.items():
            pd.testing.assert_frame_equal(states_frame(again)[kind], frame, obj=f"{where}: {kind}")


def test_restart_in_the_middle_of_the_incident_restores_the_state(tmp_path, reference) -> None:
    """A restart after the reefer warmed up but before the alert was due: the restored run
    (state landed with the flush) raises the one alert of the uninterrupted run. Without the
    state the run would start again and the alert would come later, with another id."""
    anomalies, _, _ = reference
    mid = next(i for i, e in enumerate(EVENTS) if e.ts_ms >= INCIDENT.start_ms + 8 * 60_000)
    root = tmp_path / "lake"
    first = CITY.sink(L.Lake(str(root)))
    CITY.feed(first, first.recover(), 100, stop=mid)
    assert cold_chain(landed_anomalies(root)).empty  # not yet due
    snapshot = L.Lake(str(root)).read_json(L.checkpoint_path(CONTRACT.topic, 0))
    assert snapshot["detector_state"].startswith("_state/detectors/")
    restored = CITY.sink(L.Lake(str(root)), writer="restarted")
    assert restored.recover() == mid
    for kind, frame in states_frame(first).items():
        pd.testing.assert_frame_equal(states_frame(restored)[kind], frame, obj=kind)
    CITY.feed(restored, mid, 100)
    pd.testing.assert_frame_equal(landed_anomalies(root), anomalies)

    # the counterfactual: the same restart with the state file gone raises a different alert
    lost = tmp_path / "lost"
    blank = CITY.sink(L.Lake(str(lost)))
    CITY.feed(blank, blank.recover(), 100, stop=mid)
    for f in list(L.Lake(str(lost)).list_files(L.STATE, suffix=".arrow")):
        L.Lake(str(lost)).delete(f)
    ckpt = L.Lake(str(lost)).read_json(L.checkpoint_path(CONTRACT.topic, 0))
    L.Lake(str(lost)).write_json_atomic(L.checkpoint_path(CONTRACT.topic, 0), {**ckpt, "detector_state": None})
    fresh = CITY.sink(L.Lake(str(lost)))
    CITY.feed(fresh, fresh.recover(), 100)
    assert cold_chain(landed_anomalies(lost))["anomaly_id"].tolist() != cold_chain(anomalies)["anomaly_id"].tolist()


def test_landed_alerts_stay_unsent_until_confirmed_across_restarts(tmp_path) -> None:
    root = tmp_path / "lake"
    sink = CITY.sink(L.Lake(str(root)))
    CITY.feed(sink, sink.recover(), 500)
    paths, alerts = sink.unsent_alerts()
    assert paths and COLD_CHAIN in alerts.column("kind").to_pylist()
    assert alerts.schema == ANOMALIES.schema
    # a worker that died before the topic confirmed them: the next owner finds them
    again = CITY.sink(L.Lake(str(root)), writer="next")
    again.recover()
    again_paths, again_alerts = again.unsent_alerts()
    assert again_paths == paths
    assert sorted(again_alerts.column("anomaly_id").to_pylist()) == sorted(alerts.column("anomaly_id").to_pylist())
    again.alerts_sent(again_paths)
    assert again.unsent == []
    third = CITY.sink(L.Lake(str(root)), writer="third")
    third.recover()
    assert third.unsent == [] and third.unsent_alerts()[1].num_rows == 0


def test_unsent_alerts_of_a_commit_not_yet_in_the_snapshot_are_found(tmp_path) -> None:
    """Crash after the commit record, before the snapshot: recovery rolls the commit forward
    and its alerts count as unsent."""
    ref = tmp_path / "ref"
    probe = FaultyLake(str(ref))
    s = CITY.sink(probe)
    CITY.feed(s, s.recover(), 500)
    staged = next(i for i, op in enumerate(probe.ops) if op.startswith("write _staging/") and "/anomalies~" in op)
    commit = next(i for i in range(staged, len(probe.ops)) if probe.ops[i].startswith("create_exclusive"))
    root = tmp_path / "lake"
    with pytest.raises(SimulatedCrash):
        s = CITY.sink(FaultyLake(str(root), crash_at=commit + 1))
        CITY.feed(s, s.recover(), 500)
    again = CITY.sink(L.Lake(str(root)))
    again.recover()
    paths, alerts = again.unsent_alerts()
    assert paths and COLD_CHAIN in alerts.column("kind").to_pylist()


def test_a_sink_without_detectors_lands_no_state(tmp_path) -> None:
    lake = L.Lake(str(tmp_path / "lake"))
    sink = PartitionSink(lake, CONTRACT, 0, CITY.sink(lake).engine, detectors={})
    CITY.feed(sink, sink.recover(), 1000)
    assert list(lake.list_files(L.ANOMALIES)) == [] and list(lake.list_files(L.STATE, suffix=".arrow")) == []
