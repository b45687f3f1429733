"""The README's detector settings table is generated from the code and complete: every field
of every kind in ALL_CONFIGS (kinds added later included) has a unit and a reason, and the
table in the README is the one the code generates today (defaults included)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.detectors import ALL_CONFIGS
from streams.detectors import params as P
from streams.detectors.overrides import config_fields, env_var

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_field_of_every_kind_has_a_unit_and_a_reason() -> None:
    assert P.undocumented() == []


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert P.replace_block(text, P.settings_table()) == text, (
        "README's detector settings table is out of date: python -m streams.detectors.params --write README.md")


def test_the_table_has_a_row_per_field_with_the_default_from_the_code() -> None:
    rows = [line.split(" | ") for line in P.settings_table().splitlines()[2:]]
    fields = [(kind, name) for kind, c in ALL_CONFIGS.items() for name in config_fields(c)]
    assert [row[1].strip("`") for row in rows] == [name for _, name in fields]
    for row, (kind, name) in zip(rows, fields, strict=True):
        assert row[2] == P._default(getattr(ALL_CONFIGS[kind], name))
    assert sum(env_var(kind) in line for line in P.settings_table().splitlines() for kind in ALL_CONFIGS) \
        == len(ALL_CONFIGS)


def test_a_new_field_without_a_reason_is_named(monkeypatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class NewConfig:
        mystery_knob: float = 1.0
        clear_s: float = 60.0

    monkeypatch.setitem(P.ALL_CONFIGS, "traffic.new_kind", NewConfig())
    assert P.undocumented() == ["traffic.new_kind.mystery_knob"]  # clear_s: unit and reason shared
    with pytest.raises(KeyError):
        P.settings_table()


def test_a_changed_default_changes_the_table(monkeypatch) -> None:
    monkeypatch.setitem(P.ALL_CONFIGS, "traffic.stuck",
                        dataclasses.replace(ALL_CONFIGS["traffic.stuck"], min_flat_s=1200.0))
    text = README.read_text()
    assert P.replace_block(text, P.settings_table()) != text
    assert "| `min_flat_s` | 1200 | s |" in P.settings_table()
