"""The lake on an S3-protocol server (moto, started by the test) with no internet egress: the
sink lands through pyarrow, and every DuckDB reader (views and queries, verify, the DLQ reader)
reads it through a registered fsspec filesystem without DuckDB downloading its httpfs extension.
Compaction works on it too. The views equal those over the same data landed locally."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow  # ~1-3 min: two lakes landed, one of them through an S3 server

pytest.importorskip("moto")
pytest.importorskip("s3fs")

from moto.server import ThreadedMotoServer

from contracts import lake as L
from jobs.compaction import compact
from jobs.dlq import QuarantineFilter, read_quarantine
from tests.support.lake_checks import SPEC, Records, assert_views_equal, view_frames
from warehouse.db import WarehouseError, build_warehouse, prepare_connection
from warehouse.verify import verify_windows


@pytest.fixture
def s3_lake(monkeypatch: pytest.MonkeyPatch) -> str:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in {"AWS_ACCESS_KEY_ID": "cityflow", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    import boto3

    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="city")
    yield f"s3://city/lake?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    server.stop()


def _no_httpfs() -> None:
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT installed, loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchall()
    finally:
        con.close()
    assert rows in ([], [(False, False)]), "httpfs is installed here: this test would not prove offline reading"


def test_land_query_verify_and_compact_on_s3_without_egress(s3_lake: str, tmp_path: Path) -> None:
    _no_httpfs()
    remote, local = L.Lake(s3_lake), L.Lake(str(tmp_path / "local"))
    for lake in (remote, local):
        for p in (0, 1):
            Records(partition=p, n=400, seed=7 + p).land(lake, batch_size=80, flush_every=1)

    # views and queries through DuckDB (fsspec), equal to the same data landed locally
    assert_views_equal(view_frames(s3_lake, tmp_path / "s3.duckdb"), view_frames(local.root, tmp_path / "l.duckdb"),
                       "s3 vs local")
    # verify: DuckDB's recompute over the S3 lake
    result = verify_windows(s3_lake, {"traffic": SPEC})
    assert result.checks[0].windows_checked > 0 and result.ok
    # the DLQ reader
    quarantined = read_quarantine(s3_lake, QuarantineFilter())
    assert quarantined.num_rows == read_quarantine(local.root, QuarantineFilter()).num_rows > 0
    # compaction (pyarrow) on S3 changes no view
    before = view_frames(s3_lake, tmp_path / "s3.duckdb")
    report = compact(remote, older_than=timedelta(0))
    assert report.files_after < report.files_before
    assert_views_equal(view_frames(s3_lake, tmp_path / "s3.duckdb"), before, "after compaction")
    _no_httpfs()


def test_without_fsspec_or_an_installed_extension_it_says_what_to_install(s3_lake: str, tmp_path: Path) -> None:
    con = duckdb.connect()
    try:
        with pytest.raises(WarehouseError, match=r"without downloading its 'httpfs' extension.*pip install"):
            prepare_connection(con, s3_lake, remote_io="extension")
    finally:
        con.close()
    with pytest.raises(WarehouseError, match="without downloading"):
        build_warehouse(s3_lake, tmp_path / "w.duckdb", remote_io="extension")
