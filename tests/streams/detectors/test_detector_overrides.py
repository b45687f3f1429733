"""CITYFLOW_DETECTOR_<KIND> overrides, over every kind and every field of DEFAULT_CONFIGS (so
kinds added later are covered without touching this file): a valid value is accepted and
reaches the detector the worker builds; a wrong type, an out-of-range value, an unknown field
or kind stops the command with exit 2 and one line naming the variable."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import pytest

from contracts.settings import SettingsError, load_settings
from jobs.cli import main as cli
from streams.alerts import selected_detectors
from streams.detectors import ALL_CONFIGS as DEFAULT_CONFIGS  # every kind, district ones too
from streams.detectors.overrides import config_fields, detector_configs, env_var

FIELDS = [(kind, name, tp) for kind, config in DEFAULT_CONFIGS.items()
          for name, tp in config_fields(config).items()]
IDS = [f"{kind}.{name}" for kind, name, _ in FIELDS]


def _candidates(tp: Any, default: Any) -> list[Any]:
    """JSON values of the field's type other than the default, most ordinary first."""
    if tp is bool:
        return [not default]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [m.value for m in tp if m != default]
    if tp is int:
        return [default + 1, default * 2, default - 1, 1, 2]
    if tp is float:
        return [default * 1.5, default * 0.5, default + 1.0, 0.5, 2.0]
    if tp is str:
        return ["UTC", "Europe/London", "x"]
    raise AssertionError(f"no candidate values for type {tp}: extend _candidates")


def _accepted(kind: str, name: str, tp: Any) -> tuple[Any, Any]:
    """The first candidate the kind's own validation accepts, and the config value it gives."""
    default = getattr(DEFAULT_CONFIGS[kind], name)
    for value in _candidates(tp, default):
        try:
            config = dataclasses.replace(DEFAULT_CONFIGS[kind], **{name: tp(value)})
        except (ValueError, LookupError):
            continue
        return value, getattr(config, name)
    raise AssertionError(f"{kind}.{name}: no valid non-default value among the candidates")


@pytest.mark.parametrize(("kind", "name", "tp"), FIELDS, ids=IDS)
def test_a_valid_override_reaches_the_detector_the_worker_builds(monkeypatch, kind: str, name: str,
                                                                  tp: Any) -> None:
    value, expected = _accepted(kind, name, tp)
    assert expected != getattr(DEFAULT_CONFIGS[kind], name)
    monkeypatch.setenv(env_var(kind), json.dumps({name: value}))
    settings = load_settings()
    configs = detector_configs(settings.detector_overrides)  # what the worker and the district stage build
    detectors = {k: c.build() for k, c in configs.items()}
    assert {k: d.config for k, d in selected_detectors("all", settings.detector_overrides).items()} == {
        k: configs[k] for k in selected_detectors("all", settings.detector_overrides)}
    assert getattr(detectors[kind].config, name) == expected
    assert type(getattr(detectors[kind].config, name)) is type(getattr(DEFAULT_CONFIGS[kind], name))
    if name == "severity":
        assert detectors[kind].severity == expected
    others = {k: d.config for k, d in detectors.items() if k != kind}
    assert others == {k: c for k, c in DEFAULT_CONFIGS.items() if k != kind}


def _wrong_type(tp: Any) -> Any:
    return 5 if tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum)) else "5"


@pytest.mark.parametrize(("kind", "name", "tp"), FIELDS, ids=IDS)
def test_a_value_of_the_wrong_type_is_refused_naming_the_variable_and_field(kind: str, name: str,
                                                                          tp: Any) -> None:
    with pytest.raises(SettingsError) as err:
        detector_configs({env_var(kind): {name: _wrong_type(tp)}})
    assert str(err.value).startswith(f"{env_var(kind)}: {name} must be ")


RANGE_PROBES = (-1.0, 0.0, -1e9, 1e9)


@pytest.mark.parametrize(("kind", "name", "tp"), [f for f in FIELDS if f[2] in (int, float)],
                         ids=[i for i, f in zip(IDS, FIELDS, strict=True) if f[2] in (int, float)])
