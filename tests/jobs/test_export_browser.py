"""The exported HTML in a real headless browser (Chromium from the OS packages): it renders
with no console message at all (the page has no script, and its Content-Security-Policy makes
the browser report anything it would load), every chart is in the rendered DOM, and a
screenshot is kept as a test artifact (reports/test-artifacts/export_report.png). Skipped
where no `chromium` is installed (`apt-get install chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contracts import lake as L
from jobs.commands import export as cmd
from tests.jobs.test_export import DAY, REPO, env, export_args, period_dir  # noqa: F401 (fixture)
from tests.support.report_lake import build_known_lake
from warehouse.figures import figures

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACT = REPO / "reports" / "test-artifacts" / "export_report.png"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")


def headless(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               *extra, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_messages_are_seen(tmp_path: Path) -> None:
    """The check below is not blind: a page that logs an error and loads an external image
    shows both as console messages."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                   "content=\"default-src 'none'\"></head><body><img src=\"https://example.invalid/x.png\">"
                   "<p>x</p></body></html>")
    result = headless(bad, tmp_path / "profile", "--dump-dom")
    assert any("example.invalid" in m for m in console_messages(result.stderr)), result.stderr[-2000:]


def test_report_renders_without_console_errors_and_with_every_chart(
    lake: L.Lake, env: Path, tmp_path: Path  # noqa: F811
) -> None:
    build_known_lake(lake)
    assert cmd.run_export(export_args(out=env, format=("html", "csv"))) == 0
    target = period_dir(env)
    manifest = json.loads((target / "manifest.json").read_text())
    rows = {f["figure"]: f["rows"] for f in manifest["files"] if f["format"] == "csv"}
    expected = {name for name, fig in figures().items() if fig.chart and rows[name] > 0}
    assert len(expected) >= 8

    result = headless(target / "report.html", tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    dom = result.stdout
    drawn = set(re.findall(r'<figure class="chart" data-figure="([a-z_]+)"><svg', dom))
    assert drawn == expected
    for name in figures():  # every figure's table is there too
        assert f'<table data-figure="{name}">' in dom

    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shot = headless(target / "report.html", tmp_path / "profile2", f"--screenshot={ARTIFACT}",
                    "--window-size=1100,5200", "--hide-scrollbars")
    assert shot.returncode == 0 and console_messages(shot.stderr) == []
    assert ARTIFACT.stat().st_size > 20_000  # a rendered page, not a blank one
