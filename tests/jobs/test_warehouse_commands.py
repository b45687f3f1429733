"""The `cityflow warehouse build`, `query` and `report` commands, called directly."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import pytest

from contracts import lake as L
from jobs.commands import warehouse as cmd
from tests.support.warehouse_lake import (
    EXPECTED_VIEWS,
    land,
    query_args,
    raw_table,
    report_lake,
    traffic_row,
)
from warehouse.db import SQL_DIR


# -- CLI commands (called directly; the cli_env fixture is in tests/jobs/conftest.py) ---------
def test_query_command_bad_sql_exits_1_with_a_one_line_message(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cmd.run_query(query_args(sql="SELEC * FROM traffic_1m", format="table"))
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "syntax error" in err and err.count("\n") == 1

    code = cmd.run_query(query_args(sql="SELECT * FROM no_such_view", format="csv"))
    out, err = capsys.readouterr()
    assert code == 1 and "no_such_view" in err and "Traceback" not in err


def test_query_command_formats(
    lake: L.Lake, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    land(
        lake,
        L.RAW,
        "traffic",
        raw_table("traffic", [traffic_row("d1", "2024-03-02T10:00:05")]),
        "ts",
    )
    assert (
        cmd.run_query(
            query_args(
                sql="SELECT detector_id, vehicle_count, ts FROM raw_traffic", format="json"
            )
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"detector_id": "d1", "vehicle_count": 10, "ts": "2024-03-02T10:00:05.000Z"}]
    assert (
        cmd.run_query(
            query_args(
                sql="SELECT detector_id, vehicle_count FROM raw_traffic", format="csv"
            )
        )
        == 0
    )
    assert capsys.readouterr().out == "detector_id,vehicle_count\nd1,10\n"


def test_build_and_report_commands(
    lake: L.Lake, db_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    report_lake(lake)
    assert cmd.run_build(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "traffic_1m" in out and db_path.exists()
    assert cmd.run_report(argparse.Namespace(day=date(2024, 3, 2))) == 0
    out = capsys.readouterr().out
    assert "A59" in out and "zoo" in out


def test_register_adds_the_three_commands() -> None:
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["warehouse", "build"]).func is cmd.run_build
    args = parser.parse_args(["query", "SELECT 1", "--format", "csv"])
    assert args.func is cmd.run_query and args.format == "csv"
    args = parser.parse_args(["report", "--day", "2024-03-02"])
    assert args.func is cmd.run_report and args.day == date(2024, 3, 2)


def test_sql_models_live_next_to_the_module() -> None:
    assert {p.stem for p in SQL_DIR.glob("*.sql")} == EXPECTED_VIEWS
