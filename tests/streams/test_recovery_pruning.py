"""Partition recovery reads only the hours it needs: on a lake with many hours of a partition's
raw data, PartitionSink.recover() lists and reads only the `date=/hour=` directories within the
replay horizon behind the partition's newest event time, and the window state it rebuilds is the
one a sink that never stopped holds, and the one a replay of every landed row builds: the same
windows, corrections and late events come out of the next records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from contracts import lake as L
from contracts.windows import WindowGeometry
from streams.batch import events_frame
from streams.sink import PartitionSink, read_partition_raw
from streams.windows import WindowEngine, WindowOutput
from tests.support.lake_checks import CONTRACT, Records

RECORDS = Records(n=1500, seed=5, span=timedelta(hours=12))
LANDED = 1200  # records landed before the restart; the rest come after it


class RecordingLake(L.Lake):
    """A Lake that records every directory it lists and every file it reads."""

    def __init__(self, root: str, **kwargs: Any):
        super().__init__(root, **kwargs)
        self.listed: list[str] = []
        self.read: list[str] = []

    def list_entries(self, rel_dir: str, recursive: bool = True) -> list[L.LakeFile]:
        self.listed.append(rel_dir)
        return super().list_entries(rel_dir, recursive)

    def read_table(self, rel: str) -> pa.Table:
        self.read.append(rel)
        return super().read_table(rel)


def frames(out: WindowOutput) -> dict[str, pd.DataFrame]:
    def canonical(t: pa.Table) -> pd.DataFrame:
        frame = t.to_pandas()
        return frame.sort_values(list(frame.columns)).reset_index(drop=True) if len(frame) else frame

    return {"windows": canonical(out.windows), "districts": canonical(out.district_windows),
            "late": canonical(out.late_events)}


@pytest.mark.parametrize("spec", [WindowGeometry(60, allowed_lateness_s=10, grace_s=120),
                                  WindowGeometry(60, allowed_lateness_s=10, grace_s=120, hop_s=20)],
                         ids=["tumbling", "hopping"])
def test_recovery_lists_only_the_hours_in_the_horizon_and_rebuilds_the_same_state(tmp_path, spec):
    root = str(tmp_path / "lake")
    live = PartitionSink(L.Lake(root), CONTRACT, 0, WindowEngine(spec, "traffic", 0), writer="live")
    live.recover()
    for i in range(0, LANDED, 100):
        live.add(RECORDS.batch(i, i + 100))
        live.flush()
    dates = L.Lake(root).list_dirs(f"{L.RAW}/source=traffic")
    assert sum(len(L.Lake(root).list_dirs(d)) for d in dates) >= 10  # many hours of raw data

    lake = RecordingLake(root)
    recovered = PartitionSink(lake, CONTRACT, 0, WindowEngine(spec, "traffic", 0), writer="recovered")
    assert recovered.recover() == LANDED

    newest = live.engine.max_ts
    needed = L.hour_dirs(L.RAW, "traffic", newest - spec.horizon_ms + 1, newest)
    assert len(needed) <= 2
    raw_listed = [d for d in lake.listed if d.startswith(f"{L.RAW}/")]
    assert raw_listed and set(raw_listed) <= set(needed), raw_listed
    assert lake.read and all(rel.rsplit("/", 1)[0] in needed for rel in lake.read), lake.read

    # The oracle: every landed row replayed from the start, from every hour.
    full = WindowEngine(spec, "traffic", 0)
    full.process(events_frame(CONTRACT, read_partition_raw(L.Lake(root), CONTRACT, 0, -1, LANDED - 1)), emit=False)
    engines = {"live": live.engine, "recovered": recovered.engine, "full replay": full}
    assert {name: (e.max_ts, e.state_rows, e.open_windows) for name, e in engines.items()} == {
        name: (newest, full.state_rows, full.open_windows) for name in engines}

    outputs = {}
    for start in range(LANDED, RECORDS.n, 100):
        batch = RECORDS.batch(start, min(start + 100, RECORDS.n))
        for name, engine in engines.items():
            outputs.setdefault(name, []).append(frames(engine.process(batch.events)))
    assert sum(len(o["windows"]) for o in outputs["live"]) > 0
    assert sum(len(o["late"]) for o in outputs["live"]) > 0
    for name in ("recovered", "full replay"):
        for got, want in zip(outputs[name], outputs["live"], strict=True):
            for table in want:
                pd.testing.assert_frame_equal(got[table], want[table], obj=f"{name} {table}")
