"""Fixtures shared by the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import lake as L


@pytest.fixture
def cli_env(lake: L.Lake, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands called directly read their settings from the environment: this test's lake and warehouse."""
    monkeypatch.setenv("CITYFLOW_LAKE", lake.root)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(db_path))
