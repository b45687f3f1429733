"""Landing splits a flush by the UTC hour of its timestamp column (the lake's hour= partition)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from streams.sink import split_by_hour

H = 3_600_000
T0 = 1_795_000_000_000 // (24 * H) * (24 * H)  # midnight UTC
DAY0 = str(np.datetime64(T0, "ms").astype("datetime64[D]"))
DAY1 = str(np.datetime64(T0, "ms").astype("datetime64[D]") + 1)


def test_rows_group_by_utc_hour_in_hour_order_keeping_their_order():
    ts = [T0 + 2 * H + 5, T0 + 1, T0 + 2 * H, T0 + H - 1, T0 + 25 * H]  # out of order, 3 hours + next day
    table = pa.table({"ts": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")), "i": np.arange(len(ts))})
    parts = list(split_by_hour(table, "ts"))
    assert [key for key, _ in parts] == [(DAY0, 0), (DAY0, 2), (DAY1, 1)]
    assert [p.column("i").to_pylist() for _, p in parts] == [[1, 3], [0, 2], [4]]
    assert sum(p.num_rows for _, p in parts) == table.num_rows


def test_integer_epoch_ms_columns_and_empty_tables():
    table = pa.table({"window_start": pa.array([T0, T0 + 60_000], pa.int64())})
    assert [(key, p.num_rows) for key, p in split_by_hour(table, "window_start")] == [((DAY0, 0), 2)]
    assert list(split_by_hour(table.slice(0, 0), "window_start")) == []
