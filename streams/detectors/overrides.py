"""Detector settings from the environment: `CITYFLOW_DETECTOR_<KIND>` is a JSON object of
overrides of that kind's `...Config` fields, checked against the dataclass itself (field
names, field types, and the config's own validation in `__post_init__`), so a kind or a field
added to `DEFAULT_CONFIGS` is configurable and checked without code here.

    >>> configs = detector_configs({"CITYFLOW_DETECTOR_TRAFFIC_CONGESTION": {"z_threshold": 4.5}})
    >>> configs["traffic.congestion"].z_threshold
    4.5
    >>> detector_configs({"CITYFLOW_DETECTOR_TRAFFIC_CONGESTION": {"z": 4.5}})
    Traceback (most recent call last):
    SettingsError: CITYFLOW_DETECTOR_TRAFFIC_CONGESTION: unknown field 'z'; fields: z_threshold ...

Types are strict (JSON `"4.5"` is not a number, `1` is not `true`; an integer is a valid
float); numbers must be finite.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from contracts.settings import DETECTOR_ENV_PREFIX, SettingsError
from streams.detectors import ALL_CONFIGS, DetectorConfig


def env_var(kind: str) -> str:
    """The variable of a kind: 'traffic.congestion' -> 'CITYFLOW_DETECTOR_TRAFFIC_CONGESTION'."""
    return DETECTOR_ENV_PREFIX + kind.upper().replace(".", "_")


def config_fields(config: DetectorConfig) -> dict[str, Any]:
    """A config's fields and their (resolved) types, in declaration order."""
    hints = typing.get_type_hints(type(config))
    return {f.name: hints[f.name] for f in dataclasses.fields(config)}  # type: ignore[arg-type]


def type_name(tp: Any) -> str:
    """What a field accepts, in words for error messages and the README."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _field_list(config: DetectorConfig) -> str:
    return ", ".join(f"{name} ({type_name(tp)}, default {_shown(getattr(config, name))})"
                     for name, tp in config_fields(config).items())


def _shown(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else json.dumps(value)


def apply_overrides(variable: str, config: DetectorConfig, overrides: Mapping[str, Any]) -> DetectorConfig:
    """`config` with `overrides` (field -> JSON value) applied and validated by the config;
    SettingsError naming `variable`, the field and what is valid."""
    fields = config_fields(config)
    unknown = [name for name in overrides if name not in fields]
    if unknown:
        raise SettingsError(f"{variable}: unknown field {', '.join(map(repr, unknown))}; "
                            f"fields: {_field_list(config)}")
    values = {}
    for name, raw in overrides.items():
        tp = fields[name]
        try:
            value = TypeAdapter(tp).validate_json(json.dumps(raw), strict=True)
        except (ValidationError, TypeError, ValueError):
            raise SettingsError(f"{variable}: {name} must be {type_name(tp)} (got {raw!r})") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"{variable}: {name} must be a finite number (got {raw!r})")
        values[name] = value
    try:
        return dataclasses.replace(config, **values)  # type: ignore[type-var]
    except (ValueError, LookupError) as exc:  # a config's own checks; an unknown time zone is a KeyError
        reason = exc.args[0] if exc.args else exc
        raise SettingsError(f"{variable}: {reason} (got {json.dumps(dict(overrides))})") from None


def detector_configs(overrides: Mapping[str, Mapping[str, Any]] | None = None,
                     defaults: Mapping[str, DetectorConfig] | None = None) -> dict[str, DetectorConfig]:
    """Every kind's config, `DEFAULT_CONFIGS` with the `CITYFLOW_DETECTOR_<KIND>` overrides
    (`Settings.detector_overrides`: variable name -> JSON object) applied. A variable naming
    no kind is an error too (a typo must not be ignored silently)."""
    defaults = ALL_CONFIGS if defaults is None else defaults
    by_var = {env_var(kind): kind for kind in defaults}
    configs = dict(defaults)
    for variable, values in (overrides or {}).items():
        kind = by_var.get(variable.upper())
        if kind is None:
            raise SettingsError(f"{variable}: no detector kind {variable.upper().removeprefix(DETECTOR_ENV_PREFIX)!r}; "
                                f"variables: {', '.join(by_var)}")
        configs[kind] = apply_overrides(variable, configs[kind], values)
    return configs


def config_json(config: DetectorConfig) -> dict[str, Any]:
    """A config's fields as JSON values (enums by value): what an override would set."""
    return {name: (v.value if isinstance(v := getattr(config, name), enum.Enum) else v)
            for name in config_fields(config)}


def changed_fields(configs: Mapping[str, DetectorConfig],
                   defaults: Mapping[str, DetectorConfig] | None = None) -> dict[str, dict[str, Any]]:
    """The fields that differ from the defaults, by kind (for logs and reports)."""
    defaults = ALL_CONFIGS if defaults is None else defaults
    out: dict[str, dict[str, Any]] = {}
    for kind, config in configs.items():
        diff = {name: getattr(config, name) for name in config_fields(config)
                if getattr(config, name) != getattr(defaults[kind], name)}
        if diff:
            out[kind] = diff
    return out


__all__ = ["apply_overrides", "changed_fields", "config_fields", "config_json", "detector_configs", "env_var", "type_name"]
