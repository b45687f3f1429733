"""How the SQL models render: layering (latest views de-duplicate their scan once, scans
and district merges come from one template each) and clear errors for a broken model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from contracts.registry import CONTRACTS
from warehouse.db import (
    LATEST_ROW_SQL,
    RenderedView,
    ViewModel,
    WarehouseError,
    creation_order,
    load_macros,
    load_models,
    render_view,
)

MODELS = {m.name: m for m in load_models()}


def _render(template: str, tmp_path: Path) -> RenderedView:
    model = ViewModel("probe", tmp_path / "probe.sql", template)
    return render_view(model, str(tmp_path / "lake"), duckdb.connect())


def test_latest_views_deduplicate_the_scan_once(tmp_path: Path) -> None:
    """A latest-version view reads the windows scan itself with one QUALIFY (its history view
    has its own): two de-duplications in a row sorted a demo-rate day's ~864k windows twice."""
    con = duckdb.connect()
    latest = [n for n in MODELS if f"{n}_history" in MODELS]
    assert len(latest) == len(CONTRACTS)
    for name in latest:
        rendered = render_view(MODELS[name], str(tmp_path), con)
        assert rendered.refs == (), name
        assert rendered.sql.count("QUALIFY") == 1 and "ORDER BY version DESC, emitted_at DESC" in rendered.sql, name
        # one scan of the windows: binding a whole-lake glob twice cost ~0.3 s a query (30-day lake)
        assert rendered.sql.count("WHERE window_size_s =") == 1, name
        history = render_view(MODELS[f"{name}_history"], str(tmp_path), con)
        assert history.sql.count("QUALIFY") == 1 and "PARTITION BY entity, window_start, window_size_s, version" in history.sql


def test_no_model_spells_out_a_parquet_scan_or_a_district_merge() -> None:
    for model in MODELS.values():
        body = "\n".join(line for line in model.template.splitlines() if not line.startswith("--"))
        assert "read_parquet" not in body, model.name
        assert "GROUP BY" not in body.upper() and "UNION ALL" not in body.upper(), model.name
    assert {"window_rows", "window_history", "window_latest", "district_rollup", "late_events_of"} <= set(load_macros())


def test_the_flagged_form_sorts_only_unflagged_rows_with_the_same_rule(tmp_path: Path) -> None:
    """The period-scoped views' window_latest (day files flag their rows with LATEST_ROW_SQL,
    jobs/day_files.py) takes flagged rows as they are and applies the same rule to the others."""
    macros = load_macros()
    macros["window_latest"] = macros["window_latest_flagged"]
    rendered = render_view(MODELS["traffic_1m"], str(tmp_path), duckdb.connect(), macros)
    assert rendered.sql.count("WHERE _latest\n") == 1 and rendered.sql.count("WHERE _latest IS NULL") == 1
    assert rendered.sql.count(LATEST_ROW_SQL) == 1 and rendered.sql.count("QUALIFY") == 1


def test_late_events_has_one_branch_per_source(tmp_path: Path) -> None:
    rendered = render_view(MODELS["late_events"], str(tmp_path), duckdb.connect())
    assert rendered.sql.count("UNION ALL") == len(CONTRACTS) - 1
    for source, key in (("traffic", "detector_id"), ("lighting", "lamp_id"), ("wifi", "ap_id"),
                        ("logistics", "vehicle_id")):
        assert f"'{source}' AS source, {key} AS entity" in rendered.sql
    assert "CAST(NULL AS VARCHAR) AS district" in rendered.sql  # logistics has none


@pytest.mark.parametrize(("template", "message"), [
    ("SELECT * FROM {nope:traffic}", "unknown"),
    ("SELECT * FROM {scan:raw:nowhere}", "known source"),
    ("SELECT * FROM {scan:raw}", "takes 2 argument"),
    ("SELECT * FROM {scan:windowz:traffic}", "names no lake table"),
    ("SELECT {window_size_s:traffic:wifi}", "takes 1 argument"),
    ("{union_all:no_such_macro}", "names no macro"),
    ("SELECT {source}", "unknown"),  # a macro variable outside a macro
])
def test_a_broken_placeholder_names_the_file_and_the_problem(
    tmp_path: Path, template: str, message: str
) -> None:
    with pytest.raises(WarehouseError, match=message) as info:
        _render(template, tmp_path)
    assert "probe.sql" in str(info.value)


def test_views_are_created_after_the_views_they_refer_to() -> None:
    a, b, c = (RenderedView("a", "", (), ("b",)), RenderedView("b", "", (), ("c",)),
               RenderedView("c", "", (), ()))
    assert [v.name for v in creation_order([a, b, c])] == ["c", "b", "a"]
    with pytest.raises(WarehouseError, match="no SQL model defines"):
        creation_order([a, c])
    with pytest.raises(WarehouseError, match="cycle: a -> b -> a"):
        creation_order([a, RenderedView("b", "", (), ("a",))])