def test_out_of_range_values_are_refused_by_the_configs_own_validation(kind: str, name: str, tp: Any) -> None:
    """Every probe the config rejects is refused with its message; every probe it accepts is
    accepted (the mechanism adds no ranges of its own, only types and finiteness)."""
    for probe in RANGE_PROBES:
        value = tp(probe)
        try:
            dataclasses.replace(DEFAULT_CONFIGS[kind], **{name: value})
        except (ValueError, LookupError) as exc:
            with pytest.raises(SettingsError) as err:
                detector_configs({env_var(kind): {name: value}})
            text = str(err.value)
            assert text.startswith(f"{env_var(kind)}: ") and str(exc.args[0]) in text, text
        else:
            assert getattr(detector_configs({env_var(kind): {name: value}})[kind], name) == value


def test_some_field_of_every_kind_has_a_range() -> None:
    """The range test above is not vacuous: every kind refuses some numeric probe."""
    refused = set()
    for kind, name, tp in FIELDS:
        if tp in (int, float):
            for probe in RANGE_PROBES:
                try:
                    dataclasses.replace(DEFAULT_CONFIGS[kind], **{name: tp(probe)})
                except (ValueError, LookupError):
                    refused.add(kind)
    unchecked = sorted(set(DEFAULT_CONFIGS) - refused)
    assert not unchecked, f"{unchecked}: no numeric field refuses any of {RANGE_PROBES}; does the config " \
                          "validate its ranges in __post_init__ (STYLE: configs are validated when built)?"


@pytest.mark.parametrize("kind", list(DEFAULT_CONFIGS))
def test_an_unknown_field_is_refused_listing_the_valid_ones(kind: str) -> None:
    with pytest.raises(SettingsError) as err:
        detector_configs({env_var(kind): {"no_such_field": 1}})
    text = str(err.value)
    assert text.startswith(f"{env_var(kind)}: unknown field 'no_such_field'; fields: ")
    assert all(f"{name} (" in text for name in config_fields(DEFAULT_CONFIGS[kind]))


def test_non_finite_numbers_and_booleans_for_numbers_are_refused() -> None:
    var = env_var("traffic.congestion")
    for bad in (float("nan"), float("inf"), True):
        with pytest.raises(SettingsError, match=f"^{var}: z_threshold must be"):
            detector_configs({var: {"z_threshold": bad}})
    # an integer is a valid number, and the field keeps its float type
    assert detector_configs({var: {"z_threshold": 4}})["traffic.congestion"].z_threshold == 4.0


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("CITYFLOW_DETECTOR_TRAFFIC_CONGESTION", '{"z_threshold": -1}', "z_threshold must be > 0"),
    ("CITYFLOW_DETECTOR_TRAFFIC_CONGESTION", '{"z": 4.5}', "unknown field 'z'"),
    ("CITYFLOW_DETECTOR_WIFI_LATENCY", '{"min_hot_windows": 1.5}', "min_hot_windows must be an integer"),
    ("CITYFLOW_DETECTOR_LOGISTICS_COLD_CHAIN", '{"severity": "loud"}', "severity must be one of info, warning"),
    ("CITYFLOW_DETECTOR_TRAFFIC_JAM", '{}', "no detector kind 'TRAFFIC_JAM'"),
    ("CITYFLOW_DETECTOR_WIFI_AP_DOWN", '{"min_down_s": 900', "not JSON"),
    ("CITYFLOW_DETECTOR_WIFI_AP_DOWN", '[900]', "expected a JSON object"),
])
@pytest.mark.parametrize("command", [["report"], ["eval", "--check", "missing.json"]])
def test_every_command_stops_with_exit_2_and_one_line_naming_the_variable(
        monkeypatch, capsys, tmp_path, command: list[str], variable: str, value: str, expected: str) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("CITYFLOW_WAREHOUSE_DB", str(tmp_path / "city.duckdb"))
    assert cli(command) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if variable in line]
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "city.duckdb").exists()


def test_no_override_is_the_defaults() -> None:
    assert detector_configs(load_settings(detector_overrides={}).detector_overrides) == DEFAULT_CONFIGS
    assert detector_configs({}) is not DEFAULT_CONFIGS  # a copy: overriding never edits the defaults
